import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import RedisClient

#if canImport(Glibc)
import Glibc
#endif

/// Benchmarks, printed as a table (never timed unit tests):
///   bootstrap  time from the double becoming a writable primary to `rsinit` exiting 0 (target ≤ 100 ms)
///   coldstart  wall time of `rsinit --version` (binary start-up)
///   serve      oplog entries per second the double serves to a tailing libmongoc cursor
///   chaos      seeded soak of three bridges under faults, with a checking subscriber (Chaos.swift)
///   majority   write → subscriber latency with majority gating on vs off on a 3-member double (MajorityReport.swift)
/// Usage: rsinit-bench [--rsinit PATH] [--runs N] [--entries N] [--seconds N --seed S --rate R]
///        [bootstrap|coldstart|serve|chaos ...]
@main
enum Bench {
    static func main() async throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        var rsinit = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
            "rsinit"
        ).path
        var runs = 20
        var entries = 200_000
        var selected: [String] = []
        var python: String?
        var bsonCases = 20_000_000
        var chaosSeconds = 60
        var seed = UInt64.random(in: 1...UInt64(UInt32.max))
        var rate = 500
        while !arguments.isEmpty {
            let argument = arguments.removeFirst()
            switch argument {
            case "--rsinit": rsinit = arguments.removeFirst()
            case "--runs": runs = Int(arguments.removeFirst()) ?? runs
            case "--entries": entries = Int(arguments.removeFirst()) ?? entries
            case "--python": python = arguments.removeFirst()
            case "--bson-cases": bsonCases = Int(arguments.removeFirst()) ?? bsonCases
            case "--seconds": chaosSeconds = Int(arguments.removeFirst()) ?? chaosSeconds
            case "--seed": seed = UInt64(arguments.removeFirst()) ?? seed
            case "--rate": rate = Int(arguments.removeFirst()) ?? rate
            default: selected.append(argument)
            }
        }
        if selected.isEmpty { selected = ["bootstrap", "coldstart", "serve", "map", "fuzz", "tail"] }
        print(
            "rsinit-bench on \(ProcessInfo.processInfo.activeProcessorCount) cores, libmongoc \(MongoRuntime.libmongocVersion)"
        )
        for name in selected {
            switch name {
            case "bootstrap": try bootstrap(rsinit: rsinit, runs: runs)
            case "coldstart": try coldStart(rsinit: rsinit, runs: runs)
            case "serve": try await serve(entries: entries)
            case "map": mapping(entries: entries)
            case "fuzz": fuzz(count: entries * 10, bsonCases: bsonCases)
            case "tail": try await tail(entries: entries)
            case "bridge": try await bridge(events: entries)
            case "bridge-plain", "bridge-ha": try await bridgeOnly(events: entries, runs: runs, ha: name == "bridge-ha")
            case "report": try await bridgeReport(rsinit: rsinit, python: python)
            case "resp-fuzz": respFuzz(count: entries * 25)
            case "memory": try await memoryReport(rsinit: rsinit)
            case "changestream":
                let redis = try benchmarkRedis()
                defer { redis.stop() }
                try await changeStreamReport(redis)
            case "topology": try await topologyReport()
            case "majority": try await majorityReport()
            case "chaos":
                if try await !chaos(rsinit: rsinit, seconds: chaosSeconds, seed: seed, rate: rate) { exit(1) }
            default: print("unknown benchmark \(name)")
            }
        }
    }

    /// Spawns a process and returns its exit status and the instant `waitpid` saw it exit.
    static func spawnAndWait(_ path: String, _ arguments: [String]) -> (Int32, ContinuousClock.Instant) {
        guard let pid = spawnQuietly(path, arguments) else { return (-1, .now) }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return ((status >> 8) & 0xFF, .now)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func summary(_ label: String, _ samples: [Duration], target: String) {
        let sorted = samples.sorted()
        func ms(_ d: Duration) -> String { String(format: "%.1f ms", seconds(d) * 1000) }
        let p50 = sorted[sorted.count / 2]
        let p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
        print(
            "\(label): runs \(sorted.count), min \(ms(sorted.first!)), p50 \(ms(p50)), p90 \(ms(p90)), max \(ms(sorted.last!))  [\(target)]"
        )
    }

    static func bootstrap(rsinit: String, runs: Int) throws {
        var samples: [Duration] = []
        var total: [Duration] = []
        for _ in 0..<runs {
            let server = try FakeMongod.start(
                FakeMongodConfiguration(
                    scenario: .uninitialized(setName: "steedos"),
                    timings: .init(
                        startup2: .milliseconds(100),
                        secondary: .milliseconds(100),
                        drain: .milliseconds(100)
                    ),
                    periodicNoopInterval: nil
                )
            )
            let start = ContinuousClock.now
            let (status, exitedAt) = spawnAndWait(
                rsinit,
                ["--host", "127.0.0.1", "--port", "\(server.port)", "--allow-localhost-member", "--quiet"]
            )
            guard status == 0, let writable = server.writablePrimarySince else {
                print("bootstrap run failed with exit \(status)")
                server.stop()
                continue
            }
            samples.append(exitedAt - writable)
            total.append(exitedAt - start)
            server.stop()
        }
        summary("bootstrap: writable primary → rsinit exit 0", samples, target: "target ≤ 100 ms")
        summary("bootstrap: whole run (incl. 300 ms of simulated STARTUP2/SECONDARY/drain)", total, target: "info")
    }

    static func coldStart(rsinit: String, runs: Int) throws {
        var samples: [Duration] = []
        for _ in 0..<runs {
            let start = ContinuousClock.now
            let (status, end) = spawnAndWait(rsinit, ["--version"])
            if status == 0 { samples.append(end - start) }
        }
        summary("cold start: rsinit --version", samples, target: "info")
    }

    /// A realistic mix (as a Meteor app writes): inserts, $v:2 updates (incl. arrays), replacements, deletes,
    /// transactions, no-ops and internal entries, with ObjectId and Random.id() string ids.
    static func realisticEntries(_ count: Int) -> [BSONDocument] {
        let uuid = BSONValue.binary(BSONBinary(subtype: 4, data: Array(repeating: 3, count: 16)))
        var result: [BSONDocument] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            let ts = BSONValue.timestamp(
                BSONTimestamp(seconds: 1_700_000_000 + UInt32(i / 1000), increment: UInt32(i % 1000 + 1))
            )
            let id: BSONValue =
                i % 2 == 0
                ? .objectID(BSONObjectID(bytes: (0..<12).map { UInt8(truncatingIfNeeded: i >> ($0 % 4 * 8)) })!)
                : .string("Yx\(i)abcdefghijklmn".prefix(17).description)
            var entry: BSONDocument = ["lsid": ["id": uuid], "txnNumber": .int64(Int64(i))]
            switch i % 10 {
            case 0, 1, 2:
                entry.append("op", "i")
                entry.append("ns", "meteor.tasks")
                entry.append("ui", uuid)
                entry.append(
                    "o",
                    [
                        "_id": id, "text": .string("task \(i)"), "createdAt": .datetime(1_700_000_000_000),
                        "owner": "Kd8sJ2kQ9mNpLx4Rt", "checked": false, "tags": ["a", "b"],
                        "meta": ["v": 1, "src": "web"],
                    ]
                )
                entry.append("o2", ["_id": id])
            case 3, 4, 5:
                entry.append("op", "u")
                entry.append("ns", "meteor.tasks")
                entry.append("ui", uuid)
                entry.append(
                    "o",
                    [
                        "$v": 2,
                        "diff": [
                            "u": ["checked": true, "updatedAt": .datetime(1)],
                            "stags": ["a": true, "u2": "c"], "smeta": ["i": ["by": "x"]],
                        ],
                    ]
                )
                entry.append("o2", ["_id": id])
            case 6:
                entry.append("op", "u")
                entry.append("ns", "meteor.users")
                entry.append("ui", uuid)
                entry.append("o", ["$v": 2, "diff": ["sservices": ["sresume": ["u": ["loginTokens": []]]]]])
                entry.append("o2", ["_id": id])
            case 7:
                entry.append("op", "d")
                entry.append("ns", "meteor.tasks")
                entry.append("ui", uuid)
                entry.append("o", ["_id": id])
            case 8:
                entry.append("op", "c")
                entry.append("ns", "admin.$cmd")
                entry.append(
                    "o",
                    [
                        "applyOps": [
                            ["op": "i", "ns": "meteor.orders", "ui": uuid, "o": ["_id": id, "total": 10]],
                            [
                                "op": "u", "ns": "meteor.stock", "ui": uuid, "o": ["$v": 2, "diff": ["u": ["n": 9]]],
                                "o2": ["_id": "sku1"],
                            ],
                        ]
                    ]
                )
            default:
                entry = ["op": "n", "ns": "", "o": ["msg": "periodic noop"]]
            }
            entry.append("ts", ts)
            entry.append("t", .int64(1))
            entry.append("v", .int64(2))
            entry.append("wall", .datetime(1_700_000_000_000 + Int64(i)))
            result.append(entry)
        }
        return result
    }

    /// Entries mapped per second on one core (the tailer's CPU cost per entry).
    /// Entries mapped per second on one core, 5 trials per mode: the best and the median (this VM's clock and
    /// neighbours move single runs by ±20 %).
    static func mapping(entries: Int) {
        let fixture = realisticEntries(100_000)
        for mode in [ChangedFieldsMode.deep, .top] {
            var rates: [Double] = []
            var produced = 0
            for _ in 0..<5 {
                var mapper = OplogEventMapper(configuration: .init(fieldsMode: mode), startPosition: nil)
                var events: [ChangeEvent] = []
                events.reserveCapacity(4096)
                var mapped = 0
                produced = 0
                let start = ContinuousClock.now
                while mapped < entries {
                    for document in fixture {
                        _ = mapper.map(document, into: &events)
                        produced += events.count
                        events.removeAll(keepingCapacity: true)
                    }
                    _ = mapper.takeUnexpressed()  // what the tailer does per batch
                    mapped += fixture.count
                }
                rates.append(Double(mapped) / seconds(ContinuousClock.now - start))
            }
            rates.sort()
            print(
                "map (\(mode.rawValue)): \(entries) realistic entries → \(produced) events, 5 trials: best \(Int(rates[4])), median \(Int(rates[2])) entries/s on one core  [target ≥ 500,000/s]"
            )
        }
    }

    /// The fuzzers, in release: random entries and update specs (odd ids included) through the mapper and the
    /// redis-oplog encoding; random double bit patterns through `Number::toString` (each read back to the same
    /// double); random and mutated BSON through the validator against libbson (`bsonCases`, 20,000,000 by default).
    /// No crash, no hang.
    static func fuzz(count: Int, bsonCases: Int) {
        var generator = SystemRandomNumberGenerator()
        var mapper = OplogEventMapper(configuration: .init(fieldsMode: .deep), startPosition: nil)
        var events: [ChangeEvent] = []
        var start = ContinuousClock.now
        var unexpressed = 0
        var encodedBytes = 0
        for index in 0..<count {
            events.removeAll(keepingCapacity: true)
            _ = mapper.map(OplogFuzzInput.random(index: index, using: &generator), into: &events)
            for event in events where event.kind != .command {
                encodedBytes += RedisOplogFormat.message(for: event).utf8.count
                encodedBytes += RedisOplogFormat.channels(for: event, prefix: "p.").count
            }
            unexpressed += mapper.takeUnexpressed().count
        }
        print(
            "fuzz: \(count) random oplog entries mapped and encoded without a crash in \(Int(seconds(ContinuousClock.now - start) * 1000)) ms (\(unexpressed) reported as unexpressed, \(encodedBytes) bytes encoded)"
        )

        start = ContinuousClock.now
        var mismatches = 0
        for _ in 0..<count {
            let value = Double(bitPattern: UInt64.random(in: .min ... .max, using: &generator))
            let text = JavaScriptNumber.string(value)
            if value.isFinite, Double(text) != value, !(value == 0 && text == "0") { mismatches += 1 }
        }
        print(
            "fuzz: \(count) random double bit patterns through Number::toString in \(Int(seconds(ContinuousClock.now - start) * 1000)) ms, \(mismatches) not reading back to the same double"
        )

        start = ContinuousClock.now
        let result = BSONDifferentialFuzz.run(
            cases: bsonCases,
            seed: UInt64.random(in: .min ... .max, using: &generator),
            libbson: LibBSONVerdict.isValid
        )
        print("fuzz: BSON validator vs libbson in \(Int(seconds(ContinuousClock.now - start) * 1000)) ms: \(result)")
        for line in result.examples { print("fuzz:   \(line)") }
    }

    /// End to end: entries/s from the double through libmongoc and the tailer into events.
    static func tail(entries: Int) async throws {
        let server = try FakeMongod.start(
            FakeMongodConfiguration(
                scenario: .primary(setName: "rs0"),
                periodicNoopInterval: nil,
                oplogCapacity: entries * 2
            )
        )
        defer { server.stop() }
        let start = server.lastOplogTimestamp
        for document in realisticEntries(entries) { server.appendOplogEntry(document.removing(["ts"])) }
        let tailer = OplogTailer(
            configuration: OplogTailerConfiguration(
                connectionString: try MongoConnectionString(server.uri),
                start: .after(start),
                batchSize: 10_000
            ),
            logger: Logger(label: "bench")
        )
        var read = 0
        var produced = 0
        let began = ContinuousClock.now
        var iterator = tailer.makeAsyncIterator()
        while read < entries, let batch = try await iterator.next() {
            read += batch.entriesRead
            produced += batch.events.count
        }
        let elapsed = seconds(ContinuousClock.now - began)
        await iterator.close()
        print(
            "tail: \(read) entries from the double through libmongoc + OplogTailer → \(produced) events in \(Int(elapsed * 1000)) ms = \(Int(Double(read) / elapsed)) entries/s end to end"
        )
    }

    /// Events/s from the double through `OplogBridge` into a real redis-server, plain and HA (no subscriber attached;
    /// `report` gives the same with a subscriber and the ceilings beside it).
    static func bridge(events: Int) async throws {
        let redis = try benchmarkRedis()
        defer { redis.stop() }
        _ = try await throughputReport(redis, events: events)
    }

    /// `bridge-plain` / `bridge-ha`: rsinit's end-to-end runs only (no ceilings, no other process in this one but
    /// the double and the subscriber), `runs` times, for profiling (scripts/profile-bridge.sh) and quick
    /// before/after comparisons of rsinit's CPU per event.
    static func bridgeOnly(events: Int, runs: Int, ha: Bool) async throws {
        let redis = try benchmarkRedis()
        defer { redis.stop() }
        let subscriber = try CountingSubscriber(port: redis.port)
        defer { subscriber.stop() }
        let control = try await RedisConnection.connect(try RedisURL(redis.url()))
        var figures: [EndToEnd] = []
        for run in 1...runs {
            _ = try await control.require(["FLUSHALL"])
            let start = subscriber.messages
            let figure = try await endToEnd(redis, events: events, ha: ha)
            let received = await subscriber.waitFor(start + 2 * events) - start
            guard received == 2 * events else {
                throw BenchError("the subscriber received \(received) of \(2 * events) messages")
            }
            figures.append(figure)
            print(
                String(
                    format:
                        "    run %d: rsinit %@ %.0f events/s; CPU/event: rsinit %.3f µs, double %.3f µs, redis %.3f µs",
                    run,
                    ha ? "HA" : "plain",
                    figure.rate,
                    figure.processCPU,
                    figure.doubleCPU,
                    figure.redisCPU
                )
            )
        }
        await control.close()
        print(
            String(
                format:
                    "rsinit %@ (%d runs of %d events): median %.0f events/s, rsinit CPU/event median %.3f µs (%.2f× the double's, the same-process reference for comparing builds on a host whose speed varies)",
                ha ? "HA" : "plain",
                runs,
                events,
                percentile(figures.map(\.rate), 0.5),
                percentile(figures.map(\.processCPU), 0.5),
                percentile(figures.map { $0.processCPU / max($0.doubleCPU, 1e-9) }, 0.5)
            )
        )
    }

    static func serve(entries: Int) async throws {
        let server = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: nil)
        )
        defer { server.stop() }
        let uuid = BSONValue.binary(BSONBinary(subtype: 4, data: Array(repeating: 7, count: 16)))
        for i in 0..<entries {
            server.appendOplogEntry([
                "op": "i", "ns": "bench.items", "ui": uuid,
                "o": [
                    "_id": .objectID(
                        BSONObjectID(bytes: (0..<12).map { UInt8(truncatingIfNeeded: i >> ($0 % 4 * 8)) })!
                    ),
                    "name": .string("item \(i)"), "n": .int32(Int32(i)), "tags": ["a", "b"],
                ],
            ])
        }
        let client = try MongoClient(uri: server.uri, logger: Logger(label: "bench"))
        let cursor = try await client.find(
            database: "local",
            collection: "oplog.rs",
            filter: ["ns": "bench.items"],
            options: ["tailable": true, "awaitData": true, "maxAwaitTimeMS": 200, "batchSize": 10_000]
        )
        let start = ContinuousClock.now
        var count = 0
        while count < entries, let _ = try await cursor.next() { count += 1 }
        let elapsed = ContinuousClock.now - start
        await cursor.close()
        // The same through raw find/getMore commands: one hop per batch (what a batch-oriented tailer does).
        let batchStart = ContinuousClock.now
        var batched = 0
        var reply = try await client.runCommand(
            [
                "find": "oplog.rs", "filter": ["ns": "bench.items"], "tailable": true, "awaitData": true,
                "batchSize": 10_000,
            ],
            database: "local"
        )
        var cursorID = reply[path: "cursor.id"]?.int64Value ?? 0
        batched += reply[path: "cursor.firstBatch"]?.arrayValue?.count ?? 0
        while batched < entries && cursorID != 0 {
            reply = try await client.runCommand(
                ["getMore": .int64(cursorID), "collection": "oplog.rs", "batchSize": 10_000, "maxTimeMS": 200],
                database: "local"
            )
            cursorID = reply[path: "cursor.id"]?.int64Value ?? 0
            batched += reply[path: "cursor.nextBatch"]?.arrayValue?.count ?? 0
        }
        let batchElapsed = ContinuousClock.now - batchStart
        print(
            "serve: \(batched) oplog entries through raw find/getMore (batches of 10,000) in \(Int(seconds(batchElapsed) * 1000)) ms = \(Int(Double(batched) / seconds(batchElapsed))) entries/s"
        )
        await client.close()
        let rate = Double(count) / seconds(elapsed)
        print(
            "serve: \(count) oplog entries to a tailing libmongoc cursor (MongoClient.next per entry) in \(Int(seconds(elapsed) * 1000)) ms = \(Int(rate)) entries/s"
        )
    }
}
