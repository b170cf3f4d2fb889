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

/// `rsinit tail` against the mongos double: `--source auto` picks the change stream and says why; writes on both
/// shards reach a real Redis subscriber in clusterTime order, and a restart in the middle loses nothing.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct MongosTailCLITests {
    @Test func autoPicksTheChangeStreamOnMongosAndARestartLosesNothing() async throws {
        let cluster = try FakeShardedCluster.start(periodicNoopInterval: .milliseconds(50))
        defer { cluster.stop() }
        let redis = try await RedisServerProcess.launch()
        defer { redis.stop() }
        let subscriber = try await OrderCheckingSubscriber.attach(redis.url())
        defer { subscriber.stop() }
        // Start at the cluster's time, so no write of the test precedes the stream.
        let newest = cluster.shards.map(\.lastOplogTimestamp).max() ?? BSONTimestamp(seconds: 0, increment: 0)
        let from = BSONTimestamp(rawValue: newest.rawValue + 1)
        let arguments = ["--host", "127.0.0.1", "--port", "\(cluster.mongos.port)", "--redis", redis.url()]
        let first = try TailProcess(arguments + ["--from", "\(from.seconds).\(from.increment)"])
        let total = 60
        let writer = Task {
            let client = try MongoClient(uri: cluster.uri, logger: .init(label: "cli"))
            for id in 0..<total {
                _ = try await client.runCommand(
                    ["insert": "Foo", "documents": [["_id": .string("id\(id)")]]],
                    database: "tests"
                )
                try await Task.sleep(for: .milliseconds(15))
            }
            await client.close()
        }
        // Restart in the middle: once 20 events arrived, stop the bridge and start another from the checkpoint
        // while the writes go on.
        let midway = ContinuousClock.now + .seconds(20)
        while subscriber.checker.nextExpected < 20 && ContinuousClock.now < midway {
            try await Task.sleep(for: .milliseconds(10))
        }
        first.signal(SIGTERM)
        #expect(try await first.exitCode() == 0, "\(first.errors)")
        #expect(first.errors.contains("source: change stream (cluster): this is mongos (no oplog)"), "\(first.errors)")
        let second = try TailProcess(arguments + ["--from", "checkpoint"])
        try await writer.value
        let delivered = ContinuousClock.now + .seconds(20)
        while subscriber.checker.nextExpected < total && ContinuousClock.now < delivered {
            try await Task.sleep(for: .milliseconds(20))
        }
        second.signal(SIGTERM)
        #expect(try await second.exitCode() == 0, "\(second.errors)")
        let checker = subscriber.checker
        #expect(checker.nextExpected == total, "every event arrived (first missing: \(checker.nextExpected))")
        #expect(checker.violations.isEmpty, "\(checker.violations)")
        // Both shards took writes.
        #expect(cluster.shards.allSatisfy { !$0.documents(in: "tests.Foo").isEmpty })
    }
}
