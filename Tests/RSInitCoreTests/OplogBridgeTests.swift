import BSON
import Foundation
import Logging
import MongoCWrapper
import NIOConcurrencyHelpers
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@testable import RSInitCore

let bridgeLogger = Logger(label: "rsinit.test.bridge")

/// A real Redis subscriber (PSUBSCRIBE *) that re-subscribes after an outage; collects (channel, message).
final class Subscriber: Sendable {
    /// The channel of ``barrier()``'s markers, which ``received`` leaves out.
    static let barrierChannel = "rsinit.test.barrier"

    final class State: Sendable {
        let received = NIOLockedValueBox<[(String, String)]>([])
        let connected = NIOLockedValueBox(false)
        let barriers = NIOLockedValueBox<Set<String>>([])
    }

    let state = State()
    let url: String
    private let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

    var received: [(String, String)] { state.received.withLockedValue { $0 } }

    init(_ url: String) {
        self.url = url
        let state = self.state
        let t = Task {
            while !Task.isCancelled {
                guard let connection = try? await RedisConnection.connect(try RedisURL(url)) else {
                    // Redis is down (an outage the test makes): poll until it is back.
                    try? await Task.sleep(for: .milliseconds(10))
                    continue
                }
                _ = try? await connection.command(["PSUBSCRIBE", "*"])
                state.connected.withLockedValue { $0 = true }
                while !Task.isCancelled {
                    guard let value = try? await connection.readPushed(wait: .milliseconds(100)) else {
                        if !connection.isOpen { break }
                        continue
                    }
                    if case .array(let parts?) = value, parts.count == 4, parts[0].string == "pmessage" {
                        let channel = parts[2].string ?? ""
                        let message = parts[3].string ?? ""
                        if channel == Self.barrierChannel {
                            state.barriers.withLockedValue { _ = $0.insert(message) }
                        } else {
                            state.received.withLockedValue { $0.append((channel, message)) }
                        }
                    }
                }
                state.connected.withLockedValue { $0 = false }
                await connection.close()
            }
        }
        task.withLockedValue { $0 = t }
    }

    /// Waits until the `PSUBSCRIBE` is confirmed (a test failure after `timeout`).
    func waitConnected(timeout: Duration = .seconds(20)) async {
        let connected = await eventually(within: timeout, every: .milliseconds(5)) {
            state.connected.withLockedValue { $0 }
        }
        #expect(connected, "the subscriber did not attach to \(url) within \(timeout)")
    }

    func waitFor(_ count: Int, timeout: Duration = .seconds(20)) async -> [(String, String)] {
        _ = await eventually(within: timeout) { received.count >= count }
        return received
    }

    /// Publishes a marker through another connection and waits until this subscriber receives it. Redis runs one
    /// command at a time and queues a subscriber's messages in that order, so whatever any client published before
    /// (a late duplicate, say) has then been received. Replaces "sleep, then check that nothing more arrived".
    /// With replicas or a Cluster, publish `via` the node the bridge published on: its messages reach the
    /// subscriber's node in order too (replication stream, cluster bus).
    func barrier(via node: String? = nil, timeout: Duration = .seconds(20)) async throws {
        let marker = "\(UInt64.random(in: 0...UInt64.max))"
        let connection = try await RedisConnection.connect(try RedisURL(node ?? url))
        let seen = await eventually(within: timeout, every: .milliseconds(20)) {
            _ = try? await connection.command(["PUBLISH", Self.barrierChannel, marker])
            return state.barriers.withLockedValue { $0.contains(marker) }
        }
        await connection.close()
        #expect(seen, "the subscriber did not receive a barrier message within \(timeout)")
    }

    func stop() { task.withLockedValue { $0?.cancel() } }
}

extension OplogBridge {
    /// Waits until this bridge has delivered (published and acknowledged) every entry up to `position`: then
    /// whatever it would publish for them, duplicates included, has been published.
    func waitDelivered(through position: BSONTimestamp, timeout: Duration = .seconds(30)) async {
        let delivered = await eventually(within: timeout) { statistics.lastPosition.map { $0 >= position } ?? false }
        #expect(delivered, "the bridge did not deliver through \(position) within \(timeout): \(statistics)")
    }
}

/// A primary double without periodic no-ops: the test decides everything the oplog holds.
func quietPrimary() throws -> FakeMongod {
    try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: nil))
}

/// A real redis-server with a connected `PSUBSCRIBE *` subscriber.
func redisWithSubscriber() async throws -> (RedisServerProcess, Subscriber) {
    let redis = try await RedisServerProcess.launch()
    let subscriber = Subscriber(redis.url())
    await subscriber.waitConnected()
    return (redis, subscriber)
}

