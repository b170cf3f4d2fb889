import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Synchronization
import Testing

let bootstrapLogger = Logger(label: "rsinit.test.bootstrap")

func double(
    _ scenario: FakeMongodConfiguration.Scenario,
    timings: FakeMongodConfiguration.Timings = .init(),
    configure: (inout FakeMongodConfiguration) -> Void = { _ in }
) throws -> FakeMongod {
    var configuration = FakeMongodConfiguration(scenario: scenario, timings: timings, periodicNoopInterval: nil)
    configure(&configuration)
    return try FakeMongod.start(configuration)
}

func bootstrapConfiguration(
    _ server: FakeMongod,
    setName: String = "steedos",
    members: [String]? = nil,
    timeout: Duration = .seconds(10),
    uri: String? = nil,
    configure: (inout BootstrapConfiguration) -> Void = { _ in }
) throws -> BootstrapConfiguration {
    var configuration = BootstrapConfiguration(
        connectionString: try MongoConnectionString(uri ?? "mongodb://127.0.0.1:\(server.port)/"),
        setName: setName,
        members: (members ?? [server.hostAndPort]).compactMap { HostAndPort(parsing: $0) },
        allowLocalhostMember: true,
        timeout: timeout,
        attemptTimeout: .milliseconds(500)
    )
    configure(&configuration)
    return configuration
}

/// Collects progress phases from the bootstrapper's callback.
final class PhaseRecorder: Sendable {
    private let phases = Mutex<[BootstrapStateMachine.Phase]>([])
    func record(_ phase: BootstrapStateMachine.Phase) { phases.withLock { $0.append(phase) } }
    var all: [BootstrapStateMachine.Phase] { phases.withLock { $0 } }
}

func runBootstrap(
    _ configuration: BootstrapConfiguration,
    recorder: PhaseRecorder? = nil
) async -> Result<BootstrapReport, BootstrapFailure> {
    do {
        let report = try await ReplicaSetBootstrapper(configuration: configuration, logger: bootstrapLogger).run {
            recorder?.record($0)
        }
        return .success(report)
    } catch let failure as BootstrapFailure {
        return .failure(failure)
    } catch {
        return .failure(BootstrapFailure(.usage, "unexpected \(error)"))
    }
}

func runWait(_ configuration: BootstrapConfiguration) async -> Result<BootstrapReport, BootstrapFailure> {
    do {
        return .success(
            try await ReplicaSetBootstrapper(configuration: configuration, logger: bootstrapLogger).waitUntilReady()
        )
    } catch let failure as BootstrapFailure {
        return .failure(failure)
    } catch {
        return .failure(BootstrapFailure(.usage, "unexpected \(error)"))
    }
}

extension Result where Failure == BootstrapFailure {
    var failureKind: BootstrapFailure.Kind? {
        if case .failure(let failure) = self { return failure.kind }
        return nil
    }
    var failureText: String {
        if case .failure(let failure) = self { return failure.description }
        return ""
    }
    var report: Success? { try? get() }
}

