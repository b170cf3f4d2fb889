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

/// The bridge on a 3-member double through libmongoc and real Redis: only majority-committed writes are published,
/// in order, across failover, stepdown and rollback (shared/spec/replication-ha.md §9.2).
@Suite(.serialized, .enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct ReplicaSetBridgeTests {
    static let timings = FakeReplicaSetTimings(
        electionTimeout: .milliseconds(500),
        leaderElectWindow: .milliseconds(100),
        replicationLag: .milliseconds(5),
        livenessTimeout: .milliseconds(500),
        rollbackDuration: .milliseconds(100)
    )

    func makeSetBridge(
        _ uri: String,
        _ redis: RedisServerProcess,
        seed: BSONTimestamp?,
        majority: MajorityMode = .auto,
        highAvailability: Bool = false
    ) async throws -> (OplogBridge, RedisEventPublisher) {
        if let seed {
            let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
            _ = try await connection.command(["SET", "rsinit::checkpoint", CheckpointEncoding.encode(seed), "NX"])
            await connection.close()
        }
        let publisher = RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url()), highAvailability: highAvailability),
            logger: bridgeLogger
        )
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(uri),
                    maxAwaitTime: .milliseconds(200),
                    backoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(300)),
                    majority: majority
                ),
                start: .checkpoint,
                onHistoryLost: .fail,
                retryBackoff: Backoff(initial: .milliseconds(100), maximum: .milliseconds(300))
            ),
            publisher: publisher,
            logger: bridgeLogger
        )
        return (bridge, publisher)
    }

    /// Inserts `tests.Foo {_id: "<prefix><n>"}` through `uri`, retrying each until acknowledged (a duplicate key
    /// counts: the earlier attempt was applied).
    func write(_ uri: String, _ ids: Range<Int>, prefix: String = "id", timeout: Duration = .seconds(20)) async throws {
        let client = try MongoClient(uri: uri, logger: bridgeLogger)
        defer { Task { await client.close() } }
        let deadline = ContinuousClock.now + timeout
        for id in ids {
            while true {
                do {
                    _ = try await client.runCommand(
                        ["insert": "Foo", "documents": [["_id": .string("\(prefix)\(id)")]]],
                        database: "tests"
                    )
                    break
                } catch let error as MongoError where error.serverCode == 11000 {
                    break
                } catch {
                    guard ContinuousClock.now < deadline else { throw error }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }

    /// The `_id`s published on the collection channel, first appearances in order.
    func published(_ subscriber: Subscriber) -> [String] {
        var seen = Set<String>()
        var order: [String] = []
        for (channel, message) in subscriber.received where channel == "tests.Foo" {
            guard let range = message.range(of: #""_id":""#) else { continue }
            let id = String(message[range.upperBound...].prefix { $0 != "\"" })
            if seen.insert(id).inserted { order.append(id) }
        }
        return order
    }

    func waitPublished(
        _ subscriber: Subscriber,
        _ expected: [String],
        timeout: Duration = .seconds(20)
    ) async
        -> [String]
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if Set(expected).isSubset(of: Set(published(subscriber))) { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return published(subscriber)
    }

    func waitCommitted(_ set: FakeReplicaSet, _ primary: Int) async {
        let target = set.lastApplied(primary)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let target, set.members.indices.allSatisfy({ set.majorityOpTime($0).map { $0 >= target } ?? false }) {
                return
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    static func ids(_ range: Range<Int>, prefix: String = "id") -> [String] { range.map { "\(prefix)\($0)" } }

    @Test func primaryKilledMidStreamDeliversEveryCommittedWriteInOrder() async throws {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeSetBridge(set.uri, redis, seed: set.majorityOpTime(0)?.ts)
        let run = Task { try await bridge.run() }
        try await write(set.uri, 0..<40)
        await waitCommitted(set, 0)
        set.kill(0)
        try await write(set.uri, 40..<80)
        let order = await waitPublished(subscriber, Self.ids(0..<80))
        bridge.stop()
        try await run.value
        subscriber.stop()
        await publisher.close()
        #expect(order == Self.ids(0..<80))
    }

    /// The partitioned primary accepts w:1 writes that a majority never sees; rolled back on heal, none of them is
    /// ever published, every committed write is.
    @Test func rolledBackWritesNeverReachRedis() async throws {
        let (published, lost, _) = try await partitionScenario(majority: .auto)
        #expect(published == Self.ids(0..<20))
        #expect(lost.isEmpty)
    }

    /// The control: with --majority off the same scenario publishes the writes that are then rolled back.
    /// The control: with --majority off the same scenario publishes the writes that are then rolled back, and the
    /// tail stops with "rolled back" (its checkpoint no longer exists) rather than "rolled off".
    @Test func withoutGatingRolledBackWritesArePublished() async throws {
        let (_, lost, outcome) = try await partitionScenario(majority: .off)
        #expect(lost == Self.ids(0..<2, prefix: "lost"))
        guard case .failure(let error as OplogHistoryLost) = outcome else {
            Issue.record("expected OplogHistoryLost, got \(outcome)")
            return
        }
        #expect(error.reason.contains("rolled back by a failover"))
    }

    func partitionScenario(
        majority: MajorityMode
    ) async throws -> (published: [String], lost: [String], outcome: Result<Void, any Error>) {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeSetBridge(
            set.uri,
            redis,
            seed: set.majorityOpTime(0)?.ts,
            majority: majority
        )
        let run = Task { try await bridge.run() }
        try await write(set.uri, 0..<10)
        await waitCommitted(set, 0)
        _ = await waitPublished(subscriber, Self.ids(0..<10))
        set.partition(0)
        try await write(set.directURI(0), 0..<2, prefix: "lost")
        let newPrimary = try #require(await set.waitForWritablePrimary(excluding: 0))
        try await write(set.directURI(newPrimary), 10..<20)
        set.heal()
        let deadline = ContinuousClock.now + .seconds(10)
        while set.rollbackCount == 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(set.rollbackCount == 1)
        #expect(set.rolledBackEntries(0).filter { $0["ns"] == "tests.Foo" }.count == 2)
        _ = await waitPublished(subscriber, majority == .off ? [] : Self.ids(0..<20), timeout: .seconds(10))
        // Not a wait for an event: the time a bridge that wrongly published rolled-back writes would need to do so.
        try await Task.sleep(for: .milliseconds(500))
        bridge.stop()
        let outcome = await run.result
        try await subscriber.barrier()
        subscriber.stop()
        await publisher.close()
        let all = published(subscriber)
        return (all.filter { !$0.hasPrefix("lost") }, all.filter { $0.hasPrefix("lost") }, outcome)
    }

    @Test func stepDownHandsOverWithoutLossOrReordering() async throws {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeSetBridge(set.uri, redis, seed: set.majorityOpTime(0)?.ts)
        let run = Task { try await bridge.run() }
        try await write(set.uri, 0..<30)
        let client = try MongoClient(uri: set.directURI(0), logger: bridgeLogger)
        _ = try await client.runCommand(["replSetStepDown": 30])
        await client.close()
        try await write(set.uri, 30..<60)
        let order = await waitPublished(subscriber, Self.ids(0..<60))
        bridge.stop()
        try await run.value
        subscriber.stop()
        await publisher.close()
        #expect(order == Self.ids(0..<60))
    }

    /// With a 400 ms replication lag nothing is published before a secondary has the write.
    @Test func aLaggingSecondaryHoldsPublicationUntilCommitted() async throws {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeSetBridge(set.uri, redis, seed: set.majorityOpTime(0)?.ts)
        let run = Task { try await bridge.run() }
        try await write(set.uri, 0..<1)
        _ = await waitPublished(subscriber, Self.ids(0..<1))
        set.setReplicationLag(.milliseconds(400))
        try await write(set.uri, 1..<2)
        let written = ContinuousClock.now
        _ = await waitPublished(subscriber, Self.ids(0..<2))
        let elapsed = ContinuousClock.now - written
        bridge.stop()
        try await run.value
        subscriber.stop()
        await publisher.close()
        #expect(published(subscriber) == Self.ids(0..<2))
        #expect(elapsed >= .milliseconds(350))
    }

    @Test func aBridgePointedAtASecondaryDeliversCommittedWritesInOrder() async throws {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await makeSetBridge(set.directURI(2), redis, seed: set.majorityOpTime(2)?.ts)
        let run = Task { try await bridge.run() }
        try await write(set.uri, 0..<50)
        let order = await waitPublished(subscriber, Self.ids(0..<50))
        bridge.stop()
        try await run.value
        subscriber.stop()
        await publisher.close()
        #expect(order == Self.ids(0..<50))
    }

    @Test func haBridgesDuringAFailoverPublishEachCommittedWriteOnce() async throws {
        let set = try FakeReplicaSet.start(timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let seed = set.majorityOpTime(0)?.ts
        let (first, firstPublisher) = try await makeSetBridge(set.uri, redis, seed: seed, highAvailability: true)
        let (second, secondPublisher) = try await makeSetBridge(set.uri, redis, seed: seed, highAvailability: true)
        let a = Task { try await first.run() }
        let b = Task { try await second.run() }
        try await write(set.uri, 0..<30)
        await waitCommitted(set, 0)
        set.kill(0)
        try await write(set.uri, 30..<60)
        let order = await waitPublished(subscriber, Self.ids(0..<60))
        // Both bridges past the newest write: the slower one's copies have been sent (and deduplicated) by then.
        let newest = try #require(set.writablePrimary.flatMap(set.lastApplied)).ts
        await first.waitDelivered(through: newest)
        await second.waitDelivered(through: newest)
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        try await subscriber.barrier()
        subscriber.stop()
        await firstPublisher.close()
        await secondPublisher.close()
        #expect(order == Self.ids(0..<60))
        let perID = Dictionary(grouping: subscriber.received.filter { $0.0.hasPrefix("tests.Foo::") }, by: \.0)
        #expect(perID.count == 60)
        #expect(perID.values.allSatisfy { $0.count == 1 })
    }
}

/// §9.2 rule 3's invariant: a delivered, majority-committed entry that vanishes from a node whose committed history
/// covers it is a loud, final error, never "history rolled off" and never a silent skip.
struct CommittedEntryMissingTests {
    @Test func aDeliveredCommittedEntryThatVanishesIsAnInvariantError() async throws {
        let set = try FakeReplicaSet.start(periodicNoopInterval: nil)
        defer { set.stop() }
        let start = try #require(set.majorityOpTime(0))
        let tail = OplogTailer(
            configuration: OplogTailerConfiguration(
                connectionString: try MongoConnectionString(set.uri),
                start: .after(start.ts),
                maxAwaitTime: .milliseconds(200),
                backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(100))
            ),
            logger: tailLogger
        )
        let writer = try MongoClient(uri: set.uri, logger: tailLogger)
        try await insert(writer, 0..<2)
        let keep = try #require(set.lastApplied(0))
        try await insert(writer, 2..<5)
        await writer.close()
        var iterator = tail.makeAsyncIterator()
        var events: [ChangeEvent] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ids(events).count < 5 && ContinuousClock.now < deadline {
            guard let batch = try await iterator.next() else { break }
            events += batch.events
        }
        #expect(ids(events) == [0, 1, 2, 3, 4])
        set.loseHistory(after: keep)
        do {
            while ContinuousClock.now < deadline + .seconds(10) {
                guard let batch = try await iterator.next() else { break }
                #expect(batch.events.isEmpty)
            }
            Issue.record("the tail went on without its delivered entry")
        } catch let missing as OplogCommittedEntryMissing {
            #expect(missing.description.contains("majority data loss"))
        } catch {
            Issue.record("expected OplogCommittedEntryMissing, got \(error)")
        }
        await iterator.close()
    }
}
