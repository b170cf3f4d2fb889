import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@testable import RSInitCore

/// Checkpoint format v2 end to end: what the bridge stores, and how a restart resumes from it.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"), .serialized)
struct CheckpointV2Tests {
    /// One transaction of `ids` inserts: one oplog entry, so one clusterTime for all of its events.
    static func appendTransaction(_ mongo: FakeMongod, _ ids: Range<Int>) {
        let uuid = BSONBinary(subtype: 4, data: Array(repeating: 9, count: 16))
        mongo.appendOplogEntry([
            "lsid": ["id": .binary(uuid)], "txnNumber": .int64(1), "op": "c",
            "ns": "admin.$cmd",
            "o": [
                "applyOps": .array(
                    ids.map { id in
                        ["op": "i", "ns": "tests.Foo", "o": ["_id": .string("id\(id)"), "n": .int32(Int32(id))]]
                    }
                )
            ],
        ])
    }

    /// The restart resumes after the stored token, not at its clusterTime: the events of a transaction read
    /// before the stop (one clusterTime) are not published again, and nothing after them is lost.
    @Test func aChangeStreamRestartRepeatsNothing() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        // Start right after the newest entry whenever the stream opens (a v1 checkpoint: startAtOperationTime).
        try await storeCheckpoint(CheckpointEncoding.encode(mongo.lastOplogTimestamp), in: redis)
        try await whileRunning(try await makeChangeStreamBridge(mongo, redis)) { _ in
            Self.appendTransaction(mongo, 0..<5)
            _ = await subscriber.waitFor(10)
        }
        let stored = try #require(try await storedCheckpoint(in: redis))
        guard case .changeStream(let token, _) = try StoredCheckpoint.decode(stored) else {
            Issue.record("the change-stream source stored \(stored), not a token")
            return
        }
        #expect(!token.isEmpty)

        Self.appendTransaction(mongo, 5..<8)
        try await whileRunning(try await makeChangeStreamBridge(mongo, redis)) { _ in
            // A repeat of 0..<5 would be published before 5..<8: once every id has arrived, it would have too.
            _ = await waitForAll(subscriber, (0..<8).map { "id\($0)" }, timeout: .seconds(20))
        }
        let messages = try await subscriber.finish()
        let ids = messages.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(messages.count >= 16)
        #expect(Set(ids).count == 8, "nothing lost")
        #expect(ids.count == 8, "nothing repeated: \(ids)")
    }

    /// An oplog bridge stores `(ts, t)`: the v2 value names the last entry and its term.
    @Test func theOplogSourceStoresTheTerm() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        // Seeded with the newest entry (not "the end", which resolves whenever the bridge gets to it).
        try await whileRunning(try await makeBridge(mongo, redis)) { _ in
            try await insertDocuments(mongo, 0..<3)
            _ = await subscriber.waitFor(6)
        }
        subscriber.stop()
        let stored = try #require(try await storedCheckpoint(in: redis))
        guard case .oplog(let ts, let t) = try StoredCheckpoint.decode(stored) else {
            Issue.record("the oplog source stored \(stored), not (ts, t)")
            return
        }
        #expect(ts == mongo.lastOplogTimestamp)
        #expect(t >= 0)
    }

    /// A v1 checkpoint (the timestamp alone) still resumes the oplog source, which then writes v2.
    @Test func anOldCheckpointIsUpgraded() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        try await insertDocuments(mongo, 0..<2)
        try await storeCheckpoint(CheckpointEncoding.encode(mongo.lastOplogTimestamp), in: redis)
        try await insertDocuments(mongo, 2..<4)
        try await whileRunning(try await makeBridge(mongo, redis)) { bridge in
            await bridge.waitDelivered(through: mongo.lastOplogTimestamp)
        }
        let published = firstAppearances(try await subscriber.finish())
        #expect(published.ids == ["id2", "id3"], "resumed right after the v1 checkpoint")
        #expect(published.total == 2, "nothing before it published again")
        let stored = try #require(try await storedCheckpoint(in: redis))
        #expect(try StoredCheckpoint.decode(stored).version == 2)
    }

    /// A change-stream token stored in Redis is refused by the oplog source with a clear error, never misread.
    @Test func theOplogSourceRefusesAChangeStreamToken() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let time = mongo.lastOplogTimestamp
        let token = ChangeStreamResumeToken(clusterTime: time, tokenType: .event).data
        try await storeCheckpoint(StoredCheckpoint.changeStream(token: token, clusterTime: time).encoded, in: redis)
        let (bridge, publisher) = try await makeBridge(mongo, redis)
        await #expect(throws: StoredCheckpointError.self) { try await bridge.run() }
        await publisher.close()
    }

    /// HA dedupe keyed by the event: two change-stream events of one clusterTime and one index (two shards) are
    /// told apart by their tokens and each published once, however many bridges send them.
    @Test func haDedupeKeysChangeStreamEventsByTheirToken() async throws {
        let (redis, subscriber) = try await redisWithSubscriber()
        let time = BSONTimestamp(seconds: 1_700_000_000, increment: 1)
        let events = ["a", "b"].map { id in
            ChangeEvent(
                kind: .insert,
                namespace: Namespace("tests.Foo"),
                documentID: .string(id),
                changedFields: ["_id"],
                timestamp: time,
                resumeToken: ChangeStreamResumeToken(
                    clusterTime: time,
                    tokenType: .event,
                    eventIdentifier: ["operationType": "insert", "documentKey": ["_id": .string(id)]]
                ).data
            )
        }
        #expect(events[0].resumeToken != events[1].resumeToken)
        let batch = OplogBatch(
            events: events,
            resumePosition: oneTickBefore(time),
            lastRead: oneTickBefore(time),
            entriesRead: 2,
            checkpoint: StoredCheckpoint.changeStream(token: events[1].resumeToken ?? "", clusterTime: time)
        )
        let url = try RedisURL(redis.url())
        let publishers = (0..<2).map { _ in
            RedisEventPublisher(configuration: .init(url: url, highAvailability: true), logger: bridgeLogger)
        }
        #expect(publishers[0].configuration.dedupeKey(events[0]) != publishers[0].configuration.dedupeKey(events[1]))
        #expect(try await publishers[0].publish(batch) == PublishReceipt(published: 2, duplicates: 0))
        #expect(try await publishers[1].publish(batch) == PublishReceipt(published: 0, duplicates: 2))
        try await subscriber.barrier()
        let messages = subscriber.received
        subscriber.stop()
        let ids = subscriber.received.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(messages.count >= 4)
        #expect(ids == [#"{"e":"i","d":{"_id":"a"},"f":["_id"]}"#, #"{"e":"i","d":{"_id":"b"},"f":["_id"]}"#])
        #expect(try await storedCheckpoint(in: redis) == batch.checkpoint?.encoded)
        for publisher in publishers { await publisher.close() }
    }
}

