import BSON
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import RedisClient
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import UnixSignals

/// The README's library snippet, compiled and run (against the double instead of mongodb:27017).
@Suite struct ReadmeSnippetTests {
    @Test func librarySnippet() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .uninitialized(setName: "steedos")))
        defer { server.stop() }
        // --- README snippet (host and port substituted) ---
        let configuration = BootstrapConfiguration(
            connectionString: try MongoConnectionString("mongodb://127.0.0.1:\(server.port)/"),
            setName: "steedos",
            members: [HostAndPort(host: "127.0.0.1", port: Int(server.port))],
            allowLocalhostMember: true
        )
        let report = try await ReplicaSetBootstrapper(configuration: configuration, logger: Logger(label: "app"))
            .run { phase in print("rsinit:", phase) }
        print(report.primary ?? "?", report.initiated, report.oplogProof)
        // --- end ---
        #expect(report.initiated)
    }

    @Test(.timeLimit(.minutes(1))) func tailerSnippet() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "steedos")))
        defer { server.stop() }
        let logger = Logger(label: "app")
        var checkpoint = server.lastOplogTimestamp
        server.appendOplogEntry(["op": "i", "ns": "steedos.tasks", "o": ["_id": "a"]])
        var delivered = 0
        // --- README snippet (URI substituted) ---
        let tailer = OplogTailer(
            configuration: OplogTailerConfiguration(
                connectionString: try MongoConnectionString(server.uri),
                start: .after(checkpoint),
                mapping: .init(fieldsMode: .deep, filter: NamespaceFilter(include: ["steedos"]))
            ),
            logger: logger
        )
        for try await batch in tailer {
            for event in batch.events { delivered += event.documentID == "a" ? 1 : 0 }
            checkpoint = batch.resumePosition ?? checkpoint
            if delivered > 0 { break }
        }
        // --- end ---
        #expect(delivered == 1)
        #expect(checkpoint == server.lastOplogTimestamp)
    }

    @Test(.enabled(if: RedisServerProcess.isAvailable), .timeLimit(.minutes(1))) func bridgeServiceSnippet()
        async throws
    {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "steedos")))
        defer { server.stop() }
        let redis = try await RedisServerProcess.launch()
        let logger = Logger(label: "app")
        try await testGracefulShutdown { trigger in
            // --- README snippet (URIs substituted) ---
            let bridge = OplogBridge(
                configuration: .init(
                    tailer: OplogTailerConfiguration(connectionString: try MongoConnectionString(server.uri)),
                    start: .checkpoint
                ),
                publisher: RedisEventPublisher(
                    configuration: .init(url: try RedisURL(redis.url()), highAvailability: true),
                    logger: logger
                ),
                logger: logger
            )
            let group = ServiceGroup(
                configuration: .init(services: [bridge], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            // --- end (the snippet's `try await group.run()` runs beside the shutdown trigger) ---
            async let running: Void = group.run()
            let deadline = ContinuousClock.now + .seconds(20)
            while bridge.statistics.batches == 0, ContinuousClock.now < deadline {
                server.appendOplogEntry(["op": "i", "ns": "steedos.tasks", "o": ["_id": "a"]])
                try await Task.sleep(for: .milliseconds(200))
            }
            trigger.triggerGracefulShutdown()
            try await running
            #expect(bridge.statistics.batches > 0)
        }
    }
}
