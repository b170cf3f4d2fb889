import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@testable import RSInitCore

func makeChangeStreamBridge(
    _ mongo: FakeMongod,
    _ redis: RedisServerProcess,
    scope: ChangeStreamScope = .cluster,
    fullDocument: Bool = false,
    start: StartPosition = .checkpoint,
    onHistoryLost: OplogBridge.OnHistoryLost = .fail,
    highAvailability: Bool = false
) async throws -> (OplogBridge, RedisEventPublisher) {
    try await makeBridge(
        mongo,
        redis,
        highAvailability: highAvailability,
        start: start,
        onHistoryLost: onHistoryLost,
        source: .changeStream(scope: scope, fullDocument: fullDocument)
    )
}

/// Reads batches until `count` events arrived (or 10 s passed).
func collect(_ iterator: inout ChangeStreamTailer.Iterator, events count: Int) async throws -> [ChangeEvent] {
    var events: [ChangeEvent] = []
    let deadline = ContinuousClock.now + .seconds(10)
    while events.count < count, ContinuousClock.now < deadline, let batch = try await iterator.next() {
        events += batch.events
    }
    return events
}

@Suite struct ChangeStreamTailerTests {
    func tailer(
        _ mongo: FakeMongod,
        scope: ChangeStreamScope = .cluster,
        start: StartPosition = .end
    ) throws
        -> ChangeStreamTailer
    {
        ChangeStreamTailer(
            configuration: ChangeStreamTailerConfiguration(
                connectionString: try MongoConnectionString(mongo.uri),
                scope: scope,
                start: start,
                batchSize: 3,
                maxAwaitTime: .milliseconds(150),
                backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(100))
            ),
            logger: bridgeLogger
        )
    }

    @Test func faultsNeitherLoseNorRepeatEvents() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        var iterator = try tailer(mongo).makeAsyncIterator()
        _ = try await iterator.next()  // opened at the end
        appendInsertEntries(mongo, 0..<5)
        var events = try await collect(&iterator, events: 2)
        mongo.hangUpNextGetMore()
        appendInsertEntries(mongo, 5..<8)
        events += try await collect(&iterator, events: 8 - events.count)
        mongo.failNextChangeStreamGetMore(code: 10107, message: "not primary", resumable: true)
        appendInsertEntries(mongo, 8..<10)
        events += try await collect(&iterator, events: 10 - events.count)
        mongo.restart()
        _ = await mongo.waitForPhase(.primary)
        appendInsertEntries(mongo, 10..<12)
        events += try await collect(&iterator, events: 12 - events.count)
        mongo.stepDown(for: .milliseconds(300))
        _ = await mongo.waitForPhase(.primary)
        try await insertDocuments(mongo, 12..<14)
        events += try await collect(&iterator, events: 14 - events.count)
        await iterator.close()
        #expect(events.map(\.documentID) == (0..<14).map { .string("id\($0)") })
        let transactionFree = events.allSatisfy { $0.transactionIndex == 0 && $0.kind == .insert }
        #expect(transactionFree)
    }

    /// A stream on database `tests`, opened, then two inserts (id0, id1) and the database dropped (an invalidate).
    func databaseStreamAcrossADrop(_ mongo: FakeMongod) async throws -> ChangeStreamTailer.Iterator {
        var iterator = try tailer(mongo, scope: .database("tests")).makeAsyncIterator()
        _ = try await iterator.next()
        try await insertDocuments(mongo, 0..<2)
        let client = try MongoClient(uri: mongo.uri, logger: bridgeLogger)
        _ = try await client.runCommand(["dropDatabase": 1], database: "tests")
        await client.close()
        return iterator
    }

    @Test func anInvalidatedDatabaseStreamReopensAfterTheInvalidate() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        var iterator = try await databaseStreamAcrossADrop(mongo)
        try await insertDocuments(mongo, 2..<4)
        let events = try await collect(&iterator, events: 6)
        await iterator.close()
        #expect(
            events.map { $0.command?.name ?? $0.kind.rawValue }
                == ["insert", "insert", "drop", "dropDatabase", "insert", "insert"]
        )
        #expect(events.last?.documentID == "id3")
    }

    @Test func unresumablePositionsAreHistoryLost() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let stale = mongo.lastOplogTimestamp
        appendInsertEntries(mongo, 0..<10)
        mongo.truncateOplog(keepingLast: 3)
        var iterator = try tailer(mongo, start: .after(stale)).makeAsyncIterator()
        await #expect(throws: OplogHistoryLost.self) { _ = try await iterator.next() }
        // 136 on a getMore (the oplog overran the cursor) is not resumable either.
        var live = try tailer(mongo).makeAsyncIterator()
        _ = try await live.next()
        mongo.failNextChangeStreamGetMore(code: 136, message: "CappedPositionLost", resumable: false)
        await #expect(throws: OplogHistoryLost.self) {
            while try await live.next() != nil {}
        }
    }

    // §7.5: updateLookup pushing an event over 16 MB (10334) is read again without the document, never skipped.
    @Test func anOversizedLookupIsPublishedWithoutItsDocument() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        var iterator = ChangeStreamTailer(
            configuration: ChangeStreamTailerConfiguration(
                connectionString: try MongoConnectionString(mongo.uri),
                mapping: .init(includeFullDocuments: true),
                fullDocument: true,
                batchSize: 10,
                maxAwaitTime: .milliseconds(150),
                backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(100))
            ),
            logger: bridgeLogger
        ).makeAsyncIterator()
        _ = try await iterator.next()
        let client = try MongoClient(uri: mongo.uri, logger: bridgeLogger)
        _ = try await client.runCommand(
            ["insert": "big", "documents": [["_id": 1, "x": .string(String(repeating: "a", count: 9_000_000))]]],
            database: "tests"
        )
        _ = try await client.runCommand(
            [
                "update": "big",
                "updates": [
                    ["q": ["_id": 1], "u": ["$set": ["y": .string(String(repeating: "b", count: 7_000_000))]]]
                ],
            ],
            database: "tests"
        )
        // Looked up while the document holds both fields: 16 MB of document plus 7 MB of updatedFields.
        var events = try await collect(&iterator, events: 2)
        _ = try await client.runCommand(
            ["update": "big", "updates": [["q": ["_id": 1], "u": ["$unset": ["y": ""]]]]],
            database: "tests"
        )
        await client.close()
        events += try await collect(&iterator, events: 1)
        await iterator.close()
        #expect(events.map(\.kind) == [.insert, .update, .update])
        #expect(events.map { $0.fullDocument != nil } == [true, false, true])
        #expect(events.map(\.changedFields) == [["_id", "x"], ["y"], ["y"]])
    }

    @Test func checkpointPositionsRestartAtLeastOnce() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        var iterator = try tailer(mongo).makeAsyncIterator()
        _ = try await iterator.next()
        appendInsertEntries(mongo, 0..<6)
        var position: BSONTimestamp?
        var seen: [ChangeEvent] = []
        while seen.count < 4, let batch = try await iterator.next() {
            seen += batch.events
            position = batch.resumePosition
        }
        await iterator.close()
        let checkpoint = try #require(position)
        // Every event at or before the checkpoint was in a batch already read.
        #expect(seen.allSatisfy { $0.timestamp > checkpoint || seen.contains($0) })
        var restarted = try tailer(mongo, start: .after(checkpoint)).makeAsyncIterator()
        let again = try await collect(&restarted, events: 6 - seen.count)
        await restarted.close()
        let ids = Set((seen + again).compactMap(\.documentID))
        #expect(ids == Set((0..<6).map { BSONValue.string("id\($0)") }))
        #expect(again.allSatisfy { $0.timestamp > checkpoint })
    }
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct ChangeStreamBridgeTests {
    @Test func theChangeStreamSourcePublishesTheOplogSourcesMessages() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let messages = try await whileRunning(try await makeChangeStreamBridge(mongo, redis)) { _ in
            try await writeVectorsA01A02A06(mongo, thenDrop: true)
            return await subscriber.waitFor(7)
        }
        subscriber.stop()
        // The oplog source's vectors (§9e A01/A02/A06); `create` is an expanded event a 1.23 stream never sees.
        #expect(
            messages.map(\.0) == [
                "tests.Foo", "tests.Foo::someid", "tests.Foo", "tests.Foo::someid", "tests.Foo", "tests.Foo::someid",
                "rsinit.commands",
            ]
        )
        try #require(messages.count == 7, "\(messages)")
        #expect(messages[0].1 == #"{"e":"i","d":{"_id":"someid"},"f":["_id","hello"]}"#)
        #expect(messages[2].1 == #"{"e":"u","d":{"_id":"someid"},"f":["hello","world"]}"#)
        #expect(messages[4].1 == #"{"e":"r","d":{"_id":"someid"},"f":[]}"#)
        #expect(messages[6].1.hasPrefix(#"{"c":"drop","db":"tests","coll":"Foo""#))
    }

    @Test func restartsResumeFromTheCheckpointWithoutLoss() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        try await whileRunning(try await makeChangeStreamBridge(mongo, redis)) { _ in
            try await insertDocuments(mongo, 0..<30)
            _ = await subscriber.waitFor(60)
        }
        try await insertDocuments(mongo, 30..<50)
        try await whileRunning(try await makeChangeStreamBridge(mongo, redis)) { _ in
            // A repeat would be published before the events written while the bridge was down.
            _ = await waitForAll(subscriber, (0..<50).map { "id\($0)" }, timeout: .seconds(20))
        }
        let messages = try await subscriber.finish()
        let ids = messages.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(Set(ids).count == 50)
        // At least once: the restart may repeat the events of the checkpoint's last clusterTime, nothing more.
        #expect(ids.count <= 51)
    }

    /// Two HA bridges on the change-stream source (the dedupe key is the event's resume token): every event reaches
    /// subscribers exactly once, in write order.
    @Test func twoHABridgesPublishEachChangeEventExactlyOnce() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        // Both start from the same seeded position (an oplog-format value starts a stream one tick after it), so
        // neither depends on when its stream opens.
        try await storeCheckpoint(CheckpointEncoding.encode(mongo.lastOplogTimestamp), in: redis)
        let (first, firstPublisher) = try await makeChangeStreamBridge(mongo, redis, highAvailability: true)
        let (second, secondPublisher) = try await makeChangeStreamBridge(mongo, redis, highAvailability: true)
        let a = Task { try await first.run() }
        let b = Task { try await second.run() }
        try await insertDocuments(mongo, 0..<200)
        let messages = await subscriber.waitFor(400)
        // Both bridges must have seen every event (the slower one's copies are the dedupe hits).
        let deadline = ContinuousClock.now + .seconds(20)
        while firstPublisher.dedupeHits + secondPublisher.dedupeHits < 200, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        let all = subscriber.received
        subscriber.stop()
        await firstPublisher.close()
        await secondPublisher.close()
        #expect(messages.count >= 400)
        let collection = all.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(collection.count == 200, "each event once on the collection channel")
        #expect(Set(collection).count == 200)
        #expect(firstPublisher.dedupeHits + secondPublisher.dedupeHits >= 200)
        let order = collection.compactMap { message -> Int? in
            guard let range = message.range(of: #""_id":"id"#) else { return nil }
            return Int(message[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(order == Array(0..<200), "first appearances in write order")
    }

    @Test func aLostHistoryFailsOrRestartsAtTheEnd() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let stale = mongo.lastOplogTimestamp
        appendInsertEntries(mongo, 0..<10)
        mongo.truncateOplog(keepingLast: 3)
        try await storeCheckpoint(CheckpointEncoding.encode(stale), in: redis)
        let (failing, publisher) = try await makeChangeStreamBridge(mongo, redis)
        await #expect(throws: OplogHistoryLost.self) { try await failing.run() }
        #expect(failing.statistics.historyLost == 1)
        await publisher.close()
        let recovering = try await makeChangeStreamBridge(mongo, redis, onHistoryLost: .fromEnd)
        try await whileRunning(recovering) { bridge in
            _ = await eventually { bridge.statistics.historyLost > 0 }
        }
        #expect(recovering.0.statistics.historyLost == 1)
    }

    @Test func quietStreamsAdvanceTheCheckpoint() async throws {
        let mongo = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: .milliseconds(100))
        )
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let start = mongo.lastOplogTimestamp
        try await whileRunning(try await makeChangeStreamBridge(mongo, redis, start: .end)) { _ in
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline, try await checkpoint(redis).map({ $0 > start }) != true {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(try #require(try await checkpoint(redis)) > start)
    }
}
