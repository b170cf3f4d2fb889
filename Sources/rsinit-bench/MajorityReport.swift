import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Synchronization

/// `rsinit-bench majority`: write → subscriber latency on a 3-member double with majority gating on and off, in the
/// same run (issue 21). The secondaries copy an entry once it is `lag` old (plus the set's 5 ms heartbeat tick), the
/// order of a healthy LAN replica set's apply and journal delay.
extension Bench {
    static func majorityReport(perSecond: Int = 500, seconds: Int = 6, lag: Duration = .milliseconds(5)) async throws {
        let redis = try benchmarkRedis()
        defer { redis.stop() }
        var results: [(MajorityMode, [Double])] = []
        for mode in [MajorityMode.on, .off, .on, .off] {
            let samples = try await majorityLatency(redis, mode: mode, perSecond: perSecond, seconds: seconds, lag: lag)
            results.append((mode, samples))
        }
        func line(_ mode: MajorityMode) -> (Double, Double, Int) {
            let samples = results.filter { $0.0 == mode }.flatMap(\.1)
            return (percentile(samples, 0.5), percentile(samples, 0.99), samples.count)
        }
        let on = line(.on)
        let off = line(.off)
        print(
            String(
                format:
                    "majority gating, 3-member double, replication lag %d ms + 5 ms tick, %d events/s × %d s × 2 runs each:",
                Int(lag.components.seconds * 1000 + lag.components.attoseconds / 1_000_000_000_000_000),
                perSecond,
                seconds
            )
        )
        print(String(format: "  gating on : p50 %.2f ms, p99 %.2f ms (%d samples)", on.0, on.1, on.2))
        print(String(format: "  gating off: p50 %.2f ms, p99 %.2f ms (%d samples)", off.0, off.1, off.2))
        print(
            String(
                format: "  cost of gating: p50 +%.2f ms (×%.1f), p99 +%.2f ms",
                on.0 - off.0,
                off.0 > 0 ? on.0 / off.0 : 0,
                on.1 - off.1
            )
        )
    }

    static func majorityLatency(
        _ redis: RedisServerProcess,
        mode: MajorityMode,
        perSecond: Int,
        seconds duration: Int,
        lag: Duration
    ) async throws -> [Double] {
        let set = try FakeReplicaSet.start(
            timings: FakeReplicaSetTimings(replicationLag: lag),
            periodicNoopInterval: nil
        )
        defer { set.stop() }
        let publisher = RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url()), metadataPrefix: "majority::\(mode)::"),
            logger: reportLogger
        )
        let start = set.majorityOpTime(0)?.ts ?? set.members[0].lastOplogTimestamp
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(connectionString: try MongoConnectionString(set.uri), majority: mode),
                start: .at(BSONTimestamp(rawValue: start.rawValue + 1))
            ),
            publisher: publisher,
            logger: reportLogger
        )
        let running = Task { try await bridge.run() }
        let samples = try await pacedLatency(
            redis,
            channel: "majority.Foo",
            perSecond: perSecond,
            seconds: duration,
            warmUp: .milliseconds(800)
        ) { i in _ = set.appendOnPrimary(0, ["op": "i", "ns": "majority.Foo", "o": ["_id": .string("lat\(i)")]]) }
        bridge.stop()
        try await running.value
        await publisher.close()
        return samples
    }
}
