import BSON
import Foundation
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `rsinit tail` through a Sentinel-managed master and through a Cluster, end to end.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"), .serialized)
struct TailTopologyCLITests {
    @Test func sentinelURLFromTheCLIFollowsAFailover() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", set.url(), "--from",
            "\(from.seconds).\(from.increment)",
        ])
        try await insertMany(mongo, 0..<10)
        let first = try await waitForStoredCheckpoint(port: set.servers[0].port, mongo.lastOplogTimestamp)
        #expect(first == mongo.lastOplogTimestamp.rawValue, "\(tail.errors)")
        set.servers[0].stop()
        let newMaster = try await set.waitForNewMaster(other: set.servers[0].port)
        try await insertMany(mongo, 10..<20)
        let second = try await waitForStoredCheckpoint(port: newMaster, mongo.lastOplogTimestamp, timeout: 30)
        #expect(second == mongo.lastOplogTimestamp.rawValue, "\(tail.errors)")
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0, "\(tail.errors)")
        #expect(tail.errors.contains("redis+sentinel://127.0.0.1:"))
    }

    @Test func clusterURLFromTheCLIKeepsTheCheckpointUnderAHashTag() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let cluster = try await RedisClusterProcesses.launch(masters: 3, replicasPerMaster: 0)
        defer { cluster.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", cluster.url, "--ha", "--from",
            "\(from.seconds).\(from.increment)",
        ])
        try await insertMany(mongo, 0..<10)
        let port = try await cluster.masterPort(slot: RedisClusterSlots.slot(of: "{rsinit::}checkpoint"))
        let stored = try await waitForStoredCheckpoint(
            port: port,
            mongo.lastOplogTimestamp,
            key: "{rsinit::}checkpoint"
        )
        #expect(stored == mongo.lastOplogTimestamp.rawValue, "\(tail.errors)")
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0, "\(tail.errors)")
    }

    @Test func anUnknownSentinelMasterNameExitsTwoNamingIt() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let set = try await RedisSentinelSet.launch(replicas: 0, sentinelCount: 1)
        defer { set.stop() }
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis",
            "redis+sentinel://:topsecret@127.0.0.1:\(set.sentinels[0].port)/nosuch",
        ])
        #expect(try await tail.exitCode() == 2)
        #expect(tail.errors.contains("rsinit: error:") && tail.errors.contains("\"nosuch\""), "\(tail.errors)")
        #expect(!tail.errors.contains("topsecret"))
    }
}

/// Polls a node's checkpoint key until it equals `expected`; returns the last value seen.
func waitForStoredCheckpoint(
    port: UInt16,
    _ expected: BSONTimestamp,
    key: String = "rsinit::checkpoint",
    timeout: Double = 15
) async throws -> UInt64? {
    let deadline = Date().addingTimeInterval(timeout)
    var value: UInt64?
    repeat {
        value = try? await onDedicatedThread { try redisAdminCommand(port: port, ["GET", key]).string }
            .flatMap { CheckpointEncoding.decode($0)?.rawValue }
        if value == expected.rawValue { return value }
        try await Task.sleep(for: .milliseconds(50))
    } while Date() < deadline
    return value
}
