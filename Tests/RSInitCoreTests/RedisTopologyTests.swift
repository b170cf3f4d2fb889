import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Testing

@Suite struct RedisTopologyURLTests {
    @Test func sentinelURLForms() throws {
        let url = try RedisURL("redis+sentinel://:s3cret@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=sp")
        guard case .sentinel(let sentinel) = url.topology else {
            Issue.record("not a Sentinel URL: \(url.topology)")
            return
        }
        #expect(sentinel.masterName == "mymaster")
        #expect(
            sentinel.sentinels == [
                RedisAddress(host: "s1", port: 26379), RedisAddress(host: "s2", port: 26379),
                RedisAddress(host: "::1", port: 26380),
            ]
        )
        #expect(sentinel.password == "sp")
        #expect(sentinel.username == nil)
        #expect(url.password == "s3cret")
        #expect(url.database == 2)
        #expect(!url.useTLS)
        #expect(url.description == "redis+sentinel://:***@s1:26379,s2:26379,[::1]:26380/mymaster/2")
        #expect(!url.description.contains("sp"))
        #expect(url.followsFailovers)

        let ioredis = try RedisURL(
            "redis://u:p@10.0.0.1:26379,10.0.0.2:26379/0?masterName=cache&sentinelPassword=x&sentinelUsername=su"
        )
        #expect(
            ioredis.topology
                == .sentinel(
                    .init(
                        masterName: "cache",
                        sentinels: [
                            RedisAddress(host: "10.0.0.1", port: 26379), RedisAddress(host: "10.0.0.2", port: 26379),
                        ],
                        username: "su",
                        password: "x"
                    )
                )
        )
        #expect(ioredis.username == "u" && ioredis.password == "p" && ioredis.database == 0)

        let celery = try RedisURL("sentinel://a:26379;sentinel://b:26380?master_name=m")
        #expect(
            celery.topology
                == .sentinel(
                    .init(
                        masterName: "m",
                        sentinels: [RedisAddress(host: "a", port: 26379), RedisAddress(host: "b", port: 26380)]
                    )
                )
        )

        let celeryWithPasswords = try RedisURL("sentinel://:pw@a:26379;sentinel://:pw@b:26380/m")
        #expect(celeryWithPasswords.password == "pw")
        #expect(
            celeryWithPasswords.topology
                == .sentinel(
                    .init(
                        masterName: "m",
                        sentinels: [RedisAddress(host: "a", port: 26379), RedisAddress(host: "b", port: 26380)]
                    )
                )
        )

        let tls = try RedisURL("rediss+sentinel://s1/m?ca=/ca.pem&verify=ca")
        #expect(tls.useTLS && tls.tls.caFile == "/ca.pem" && tls.tls.verify == .ca)
        #expect(tls.description == "rediss+sentinel://s1:26379/m/0")
    }

    @Test func clusterURLForms() throws {
        let url = try RedisURL("redis+cluster://user:pw@n1:7000,n2:7001,n3")
        #expect(
            url.topology
                == .cluster(seeds: [
                    RedisAddress(host: "n1", port: 7000), RedisAddress(host: "n2", port: 7001),
                    RedisAddress(host: "n3", port: 6379),
                ])
        )
        #expect(url.username == "user" && url.password == "pw")
        #expect(url.description == "redis+cluster://user:***@n1:7000,n2:7001,n3:6379")
        let option = try RedisURL("redis://n1:7000?cluster=true")
        #expect(option.topology == .cluster(seeds: [RedisAddress(host: "n1", port: 7000)]))
        #expect(try RedisURL("rediss+cluster://n1?verify=none").useTLS)
    }

    @Test(arguments: [
        "redis+sentinel://s1:26379", "redis+sentinel://s1:26379/", "redis+sentinel://s1,,s2/m",
        "redis+sentinel://s1:99999/m", "redis+sentinel://s1/m/x", "redis+sentinel://s1/m/0/extra",
        "redis+cluster://n1/1", "redis+cluster://n1?sentinel_password=x", "redis://a,b", "redis://a?cluster=maybe",
        "redis+sentinel://s1/m?cluster=true", "redis+sentinel://s1/m?bogus=1",
    ])
    func badTopologyURLsAreClearErrors(_ text: String) {
        #expect(throws: RedisError.self) { try RedisURL(text) }
        do { _ = try RedisURL(text) } catch {
            #expect(error.kind == .invalidURL)
            #expect(!error.message.isEmpty)
        }
    }

    @Test func plainURLsStayDirect() throws {
        #expect(try RedisURL("redis://h:6380/1").topology == .direct)
        #expect(try !RedisURL("rediss://:pw@h").followsFailovers)
    }

    @Test func connectingToATopologyURLDirectlyIsRefused() async throws {
        await #expect(throws: RedisError.self) {
            _ = try await RedisConnection.connect(try RedisURL("redis+sentinel://127.0.0.1:1/m"))
        }
    }
}