/// Checkpoint v2 on the 3-member double: the stored term reaches the majority-gated anchor check of a new process.
extension ReplicaSetBridgeTests {
    /// A bridge stopped, the primary killed (a new term), a new bridge started from the stored `(ts, t)`: every
    /// committed write once, in order; and the same `ts` stored with another term is told apart as an entry the
    /// set does not hold (exit 11), where a timestamp alone would have been taken for it.
    @Test func aRestartAcrossAFailoverResumesFromTheStoredTerm() async throws {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        try await whileRunning(try await makeSetBridge(set.uri, redis, seed: set.majorityOpTime(0)?.ts)) { _ in
            try await write(set.uri, 0..<20)
            _ = await waitPublished(subscriber, Self.ids(0..<20))
        }
        let first = try StoredCheckpoint.decode(try #require(try await storedCheckpoint(in: redis)))
        guard case .oplog(let ts, let t) = first else {
            Issue.record("the oplog source stored \(first), not (ts, t)")
            return
        }

        set.kill(0)
        try await write(set.uri, 20..<40)
        let order = try await whileRunning(try await makeSetBridge(set.uri, redis, seed: nil)) { _ in
            await waitPublished(subscriber, Self.ids(0..<40))
        }
        subscriber.stop()
        #expect(order == Self.ids(0..<40))
        let second = try StoredCheckpoint.decode(try #require(try await storedCheckpoint(in: redis)))
        guard case .oplog(let newTs, let newT) = second else {
            Issue.record("the oplog source stored \(second), not (ts, t)")
            return
        }
        #expect(newTs > ts)
        #expect(newT > t, "the writes after the failover are in a newer term")

        // The same ts under another term names an entry this set never committed.
        try await storeCheckpoint(StoredCheckpoint.oplog(ts: ts, t: t + 1).encoded, in: redis)
        let (wrong, wrongPublisher) = try await makeSetBridge(set.uri, redis, seed: nil)
        await #expect(throws: OplogCommittedEntryMissing.self) { try await wrong.run() }
        await wrongPublisher.close()
    }
}

extension ChangeStreamTailerTests {
    /// A database stream checkpointed at its invalidate resumes in a new process with `startAfter` that token
    /// (`resumeAfter` an invalidate is refused by the server): the writes after the drop, nothing before.
    @Test func aCheckpointAtAnInvalidateReopensWithStartAfter() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        var iterator = try await databaseStreamAcrossADrop(mongo)
        var stored: StoredCheckpoint?
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, let batch = try await iterator.next() {
            if case .changeStream(let token, _)? = batch.checkpoint,
                ChangeStreamResumeToken.decode(data: token)?.fromInvalidate == true
            {
                stored = batch.checkpoint
                break
            }
        }
        await iterator.close()
        let checkpoint = try #require(stored, "a batch checkpointed the invalidate's token")
        guard case .changeStreamToken(_, let invalidate) = try checkpoint.resume(for: .changeStream) else {
            Issue.record("not a token checkpoint")
            return
        }
        #expect(invalidate)

        try await insertDocuments(mongo, 2..<4)
        let restartedTailer = try tailer(mongo, scope: .database("tests"), start: .stored(checkpoint))
        var restarted = restartedTailer.makeAsyncIterator()
        let events = try await collect(&restarted, events: 2)
        await restarted.close()
        #expect(events.map { $0.command?.name ?? $0.kind.rawValue } == ["insert", "insert"])
        #expect(events.map(\.documentID) == ["id2", "id3"])
    }
}
