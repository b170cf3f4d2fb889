import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `rsinit-bench report`: the bridge benchmark of issue 6, side by side in one run on this machine.
///   (a) ceilings: `redis-benchmark -P 64 PUBLISH` and the HA dedupe script on pre-encoded batches, subscriber attached
///   (b) rsinit end to end (double → libmongoc → mapper → Redis), plain and HA, subscriber attached, as ratios of (a)
///   (c) a straightforward Python bridge (pymongo + redis-py) on the same double
///   (d) write → subscriber latency at 5,000 events/s
///   (e) peak RSS of the `rsinit tail` process, steady and during a 30 s Redis outage
///   (f) rsinit through a Sentinel-discovered master and through a Cluster against a direct URL; the cost of WAIT
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Bench {
    static let reportLogger = Logger(label: "bench.report")
    static let payload = #"{"e":"i","d":{"_id":"id12345"},"f":["_id","hello"]}"#

    /// The report's Redis: a pub/sub client is never dropped for a full output buffer, so a subscriber that falls
    /// behind during a pipelined burst stays attached (and its backlog costs Redis, as it would in production).
    static func benchmarkRedis() throws -> RedisServerProcess {
        try RedisServerProcess(["--client-output-buffer-limit", "pubsub", "0", "0", "0"])
    }

    static func bridgeReport(rsinit: String, python: String?) async throws {
        let redis = try benchmarkRedis()
        defer { redis.stop() }
        let rates = try await throughputReport(redis)
        try await topologyReport()

        // (c) Python
        if let python {
            let pythonRate = try await pythonBridge(python: python, redis: redis, events: 30_000)
            print(
                String(
                    format:
                        "(c) Python bridge (pymongo + redis-py): %.0f events/s; rsinit plain = %.1f× it (target ≥ 10×)",
                    pythonRate,
                    (rates[false] ?? 0) / pythonRate
                )
            )
        } else {
            print(
                "(c) Python bridge: skipped (pass --python <venv python with pymongo and redis>; scripts/bench.sh does)"
            )
        }

        // (d) latency at 5,000 events/s
        let latencies = try await latency(redis, perSecond: 5000, seconds: 10)
        print(
            String(
                format:
                    "(d) write → subscriber latency at 5,000 events/s (%d samples): p50 %.2f ms, p99 %.2f ms, max %.2f ms (targets ≤ 1 / ≤ 5 ms)",
                latencies.count,
                percentile(latencies, 0.5),
                percentile(latencies, 0.99),
                latencies.max() ?? 0
            )
        )

        try await changeStreamReport(redis)
        try await memoryReport(rsinit: rsinit)
    }

    /// (f) The change-stream source against the oplog source in the same run (rounds back to back, the ratio of
    /// each round; target ≥ 0.5), then its latency at 5,000 events/s. Alone: `rsinit-bench changestream`.
    static func changeStreamReport(_ redis: RedisServerProcess, events: Int = 50_000, rounds: Int = 3) async throws {
        let subscriber = try CountingSubscriber(port: redis.port)
        defer { subscriber.stop() }
        try await Task.sleep(for: .milliseconds(300))
        func run(_ source: OplogBridge.Source) async throws -> EndToEnd {
            let start = subscriber.messages
            let result = try await endToEnd(redis, events: events, ha: false, source: source)
            let received = await subscriber.waitFor(start + 2 * events) - start
            guard received == 2 * events, !subscriber.disconnected else {
                throw BenchError("the subscriber received \(received) of \(2 * events) messages (\(source))")
            }
            return result
        }
        var ratios: [Double] = []
        var streamRates: [Double] = []
        for round in 1...rounds {
            let oplog = try await run(.oplog)
            let stream = try await run(.changeStream(scope: .cluster, fullDocument: false))
            ratios.append(stream.rate / oplog.rate)
            streamRates.append(stream.rate)
            print(
                String(
                    format:
                        "    round %d: oplog %.0f events/s (CPU/event rsinit %.2f µs, double %.2f µs), change stream %.0f (rsinit %.2f µs, double %.2f µs serving + %.2f µs building events before the window): %.2f",
                    round,
                    oplog.rate,
                    oplog.processCPU,
                    oplog.doubleCPU,
                    stream.rate,
                    stream.processCPU,
                    stream.doubleCPU,
                    stream.eventProduction,
                    stream.rate / oplog.rate
                )
            )
        }
        print(
            String(
                format:
                    "(f) change-stream source: median %.0f events/s, %.2f of the oplog source's in the same rounds (rounds %@) (target ≥ 0.5)",
                percentile(streamRates, 0.5),
                percentile(ratios, 0.5),
                ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")
            )
        )
        let latencies = try await latency(
            redis,
            perSecond: 5000,
            seconds: 10,
            source: .changeStream(scope: .cluster, fullDocument: false)
        )
        print(
            String(
                format:
                    "(f) change stream write → subscriber latency at 5,000 events/s (%d samples): p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                latencies.count,
                percentile(latencies, 0.5),
                percentile(latencies, 0.99),
                latencies.max() ?? 0
            )
        )
    }

    /// (a) and (b) with a subscriber attached (``CountingSubscriber``, checked to receive every message of every
    /// phase); alone: `rsinit-bench bridge`.
    ///
    /// This VM's speed drifts by ±25 % within a minute, so a ceiling and the run it is compared with are measured
    /// back to back, in `rounds` rounds on a flushed Redis; the ratio reported is the median of the rounds' ratios.
    /// Returns rsinit's median events/s keyed by HA mode.
    static func throughputReport(
        _ redis: RedisServerProcess,
        events: Int = 200_000,
        rounds: Int = 5
    ) async throws -> [Bool: Double] {
        let subscriber = try CountingSubscriber(port: redis.port)
        defer { subscriber.stop() }
        try await Task.sleep(for: .milliseconds(300))
        /// Runs a phase that publishes `messages` messages; all must reach the subscriber, or the figure was taken
        /// without one.
        func phase<T>(_ name: String, messages: Int, _ body: () async throws -> T) async throws -> T {
            let start = subscriber.messages
            let result = try await body()
            let received = await subscriber.waitFor(start + messages) - start
            guard received == messages, !subscriber.disconnected else {
                throw BenchError("the subscriber received \(received) of \(messages) messages in \(name)")
            }
            return result
        }
        let control = try await RedisConnection.connect(try RedisURL(redis.url()))
        defer { Task { await control.close() } }

        var publishCeilings: [Double] = []
        var scriptCeilings: [Double] = []
        var runs: [Bool: [EndToEnd]] = [false: [], true: []]
        for round in 1...rounds {
            _ = try await control.require(["FLUSHALL"])
            publishCeilings.append(
                try await phase("the PUBLISH ceiling", messages: publishCount) {
                    try redisBenchmarkPublish(port: redis.port) / 2  // two channels per event
                }
            )
            runs[false]!.append(
                try await phase("rsinit plain", messages: 2 * events) {
                    try await endToEnd(redis, events: events, ha: false)
                }
            )
            scriptCeilings.append(
                try await phase("the script ceiling", messages: 2 * events) {
                    try await dedupeScriptCeiling(redis, events: events)
                }
            )
            runs[true]!.append(
                try await phase("rsinit HA", messages: 2 * events) {
                    try await endToEnd(redis, events: events, ha: true)
                }
            )
            let plain = runs[false]!.last!
            let ha = runs[true]!.last!
            print(
                String(
                    format:
                        "    round %d: PUBLISH ceiling %.0f events/s, rsinit plain %.0f (%.2f; CPU/event: rsinit %.2f µs, double %.2f µs, redis %.2f µs)",
                    round,
                    publishCeilings.last!,
                    plain.rate,
                    plain.rate / publishCeilings.last!,
                    plain.processCPU,
                    plain.doubleCPU,
                    plain.redisCPU
                )
            )
            print(
                String(
                    format:
                        "             script ceiling %.0f events/s, rsinit HA %.0f (%.2f; CPU/event: rsinit %.2f µs, double %.2f µs, redis %.2f µs)",
                    scriptCeilings.last!,
                    ha.rate,
                    ha.rate / scriptCeilings.last!,
                    ha.processCPU,
                    ha.doubleCPU,
                    ha.redisCPU
                )
            )
        }
        let median = { (values: [Double]) in percentile(values, 0.5) }
        print(
            String(
                format:
                    "(a) ceiling PUBLISH (redis-benchmark -P 64, 2 PUBLISH per event): median %.0f events/s (%.0f PUBLISH/s)",
                median(publishCeilings),
                median(publishCeilings) * 2
            )
        )
        print(
            String(
                format:
                    "(a) ceiling HA dedupe script (rsinit's own script calls, pre-encoded, pipelined): median %.0f events/s",
                median(scriptCeilings)
            )
        )
        var rates: [Bool: Double] = [:]
        for ha in [false, true] {
            let ceilings = ha ? scriptCeilings : publishCeilings
            let ratios = zip(runs[ha]!, ceilings).map { $0.rate / $1 }
            rates[ha] = median(runs[ha]!.map(\.rate))
            print(
                String(
                    format:
                        "(b) rsinit %@: median %.0f events/s; ratio to the ceiling: median %.2f (rounds %@) (target ≥ 0.6)",
                    ha ? "HA   " : "plain",
                    rates[ha]!,
                    median(ratios),
                    ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")
                )
            )
            // The double serves the same entries in every round: its CPU per event moves with the host's speed
            // only, so rsinit's relative to it compares builds and sessions on a host whose speed varies.
            let figures = runs[ha]!
            print(
                String(
                    format:
                        "    rsinit CPU/event %@: median %.2f µs%@; %.2f× the double's (median %.3f µs) in the same rounds",
                    ha ? "HA   " : "plain",
                    median(figures.map(\.processCPU)),
                    ha ? "" : " (target ≤ 2.0)",
                    median(figures.map { $0.processCPU / max($0.doubleCPU, 1e-9) }),
                    median(figures.map(\.doubleCPU))
                )
            )
        }
        return rates
    }

    /// (e) alone: `rsinit-bench memory`.
    static func memoryReport(rsinit: String) async throws {
        let memory = try await residentMemory(rsinit: rsinit, perSecond: 5000, steady: 10, outage: 30)
        print(
            String(
                format:
                    "(e) rsinit tail peak RSS: steady %.1f MB (%.1f MB anonymous), during a 30 s Redis outage %.1f MB (%.1f MB anonymous), catching up after it %.1f MB (%.1f MB anonymous); %d events held in the oplog, all delivered after: %@ (target ≤ 30 MB, bounded)",
                memory.steady.total,
                memory.steady.anonymous,
                memory.outage.total,
                memory.outage.anonymous,
                memory.catchUp.total,
                memory.catchUp.anonymous,
                memory.heldEvents,
                memory.delivered ? "yes" : "NO"
            )
        )
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    /// Runs a command through /bin/sh, returning its stdout.
    static func capture(_ command: String) throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).out")
        guard let pid = spawnQuietly("/bin/sh", ["-c", "\(command) > \(output.path) 2>&1"]) else {
            throw BenchError("cannot run \(command)")
        }
        waitpid(pid, nil, 0)
        defer { try? FileManager.default.removeItem(at: output) }
        return (try? String(contentsOf: output, encoding: .utf8)) ?? ""
    }

    /// PUBLISHes in one redis-benchmark run.
    static let publishCount = 2_000_000

    static func redisBenchmarkPublish(port: UInt16) throws -> Double {
        let text = try capture(
            "redis-benchmark -p \(port) -P 64 -n \(publishCount) -q PUBLISH tests.Foo '\(payload)'"
        )
        guard let range = text.range(of: #"[0-9.]+ requests per second"#, options: .regularExpression),
            let value = Double(text[range].split(separator: " ")[0])
        else { throw BenchError("unexpected redis-benchmark output: \(text)") }
        return value
    }

    /// The HA script's own cost in Redis: rsinit's script calls for batches of 1,000 events (as the bridge reads
    /// them), encoded beforehand, each batch pipelined and timed until its last reply.
    static func dedupeScriptCeiling(_ redis: RedisServerProcess, events: Int) async throws -> Double {
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        _ = try await connection.command(["SCRIPT", "LOAD", RedisEventPublisher.deduplicationScript])
        let encoder = RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url()), metadataPrefix: "bench::", highAvailability: true),
            logger: reportLogger
        )
        let batches = stride(from: 0, to: events, by: 1000).map { start in
            let batchEvents = (start..<min(start + 1000, events)).map { i in
                ChangeEvent(
                    kind: .insert,
                    namespace: Namespace("tests.Foo"),
                    documentID: .string("id\(i)"),
                    changedFields: ["_id", "hello"],
                    timestamp: BSONTimestamp(seconds: 1 + UInt32(i / 1000), increment: UInt32(i % 1000))
                )
            }
            return encoder.encodedScriptCalls(
                OplogBatch(
                    events: batchEvents,
                    resumePosition: batchEvents.last?.timestamp,
                    lastRead: batchEvents.last?.timestamp,
                    entriesRead: batchEvents.count
                )
            )
        }
        let started = ContinuousClock.now
        for batch in batches { _ = try await connection.send(encoded: batch.encoded, replies: batch.replies) }
        let elapsed = seconds(ContinuousClock.now - started)
        await connection.close()
        return Double(events) / elapsed
    }

    /// A primary double whose oplog holds `events` inserts into tests.Foo after the returned position.
    static func doubleWithInserts(_ events: Int) throws -> (FakeMongod, BSONTimestamp) {
        let server = try FakeMongod.start(
            FakeMongodConfiguration(
                scenario: .primary(setName: "rs0"),
                periodicNoopInterval: nil,
                oplogCapacity: events * 2
            )
        )
        let start = server.lastOplogTimestamp
        for i in 0..<events {
            server.appendOplogEntry(["op": "i", "ns": "tests.Foo", "o": ["_id": .string("id\(i)"), "hello": "world"]])
        }
        return (server, start)
    }

    struct EndToEnd {
        /// Events per second.
        var rate: Double
        /// CPU microseconds per event: rsinit (this process without the double and the subscriber), the double
        /// serving the oplog (its threads in this process), and redis-server.
        var processCPU: Double
        var doubleCPU: Double
        var redisCPU: Double
        /// Change-stream source only: the double's time per event to build its change events, before the window.
        var eventProduction: Double = 0
    }

    static func endToEnd(
        _ redis: RedisServerProcess,
        events: Int,
        ha: Bool,
        source: OplogBridge.Source = .oplog
    ) async throws -> EndToEnd {
        let (server, start) = try doubleWithInserts(events)
        defer { server.stop() }
        // The double builds change events (KeyString token, hex, event document) before the measured window, as a
        // server would have them ready to serve; what that costs the double is reported apart.
        var eventProduction = 0.0
        if case .changeStream = source {
            let began = ContinuousClock.now
            let built = server.prepareChangeEvents()
            eventProduction = seconds(ContinuousClock.now - began) / Double(max(built, 1)) * 1e6
        }
        let publisher = RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url()), metadataPrefix: "bench\(ha)::", highAvailability: ha),
            logger: reportLogger
        )
        var configuration = OplogBridge.Configuration(
            tailer: OplogTailerConfiguration(
                connectionString: try MongoConnectionString(server.uri),
                batchSize: 1000
            ),
            start: .at(BSONTimestamp(rawValue: start.rawValue + 1))
        )
        configuration.source = source
        let bridge = OplogBridge(configuration: configuration, publisher: publisher, logger: reportLogger)
        // For profiling: RSINIT_BENCH_PAUSE=false (plain) or =true (HA) waits 2 s before that run is measured, so
        // `perf record -p <pid>` can attach to exactly it.
        if let pause = ProcessInfo.processInfo.environment["RSINIT_BENCH_PAUSE"], let wanted = Bool(pause), wanted == ha
        {
            FileHandle.standardError.write(Data("measuring \(ha ? "HA" : "plain") in 2 s\n".utf8))
            try await Task.sleep(for: .seconds(2))
        }
        let cpuBefore = (
            own: cpuSeconds(getpid()),
            double: threadCPU(named: doubleThreadName),
            subscriber: threadCPU(named: CountingSubscriber.threadName),
            redis: cpuSeconds(redis.processID)
        )
        let began = ContinuousClock.now
        let running = Task { try await bridge.run() }
        while bridge.statistics.events < events { try await Task.sleep(for: .milliseconds(2)) }
        let elapsed = seconds(ContinuousClock.now - began)
        let doubleCPU = cpuSince(cpuBefore.double, named: doubleThreadName)
        let subscriberCPU = cpuSince(cpuBefore.subscriber, named: CountingSubscriber.threadName)
        let own = cpuSeconds(getpid()) - cpuBefore.own - doubleCPU - subscriberCPU
        let redisCPU = cpuSeconds(redis.processID) - cpuBefore.redis
        bridge.stop()
        try await running.value
        await publisher.close()
        return EndToEnd(
            rate: Double(events) / elapsed,
            processCPU: own / Double(events) * 1e6,
            doubleCPU: doubleCPU / Double(events) * 1e6,
            redisCPU: redisCPU / Double(events) * 1e6,
            eventProduction: eventProduction
        )
    }

    /// The double's connection threads are named so.
    static let doubleThreadName = "mongod-double"

    /// CPU seconds so far of each of this process's threads (by id) whose name starts with `name`
    /// (/proc/self/task/*/comm).
    static func threadCPU(named name: String) -> [String: Double] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var seconds: [String: Double] = [:]
        for task in tasks {
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            if comm.hasPrefix(name) { seconds[task] = threadCPUSeconds(task: task) }
        }
        return seconds
    }

    /// CPU seconds the threads named `name` used since `before`, thread by thread: a thread that ended meanwhile
    /// (the previous run's double serving its last connection) must not subtract its whole past from this run,
    /// which is what a difference of two totals did (the "double 0.00 µs" rounds, whose double CPU was then
    /// counted as rsinit's).
    static func cpuSince(_ before: [String: Double], named name: String) -> Double {
        threadCPU(named: name).reduce(0) { total, thread in total + thread.value - (before[thread.key] ?? 0) }
    }

    /// CPU seconds a process has used so far (all its threads, ended ones too), from its CPU-time clock (in
    /// nanoseconds); /proc/<pid>/stat counts in clock ticks (10 ms: a 200,000-event run of the double, ~0.1 s, is
    /// then ±10 %, which hid differences between builds).
    static func cpuSeconds(_ pid: pid_t) -> Double {
        var clock = clockid_t()
        var time = timespec()
        guard clock_getcpuclockid(pid, &clock) == 0, clock_gettime(clock, &time) == 0 else {
            return cpuSeconds(path: "/proc/\(pid)/stat")
        }
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// CPU seconds a thread of this process has used so far: the run time in nanoseconds of its schedstat (the
    /// same count as the process clock), else its stat's clock ticks.
    static func threadCPUSeconds(task: String) -> Double {
        if let text = try? String(contentsOfFile: "/proc/self/task/\(task)/schedstat", encoding: .utf8),
            let first = text.split(separator: " ").first, let nanoseconds = Double(first)
        {
            return nanoseconds / 1e9
        }
        return cpuSeconds(path: "/proc/self/task/\(task)/stat")
    }

    static func cpuSeconds(path: String) -> Double {
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
            let afterName = stat.range(of: ") ")
        else { return 0 }
        // Fields after the command name start at field 3 (state); utime and stime are fields 14 and 15.
        let fields = stat[afterName.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func pythonBridge(python: String, redis: RedisServerProcess, events: Int) async throws -> Double {
        let (server, last) = try doubleWithInserts(events)
        defer { server.stop() }
        let start = BSONTimestamp(rawValue: last.rawValue + 1)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/bench/python_bridge.py").path
        let output = try await onDedicatedThread {
            try capture(
                "\(python) \(script) 'mongodb://127.0.0.1:\(server.port)/?directConnection=true' '\(redis.url())' \(start.seconds) \(start.increment) \(events)"
            )
        }
        let parts = output.split(whereSeparator: \.isWhitespace)
        guard parts.count >= 2, let count = Double(parts[parts.count - 2]), let elapsed = Double(parts[parts.count - 1])
        else { throw BenchError("python bridge failed: \(output)") }
        return count / elapsed
    }

    /// Writes at a steady rate through the double's oplog, measures until each event reaches a subscriber.
    static func latency(
        _ redis: RedisServerProcess,
        perSecond: Int,
        seconds duration: Int,
        source: OplogBridge.Source = .oplog
    ) async throws -> [Double] {
        let server = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: nil)
        )
        defer { server.stop() }
        let publisher = RedisEventPublisher(
            configuration: .init(url: try RedisURL(redis.url()), metadataPrefix: "latency::"),
            logger: reportLogger
        )
        var configuration = OplogBridge.Configuration(
            tailer: OplogTailerConfiguration(connectionString: try MongoConnectionString(server.uri)),
            start: .at(BSONTimestamp(rawValue: server.lastOplogTimestamp.rawValue + 1))
        )
        configuration.source = source
        let bridge = OplogBridge(configuration: configuration, publisher: publisher, logger: reportLogger)
        let running = Task { try await bridge.run() }
        let samples = try await pacedLatency(
            redis,
            channel: "latency.Foo",
            perSecond: perSecond,
            seconds: duration,
            warmUp: .milliseconds(500)
        ) { i in _ = server.appendOplogEntry(["op": "i", "ns": "latency.Foo", "o": ["_id": .string("lat\(i)")]]) }
        bridge.stop()
        try await running.value
        await publisher.close()
        return samples
    }

    struct Resident {
        /// All resident pages, shared library code included.
        var total = 0.0
        /// Private anonymous memory: heap, stacks, buffers (what grows with load).
        var anonymous = 0.0

        mutating func peak(_ other: Resident) {
            total = max(total, other.total)
            anonymous = max(anonymous, other.anonymous)
        }
    }

    struct MemoryFigures {
        var steady: Resident
        var outage: Resident
        var catchUp = Resident()
        var heldEvents: Int
        var delivered: Bool
    }

    /// RSS and its anonymous part (MB) of a process, from /proc.
    static func residentMegabytes(_ pid: pid_t) -> Resident? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Double? {
            status.split(separator: "\n").first { $0.hasPrefix(name) }
                .flatMap { Double($0.split(whereSeparator: \.isWhitespace)[1]) }.map { $0 / 1024 }
        }
        guard let total = field("VmRSS:"), let anonymous = field("RssAnon:") else { return nil }
        return Resident(total: total, anonymous: anonymous)
    }

    static func residentMemory(rsinit: String, perSecond: Int, steady: Int, outage: Int) async throws -> MemoryFigures {
        let server = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: nil)
        )
        defer { server.stop() }
        let redis = try RedisServerProcess()
        defer { redis.stop() }
        let from = BSONTimestamp(rawValue: server.lastOplogTimestamp.rawValue + 1)
        guard
            let pid = spawnQuietly(
                rsinit,
                [
                    "tail", "--host", "127.0.0.1", "--port", "\(server.port)", "--redis", redis.url(), "--from",
                    "\(from.seconds).\(from.increment)",
                ]
            )
        else { throw BenchError("cannot start \(rsinit)") }
        defer {
            kill(pid, SIGTERM)
            waitpid(pid, nil, 0)
        }
        var peakSteady = Resident()
        var peakOutage = Resident()
        var peakCatchUp = Resident()
        var written = 0
        func write(for seconds: Int, sample: (Resident) -> Void) async throws {
            let began = ContinuousClock.now
            for step in 0..<(seconds * 100) {
                try await Task.sleep(until: began + .milliseconds(10 * (step + 1)), tolerance: .milliseconds(1))
                for _ in 0..<(perSecond / 100) {
                    server.appendOplogEntry([
                        "op": "i", "ns": "rss.Foo", "o": ["_id": .string("m\(written)"), "v": "x"],
                    ])
                    written += 1
                }
                if step % 10 == 0, let megabytes = residentMegabytes(pid) { sample(megabytes) }
            }
        }
        try await write(for: steady) { peakSteady.peak($0) }
        redis.stop()
        let before = written
        try await write(for: outage) { peakOutage.peak($0) }
        let held = written - before
        try redis.start()
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        let deadline = ContinuousClock.now + .seconds(60)
        var delivered = false
        while ContinuousClock.now < deadline {
            let value = try await connection.command(["GET", "rsinit::checkpoint"]).string.flatMap(
                CheckpointEncoding.decode
            )
            if value == server.lastOplogTimestamp {
                delivered = true
                break
            }
            if let megabytes = residentMegabytes(pid) { peakCatchUp.peak(megabytes) }
            try await Task.sleep(for: .milliseconds(100))
        }
        await connection.close()
        return MemoryFigures(
            steady: peakSteady,
            outage: peakOutage,
            catchUp: peakCatchUp,
            heldEvents: held,
            delivered: delivered
        )
    }
}