@Suite struct RedisClusterSlotTests {
    @Test func slotsMatchTheClusterSpecification() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        #expect(RedisClusterSlots.slot(of: "123456789") == 0x31C3 % 16384)
        #expect(RedisClusterSlots.slot(of: "foo") == 12182)
        #expect(RedisClusterSlots.slot(of: "bar") == 5061)
        #expect(
            RedisClusterSlots.slot(of: "{user1000}.following") == RedisClusterSlots.slot(of: "{user1000}.followers")
        )
        #expect(RedisClusterSlots.slot(of: "foo{}{bar}") == RedisClusterSlots.slot(of: "foo{}{bar}"))
        #expect(RedisClusterSlots.slot(of: "foo{{bar}}zap") == RedisClusterSlots.slot(of: "{bar"))
        #expect(RedisClusterSlots.slot(of: "{rsinit::}checkpoint") == RedisClusterSlots.slot(of: "rsinit::"))
        #expect(
            RedisClusterSlots.slot(of: "{rsinit::}processed::7000000000000000001::3")
                == RedisClusterSlots.slot(of: "{rsinit::}checkpoint")
        )
        #expect(RedisClusterSlots.hasHashTag("{app}:"))
        #expect(!RedisClusterSlots.hasHashTag("rsinit::"))
        #expect(!RedisClusterSlots.hasHashTag("a{}b"))
    }

    @Test func slotMapParsingIsCheckedNeverACrash() throws {
        let reply = RESPValue.array([
            .array([.integer(0), .integer(5460), .array([.bulk("10.0.0.1"), .integer(7000), .bulk("id")])]),
            .array([.integer(5461), .integer(16383), .array([.bulk(""), .integer(7001)]), .array([])]),
        ])
        let ranges = try RedisClusterSlots.parse(reply, fallbackHost: "seed")
        #expect(RedisClusterSlots.master(of: 0, in: ranges) == RedisAddress(host: "10.0.0.1", port: 7000))
        #expect(RedisClusterSlots.master(of: 16383, in: ranges) == RedisAddress(host: "seed", port: 7001))
        let bad: [RESPValue] = [
            .integer(1), .array(nil),
            .array([.array([.integer(5), .integer(1), .array([.bulk("h"), .integer(1)])])]),
            .array([.array([.integer(0), .integer(16384), .array([.bulk("h"), .integer(1)])])]),
            .array([.array([.integer(0), .integer(1), .array([.bulk("h"), .integer(70000)])])]),
            .array([.array([.integer(0), .integer(1), .bulk("h")])]),
            .array([.array([.integer(0)])]),
        ]
        for value in bad {
            #expect(throws: RedisError.self) { try RedisClusterSlots.parse(value, fallbackHost: "x") }
        }
    }
}

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
        let stored = try await onDedicatedThread {
            try redisAdminCommand(port: newMaster, ["GET", "rsinit::checkpoint"]).string
        }
        #expect(stored.flatMap(CheckpointEncoding.decode) == mongo.lastOplogTimestamp)
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
        try await Task.sleep(for: .milliseconds(500))
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        await firstPublisher.close()
        await secondPublisher.close()
        for subscriber in [onOldMaster, onNewMaster, late] { subscriber.stop() }
        let seen = [onOldMaster, onNewMaster, late].map { firstAppearances($0.received).ids }
        let missing = Set(expected).subtracting(seen.flatMap { $0 })
        #expect(missing.isEmpty, "\(missing.count) events reached no subscriber, e.g. \(missing.sorted().prefix(5))")
        for (ids, who) in zip(seen, ["the old master's subscriber", "the new master's subscriber"]) {
            let order = ids.compactMap { Int($0.dropFirst(2)) }
            #expect(order == order.sorted(), "\(who): first appearances out of order")
        }
        expectInOrder(lateIDs, Array(expected[4000...]), "the subscriber attached after the switch")
        #expect(firstPublisher.dedupeHits + secondPublisher.dedupeHits > 0)
        let stored = try await onDedicatedThread {
            try redisAdminCommand(port: newMaster, ["GET", "rsinit::checkpoint"]).string
        }
        #expect(stored.flatMap(CheckpointEncoding.decode) == mongo.lastOplogTimestamp)
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
        let stored = try await onDedicatedThread {
            try redisAdminCommand(port: newMaster, ["GET", "{rsinit::}checkpoint"]).string
        }
        #expect(stored.flatMap(CheckpointEncoding.decode) == mongo.lastOplogTimestamp)
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
        try await Task.sleep(for: .milliseconds(500))
        first.stop()
        second.stop()
        try await a.value
        try await b.value
        await firstPublisher.close()
        await secondPublisher.close()
        subscriber.stop()
        expectInOrder(ids, expected, "a Cluster subscriber")
        #expect(firstAppearances(subscriber.received).total == 2000)
        #expect(firstPublisher.publishedEvents + secondPublisher.publishedEvents == 2000)
    }
}
