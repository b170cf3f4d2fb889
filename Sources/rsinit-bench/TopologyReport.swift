import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient

/// `rsinit-bench topology` (also part of `report`): the bridge's throughput through a Sentinel-discovered master
/// against a direct URL to the same master, and through a 3-master Cluster, measured back to back in rounds (the
/// VM's speed drifts, so each round's figures are compared with each other), plain and HA; then the cost of
/// `WAIT 1` after a checkpoint write (the option the bridge does not take, see the README).
extension Bench {
    static func topologyReport(events: Int = 100_000, rounds: Int = 3) async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let cluster = try await RedisClusterProcesses.launch(masters: 3, replicasPerMaster: 1)
        defer { cluster.stop() }
        let direct = set.servers[0].url()
        let targets: [(name: String, url: String)] = [
            ("direct", direct), ("sentinel", set.url()), ("cluster", cluster.url),
        ]
        var rates: [String: [Double]] = [:]
        for round in 1...rounds {
            var line: [String] = []
            for ha in [false, true] {
                for target in targets {
                    let key = "\(target.name) \(ha ? "HA" : "plain")"
                    let rate = try await topologyRun(url: target.url, events: events, ha: ha, round: round)
                    rates[key, default: []].append(rate)
                    line.append(String(format: "%@ %.0f", key, rate))
                }
            }
            print("    topology round \(round): " + line.joined(separator: ", ") + " events/s")
        }
        let median = { (values: [Double]) in percentile(values, 0.5) }
        for ha in [false, true] {
            let mode = ha ? "HA" : "plain"
            let ratios = { (name: String) -> [Double] in
                zip(rates["\(name) \(mode)"]!, rates["direct \(mode)"]!).map { $0 / $1 }
            }
            print(
                String(
                    format:
                        "(f) %@: direct URL median %.0f events/s; via Sentinel %.0f (%.2f of direct, rounds %@); via Cluster %.0f (%.2f, rounds %@)",
                    mode,
                    median(rates["direct \(mode)"]!),
                    median(rates["sentinel \(mode)"]!),
                    median(ratios("sentinel")),
                    ratios("sentinel").map { String(format: "%.2f", $0) }.joined(separator: ", "),
                    median(rates["cluster \(mode)"]!),
                    median(ratios("cluster")),
                    ratios("cluster").map { String(format: "%.2f", $0) }.joined(separator: ", ")
                )
            )
        }
        try await waitCost(masterPort: set.servers[0].port)
    }

    /// Events/s of one bridge run through `url` (every message is published; no subscriber).
    static func topologyRun(url: String, events: Int, ha: Bool, round: Int) async throws -> Double {
        let (server, start) = try doubleWithInserts(events)
        defer { server.stop() }
        let publisher = RedisEventPublisher(
            configuration: .init(
                url: try RedisURL(url),
                metadataPrefix: "bench\(round)\(ha)\(url.hashValue)::",
                highAvailability: ha
            ),
            logger: reportLogger
        )
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(server.uri),
                    batchSize: 1000
                ),
                start: .at(BSONTimestamp(rawValue: start.rawValue + 1))
            ),
            publisher: publisher,
            logger: reportLogger
        )
        let began = ContinuousClock.now
        let running = Task { try await bridge.run() }
        while bridge.statistics.events < events { try await Task.sleep(for: .milliseconds(2)) }
        let elapsed = seconds(ContinuousClock.now - began)
        bridge.stop()
        try await running.value
        await publisher.close()
        return Double(events) / elapsed
    }

    /// Round trip of a checkpoint SET alone and of SET + `WAIT 1 1000` (one replica acknowledges), 2,000 each.
    static func waitCost(masterPort: UInt16, samples: Int = 2000) async throws {
        let connection = try await RedisConnection.connect(try RedisURL("redis://127.0.0.1:\(masterPort)"))
        var plain: [Double] = []
        var waited: [Double] = []
        for index in 0..<samples {
            let value = CheckpointEncoding.encode(BSONTimestamp(rawValue: UInt64(index)))
            var began = ContinuousClock.now
            _ = try await connection.require(["SET", "bench::wait", value])
            plain.append(seconds(ContinuousClock.now - began) * 1000)
            began = ContinuousClock.now
            let replies = try await connection.pipeline([
                ["SET", "bench::wait", value].map { Array($0.utf8) }, ["WAIT", "1", "1000"].map { Array($0.utf8) },
            ])
            waited.append(seconds(ContinuousClock.now - began) * 1000)
            guard replies.count == 2, replies[1].integer == 1 else {
                throw BenchError("WAIT 1 did not see the replica: \(replies)")
            }
        }
        await connection.close()
        print(
            String(
                format:
                    "(f) checkpoint SET round trip: p50 %.3f ms, p99 %.3f ms; SET + WAIT 1 (one replica): p50 %.3f ms, p99 %.3f ms (%d samples)",
                percentile(plain, 0.5),
                percentile(plain, 0.99),
                percentile(waited, 0.5),
                percentile(waited, 0.99),
                samples
            )
        )
    }
}
