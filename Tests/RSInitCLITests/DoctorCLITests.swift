import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import RedisClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `rsinit doctor` against the double and a real redis-server, each problem produced on purpose.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct DoctorCLITests {
    /// Runs `rsinit doctor --json` and returns the exit code and the findings by check name.
    static func doctor(_ arguments: [String]) async throws -> (CLIRun, [String: [String: Any]]) {
        let run = try await CLI.run(["doctor", "--json", "--sample", "200ms"] + arguments)
        expectNoCrashOutput(run)
        var findings: [String: [String: Any]] = [:]
        for case let finding as [String: Any] in run.json?["findings"] as? [Any] ?? [] {
            if let check = finding["check"] as? String { findings[check] = finding }
        }
        return (run, findings)
    }

    static func severity(_ findings: [String: [String: Any]], _ check: String) -> String? {
        findings[check]?["severity"] as? String
    }

    @Test func healthyDeploymentWithABridgeRunningExitsZero() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch(["--appendonly", "yes"])
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--from",
            "\(from.seconds).\(from.increment)",
        ])
        defer { tail.signal(SIGKILL) }
        // The bridge checkpoints after its first batch.
        try await insertMany(mongo, 0..<3)
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        _ = try await waitForCheckpoint(connection, mongo.lastOplogTimestamp)
        await connection.close()
        let (run, findings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--allow-localhost-member",
            "--probe", "--probe-timeout", "10s",
        ])
        #expect(run.exitCode == 0, "\(run.stdout)\n\(run.stderr)")
        for check in ["mongod", "replica set", "primary", "oplog", "redis", "redis persistence", "checkpoint", "probe"]
        {
            #expect(Self.severity(findings, check) == "ok", "\(check): \(findings[check] ?? [:])")
        }
        // The member host is 127.0.0.1 (the double listens on loopback only): accepted, still reported.
        #expect(Self.severity(findings, "member 127.0.0.1:\(mongo.port)") == "warning")
        #expect((findings["oplog"]?["message"] as? String)?.contains("capped at 1000000 entries") == true)
        let figures = run.json?["figures"] as? [String: Any]
        #expect(figures?["probeMilliseconds"] as? Double != nil, "\(run.stdout)")
        #expect(figures?["checkpointLagSeconds"] as? Double != nil)
        // The marker is gone again.
        let client = try MongoClient(uri: mongo.uri, logger: .init(label: "doctor-test"))
        let left = try await client.runCommand(["find": "probe", "filter": [:]], database: "rsinit_doctor")
        #expect(left[path: "cursor.firstBatch"]?.arrayValue?.isEmpty == true)
        await client.close()
    }

    @Test func loopbackMemberHostIsAFailureWithTheFix() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))  // member host 127.0.0.1:<port>
        defer { mongo.stop() }
        let (run, findings) = try await Self.doctor(["--host", "127.0.0.1", "--port", "\(mongo.port)"])
        #expect(run.exitCode == 10, "\(run.stdout)")
        let member = findings["member 127.0.0.1:\(mongo.port)"]
        #expect(member?["severity"] as? String == "failure")
        #expect((member?["message"] as? String)?.contains("localhost:27017 trap") == true)
        #expect((member?["fix"] as? String)?.contains("rs.reconfig") == true)
        // Human output: the failure and its fix line, no stack trace.
        let text = try await CLI.run(["doctor", "--host", "127.0.0.1", "--port", "\(mongo.port)", "--sample", "100ms"])
        #expect(text.exitCode == 10)
        #expect(text.stdout.contains("FAILURE member 127.0.0.1:\(mongo.port): a loopback host"))
        #expect(text.stdout.contains("        fix: reconfigure the member host"))
        // RSINIT_ALLOW_LOCALHOST_MEMBER applies to doctor as to the bootstrap: a warning, exit 0.
        let allowed = try await CLI.run(
            ["doctor", "--host", "127.0.0.1", "--port", "\(mongo.port)", "--sample", "100ms"],
            environment: ["RSINIT_ALLOW_LOCALHOST_MEMBER": "1"]
        )
        #expect(allowed.exitCode == 0, "\(allowed.stdout)")
        #expect(allowed.stdout.contains("WARNING member 127.0.0.1:\(mongo.port)"))
    }

    @Test func unreachableMemberIsAFailure() async throws {
        let closedPort = try RedisServerProcess.freePort()
        let peer = "127.0.0.1:\(closedPort)"
        let mongo = try startDouble(.uninitialized(setName: "steedos")) { $0.reachablePeers = [peer] }
        defer { mongo.stop() }
        let bootstrap = try await CLI.run([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--members", "127.0.0.1:\(mongo.port),\(peer)",
            "--allow-localhost-member", "--timeout", "20s",
        ])
        #expect(bootstrap.exitCode == 0, "\(bootstrap.stderr)")
        let (run, findings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--allow-localhost-member",
        ])
        #expect(run.exitCode == 10, "\(run.stdout)")
        let member = findings["member \(peer)"]
        #expect(member?["severity"] as? String == "failure")
        #expect((member?["message"] as? String)?.contains("does not answer from here") == true, "\(member ?? [:])")
        #expect(Self.severity(findings, "member 127.0.0.1:\(mongo.port)") == "warning")
        #expect(Self.severity(findings, "primary") == "ok")
    }

    @Test func redisWithoutPersistenceIsAFailure() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()  // --save "" --appendonly no
        let (run, findings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--allow-localhost-member",
        ])
        #expect(run.exitCode == 10, "\(run.stdout)")
        #expect(Self.severity(findings, "redis persistence") == "failure")
        #expect((findings["redis persistence"]?["fix"] as? String)?.contains("appendonly yes") == true)
        #expect(Self.severity(findings, "checkpoint") == "warning")  // no bridge ever wrote one
    }

    @Test func checkpointOlderThanTheOplogIsHistoryLost() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        try await insertMany(mongo, 0..<5)
        let old = mongo.lastOplogTimestamp
        try await insertMany(mongo, 5..<10)
        mongo.truncateOplog(keepingLast: 2)
        let redis = try await RedisServerProcess.launch(["--appendonly", "yes"])
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        try await connection.require(["SET", "app::checkpoint", CheckpointEncoding.encode(old)])
        await connection.close()
        let (run, findings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--metadata-prefix", "app::",
            "--allow-localhost-member",
        ])
        #expect(run.exitCode == 10, "\(run.stdout)")
        #expect(Self.severity(findings, "checkpoint") == "failure")
        #expect((findings["checkpoint"]?["message"] as? String)?.contains("history lost") == true)
        #expect((findings["checkpoint"]?["fix"] as? String)?.contains("--from end") == true)
    }

    @Test func noPrimaryIsAFailure() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        mongo.stepDown(for: .seconds(60))
        let (run, findings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--allow-localhost-member",
        ])
        #expect(run.exitCode == 10, "\(run.stdout)")
        #expect(Self.severity(findings, "primary") == "failure")
        #expect(
            (findings["primary"]?["message"] as? String)?.contains("SECONDARY") == true,
            "\(findings["primary"] ?? [:])"
        )
    }

    @Test func probeWithoutABridgeIsAFailureAndRemovesItsMarker() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch(["--appendonly", "yes"])
        let (run, findings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--allow-localhost-member",
            "--probe", "--probe-timeout", "500ms",
        ])
        #expect(run.exitCode == 10, "\(run.stdout)")
        #expect(Self.severity(findings, "probe") == "failure")
        #expect((findings["probe"]?["message"] as? String)?.contains("no message on rsinit_doctor.probe::") == true)
        let client = try MongoClient(uri: mongo.uri, logger: .init(label: "doctor-test"))
        let left = try await client.runCommand(["find": "probe", "filter": [:]], database: "rsinit_doctor")
        #expect(left[path: "cursor.firstBatch"]?.arrayValue?.isEmpty == true)
        await client.close()
    }

    @Test func redisCredentialsRefusedExit6WithoutThePassword() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch(["--requirepass", "s3cret-pw"])
        let (missing, missingFindings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--allow-localhost-member",
        ])
        #expect(missing.exitCode == 6, "\(missing.stdout)")
        #expect(Self.severity(missingFindings, "redis") == "failure")
        let (wrong, wrongFindings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(password: "not-it-pw"),
            "--allow-localhost-member",
        ])
        #expect(wrong.exitCode == 6, "\(wrong.stdout)")
        #expect(Self.severity(wrongFindings, "redis") == "failure")
        #expect(!(wrong.stdout + wrong.stderr).contains("not-it-pw"))
        let (right, rightFindings) = try await Self.doctor([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(password: "s3cret-pw"),
            "--allow-localhost-member",
        ])
        #expect(Self.severity(rightFindings, "redis") == "ok", "\(right.stdout)")
        #expect(!(right.stdout + right.stderr).contains("s3cret-pw"))
    }

    @Test func aURIWithSeveralHostsStartsFromTheFirst() async throws {
        let mongo = try startDouble(.primary(setName: "steedos"))
        defer { mongo.stop() }
        let (run, findings) = try await Self.doctor([
            "--uri", "mongodb://127.0.0.1:\(mongo.port),127.0.0.1:1/?replicaSet=steedos", "--allow-localhost-member",
        ])
        #expect(run.exitCode == 0, "\(run.stdout)\n\(run.stderr)")
        #expect(Self.severity(findings, "primary") == "ok")
    }

    @Test func unreachableMongodExits3AndUsageExits2() async throws {
        let port = try RedisServerProcess.freePort()
        let (run, findings) = try await Self.doctor(["--host", "127.0.0.1", "--port", "\(port)"])
        #expect(run.exitCode == 3, "\(run.stdout)")
        #expect(Self.severity(findings, "mongod") == "failure")
        let usage = try await CLI.run(["doctor", "--host", "127.0.0.1", "--probe"])
        #expect(usage.exitCode == 2)
        #expect(usage.stderr.contains("rsinit: error: --probe needs --redis"))
        let badRedis = try await CLI.run(["doctor", "--host", "127.0.0.1", "--redis", "http://x"])
        #expect(badRedis.exitCode == 2)
    }
}
