import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Testing

// MARK: - Real processes

/// The distinct `_id`s of the collection channel's messages in order of first appearance, and how many there were.
func firstAppearances(_ messages: [(String, String)], channel: String = "tests.Foo") -> (ids: [String], total: Int) {
    var seen = Set<String>()
    var ids: [String] = []
    var total = 0
    for (name, message) in messages where name == channel {
        guard let range = message.range(of: "\"_id\":\"") else { continue }
        let id = String(message[range.upperBound...].prefix { $0 != "\"" })
        total += 1
        if seen.insert(id).inserted { ids.append(id) }
    }
    return (ids, total)
}

/// Waits until the subscriber saw every id of `expected` at least once.
func waitForAll(_ subscriber: Subscriber, _ expected: [String], timeout: Duration = .seconds(90)) async -> [String] {
    let deadline = ContinuousClock.now + timeout
    let wanted = Set(expected)
    while ContinuousClock.now < deadline {
        let ids = firstAppearances(subscriber.received).ids
        if wanted.isSubset(of: Set(ids)) { return ids }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return firstAppearances(subscriber.received).ids
}

/// The checkpoint a Redis node holds under `key` (read off the cooperative pool), decoded.
func storedCheckpoint(port: UInt16, key: String = "rsinit::checkpoint") async throws -> BSONTimestamp? {
    try await onDedicatedThread { try redisAdminCommand(port: port, ["GET", key]).string }
        .flatMap(CheckpointEncoding.decode)
}

func topologyBridge(
    _ mongo: FakeMongod,
    url: String,
    highAvailability: Bool = false
) throws -> (OplogBridge, RedisEventPublisher) {
    let publisher = RedisEventPublisher(
        configuration: .init(url: try RedisURL(url), highAvailability: highAvailability),
        logger: bridgeLogger
    )
    let bridge = OplogBridge(
        configuration: .init(
            tailer: OplogTailerConfiguration(
                connectionString: try MongoConnectionString(mongo.uri),
                maxAwaitTime: .milliseconds(200)
            ),
            // Everything after the double's set-up entries (the checkpoint path is exercised at each failover).
            start: .at(mongo.lastOplogTimestamp),
            retryBackoff: Backoff(initial: .milliseconds(100), maximum: .milliseconds(400))
        ),
        publisher: publisher,
        logger: bridgeLogger
    )
    return (bridge, publisher)
}

/// The first `count` ids, in order, must be what the subscriber saw first (at least once, first appearances in
/// oplog order).
func expectInOrder(
    _ ids: [String],
    _ expected: [String],
    _ who: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let relevant = ids.filter(Set(expected).contains)
    let difference = Array(zip(relevant, expected)).firstIndex { $0 != $1 } ?? min(relevant.count, expected.count)
    let inOrder = relevant == expected
    #expect(
        inOrder,
        "\(who): \(relevant.count) of \(expected.count) distinct ids; first difference at \(difference): \(relevant[difference...].prefix(5))",
        sourceLocation: sourceLocation
    )
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"), .serialized)
struct RedisSentinelBridgeTests {
    /// A master, a replica and three Sentinels; the master is SIGKILLed while 10,000 events stream. The replica's
    /// subscriber (the new master's, after the failover) sees every event, first appearances in order; a subscriber
    /// attached to the new master after the failover receives everything written after it attached.
    @Test func masterKilledMidStreamLosesNothing() async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let onReplica = Subscriber(set.servers[1].url())
        await onReplica.waitConnected()
        let (bridge, publisher) = try topologyBridge(mongo, url: set.url())
        let running = Task { try await bridge.run() }
        appendInsertEntries(mongo, 0..<6000)
        let deadline = ContinuousClock.now + .seconds(60)
        while firstAppearances(onReplica.received).ids.count < 2000, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        set.servers[0].stop()  // SIGKILL, mid-stream
        let newMaster = try await set.waitForNewMaster(other: set.servers[0].port)
        #expect(newMaster == set.servers[1].port)
        let late = Subscriber(set.servers[1].url())
        await late.waitConnected()
        appendInsertEntries(mongo, 6000..<10000)
        let expected = (0..<10000).map { "id\($0)" }
        let ids = await waitForAll(onReplica, expected)
        let lateIDs = await waitForAll(late, Array(expected[6000...]))
        bridge.stop()
        try await running.value
        await publisher.close()
        onReplica.stop()
        late.stop()
        expectInOrder(ids, expected, "the new master's subscriber")
        expectInOrder(lateIDs, Array(expected[6000...]), "the subscriber attached after the failover")
        #expect(bridge.statistics.publishRetries > 0)
        #expect(try await storedCheckpoint(port: newMaster, key: "rsinit::checkpoint") == mongo.lastOplogTimestamp)
    }

    /// `SENTINEL FAILOVER` while two HA bridges publish. Sentinel disconnects the clients of both nodes during the
    /// switch, so no single subscriber can see everything (Pub/Sub is at most once across a reconnection);
    /// every event reaches a subscriber of the old or the new master, each subscriber sees first appearances in
    /// order, and a subscriber attached to the new master after the switch receives everything written after it.
    @Test func gracefulFailoverWithTwoHABridges() async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let onOldMaster = Subscriber(set.servers[0].url())
        let onNewMaster = Subscriber(set.servers[1].url())
        await onOldMaster.waitConnected()
        await onNewMaster.waitConnected()
        let (first, firstPublisher) = try topologyBridge(mongo, url: set.url(), highAvailability: true)
        let (second, secondPublisher) = try topologyBridge(mongo, url: set.url(), highAvailability: true)
        let a = Task { try await first.run() }
        let b = Task { try await second.run() }
        appendInsertEntries(mongo, 0..<3000)
        let deadline = ContinuousClock.now + .seconds(60)
        while firstAppearances(onOldMaster.received).ids.count < 1000, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await set.failover()
        appendInsertEntries(mongo, 3000..<4000)
        let newMaster = try await set.waitForNewMaster(other: set.servers[0].port)
        #expect(newMaster == set.servers[1].port)
        let late = Subscriber(set.servers[1].url())
        await late.waitConnected()
        appendInsertEntries(mongo, 4000..<5000)
        let expected = (0..<5000).map { "id\($0)" }
        let lateIDs = await waitForAll(late, Array(expected[4000...]))
        await first.waitDelivered(through: mongo.lastOplogTimestamp)
        await second.waitDelivered(through: mongo.lastOplogTimestamp)
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        await firstPublisher.close()
        await secondPublisher.close()
        for subscriber in [onOldMaster, onNewMaster, late] {
            try await subscriber.barrier(via: set.servers[1].url())
            subscriber.stop()
        }
        let seen = [onOldMaster, onNewMaster, late].map { firstAppearances($0.received).ids }
        let missing = Set(expected).subtracting(seen.flatMap { $0 })
        #expect(missing.isEmpty, "\(missing.count) events reached no subscriber, e.g. \(missing.sorted().prefix(5))")
        for (ids, who) in zip(seen, ["the old master's subscriber", "the new master's subscriber"]) {
            let order = ids.compactMap { Int($0.dropFirst(2)) }
            #expect(order == order.sorted(), "\(who): first appearances out of order")
        }
        expectInOrder(lateIDs, Array(expected[4000...]), "the subscriber attached after the switch")
        #expect(firstPublisher.dedupeHits + secondPublisher.dedupeHits > 0)
        #expect(try await storedCheckpoint(port: newMaster, key: "rsinit::checkpoint") == mongo.lastOplogTimestamp)
    }

    /// Every Sentinel down for a few seconds while the bridge must re-discover (its connection to the master was
    /// killed): it retries until one answers, and nothing is lost.
    @Test func allSentinelsDownForAWhile() async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let subscriber = Subscriber(set.servers[0].url())
        await subscriber.waitConnected()
        let (bridge, publisher) = try topologyBridge(mongo, url: set.url())
        let running = Task { try await bridge.run() }
        appendInsertEntries(mongo, 0..<1000)
        _ = await waitForAll(subscriber, (0..<1000).map { "id\($0)" })
        for sentinel in set.sentinels { sentinel.stop() }
        let master = set.servers[0].port
        _ = try await onDedicatedThread { try redisAdminCommand(port: master, ["CLIENT", "KILL", "TYPE", "normal"]) }
        appendInsertEntries(mongo, 1000..<2000)
        // The outage's length is the test's subject (the bridge keeps re-discovering meanwhile), not a wait.
        try await Task.sleep(for: .seconds(3))
        for sentinel in set.sentinels { try await sentinel.restart() }
        let expected = (0..<2000).map { "id\($0)" }
        let ids = await waitForAll(subscriber, expected)
        bridge.stop()
        try await running.value
        await publisher.close()
        subscriber.stop()
        expectInOrder(ids, expected, "the master's subscriber")
        #expect(bridge.statistics.publishRetries > 1)
    }

    @Test func anUnknownMasterNameIsAClearErrorAtStart() async throws {
        let set = try await RedisSentinelSet.launch(replicas: 0, sentinelCount: 1)
        defer { set.stop() }
        let publisher = RedisEventPublisher(
            configuration: .init(url: try RedisURL("redis+sentinel://127.0.0.1:\(set.sentinels[0].port)/nosuch")),
            logger: bridgeLogger
        )
        do {
            _ = try await publisher.loadCheckpoint()
            Issue.record("an unknown master name was accepted")
        } catch let error as RedisError {
            #expect(!error.isTransient)
            #expect(error.message.contains("nosuch") && error.message.contains("master name"))
        }
        await publisher.close()
    }
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"), .serialized)
struct RedisClusterBridgeTests {
    static let checkpointSlot = RedisClusterSlots.slot(of: "{rsinit::}checkpoint")

