import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A `PSUBSCRIBE *` subscriber for a whole CLI run: the `tests.Foo` messages' first appearances, checked in order
/// (``EventOrderChecker``).
final class OrderCheckingSubscriber: Sendable {
    private let observed = Mutex(EventOrderChecker())
    private let subscribed = Mutex(false)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var checker: EventOrderChecker { observed.withLock { $0 } }

    /// Subscribes, and returns once Redis confirmed the `PSUBSCRIBE` (a test failure after `timeout`).
    static func attach(_ url: String, timeout: Duration = .seconds(20)) async throws -> OrderCheckingSubscriber {
        let subscriber = OrderCheckingSubscriber()
        let running = Task { [subscriber] in
            let connection = try await RedisConnection.connect(try RedisURL(url))
            _ = try await connection.command(["PSUBSCRIBE", "*"])
            subscriber.subscribed.withLock { $0 = true }
            while !Task.isCancelled, connection.isOpen {
                guard case .array(let parts?)? = try await connection.readPushed(wait: .milliseconds(100)),
                    parts.count == 4, parts[2].string == "tests.Foo", let message = parts[3].string,
                    let id = EventOrderChecker.documentNumber(message)
                else { continue }
                subscriber.observed.withLock { $0.observe(id) }
            }
            await connection.close()
        }
        subscriber.task.withLock { $0 = running }
        let attached = await eventually(within: timeout) { subscriber.subscribed.withLock { $0 } }
        try #require(attached, "the subscriber did not attach to \(url) within \(timeout)")
        return subscriber
    }

    func stop() { task.withLock { $0?.cancel() } }
}

/// A running `rsinit tail` process; output goes to files so a long run never blocks on a pipe.
final class TailProcess: @unchecked Sendable {
    let process = Process()
    let stdout: URL
    let stderr: URL

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        let directory = FileManager.default.temporaryDirectory
        stdout = directory.appendingPathComponent("rsinit-tail-\(UUID().uuidString).out")
        stderr = directory.appendingPathComponent("rsinit-tail-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.executableURL = CLI.binary
        process.arguments = ["tail"] + arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("RSINIT_") }
            .merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits (off the cooperative pool) for the exit status; 128 + n when killed by signal n, -1 on timeout.
    func exitCode(timeout: TimeInterval = 20) async throws -> Int32 {
        let process = self.process
        return try await onDedicatedThread {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                return -1
            }
            let status = process.terminationStatus
            return process.terminationReason == .uncaughtSignal ? 128 + status : status
        }
    }

    var output: String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }
}

/// Polls the stored checkpoint until it equals `expected` (or the timeout passes); returns the last value seen.
func waitForCheckpoint(
    _ connection: RedisConnection,
    _ expected: BSONTimestamp,
    timeout: Duration = .seconds(15)
) async throws
    -> UInt64?
{
    let deadline = ContinuousClock.now + timeout
    var value: UInt64?
    repeat {
        value = try await connection.command(["GET", "rsinit::checkpoint"]).string.flatMap {
            CheckpointEncoding.decode($0)?.rawValue
        }
        if value == expected.rawValue { return value }
        try await Task.sleep(for: .milliseconds(20))
    } while ContinuousClock.now < deadline
    return value
}

