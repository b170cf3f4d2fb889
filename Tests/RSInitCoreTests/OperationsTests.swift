import BSON
import Foundation
import Logging
import MetricsTestKit
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import RedisClient
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@Suite struct BridgeHealthTests {
    let start = ContinuousClock.now
    let policy = BridgeHealth.Policy(stallTimeout: .seconds(30), maximumLag: .seconds(60))

    @Test func startUpCountsAsProgressUntilTheStallTimeout() {
        let health = BridgeHealth(policy: policy, startedAt: start)
        #expect(health.verdict(at: start + .seconds(29)) == .healthy)
        #expect(health.verdict(at: start + .seconds(31)) == .stalled(secondsSinceProgress: 31))
    }

    @Test func heartbeatsAndDeliveriesAreProgress() {
        var health = BridgeHealth(policy: policy, startedAt: start)
        health.caughtUp(at: start + .seconds(25))
        #expect(health.verdict(at: start + .seconds(50)) == .healthy)
        health.delivered(at: start + .seconds(50), lagSeconds: 0.25, position: "1700000000.3")
        #expect(health.verdict(at: start + .seconds(79)) == .healthy)
        let (healthy, json) = health.report(at: start + .seconds(51))
        #expect(healthy)
        #expect(json == #"{"status":"ok","lagSeconds":0.250,"secondsSinceProgress":1.000,"position":"1700000000.3"}"#)
    }

    @Test func lagBeyondTheLimitFailsEvenWhileBatchesFlow() {
        var health = BridgeHealth(policy: policy, startedAt: start)
        health.delivered(at: start + .seconds(1), lagSeconds: 90.5, position: nil)
        #expect(health.verdict(at: start + .seconds(2)) == .lagging(seconds: 90.5))
        let (healthy, json) = health.report(at: start + .seconds(2))
        #expect(!healthy)
        #expect(json.hasPrefix(#"{"status":"unhealthy","reason":"lagging 90.500 s behind the oplog (limit 60.000 s)""#))
        // Caught up again (an idle heartbeat): healthy.
        health.caughtUp(at: start + .seconds(3))
        #expect(health.verdict(at: start + .seconds(3)) == .healthy)
    }

    @Test func negativeLagFromClockSkewIsZeroAndStoppedIsUnhealthy() {
        var health = BridgeHealth(policy: policy, startedAt: start)
        health.delivered(at: start, lagSeconds: -0.004, position: nil)
        #expect(health.lagSeconds == 0)
        health.stopped(reason: "oplog \"history\" lost")
        let (healthy, json) = health.report(at: start)
        #expect(!healthy)
        #expect(json.contains(#""reason":"stopped: oplog \"history\" lost""#))
    }
}

@Suite struct FanOutRuleTests {
    func event(_ ns: String, id: BSONValue? = .string("a1")) -> ChangeEvent {
        ChangeEvent(
            kind: .update,
            namespace: Namespace(ns),
            documentID: id,
            changedFields: ["x"],
            timestamp: BSONTimestamp(seconds: 1, increment: 1)
        )
    }

    @Test func namespaceAndChannelTargetsMatchRedisOplogChannelNames() throws {
        let rules = try ["app.tasks=namespace:company", "app=channel:everything", "other.*=channel:x"].map(
            FanOutRule.init
        )
        #expect(
            RedisOplogFormat.channels(for: event("app.tasks"), prefix: "", fanOut: rules) == [
                "app.tasks", "app.tasks::a1", "app.company::tasks", "app.everything",
            ]
        )
        #expect(
            RedisOplogFormat.channels(for: event("app.users"), prefix: "p:", fanOut: rules) == [
                "p:app.users", "p:app.users::a1", "p:app.everything",
            ]
        )
        #expect(RedisOplogFormat.channels(for: event("db.c", id: nil), prefix: "", fanOut: rules) == ["db.c"])
        // Two rules naming the same channel publish it once.
        let twice = try ["app.*=channel:all", "app=channel:all"].map(FanOutRule.init)
        #expect(RedisOplogFormat.channels(for: event("app.t"), prefix: "", fanOut: twice).count == 3)
    }

    @Test func malformedRulesAreRejectedWithTheSyntax() throws {
        for text in ["app.tasks", "=namespace:x", "app=namespace:", "app=topic:x", "app=namespace"] {
            #expect(throws: FanOutRuleError.self) { try FanOutRule(text) }
        }
        #expect(try FanOutRule("a.b=namespace:c").description == "a.b=namespace:c")
        do { _ = try FanOutRule("x") } catch { #expect(error.description.contains("=namespace:<name>")) }
    }
}