    /// 3 masters + 3 replicas; the master of the checkpoint's slot is SIGKILLed mid-stream. A subscriber on another
    /// master (Cluster PUBLISH reaches every node) sees every event, first appearances in order.
    @Test func checkpointSlotMasterKilledMidStreamLosesNothing() async throws {
        let cluster = try await RedisClusterProcesses.launch()
        defer { cluster.stop() }
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let slotMaster = try await cluster.masterPort(slot: Self.checkpointSlot)
        let otherMaster = try await cluster.masterPort(slot: (Self.checkpointSlot + 8192) % 16384)
        #expect(otherMaster != slotMaster)
        let subscriber = Subscriber(cluster.node(port: otherMaster)!.url())
        await subscriber.waitConnected()
        let (bridge, publisher) = try topologyBridge(mongo, url: cluster.url)
        let running = Task { try await bridge.run() }
        appendInsertEntries(mongo, 0..<6000)
        let deadline = ContinuousClock.now + .seconds(60)
        while firstAppearances(subscriber.received).ids.count < 2000, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        cluster.node(port: slotMaster)?.stop()
        let newMaster = try await cluster.waitForNewMaster(slot: Self.checkpointSlot, other: slotMaster)
        appendInsertEntries(mongo, 6000..<10000)
        let expected = (0..<10000).map { "id\($0)" }
        let ids = await waitForAll(subscriber, expected)
        bridge.stop()
        try await running.value
        await publisher.close()
        subscriber.stop()
        expectInOrder(ids, expected, "a subscriber on another master")
        #expect(bridge.statistics.publishRetries > 0)
        #expect(try await storedCheckpoint(port: newMaster, key: "{rsinit::}checkpoint") == mongo.lastOplogTimestamp)
    }