@Suite struct BootstrapIntegrationTests {
    @Test func uninitializedToPrimaryWithTheOplogProvenByANote() async throws {
        let server = try double(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        let recorder = PhaseRecorder()
        let result = await runBootstrap(try bootstrapConfiguration(server), recorder: recorder)
        let report = try result.get()
        #expect(report.initiated)
        #expect(report.oplogProof == .note)
        #expect(report.primary == server.hostAndPort)
        #expect(report.hosts == [server.hostAndPort])
        #expect(server.acceptedInitiateCount == 1)
        #expect(
            server.replicaSetConfig?["members"] == [
                .document(server.replicaSetConfig!["members"]!.arrayValue![0].documentValue!)
            ]
        )
        #expect(server.replicaSetConfig?[path: "_id"] == "steedos")
        #expect(server.oplogEntries.contains { $0[path: "o.msg"] == "rsinit oplog check" })
        #expect(recorder.all.first == .waitingForMongod)
        #expect(recorder.all.contains(.initiating))
        #expect(recorder.all.last == .ready)
        // One progress line per state change, not per attempt.
        #expect(recorder.all.count == Set(recorder.all.map { "\($0)" }).count)
        // The member host is the name given, not what mongod would pick.
        #expect(
            server.replicaSetConfig?["members"]?.arrayValue?.first?.documentValue?["host"]
                == .string(server.hostAndPort)
        )
    }

    @Test func delayedStart() async throws {
        let server = try double(.uninitialized(setName: "steedos")) { $0.listenDelay = .milliseconds(800) }
        defer { server.stop() }
        let report = try await runBootstrap(try bootstrapConfiguration(server)).get()
        #expect(report.reachableAfterMs >= 700)
        // Retries dial again at once (no 5 s libmongoc cooldown): noticed within a backoff step or two.
        #expect(report.reachableAfterMs < 2500)
        #expect(report.initiated)
    }

    @Test func restartWithTheSetAlreadyInitiated() async throws {
        let server = try double(.primary(setName: "steedos"))
        defer { server.stop() }
        let report = try await runBootstrap(try bootstrapConfiguration(server)).get()
        #expect(!report.initiated)
        #expect(server.acceptedInitiateCount == 0)
        #expect(!server.receivedCommandNames.contains("replsetinitiate"))
    }

    @Test func concurrentBootstrappersBothSucceedWithOneInitiate() async throws {
        let server = try double(.uninitialized(setName: "steedos"), timings: .init(initiate: .milliseconds(150)))
        defer { server.stop() }
        let configuration = try bootstrapConfiguration(server)
        async let first = runBootstrap(configuration)
        async let second = runBootstrap(configuration)
        let results = await [first, second]
        #expect(results.allSatisfy { $0.report != nil }, "\(results.map(\.failureText))")
        #expect(results.compactMap(\.report).filter(\.initiated).count == 1)
        #expect(server.acceptedInitiateCount == 1)
    }

    @Test func standaloneFailsFast() async throws {
        let server = try double(.standalone)
        defer { server.stop() }
        let start = ContinuousClock.now
        let result = await runBootstrap(try bootstrapConfiguration(server))
        #expect(result.failureKind == .notReplicaSet)
        #expect(result.failureText.contains("--replSet steedos"))
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func setNameMismatchAtInitiate() async throws {
        let server = try double(.uninitialized(setName: "rs0"))
        defer { server.stop() }
        let result = await runBootstrap(try bootstrapConfiguration(server))
        #expect(result.failureKind == .invalidConfig)
        #expect(result.failureText.contains("command line set name: rs0"))
        #expect(result.failureText.contains("--set-name"))
    }

    @Test func setNameMismatchOnAnExistingSet() async throws {
        let server = try double(.primary(setName: "rs0"))
        defer { server.stop() }
        let result = await runBootstrap(try bootstrapConfiguration(server))
        #expect(result.failureKind == .invalidConfig)
        #expect(result.failureText.contains("\"rs0\""))
    }

    @Test func memberHostThatDoesNotMapToTheNode() async throws {
        let server = try double(.uninitialized(setName: "steedos")) { $0.selfNotFoundDelay = .milliseconds(200) }
        defer { server.stop() }
        let result = await runBootstrap(
            try bootstrapConfiguration(server, members: ["mongodb:27017"]) { $0.allowLocalhostMember = false }
        )
        #expect(result.failureKind == .invalidConfig)
        #expect(result.failureText.contains("No host described in new configuration"))
        #expect(result.failureText.contains("does not resolve to this mongod"))
        #expect(server.acceptedInitiateCount == 0)
    }

    @Test func removedNodeIsDiagnosedNotTouched() async throws {
        let server = try double(.removed(setName: "steedos", storedHosts: ["c57886d0a663:27017"]))
        defer { server.stop() }
        let result = await runBootstrap(try bootstrapConfiguration(server))
        #expect(result.failureKind == .invalidConfig)
        #expect(result.failureText.contains("REMOVED"))
        #expect(result.failureText.contains("c57886d0a663:27017"))
        #expect(result.failureText.contains(server.hostAndPort))
        #expect(!server.receivedCommandNames.contains("replsetreconfig"))
        #expect(server.phase == .removed)
    }

    @Test func removedNodeRepairedWithForceReconfig() async throws {
        let server = try double(.removed(setName: "steedos", storedHosts: ["c57886d0a663:27017"]))
        defer { server.stop() }
        let report = try await runBootstrap(try bootstrapConfiguration(server) { $0.forceReconfig = true }).get()
        #expect(report.repaired)
        #expect(
            server.replicaSetConfig?["members"]?.arrayValue?.first?.documentValue?["host"]
                == .string(server.hostAndPort)
        )
        #expect((server.replicaSetConfig?["version"]?.int64Value ?? 0) > 10_000)
    }

    @Test func authRequired() async throws {
        let server = try double(.uninitialized(setName: "steedos")) { $0.auth = .required }
        defer { server.stop() }
        let result = await runBootstrap(try bootstrapConfiguration(server))
        #expect(result.failureKind == .auth)
        #expect(result.failureText.contains("localhost exception"))
        let badPassword = await runBootstrap(
            try bootstrapConfiguration(server, uri: "mongodb://root:hunter2@127.0.0.1:\(server.port)/?authSource=admin")
        )
        #expect(badPassword.failureKind == .auth)
        #expect(!badPassword.failureText.contains("hunter2"))
    }

    @Test func drainWindowIsNotReady() async throws {
        let server = try double(.uninitialized(setName: "steedos"), timings: .init(drain: .milliseconds(400)))
        defer { server.stop() }
        let recorder = PhaseRecorder()
        let report = try await runBootstrap(try bootstrapConfiguration(server), recorder: recorder).get()
        #expect(recorder.all.contains(.waitingForPrimary("PRIMARY, draining")))
        #expect(report.primaryAfterMs >= 400)
        // The marker was written after the drain: appendOplogNote only succeeds on a writable primary.
        #expect(report.oplogProof == .note)
    }

    @Test func stepDownWhileWaiting() async throws {
        let server = try double(.primary(setName: "steedos"))
        defer { server.stop() }
        server.stepDown(for: .milliseconds(600))
        let start = ContinuousClock.now
        let report = try await runWait(try bootstrapConfiguration(server)).get()
        #expect(ContinuousClock.now - start >= .milliseconds(500))
        #expect(report.oplogProof == .note)
    }

    @Test func oplogProofByLastWriteWhenTheNoteIsNotPermitted() async throws {
        let server = try double(.primary(setName: "steedos")) {
            $0.appendOplogNoteAllowed = false
            $0.periodicNoopInterval = .milliseconds(300)
        }
        defer { server.stop() }
        let report = try await runBootstrap(try bootstrapConfiguration(server)).get()
        #expect(report.oplogProof == .lastWrite)
    }

    @Test func deadlineWhileUnreachable() async throws {
        let (port, reservation) = try #require(refusingLoopbackPort())
        defer { close(reservation) }
        let configuration = BootstrapConfiguration(
            connectionString: try MongoConnectionString("mongodb://127.0.0.1:\(port)/"),
            members: [HostAndPort(host: "mongodb", port: 27017)],
            timeout: .seconds(1),
            attemptTimeout: .milliseconds(200)
        )
        let result = await runBootstrap(configuration)
        #expect(result.failureKind == .unreachable)
        #expect(result.failureText.contains("connection refused"))
    }

    @Test func silentListenerCostsOnlyTheAttemptTimeout() async throws {
        let server = try double(.uninitialized(setName: "steedos")) { $0.silent = true }
        defer { server.stop() }
        let start = ContinuousClock.now
        let result = await runBootstrap(
            try bootstrapConfiguration(server, timeout: .seconds(2)) { $0.attemptTimeout = .milliseconds(300) }
        )
        #expect(result.failureKind == .unreachable)
        #expect(ContinuousClock.now - start < .seconds(4))
    }

    @Test func deadlineWithoutAWritablePrimary() async throws {
        let server = try double(.uninitialized(setName: "steedos"), timings: .init(startup2: .seconds(30)))
        defer { server.stop() }
        // 3 s: long enough to see STARTUP2 even on a loaded machine, far inside the 30 s STARTUP2.
        let result = await runBootstrap(try bootstrapConfiguration(server, timeout: .seconds(3)))
        #expect(result.failureKind == .noWritablePrimary)
        #expect(result.failureText.contains("STARTUP2"), "\(result.failureText)")
    }

    @Test func deadlineWhileTheOplogDoesNotMove() async throws {
        let server = try double(.primary(setName: "steedos")) { $0.appendOplogNoteAllowed = false }
        defer { server.stop() }
        let result = await runBootstrap(
            try bootstrapConfiguration(server, timeout: .seconds(5)) { $0.noopProofTimeout = .milliseconds(600) }
        )
        #expect(result.failureKind == .oplogNotAdvancing)
    }

    @Test func multiMemberSet() async throws {
        let server = try double(.uninitialized(setName: "steedos")) {
            $0.reachablePeers = ["db2:27017"]
            $0.selfHostNames = ["db1"]
        }
        defer { server.stop() }
        let db1 = "db1:\(server.port)"
        let report = try await runBootstrap(try bootstrapConfiguration(server, members: [db1, "db2:27017"])).get()
        #expect(report.initiated)
        #expect(report.hosts == [db1, "db2:27017"])
        let members = server.replicaSetConfig?["members"]?.arrayValue?.compactMap(\.documentValue) ?? []
        #expect(members.map { $0["priority"] } == [.double(2), .double(1)])
    }

    @Test func multiMemberSetWithAnUnreachableMemberReportsIt() async throws {
        let server = try double(.uninitialized(setName: "steedos")) { $0.selfHostNames = ["db1"] }
        defer { server.stop() }
        let result = await runBootstrap(
            try bootstrapConfiguration(
                server,
                members: ["db1:\(server.port)", "db2:27017"],
                timeout: .milliseconds(2500)
            )
        )
        #expect(result.failureKind == .invalidConfig)
        #expect(result.failureText.contains("db2:27017 failed with Error connecting"))
        #expect(server.receivedCommandNames.filter { $0 == "replsetinitiate" }.count >= 2)
    }

    @Test func waitOnAnUninitializedSetNeverInitiates() async throws {
        let server = try double(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        let result = await runWait(try bootstrapConfiguration(server, timeout: .seconds(3)))
        #expect(result.failureKind == .noWritablePrimary)
        #expect(server.acceptedInitiateCount == 0)
    }

    @Test func statusReader() async throws {
        let server = try double(.removed(setName: "steedos", storedHosts: ["old:27017"]))
        defer { server.stop() }
        let reader = ReplicaSetStatusReader(
            connectionString: try MongoConnectionString("mongodb://127.0.0.1:\(server.port)/"),
            logger: bootstrapLogger
        )
        let removed = try await reader.read()
        #expect(removed.kind == "removed")
        let primary = try double(.primary(setName: "rs0"))
        defer { primary.stop() }
        let status = try await ReplicaSetStatusReader(
            connectionString: try MongoConnectionString("mongodb://127.0.0.1:\(primary.port)/"),
            logger: bootstrapLogger
        ).read()
        #expect(status.kind == "member")
        #expect(status.state == "PRIMARY")
        #expect(status.writablePrimary)
        #expect(status.members.first?.isSelf == true)
    }
}