@Suite struct OperationsHTTPServerTests {
    @Test func servesRoutesAndStopsOnGracefulShutdown() async throws {
        try await testGracefulShutdown { trigger in
            let bound = Mutex<Int?>(nil)
            let server = OperationsHTTPServer(
                host: "127.0.0.1",
                port: 0,
                logger: Logger(label: "test.http"),
                onBound: { port in bound.withLock { $0 = port } }
            ) { path in
                path == "/healthz"
                    ? .init(status: 503, contentType: "application/json", body: "{\"status\":\"x\"}") : nil
            }
            async let running: Void = server.run()
            _ = await eventually(every: .milliseconds(5)) { bound.withLock { $0 } != nil }
            let port = try #require(bound.withLock { $0 })
            let health = try await onDedicatedThread { try HTTPProbe.request(port: port, path: "/healthz?verbose=1") }
            #expect(health.status == 503)
            #expect(health.body == "{\"status\":\"x\"}")
            #expect(health.headers["content-type"] == "application/json")
            #expect(health.headers["content-length"] == "14")
            let head = try await onDedicatedThread {
                try HTTPProbe.request(port: port, path: "/healthz", method: "HEAD")
            }
            #expect(head.status == 503 && head.body.isEmpty)
            let missing = try await onDedicatedThread { try HTTPProbe.request(port: port, path: "/nope") }
            #expect(missing.status == 404)
            let post = try await onDedicatedThread {
                try HTTPProbe.request(port: port, path: "/healthz", method: "POST")
            }
            #expect(post.status == 405)
            trigger.triggerGracefulShutdown()
            try await running
            #expect(throws: (any Error).self) { try HTTPProbe.request(port: port, path: "/healthz") }
        }
    }

    @Test func aPortInUseIsABindError() async throws {
        let bound = Mutex<Int?>(nil)
        let first = OperationsHTTPServer(
            host: "127.0.0.1",
            port: 0,
            logger: Logger(label: "test.http"),
            onBound: { port in bound.withLock { $0 = port } },
            router: { _ in nil }
        )
        let running = Task { try await first.run() }
        _ = await eventually(every: .milliseconds(5)) { bound.withLock { $0 } != nil }
        let second = OperationsHTTPServer(
            host: "127.0.0.1",
            port: try #require(bound.withLock { $0 }),
            logger: Logger(label: "test.http")
        ) { _ in nil }
        await #expect(throws: OperationsHTTPServer.BindError.self) { try await second.run() }
        running.cancel()
        try await running.value
    }
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct BridgeOperationsTests {
    @Test func metricsHealthAndGracefulShutdownOfARunningBridge() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let metrics = TestMetrics()
        let publisher = RedisEventPublisher(configuration: .init(url: try RedisURL(redis.url())), logger: bridgeLogger)
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(mongo.uri),
                    maxAwaitTime: .milliseconds(200)
                ),
                start: .at(from),
                retryBackoff: Backoff(initial: .milliseconds(100), maximum: .milliseconds(200)),
                health: .init(stallTimeout: .milliseconds(1500), maximumLag: .seconds(60))
            ),
            publisher: publisher,
            logger: bridgeLogger,
            metrics: BridgeMetrics(factory: metrics)
        )
        try await testGracefulShutdown { trigger in
            async let running: Void = bridge.run()
            try await insertDocuments(mongo, 0..<3)
            let deadline = ContinuousClock.now + .seconds(15)
            while (try? await checkpoint(redis)) != mongo.lastOplogTimestamp, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let inserts = try metrics.expectCounter(
                BridgeMetrics.Name.events,
                [("namespace", "tests.Foo"), ("op", "insert")]
            )
            #expect(inserts.totalValue == 3)
            #expect(try metrics.expectCounter(BridgeMetrics.Name.oplogEntries).totalValue >= 4)  // + create
            #expect(try metrics.expectCounter(BridgeMetrics.Name.publishBatches).totalValue >= 1)
            #expect(try metrics.expectTimer(BridgeMetrics.Name.publishDuration).values.count >= 1)
            #expect(bridge.healthReport().healthy)

            // Redis down while events wait: no progress → /healthz fails once the stall timeout passes.
            redis.stop()
            try await insertDocuments(mongo, 3..<4)
            // Until the stall timeout (1.5 s) has passed without progress: polled, with a deadline.
            _ = await eventually(within: .seconds(20), every: .milliseconds(50)) { !bridge.healthReport().healthy }
            let (healthy, json) = bridge.healthReport()
            #expect(!healthy)
            #expect(json.contains("stalled"), "\(json)")
            #expect(try metrics.expectCounter(BridgeMetrics.Name.retries).totalValue > 0)

            try await redis.restart()
            let recovered = ContinuousClock.now + .seconds(15)
            while !bridge.healthReport().healthy, ContinuousClock.now < recovered {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(bridge.healthReport().healthy)
            #expect(inserts.totalValue == 4)

            trigger.triggerGracefulShutdown()
            try await running
        }
        #expect(try await checkpoint(redis) == mongo.lastOplogTimestamp)
        #expect(bridge.healthReport().json.contains("stopped: shutting down"))
        await publisher.close()
    }

    @Test func historyLostIsCountedAndReported() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let stale = mongo.lastOplogTimestamp
        try await insertDocuments(mongo, 0..<5)
        mongo.truncateOplog(keepingLast: 2)
        let metrics = TestMetrics()
        let bridge = OplogBridge(
            configuration: .init(
                tailer: OplogTailerConfiguration(connectionString: try MongoConnectionString(mongo.uri)),
                start: .at(stale)
            ),
            publisher: NDJSONPublisher(channelPrefix: "") { _ in },
            logger: bridgeLogger,
            metrics: BridgeMetrics(factory: metrics)
        )
        await #expect(throws: OplogHistoryLost.self) { try await bridge.run() }
        #expect(try metrics.expectCounter(BridgeMetrics.Name.historyLost).totalValue == 1)
        let (healthy, json) = bridge.healthReport()
        #expect(!healthy && json.contains("oplog history lost"))
    }
}