    /// Two HA bridges through the Cluster: the script's keys share one slot (hash tag), each event published once.
    @Test func twoHABridgesPublishEachEventOnce() async throws {
        let cluster = try await RedisClusterProcesses.launch()
        defer { cluster.stop() }
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let subscriber = Subscriber(cluster.nodes[0].url())
        await subscriber.waitConnected()
        let (first, firstPublisher) = try topologyBridge(mongo, url: cluster.url, highAvailability: true)
        let (second, secondPublisher) = try topologyBridge(mongo, url: cluster.url, highAvailability: true)
        #expect(firstPublisher.configuration.checkpointKey == "{rsinit::}checkpoint")
        let a = Task { try await first.run() }
        let b = Task { try await second.run() }
        appendInsertEntries(mongo, 0..<2000)
        let expected = (0..<2000).map { "id\($0)" }
        let ids = await waitForAll(subscriber, expected)
        await first.waitDelivered(through: mongo.lastOplogTimestamp)
        await second.waitDelivered(through: mongo.lastOplogTimestamp)
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        await firstPublisher.close()
        await secondPublisher.close()
        // Through the master of the script's slot, where both bridges published.
        let scriptMaster = try await cluster.masterPort(slot: RedisClusterBridgeTests.checkpointSlot)
        try await subscriber.barrier(via: try #require(cluster.node(port: scriptMaster)).url())
        subscriber.stop()
        expectInOrder(ids, expected, "a Cluster subscriber")
        #expect(firstAppearances(subscriber.received).total == 2000)
        #expect(firstPublisher.publishedEvents + secondPublisher.publishedEvents == 2000)
    }
}