func makeBridge(
    _ mongo: FakeMongod,
    _ redis: RedisServerProcess,
    highAvailability: Bool = false,
    start: StartPosition = .checkpoint,
    onHistoryLost: OplogBridge.OnHistoryLost = .fail,
    prefix: String = "",
    metrics: BridgeMetrics = BridgeMetrics(),
    source: OplogBridge.Source = .oplog
) async throws -> (OplogBridge, RedisEventPublisher) {
    if start == .checkpoint {
        // "No checkpoint → the end of the oplog" resolves when the bridge starts, which on a loaded machine can be
        // after the test's first write: seed the checkpoint with the newest entry now (NX keeps an existing one; a
        // change stream opens one tick after it whenever the bridge gets to it).
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        _ = try await connection.command([
            "SET", "rsinit::checkpoint", CheckpointEncoding.encode(mongo.lastOplogTimestamp), "NX",
        ])
        await connection.close()
    }
    let publisher = RedisEventPublisher(
        configuration: .init(url: try RedisURL(redis.url()), channelPrefix: prefix, highAvailability: highAvailability),
        logger: bridgeLogger
    )
    var configuration = OplogBridge.Configuration(
        tailer: OplogTailerConfiguration(
            connectionString: try MongoConnectionString(mongo.uri),
            maxAwaitTime: .milliseconds(200)
        ),
        start: start,
        onHistoryLost: onHistoryLost,
        retryBackoff: Backoff(initial: .milliseconds(300), maximum: .milliseconds(600))
    )
    configuration.source = source
    let bridge = OplogBridge(configuration: configuration, publisher: publisher, logger: bridgeLogger, metrics: metrics)
    return (bridge, publisher)
}

/// The writes of §9e's vectors A01, A02 and A06 on `tests.Foo` (insert, `$set` of two fields, delete of
/// `someid`), then `drop` of the collection when asked.
func writeVectorsA01A02A06(_ mongo: FakeMongod, thenDrop: Bool = false) async throws {
    let client = try MongoClient(uri: mongo.uri, logger: bridgeLogger)
    _ = try await client.runCommand(
        ["insert": "Foo", "documents": [["_id": "someid", "hello": "world"]]],
        database: "tests"
    )
    _ = try await client.runCommand(
        [
            "update": "Foo",
            "updates": [["q": ["_id": "someid"], "u": ["$set": ["hello": "new", "world": "new"]]]],
        ],
        database: "tests"
    )
    _ = try await client.runCommand(
        ["delete": "Foo", "deletes": [["q": ["_id": "someid"], "limit": 1]]],
        database: "tests"
    )
    if thenDrop { _ = try await client.runCommand(["drop": "Foo"], database: "tests") }
    await client.close()
}

func insertDocuments(_ mongo: FakeMongod, _ ids: Range<Int>, collection: String = "Foo") async throws {
    let client = try MongoClient(uri: mongo.uri, logger: bridgeLogger)
    for id in ids {
        _ = try await client.runCommand(
            ["insert": .string(collection), "documents": [["_id": .string("id\(id)"), "n": .int32(Int32(id))]]],
            database: "tests"
        )
    }
    await client.close()
}

/// Appends insert entries straight to the double's oplog (the bridge reads nothing else; the double's collection
/// bookkeeping would dominate a 10,000-document test in a debug build).
func appendInsertEntries(_ mongo: FakeMongod, _ ids: Range<Int>, collection: String = "Foo") {
    for id in ids {
        mongo.appendOplogEntry([
            "op": "i", "ns": .string("tests.\(collection)"), "o": ["_id": .string("id\(id)"), "n": .int32(Int32(id))],
        ])
    }
}

