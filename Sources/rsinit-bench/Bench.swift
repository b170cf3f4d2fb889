import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils

#if canImport(Glibc)
import Glibc
#endif

/// Benchmarks, printed as a table (never timed unit tests):
///   bootstrap  time from the double becoming a writable primary to `rsinit` exiting 0 (target ≤ 100 ms)
///   coldstart  wall time of `rsinit --version` (binary start-up)
///   serve      oplog entries per second the double serves to a tailing libmongoc cursor
/// Usage: rsinit-bench [--rsinit PATH] [--runs N] [--entries N] [bootstrap|coldstart|serve ...]
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
        while !arguments.isEmpty {
            let argument = arguments.removeFirst()
            switch argument {
            case "--rsinit": rsinit = arguments.removeFirst()
            case "--runs": runs = Int(arguments.removeFirst()) ?? runs
            case "--entries": entries = Int(arguments.removeFirst()) ?? entries
            default: selected.append(argument)
            }
        }
        if selected.isEmpty { selected = ["bootstrap", "coldstart", "serve"] }
        print(
            "rsinit-bench on \(ProcessInfo.processInfo.activeProcessorCount) cores, libmongoc \(MongoRuntime.libmongocVersion)"
        )
        for name in selected {
            switch name {
            case "bootstrap": try bootstrap(rsinit: rsinit, runs: runs)
            case "coldstart": try coldStart(rsinit: rsinit, runs: runs)
            case "serve": try await serve(entries: entries)
            default: print("unknown benchmark \(name)")
            }
        }
    }

    /// Spawns a process and returns its exit status and the instant `waitpid` saw it exit.
    static func spawnAndWait(_ path: String, _ arguments: [String]) -> (Int32, ContinuousClock.Instant) {
        var pid: pid_t = 0
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        defer { posix_spawn_file_actions_destroy(&actions) }
        guard posix_spawn(&pid, path, &actions, nil, argv, environ) == 0 else { return (-1, .now) }
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
