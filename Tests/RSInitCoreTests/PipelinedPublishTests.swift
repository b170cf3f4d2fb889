import BSON
import Foundation
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Testing

/// Plain mode sends a batch before the previous one is confirmed; these pin down what that must never cost.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct PipelinedPublishTests {
    static func insert(_ id: String, into namespace: String, at increment: UInt32) -> ChangeEvent {
        ChangeEvent(
            kind: .insert,
            namespace: Namespace(namespace),
            documentID: .string(id),
            changedFields: ["_id"],
            timestamp: BSONTimestamp(seconds: 10, increment: increment)
        )
    }

    static func pending(
        _ ticket: PublishTicket<RedisEventPublisher.PendingPublishes>
    ) throws
        -> RedisEventPublisher.PendingPublishes
    {
        guard case .pending(let pending) = ticket else { throw RedisError(.server, "plain mode pipelines") }
        return pending
    }

    /// A publisher logged in as a user whom an ACL allows the channels `tests.*` and the keys `allowedKeys` only.
    static func publisher(
        _ redis: RedisServerProcess,
        _ control: RedisConnection,
        allowedKeys: String
    ) async throws -> RedisEventPublisher {
        try await control.require([
            "ACL", "SETUSER", "bridge", "on", ">bridgepw", allowedKeys, "resetchannels", "&tests.*", "+@all",
        ])
        return RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url(user: "bridge", password: "bridgepw"))),
            logger: bridgeLogger
        )
    }

    static func batch(_ events: [ChangeEvent]) -> OplogBatch {
        OplogBatch(
            events: events,
            resumePosition: events.last?.timestamp,
            lastRead: events.last?.timestamp,
            entriesRead: events.count
        )
    }

    /// A PUBLISH Redis refuses while a later command of the same pipeline succeeds (here: an ACL that forbids
    /// one channel; in production: BUSY while another client's script runs, ending mid-pipeline). The checkpoint
    /// written behind it must not name that batch, or a restart would skip the refused event.
    @Test func theCheckpointNeverPassesABatchRedisRefusedPartOf() async throws {
        let redis = try await RedisServerProcess.launch()
        defer { redis.stop() }
        let control = try await RedisConnection.connect(try RedisURL(redis.url()))
        let publisher = try await Self.publisher(redis, control, allowedKeys: "~*")
        let first = Self.batch([Self.insert("a", into: "tests.Foo", at: 1)])
        let refused = Self.batch([
            Self.insert("b", into: "tests.Foo", at: 2), Self.insert("c", into: "forbidden.Bar", at: 3),
        ])
        let third = Self.batch([Self.insert("d", into: "tests.Foo", at: 4)])

        // As the bridge streams: two in flight, the oldest confirmed before the next is sent, which carries the
        // checkpoint of the newest confirmed batch (DeliveryStateMachine's rule).
        let generation = try await publisher.connect()
        let firstTicket = try await publisher.send(first, checkpoint: nil, on: generation)
        let refusedTicket = try await publisher.send(refused, checkpoint: nil, on: generation)
        #expect(try await publisher.confirm(Self.pending(firstTicket)) == PublishReceipt(published: 1))
        _ = try await publisher.send(third, checkpoint: first.resumePosition, on: generation)
        await #expect(throws: RedisError.self) { try await publisher.confirm(Self.pending(refusedTicket)) }
        // Redis ran the third batch's SET after the refused PUBLISH: it must name `first`, not `refused`/`third`.
        #expect(
            try await control.command(["GET", "rsinit::checkpoint"]).string
                == CheckpointEncoding.encode(first.resumePosition!)
        )
        #expect(try await publisher.loadCheckpoint() == first.resumePosition)

        // The failed confirmation closed the connection: nothing more is written on it, and the next connection
        // has a new generation.
        await #expect(throws: RedisError.self) {
            try await publisher.send(third, checkpoint: nil, on: generation)
        }
        #expect(try await publisher.connect() > generation)
        // What the bridge does next: the refused batch and everything after it again.
        await #expect(throws: RedisError.self) { try await publisher.publish(refused) }
        #expect(try await publisher.loadCheckpoint() == first.resumePosition)
        try await publisher.publish(third)
        #expect(try await publisher.loadCheckpoint() == third.resumePosition)
        await publisher.close()
        await control.close()
    }

    /// The checkpoint SET rides behind a batch's PUBLISHes, whose integer replies are only counted: a SET Redis
    /// refuses (here an ACL without the key; in production OOM or READONLY) must still fail the confirmation.
    @Test func aRefusedCheckpointSetBehindAcceptedPublishesFailsTheConfirmation() async throws {
        let redis = try await RedisServerProcess.launch()
        defer { redis.stop() }
        let control = try await RedisConnection.connect(try RedisURL(redis.url()))
        let publisher = try await Self.publisher(redis, control, allowedKeys: "~other::*")
        // More events than one write holds (chunks of 500): the SET's reply comes in the last write's tally.
        let events = (1...1_200).map { Self.insert("id\($0)", into: "tests.Foo", at: UInt32($0)) }
        let generation = try await publisher.connect()
        let ticket = try await publisher.send(
            Self.batch(events),
            checkpoint: .oplog(ts: events[0].timestamp, t: 1),
            on: generation
        )
        await #expect(throws: RedisError.self) { try await publisher.confirm(Self.pending(ticket)) }
        #expect(try await control.command(["GET", "rsinit::checkpoint"]) == .bulkString(nil))

        // Accepted PUBLISHes and SET: confirmed, each PUBLISH counted once.
        let allowed = RedisEventPublisher(configuration: .init(url: try RedisURL(redis.url())), logger: bridgeLogger)
        let next = try await allowed.connect()
        let confirmed = try await allowed.send(
            Self.batch(events),
            checkpoint: .oplog(ts: events[0].timestamp, t: 1),
            on: next
        )
        #expect(try await allowed.confirm(Self.pending(confirmed)) == PublishReceipt(published: 1_200))
        #expect(try await control.command(["GET", "rsinit::checkpoint"]) != .bulkString(nil))
        await allowed.close()
        await publisher.close()
        await control.close()
    }

    /// Nothing sent on a connection that failed counts as delivered.
    @Test func aFailedConnectionForgetsWhatWasInFlight() async throws {
        let redis = try await RedisServerProcess.launch()
        defer { redis.stop() }
        let publisher = RedisEventPublisher(configuration: .init(url: try RedisURL(redis.url())), logger: bridgeLogger)
        let first = Self.batch([Self.insert("a", into: "tests.Foo", at: 1)])
        let second = Self.batch([Self.insert("b", into: "tests.Foo", at: 2)])
        let generation = try await publisher.connect()
        #expect(
            try await publisher.confirm(Self.pending(try await publisher.send(first, checkpoint: nil, on: generation)))
                == PublishReceipt(published: 1)
        )
        redis.stop()
        // The connection is gone: sending may still succeed (the write is queued), confirming must not. Deliberately
        // conditional: a send that already fails is as correct.
        if let ticket = try? await publisher.send(second, checkpoint: nil, on: generation) {
            await #expect(throws: RedisError.self) { try await publisher.confirm(Self.pending(ticket)) }
        }
        await #expect(throws: RedisError.self) {
            try await publisher.writeCheckpoint(second.resumePosition!, on: generation)
        }
        await publisher.close()
    }

    /// A burst that ends on a full batch has nothing behind it to push it out of the window; the bridge must
    /// still confirm and checkpoint it when Redis answers, not at the next heartbeat (here 5 s away).
    @Test func aBurstEndingOnAFullBatchIsConfirmedAndCheckpointedAtOnce() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        defer { redis.stop() }
        let before = mongo.lastOplogTimestamp
        appendInsertEntries(mongo, 0..<300)
        let last = mongo.lastOplogTimestamp
        let publisher = RedisEventPublisher(configuration: .init(url: try RedisURL(redis.url())), logger: bridgeLogger)
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(mongo.uri),
                    batchSize: 100,
                    maxAwaitTime: .seconds(5)
                ),
                start: .at(BSONTimestamp(rawValue: before.rawValue + 1))
            ),
            publisher: publisher,
            logger: bridgeLogger
        )
        let began = ContinuousClock.now
        let running = Task { try await bridge.run() }
        var stored: BSONTimestamp?
        while ContinuousClock.now - began < .seconds(6) {
            stored = try await checkpoint(redis)
            if stored == last, bridge.statistics.events == 300 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(stored == last)
        #expect(bridge.statistics.events == 300)
        #expect(bridge.statistics.batches == 3)
        #expect(ContinuousClock.now - began < .seconds(3), "waited for the heartbeat instead of Redis's answer")
        // In order, each once.
        let messages = await subscriber.waitFor(600)
        let ids = messages.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(ids == (0..<300).map { #"{"e":"i","d":{"_id":"id\#($0)"},"f":["_id","n"]}"# })
        bridge.stop()
        try await running.value
        await publisher.close()
        subscriber.stop()
    }
}