func checkpoint(_ redis: RedisServerProcess) async throws -> BSONTimestamp? {
    let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
    let value = try await connection.command(["GET", "rsinit::checkpoint"]).string
    await connection.close()
    return value.flatMap(CheckpointEncoding.decode)
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct OplogBridgeTests {
    @Test func writesArriveAsRedisOplogMessages() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeBridge(mongo, redis, prefix: "")
        let running = Task { try await bridge.run() }
        try await writeVectorsA01A02A06(mongo)
        let messages = await subscriber.waitFor(7)
        bridge.stop()
        try await running.value
        await publisher.close()
        subscriber.stop()
        // §9e A01/A02/A06 (plus the implicit collection create on the control channel).
        try #require(messages.count == 7, "\(messages)")
        #expect(
            messages.map(\.0) == [
                "rsinit.commands", "tests.Foo", "tests.Foo::someid", "tests.Foo", "tests.Foo::someid", "tests.Foo",
                "tests.Foo::someid",
            ]
        )
        #expect(messages[1].1 == #"{"e":"i","d":{"_id":"someid"},"f":["_id","hello"]}"#)
        #expect(messages[3].1 == #"{"e":"u","d":{"_id":"someid"},"f":["hello","world"]}"#)
        #expect(messages[5].1 == #"{"e":"r","d":{"_id":"someid"},"f":[]}"#)
        #expect(messages[0].1.hasPrefix(#"{"c":"create","db":"tests","coll":"Foo""#))
        #expect(try await checkpoint(redis) == mongo.lastOplogTimestamp)
    }

    @Test func redisStoppedForTenSecondsInTheMiddleOfTenThousandEventsLosesNothing() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeBridge(mongo, redis)
        let running = Task { try await bridge.run() }
        appendInsertEntries(mongo, 0..<5000)
        // Kill Redis between batches: a message Redis acknowledged but had not flushed to subscribers when it
        // crashed is lost by Pub/Sub itself (at most once to subscribers), whatever the publisher does.
        _ = await subscriber.waitFor(5000 * 2, timeout: .seconds(60))
        redis.stop()  // SIGKILL, in the middle of the 10,000-event stream
        let outage = ContinuousClock.now
        appendInsertEntries(mongo, 5000..<10000)  // written while Redis is down
        // The outage's length is the test's subject (retries back off across it), not a wait for an event.
        try await Task.sleep(until: outage + .seconds(10))
        try await redis.restart()
        let messages = await subscriber.waitFor(10000 * 2, timeout: .seconds(60))
        bridge.stop()
        try await running.value
        await publisher.close()
        subscriber.stop()
        let collection = messages.filter { $0.0 == "tests.Foo" }.map(\.1)
        let ids = collection.compactMap { message -> String? in
            guard let range = message.range(of: "\"_id\":\"") else { return nil }
            return String(message[range.upperBound...].prefix { $0 != "\"" })
        }
        let expected = (0..<10000).map { "id\($0)" }
        let firstDifference = Array(zip(ids, expected)).firstIndex { $0 != $1 } ?? min(ids.count, expected.count)
        #expect(
            ids == expected,
            "received \(ids.count), first difference at \(firstDifference): \(ids[firstDifference...].prefix(5))"
        )
        #expect(bridge.statistics.publishRetries > 0)
        #expect(try await checkpoint(redis) == mongo.lastOplogTimestamp)
    }

    @Test func twoBridgesPublishEachEventExactlyOnce() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        // Both from one explicit position: started from the shared checkpoint, a bridge that starts later (under
        // ThreadSanitizer, after its partner moved it) never sees the first events and counts no duplicate for them.
        let start = StartPosition.at(BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1))
        let (first, firstPublisher) = try await makeBridge(mongo, redis, highAvailability: true, start: start)
        let (second, secondPublisher) = try await makeBridge(mongo, redis, highAvailability: true, start: start)
        let a = Task { try await first.run() }
        let b = Task { try await second.run() }
        try await insertDocuments(mongo, 0..<300)
        await first.waitDelivered(through: mongo.lastOplogTimestamp)
        await second.waitDelivered(through: mongo.lastOplogTimestamp)
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        try await subscriber.barrier()
        let messages = subscriber.received
        subscriber.stop()
        let perChannel = Dictionary(grouping: messages.filter { $0.0 == "tests.Foo" }, by: \.1).mapValues(\.count)
        #expect(perChannel.count == 300)
        #expect(perChannel.values.allSatisfy { $0 == 1 })
        #expect(firstPublisher.dedupeHits + secondPublisher.dedupeHits >= 300)
        #expect(firstPublisher.publishedEvents + secondPublisher.publishedEvents == 301)
        await firstPublisher.close()
        await secondPublisher.close()
    }

    @Test func restartResumesExactlyAfterTheCheckpoint() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeBridge(mongo, redis)
        let running = Task { try await bridge.run() }
        try await insertDocuments(mongo, 0..<50)
        _ = await subscriber.waitFor(1 + 100)
        bridge.stop()
        try await running.value
        await publisher.close()
        // While the bridge is down:
        try await insertDocuments(mongo, 50..<80)
        let (restarted, restartedPublisher) = try await makeBridge(mongo, redis)
        let runningAgain = Task { try await restarted.run() }
        await restarted.waitDelivered(through: mongo.lastOplogTimestamp)
        restarted.stop()
        try await runningAgain.value
        await restartedPublisher.close()
        try await subscriber.barrier()
        let messages = subscriber.received
        subscriber.stop()
        let ids = messages.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(ids.count == 80)
        #expect(Set(ids).count == 80)
    }

    @Test func aRolledOverCheckpointFailsLoudlyOrRestartsAtTheEndWhenAsked() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let stale = mongo.lastOplogTimestamp
        try await insertDocuments(mongo, 0..<10)
        mongo.truncateOplog(keepingLast: 3)
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        _ = try await connection.command(["SET", "rsinit::checkpoint", CheckpointEncoding.encode(stale)])
        await connection.close()
        let (failing, publisher) = try await makeBridge(mongo, redis)
        await #expect(throws: OplogHistoryLost.self) { try await failing.run() }
        #expect(failing.statistics.historyLost == 1)
        await publisher.close()
        let (recovering, recoveringPublisher) = try await makeBridge(mongo, redis, onHistoryLost: .fromEnd)
        let subscriber = Subscriber(redis.url())
        defer { subscriber.stop() }
        await subscriber.waitConnected()
        let running = Task { try await recovering.run() }
        // Waits for the loss to be counted, then for the restart at the end to be in effect ("the end" resolves a
        // moment after the count; what is written in between is lost by design): a probe entry is written until
        // one is delivered. Then what is written is delivered, and none of the lost entries is.
        _ = await eventually(within: .seconds(15)) { recovering.statistics.historyLost > 0 }
        var probe = 100
        let probed = await eventually(within: .seconds(20), every: .milliseconds(1)) {
            try? await insertDocuments(mongo, probe..<(probe + 1))
            probe += 1
            return await eventually(within: .milliseconds(500)) { !subscriber.received.isEmpty }
        }
        #expect(probed, "no entry written after the restart at the end was delivered")
        try await insertDocuments(mongo, 10..<15)
        let after = (10..<15).map { "id\($0)" }
        let ids = await waitForAll(subscriber, after, timeout: .seconds(20)).filter { id in
            Int(id.dropFirst(2)).map { $0 < 100 } ?? true  // not the probes
        }
        recovering.stop()
        try await running.value
        #expect(recovering.statistics.historyLost == 1)
        #expect(ids == after, "only the entries written after the restart at the end, in order")
        await recoveringPublisher.close()
    }

    @Test func quietStreamsAdvanceTheCheckpoint() async throws {
        let mongo = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: .milliseconds(100))
        )
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let (bridge, publisher) = try await makeBridge(mongo, redis)
        let running = Task { try await bridge.run() }
        let start = mongo.lastOplogTimestamp
        // No-ops every 100 ms: the checkpoint moves past the start soon (polled: a loaded machine may need seconds
        // to start the bridge and read the first no-op).
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline, try await checkpoint(redis).map({ $0 > start }) != true {
            try await Task.sleep(for: .milliseconds(100))
        }
        bridge.stop()
        try await running.value
        await publisher.close()
        #expect(try #require(try await checkpoint(redis)) > start)
    }

    @Test func withoutACheckpointTheBridgeStartsAtTheEndOfTheOplog() async throws {
        let mongo = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: .milliseconds(100))
        )
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        try await insertDocuments(mongo, 0..<5)  // history before the first start: not published
        let subscriber = Subscriber(redis.url())
        await subscriber.waitConnected()
        let publisher = RedisEventPublisher(configuration: .init(url: try RedisURL(redis.url())), logger: bridgeLogger)
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(mongo.uri),
                    maxAwaitTime: .milliseconds(200)
                )
            ),
            publisher: publisher,
            logger: bridgeLogger
        )
        let running = Task { try await bridge.run() }
        // The first checkpoint (from a periodic no-op) proves the start position was resolved.
        let deadline = ContinuousClock.now + .seconds(15)
        while try await checkpoint(redis) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await insertDocuments(mongo, 5..<8)
        let messages = await subscriber.waitFor(6)
        bridge.stop()
        try await running.value
        await publisher.close()
        subscriber.stop()
        #expect(messages.filter { $0.0 == "tests.Foo" }.count == 3)
        #expect(!messages.contains { $0.1.contains("\"id0\"") })
    }

    /// A batch larger than one script call goes out as fenced chunks, pipelined: every event once, in order,
    /// the checkpoint with the last chunk; sent again, every event is a duplicate.
    @Test func haBatchesSpanningSeveralScriptCallsPublishInOrderOnce() async throws {
        let (redis, subscriber) = try await redisWithSubscriber()
        let publisher = RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url()), highAvailability: true),
            logger: bridgeLogger
        )
        let events = (0..<1_234).map { index in
            ChangeEvent(
                kind: .insert,
                namespace: Namespace("tests.Foo"),
                documentID: .string("id\(index)"),
                changedFields: ["_id"],
                timestamp: BSONTimestamp(seconds: 100 + UInt32(index / 10), increment: UInt32(index % 10))
            )
        }
        let batch = OplogBatch(
            events: events,
            resumePosition: events.last?.timestamp,
            lastRead: events.last?.timestamp,
            entriesRead: events.count
        )
        #expect(publisher.encodedScriptCalls(batch).replies == 3)
        let first = try await publisher.publish(batch)
        #expect(first == PublishReceipt(published: 1_234, duplicates: 0))
        let ids = await subscriber.waitFor(2 * 1_234).filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(ids == events.map { #"{"e":"i","d":{"_id":"\#(($0.documentID?.stringValue)!)"},"f":["_id"]}"# })
        let again = try await publisher.publish(batch)
        #expect(again == PublishReceipt(published: 0, duplicates: 1_234))
        #expect(try await checkpoint(redis) == events.last?.timestamp)
        await publisher.close()
        subscriber.stop()
    }

    /// The fence: a call fenced on a dedupe key that does not exist does nothing and answers -1 (the chunk before
    /// it did not run); once the key exists, the same call publishes and moves the checkpoint.
    @Test func aFencedScriptCallRunsOnlyAfterThePreviousChunk() async throws {
        let (redis, subscriber) = try await redisWithSubscriber()
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        try await connection.require(["SCRIPT", "LOAD", RedisEventPublisher.deduplicationScript])
        let call = [
            "EVALSHA", RedisEventPublisher.deduplicationScriptSHA, "3", "rsinit::checkpoint",
            "rsinit::processed::41::0", "rsinit::processed::42::0", "150", "00000000000000000042", "1",
            "1", "tests.Fenced", "message",
        ]
        #expect(try await connection.require(call).integer == -1)
        #expect(try await connection.command(["GET", "rsinit::checkpoint"]) == .bulkString(nil))
        #expect(try await connection.command(["EXISTS", "rsinit::processed::42::0"]).integer == 0)
        try await connection.require(["SET", "rsinit::processed::41::0", "1"])
        #expect(try await connection.require(call).integer == 1)
        #expect(try await connection.command(["GET", "rsinit::checkpoint"]).string == "00000000000000000042")
        let received = await subscriber.waitFor(1)
        #expect(received.map(\.0) == ["tests.Fenced"])
        // Unfenced ("" in ARGV[3]) it runs whatever the fence key.
        let unfenced = [
            "EVALSHA", RedisEventPublisher.deduplicationScriptSHA, "3", "rsinit::checkpoint",
            "rsinit::processed::missing", "rsinit::processed::43::0", "150", "", "", "1", "tests.Fenced", "message",
        ]
        #expect(try await connection.require(unfenced).integer == 1)
        await connection.close()
        subscriber.stop()
    }

    /// The dedupe script's SHA1 (computed in Swift for EVALSHA) is the one Redis computes when it loads the script.
    @Test func luaScriptSHAMatchesRedis() async throws {
        let redis = try await RedisServerProcess.launch()
        defer { redis.stop() }
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        let loaded = try await connection.require(["SCRIPT", "LOAD", RedisEventPublisher.script]).string
        #expect(loaded == RedisEventPublisher.deduplicationScriptSHA)
        #expect(loaded?.count == 40)
        await connection.close()
    }

    /// HA mode: a batch of skipped entries (no events) still advances the checkpoint through the script, and an
    /// older position never moves it back.
    @Test func haCheckpointAdvancesOnPositionOnlyBatchesAndNeverMovesBack() async throws {
        let redis = try await RedisServerProcess.launch()
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        let (bridge, publisher) = try await makeBridge(try FakeMongod.start(), redis, highAvailability: true)
        _ = bridge
        // A batch of skipped entries only: it carries nothing but the position.
        func positionOnly(_ seconds: UInt32, _ increment: UInt32) -> OplogBatch {
            OplogBatch(
                events: [],
                resumePosition: BSONTimestamp(seconds: seconds, increment: increment),
                lastRead: nil,
                entriesRead: 1
            )
        }
        try await publisher.publish(positionOnly(5, 1))
        #expect(
            try await connection.command(["GET", "rsinit::checkpoint"]).string
                == CheckpointEncoding.encode(BSONTimestamp(seconds: 5, increment: 1))
        )
        // An older position never moves the checkpoint back.
        try await publisher.publish(positionOnly(4, 9))
        #expect(
            try await connection.command(["GET", "rsinit::checkpoint"]).string
                == CheckpointEncoding.encode(BSONTimestamp(seconds: 5, increment: 1))
        )
        await publisher.close()
        await connection.close()
    }
}
