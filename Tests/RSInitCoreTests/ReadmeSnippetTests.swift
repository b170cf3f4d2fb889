import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Testing

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
}