func insertMany(_ mongo: FakeMongod, _ ids: Range<Int>) async throws {
    let client = try MongoClient(uri: mongo.uri, logger: .init(label: "cli"))
    for id in ids {
        _ = try await client.runCommand(
            ["insert": "Foo", "documents": [["_id": .string("id\(id)")]]],
            database: "tests"
        )
    }
    await client.close()
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct TailCLITests {
    @Test func ndjsonOnStdoutAndSigtermExitsZero() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(from.seconds).\(from.increment)",
        ])
        try await insertMany(mongo, 0..<3)
        let deadline = ContinuousClock.now + .seconds(15)
        while tail.output.components(separatedBy: "\"message\"").count < 4 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        let lines = tail.output.split(separator: "\n").filter { $0.contains("\"message\"") }
        #expect(lines.count == 3, "\(tail.output)")
        #expect(lines.first?.contains(#""channels":["tests.Foo","tests.Foo::id0"]"#) == true)
        #expect(lines.first?.contains(#""message":{"e":"i","d":{"_id":"id0"},"f":["_id"]}"#) == true)
    }

    @Test func sigtermWritesTheCheckpointAndKillNineLosesNothing() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        // A subscriber for the whole run: every event must reach it, first appearances in oplog order.
        let subscriber = try await OrderCheckingSubscriber.attach(redis.url())
        defer { subscriber.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let first = try TailProcess(
            [
                "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--from",
                "\(from.seconds).\(from.increment)",
            ])
        try await insertMany(mongo, 0..<20)
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        #expect(try await waitForCheckpoint(connection, mongo.lastOplogTimestamp) == mongo.lastOplogTimestamp.rawValue)
        first.signal(SIGTERM)
        #expect(try await first.exitCode() == 0, "\(first.errors)")
        let stored = try await connection.command(["GET", "rsinit::checkpoint"]).string
        #expect(stored.flatMap { CheckpointEncoding.decode($0)?.rawValue } == mongo.lastOplogTimestamp.rawValue)
        // Written while no bridge runs, then a bridge killed with -9 mid-stream: the next one resumes.
        try await insertMany(mongo, 20..<40)
        let second = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--from", "checkpoint",
        ])
        // Killed once it has delivered some of 20..<40 (its checkpoint moved), not after a guessed time.
        _ = try await eventually(within: .seconds(20)) {
            try await connection.command(["GET", "rsinit::checkpoint"]).string != stored
        }
        second.signal(SIGKILL)
        _ = try await second.exitCode()
        try await insertMany(mongo, 40..<50)
        let third = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url()])
        // The restarted bridge resumes from the checkpoint and reaches the end of the oplog.
        #expect(try await waitForCheckpoint(connection, mongo.lastOplogTimestamp) == mongo.lastOplogTimestamp.rawValue)
        third.signal(SIGINT)
        #expect(try await third.exitCode() == 0)
        await connection.close()
        let delivered = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < delivered, subscriber.checker.nextExpected < 50 {
            try await Task.sleep(for: .milliseconds(20))
        }
        let checker = subscriber.checker
        #expect(checker.nextExpected == 50, "every event 0..<50 arrived (first missing: \(checker.nextExpected))")
        #expect(checker.violations.isEmpty, "\(checker.violations)")
    }

    @Test func sigtermWhileRedisIsUnreachableAtStartExitsZero() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let tail = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", "redis://127.0.0.1:1"])
        let deadline = ContinuousClock.now + .seconds(15)
        while !tail.errors.contains("reading the checkpoint failed"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0, "\(tail.errors)")
        #expect(!tail.errors.contains("CancellationError"))
    }

    @Test func sigtermWhileMongodIsUnreachableStillExitsPromptly() async throws {
        let tail = try TailProcess(["--host", "127.0.0.1", "--port", "1"])  // nothing listens on port 1
        // In the re-establish backoff once it has told the operator (waited for, not slept: a loaded machine
        // starts the process late).
        let deadline = ContinuousClock.now + .seconds(15)
        while !tail.errors.contains("oplog cursor lost"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let signalled = ContinuousClock.now
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        #expect(ContinuousClock.now - signalled < .seconds(10))  // ~70 ms alone; seen at 5 s under the full suite
        #expect(tail.errors.contains("oplog cursor lost"))  // the operator was told
    }

    @Test func exitCodesForHistoryLossBadURLsAndWrongPasswords() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch(["--requirepass", "s3cret"])
        let stale = mongo.lastOplogTimestamp
        try await insertMany(mongo, 0..<5)
        mongo.truncateOplog(keepingLast: 2)
        let lost = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(stale.seconds).\(stale.increment)",
        ])
        #expect(try await lost.exitCode() == 9)
        #expect(lost.errors.contains("oplog history lost"))
        for scenario in [FakeMongodConfiguration.Scenario.standalone, .uninitialized(setName: "rs0")] {
            let node = try startDouble(scenario)
            defer { node.stop() }
            let noOplog = try TailProcess(["--host", "127.0.0.1", "--port", "\(node.port)"])
            #expect(try await noOplog.exitCode() == 4, "\(noOplog.errors)")
            #expect(noOplog.errors.contains("rsinit: fix: start mongod with --replSet"))
        }
        let badURL = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", "http://cache"])
        #expect(try await badURL.exitCode() == 2)
        let wrong = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(password: "hunter2"),
        ])
        #expect(try await wrong.exitCode() == 6)
        #expect(!wrong.errors.contains("hunter2"))
        #expect(wrong.errors.contains(":***@"))
    }

    @Test func httpServesHealthAndPrometheusMetrics() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let port = Int(try RedisServerProcess.freePort())
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--from",
            "\(from.seconds).\(from.increment)", "--http", "127.0.0.1:\(port)", "--stall-timeout", "1s",
        ])
        try await insertMany(mongo, 0..<5)
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        #expect(try await waitForCheckpoint(connection, mongo.lastOplogTimestamp) == mongo.lastOplogTimestamp.rawValue)
        await connection.close()
        // The listener starts beside the bridge; give it a moment on a loaded machine.
        var answered: HTTPProbe.Reply?
        let listening = ContinuousClock.now + .seconds(10)
        while answered == nil, ContinuousClock.now < listening {
            answered = try? await onDedicatedThread { try HTTPProbe.request(port: port, path: "/healthz") }
            if answered == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let health = try #require(answered, "\(tail.errors)")
        #expect(health.status == 200, "\(health.body)")
        #expect(health.body.hasPrefix(#"{"status":"ok""#))
        let metrics = try await onDedicatedThread { try HTTPProbe.request(port: port, path: "/metrics") }
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(metrics.body.contains(#"rsinit_events_total{namespace="tests.Foo",op="insert"} 5"#), "\(metrics.body)")
        #expect(metrics.body.contains("# TYPE rsinit_publish_duration_seconds histogram"))
        #expect(metrics.body.contains(#"rsinit_publish_duration_seconds_bucket{le="0.00025"}"#))
        #expect(metrics.body.contains("rsinit_lag_seconds "))
        // Redis gone while an event waits: the tail stalls and /healthz says so.
        redis.stop()
        try await insertMany(mongo, 5..<6)
        var stalled = health
        let deadline = ContinuousClock.now + .seconds(15)
        while stalled.status == 200, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            stalled = try await onDedicatedThread { try HTTPProbe.request(port: port, path: "/healthz") }
        }
        #expect(stalled.status == 503)
        #expect(stalled.body.contains("stalled"))
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0, "\(tail.errors)")
    }

    @Test func fanOutRulesInNDJSONAndBadOperationsFlagsExitTwo() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(from.seconds).\(from.increment)",
            "--fan-out", "tests.Foo=namespace:company, tests=channel:all",
        ])
        try await insertMany(mongo, 0..<1)
        let deadline = ContinuousClock.now + .seconds(15)
        while !tail.output.contains("id0"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        #expect(
            tail.output.contains(#""channels":["tests.Foo","tests.Foo::id0","tests.company::Foo","tests.all"]"#),
            "\(tail.output)"
        )
        for arguments in [["--fan-out", "tests.Foo"], ["--http", "nowhere"], ["--http", "127.0.0.1:70000"]] {
            let bad = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)"] + arguments)
            #expect(try await bad.exitCode() == 2, "\(arguments)")
            #expect(bad.errors.contains("fix:"), "\(bad.errors)")
        }
        // A port already in use: a clear message and exit 2, not a stack trace.
        let redis = try await RedisServerProcess.launch()
        let busy = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--http", "127.0.0.1:\(redis.port)",
        ])
        #expect(try await busy.exitCode() == 2)
        #expect(busy.errors.contains("cannot listen on --http 127.0.0.1:\(redis.port)"), "\(busy.errors)")
        redis.stop()
    }

    @Test func redissEndToEndAndAnUntrustedCertificateExitsTwo() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launchTLS()
        let tls = try #require(redis.tls)
        let url = redis.tlsURL(query: "ca=\(tls.caFile)")
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", url, "--from",
            "\(from.seconds).\(from.increment)",
            "--ha",
        ])
        try await insertMany(mongo, 0..<10)
        let connection = try await RedisConnection.connect(try RedisURL(url))
        #expect(try await waitForCheckpoint(connection, mongo.lastOplogTimestamp) == mongo.lastOplogTimestamp.rawValue)
        await connection.close()
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0, "\(tail.errors)")
        // An untrusted server certificate is a configuration error: exit 2 at once, with the fix.
        let untrusted = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.tlsURL(query: "ca=\(tls.otherCAFile)"),
        ])
        #expect(try await untrusted.exitCode() == 2)
        #expect(
            untrusted.errors.contains("TLS with Redis at rediss://localhost:\(redis.port)/0 failed"),
            "\(untrusted.errors)"
        )
        #expect(untrusted.errors.contains("ca="))
    }
}
