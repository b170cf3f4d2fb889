import BSON
import Foundation
import MongoCWrapper
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@testable import RSInitCore

/// A Redis failover while the bridge is stopping (a deploy's SIGTERM landing during a Sentinel failover): the bridge
/// exits cleanly, the checkpoint the new master holds names only events its subscribers already received, and a
/// bridge started again from that checkpoint delivers everything after it — nothing lost, first appearances in
/// oplog order.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"), .serialized)
struct FailoverWhileStoppingTests {
    /// `stopAfter`: how long after the master's SIGKILL the bridge is asked to stop — at once (batches in flight on
    /// the dying connection) or while Sentinel is still deciding (the bridge is re-discovering the master).
    @Test(arguments: [0, 1500])
    func masterKilledWhileTheBridgeStops(stopAfter milliseconds: Int) async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let onReplica = Subscriber(set.servers[1].url())
        defer { onReplica.stop() }
        await onReplica.waitConnected()
        let (bridge, publisher) = try topologyBridge(mongo, url: set.url())
        let running = Task { try await bridge.run() }
        let expected = (0..<6000).map { "id\($0)" }
        // A steady stream (20 inserts every 20 ms: 6,000 take at least 6 s), so that the kill and the stop land
        // while batches are read and sent, and the oplog still grows after the stop.
        let writer = Task {
            for start in stride(from: 0, to: 6000, by: 20) {
                appendInsertEntries(mongo, start..<(start + 20))
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let streaming = ContinuousClock.now + .seconds(60)
        while firstAppearances(onReplica.received).ids.count < 1000, ContinuousClock.now < streaming {
            try await Task.sleep(for: .milliseconds(5))
        }
        set.servers[0].stop()  // SIGKILL of the master, mid-stream
        try await Task.sleep(for: .milliseconds(milliseconds))
        bridge.stop()

        // A clean exit: run() returns (no error) without waiting for the failover to finish.
        let exit = Task {
            try await Task.sleep(for: .seconds(30))
            running.cancel()
        }
        let stopping = ContinuousClock.now
        await #expect(throws: Never.self) { try await running.value }
        exit.cancel()
        #expect(ContinuousClock.now - stopping < .seconds(30), "the bridge did not stop by itself")
        await publisher.close()
        try await writer.value

        // The checkpoint on the new master names only events its subscriber already saw (replication carries the
        // PUBLISHes before the SET that follows them).
        let newMaster = try await set.waitForNewMaster(other: set.servers[0].port)
        #expect(newMaster == set.servers[1].port)
        let checkpoint = try #require(try await storedCheckpoint(port: newMaster), "the replica holds a checkpoint")
        var timestamps: [String: BSONTimestamp] = [:]
        for entry in mongo.oplogEntries where entry["op"]?.stringValue == "i" {
            if let id = entry["o"]?.documentValue?["_id"]?.stringValue, let ts = entry["ts"]?.timestampValue {
                timestamps[id] = ts
            }
        }
        let seenBeforeRestart = Set(firstAppearances(onReplica.received).ids)
        let covered = expected.filter { timestamps[$0].map { $0 <= checkpoint } ?? false }
        let unconfirmed = covered.filter { !seenBeforeRestart.contains($0) }
        #expect(
            unconfirmed.isEmpty,
            "the checkpoint passes \(unconfirmed.count) events no subscriber received, e.g. \(unconfirmed.prefix(3))"
        )
        #expect(covered.count < expected.count, "stopped mid-stream: the checkpoint is not at the end")

        // Started again from that checkpoint: every event reaches the subscriber, first appearances in order.
        let publisherAgain = RedisEventPublisher(
            configuration: .init(url: try RedisURL(set.url())),
            logger: bridgeLogger
        )
        let restarted = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(mongo.uri),
                    maxAwaitTime: .milliseconds(200)
                ),
                start: .checkpoint,
                retryBackoff: Backoff(initial: .milliseconds(100), maximum: .milliseconds(400))
            ),
            publisher: publisherAgain,
            logger: bridgeLogger
        )
        let runningAgain = Task { try await restarted.run() }
        let ids = await waitForAll(onReplica, expected)
        restarted.stop()
        try await runningAgain.value
        await publisherAgain.close()
        expectInOrder(ids, expected, "the new master's subscriber")
        let final = try await onDedicatedThread {
            try redisAdminCommand(port: newMaster, ["GET", "rsinit::checkpoint"]).string
        }
        #expect(final.flatMap(CheckpointEncoding.decode) == mongo.lastOplogTimestamp)
    }
}
