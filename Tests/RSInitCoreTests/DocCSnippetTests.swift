import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import RedisClient
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import UnixSignals

// MARK: - The DocC articles' snippets, verbatim (DocCSnippetTests.articlesQuoteThisFile checks it)

func bootstrapReplicaSet(
    uri: String,
    setName: String,
    members: [HostAndPort],
    allowLocalhost: Bool = false
)
    async throws -> BootstrapReport
{
    let configuration = BootstrapConfiguration(
        connectionString: try MongoConnectionString(uri),
        setName: setName,
        members: members,
        allowLocalhostMember: allowLocalhost
    )
    let report = try await ReplicaSetBootstrapper(configuration: configuration, logger: Logger(label: "app"))
        .run { phase in print("rsinit:", phase) }
    print(report.primary ?? "?", report.initiated, report.oplogProof)
    return report
}

func tailTasks(uri: String, after checkpoint: BSONTimestamp, stopAfter wanted: Int) async throws -> BSONTimestamp {
    var checkpoint = checkpoint
    var handled = 0
    let tailer = OplogTailer(
        configuration: OplogTailerConfiguration(
            connectionString: try MongoConnectionString(uri),
            start: .after(checkpoint),
            mapping: .init(fieldsMode: .deep, filter: NamespaceFilter(include: ["steedos"]))
        ),
        logger: Logger(label: "app")
    )
    for try await batch in tailer {
        handled += batch.events.count
        checkpoint = batch.resumePosition ?? checkpoint
        if handled >= wanted { break }
    }
    return checkpoint
}

func makeBridge(mongoURI: String, redisURL: String, logger: Logger) throws -> OplogBridge {
    OplogBridge(
        configuration: .init(
            tailer: OplogTailerConfiguration(connectionString: try MongoConnectionString(mongoURI)),
            start: .checkpoint
        ),
        publisher: RedisEventPublisher(
            configuration: .init(url: try RedisURL(redisURL), highAvailability: true),
            logger: logger
        ),
        logger: logger
    )
}

func runBridge(_ bridge: OplogBridge, logger: Logger) async throws {
    let group = ServiceGroup(
        configuration: .init(services: [bridge], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    )
    try await group.run()
}

// MARK: - Tests

/// The getting-started articles of `Sources/RSInitCore/RSInitCore.docc`: their code is the functions above, and it runs
/// against the double.
@Suite struct DocCSnippetTests {
    static let catalog = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/RSInitCore/RSInitCore.docc")

    /// The ```swift blocks of an article.
    static func swiftBlocks(_ article: String) -> [String] {
        var blocks: [String] = []
        var current: [Substring]?
        for line in article.split(separator: "\n", omittingEmptySubsequences: false) {
            if let block = current {
                if line == "```" {
                    blocks.append(block.joined(separator: "\n"))
                    current = nil
                } else {
                    current = block + [line]
                }
            } else if line == "```swift" {
                current = []
            }
        }
        return blocks
    }

    @Test(arguments: ["GettingStartedBootstrap", "GettingStartedTailer", "GettingStartedBridge"])
    func articlesQuoteThisFile(_ article: String) throws {
        let text = try String(contentsOf: Self.catalog.appendingPathComponent("\(article).md"), encoding: .utf8)
        // A leading newline: the first import of this file is a line too.
        let source = "\n" + (try String(contentsOfFile: #filePath, encoding: .utf8))
        let blocks = Self.swiftBlocks(text)
        #expect(blocks.count == 1)
        for block in blocks {
            let lines = block.split(separator: "\n", omittingEmptySubsequences: false)
            for importLine in lines where importLine.hasPrefix("import ") {
                let imported = source.contains("\n\(importLine)\n")
                #expect(imported, "\(article): \(importLine) is not imported here")
            }
            let code = lines.drop { $0.hasPrefix("import ") || $0.isEmpty }.joined(separator: "\n")
            #expect(!code.isEmpty)
            let quoted = source.contains("\n\(code)\n")
            #expect(quoted, "\(article)'s snippet differs from the copy compiled here")
        }
    }

    @Test func bootstrapArticle() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .uninitialized(setName: "steedos")))
        defer { server.stop() }
        let report = try await bootstrapReplicaSet(
            uri: "mongodb://127.0.0.1:\(server.port)/",
            setName: "steedos",
            members: [HostAndPort(host: "127.0.0.1", port: Int(server.port))],
            allowLocalhost: true
        )
        #expect(report.initiated)
        #expect(report.primary == "127.0.0.1:\(server.port)")
    }

    @Test(.timeLimit(.minutes(1))) func tailerArticle() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "steedos")))
        defer { server.stop() }
        let start = server.lastOplogTimestamp
        server.appendOplogEntry(["op": "i", "ns": "other.tasks", "o": ["_id": "skipped"]])
        server.appendOplogEntry(["op": "i", "ns": "steedos.tasks", "o": ["_id": "a"]])
        server.appendOplogEntry(["op": "i", "ns": "steedos.tasks", "o": ["_id": "b"]])
        let checkpoint = try await tailTasks(uri: server.uri, after: start, stopAfter: 2)
        #expect(checkpoint == server.lastOplogTimestamp)
    }

    @Test(.enabled(if: RedisServerProcess.isAvailable), .timeLimit(.minutes(1))) func bridgeArticle() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "steedos")))
        defer { server.stop() }
        let redis = try await RedisServerProcess.launch()
        let logger = Logger(label: "app")
        let bridge = try makeBridge(mongoURI: server.uri, redisURL: redis.url(), logger: logger)
        try await testGracefulShutdown { trigger in
            async let running: Void = runBridge(bridge, logger: logger)
            let deadline = ContinuousClock.now + .seconds(20)
            while bridge.statistics.batches == 0, ContinuousClock.now < deadline {
                server.appendOplogEntry(["op": "i", "ns": "steedos.tasks", "o": ["_id": "a"]])
                try await Task.sleep(for: .milliseconds(200))
            }
            trigger.triggerGracefulShutdown()
            try await running
        }
        #expect(bridge.statistics.batches > 0)
    }
}
