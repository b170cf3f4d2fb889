import AsyncAlgorithms
import Dispatch
import Foundation
public import Logging
public import MongoCWrapper
public import ServiceLifecycle
import Synchronization

/// Tails the oplog once and delivers every event to a publisher, at least once, in order.
///
/// - Loss-freedom: a batch is retried (with backoff, forever) until the publisher accepts it, and no further oplog
///   is read meanwhile (memory stays bounded); the checkpoint is written with the batch, so a restart resumes
///   exactly after the last delivered batch. A quiet stream still advances the checkpoint (no-ops count).
/// - History loss (the checkpoint rolled out of the oplog) is never skipped silently: ``OnHistoryLost/fail`` throws
///   ``OplogHistoryLost``; ``OnHistoryLost/fromEnd`` logs an error, counts it and restarts at the end of the oplog.
/// - ``stop()`` — or a graceful shutdown of the `ServiceGroup` running it — finishes the in-flight batch (and its
///   checkpoint), then ``run()`` returns.
public final class OplogBridge: Service, Sendable {
    public enum Start: Sendable, Equatable {
        /// The stored checkpoint if there is one, else the end of the oplog (the default).
        case checkpoint
        /// The end of the oplog, ignoring any checkpoint.
        case end
        /// The first entry with `ts >= T`.
        case timestamp(BSONTimestamp)
    }

    public enum OnHistoryLost: String, Sendable {
        case fail
        case fromEnd = "from-end"
    }

    public struct Configuration: Sendable {
        public var tailer: OplogTailerConfiguration
        public var start: Start
        public var onHistoryLost: OnHistoryLost
        public var retryBackoff: Backoff
        /// When `/healthz` calls the bridge stalled or lagging.
        public var health: BridgeHealth.Policy

        public init(
            tailer: OplogTailerConfiguration,
            start: Start = .checkpoint,
            onHistoryLost: OnHistoryLost = .fail,
            retryBackoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5)),
            health: BridgeHealth.Policy = BridgeHealth.Policy()
        ) {
            self.tailer = tailer
            self.start = start
            self.onHistoryLost = onHistoryLost
            self.retryBackoff = retryBackoff
            self.health = health
        }
    }

    /// Counters for logs and tests (the same figures go to ``BridgeMetrics``).
    public struct Statistics: Sendable, Equatable {
        public var batches = 0
        public var events = 0
        public var publishRetries = 0
        public var historyLost = 0
        public var lastPosition: BSONTimestamp?
        public var lastWallTime: Int64?
    }

    let configuration: Configuration
    let publisher: any EventPublisher
    let logger: Logger
    let metrics: BridgeMetrics
    private let state: Mutex<(stopping: Bool, statistics: Statistics, health: BridgeHealth)>

    /// Metrics go through the swift-metrics API to whatever backend the application bootstrapped.
    public init(
        configuration: Configuration,
        publisher: any EventPublisher,
        logger: Logger,
        metrics: BridgeMetrics = BridgeMetrics()
    ) {
        self.configuration = configuration
        self.publisher = publisher
        self.logger = logger
        self.metrics = metrics
        self.state = Mutex(
            (false, Statistics(), BridgeHealth(policy: configuration.health, startedAt: .now))
        )
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// The `/healthz` verdict and body (JSON) right now.
    public func healthReport() -> (healthy: Bool, json: String) {
        state.withLock { $0.health.report(at: .now) }
    }

    /// Asks the bridge to finish the in-flight batch, write its checkpoint and return from ``run()``.
    public func stop() { state.withLock { $0.stopping = true } }

    private var stopping: Bool { state.withLock { $0.stopping } }

    /// Runs until ``stop()``, a graceful shutdown or task cancellation (returns normally), or a failure a retry
    /// cannot fix (throws: ``OplogHistoryLost``, authentication, bad configuration).
    public func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                try await self.tail()
            } onGracefulShutdown: {
                self.stop()
            }
        } catch {
            state.withLock { $0.health.stopped(reason: "\(error)") }
            throw error
        }
        state.withLock { $0.health.stopped(reason: "shutting down") }
    }

    private func tail() async throws {
        var start: OplogStart
        do { start = try await resolveStart() } catch is CancellationError {
            return  // stopped while Redis was unreachable at start-up: nothing was read, nothing to finish
        }
        while !stopping && !Task.isCancelled {
            var tailerConfiguration = configuration.tailer
            tailerConfiguration.start = start
            let tailer = OplogTailer(configuration: tailerConfiguration, logger: logger)
            // Read ahead by one batch: the next getMore and its mapping overlap this batch's publish. The batch in
            // hand is the bound: while Redis is down the reader waits and the oplog is not read further.
            let batches = AsyncThrowingChannel<OplogBatch, any Error>()
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let shouldStop: @Sendable () -> Bool = { [weak self] in
                        (self?.stopping ?? true) || Task.isCancelled
                    }
                    group.addTask {
                        var iterator = tailer.makeAsyncIterator(stoppingWhen: shouldStop)
                        do {
                            while !Task.isCancelled, let batch = try await iterator.next() {
                                await batches.send(batch)
                            }
                            await iterator.close()
                            batches.finish()
                        } catch {
                            await iterator.close()
                            batches.fail(error)
                        }
                    }
                    for try await batch in batches {
                        // Idle heartbeats carry nothing new: no Redis round trip, but the tail is alive and
                        // caught up.
                        if batch.events.isEmpty, batch.entriesRead == 0 {
                            state.withLock { $0.health.caughtUp(at: .now) }
                            metrics.recordLag(seconds: 0)
                        } else {
                            try await deliver(batch)
                            if let position = batch.resumePosition { start = .after(position) }
                        }
                        if stopping { break }
                    }
                    group.cancelAll()
                }
                return
            } catch let lost as OplogHistoryLost {
                state.withLock { $0.statistics.historyLost += 1 }
                metrics.recordHistoryLost()
                guard configuration.onHistoryLost == .fromEnd else { throw lost }
                logger.error(
                    "OPLOG HISTORY LOST: events between the checkpoint and the end of the oplog were NOT delivered; restarting at the end (--on-history-lost from-end)",
                    metadata: ["rsinit.position": "\(lost.position)", "rsinit.reason": "\(lost.reason)"]
                )
                start = .end
            } catch is CancellationError {
                return
            }
        }
    }

    private func resolveStart() async throws -> OplogStart {
        switch configuration.start {
        case .end: return .end
        case .timestamp(let ts): return .at(ts)
        case .checkpoint:
            let checkpoint = try await retrying("reading the checkpoint") { try await self.publisher.loadCheckpoint() }
            if let checkpoint {
                logger.info("resuming after the checkpoint", metadata: ["rsinit.position": "\(checkpoint)"])
                return .after(checkpoint)
            }
            logger.info("no checkpoint yet: starting at the end of the oplog")
            return .end
        }
    }

    private func deliver(_ batch: OplogBatch) async throws {
        let started = DispatchTime.now().uptimeNanoseconds
        let receipt = try await retrying("publishing a batch") { try await self.publisher.publish(batch) }
        let publishNanoseconds = DispatchTime.now().uptimeNanoseconds - started
        let lagSeconds = batch.lastWallTime.map { Date().timeIntervalSince1970 - Double($0) / 1000 }
        metrics.recordDelivered(batch, receipt: receipt, publishNanoseconds: publishNanoseconds)
        if let lagSeconds { metrics.recordLag(seconds: max(0, lagSeconds)) }
        state.withLock {
            $0.health.delivered(
                at: .now,
                lagSeconds: lagSeconds,
                position: batch.resumePosition.map { "\($0.seconds).\($0.increment)" }
            )
            $0.statistics.batches += 1
            $0.statistics.events += batch.events.count
            $0.statistics.lastPosition = batch.resumePosition ?? $0.statistics.lastPosition
            $0.statistics.lastWallTime = batch.lastWallTime ?? $0.statistics.lastWallTime
        }
    }

    /// Retries transient failures forever (the oplog waits); configuration and auth errors end the run.
    private func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch let error as RedisError where error.isTransient {
                // Stopping during an outage: the batch stays unacknowledged (no checkpoint), so a restart
                // delivers it again — at least once, never lost.
                if stopping { throw CancellationError() }
                attempt += 1
                state.withLock { $0.statistics.publishRetries += 1 }
                metrics.recordRetry()
                if attempt == 1 || attempt % 20 == 0 {
                    logger.warning(
                        "\(what) failed; retrying (the oplog is held until it succeeds)",
                        metadata: ["rsinit.error": "\(error)", "rsinit.attempt": "\(attempt)"]
                    )
                }
                let delay = configuration.retryBackoff.delay(attempt: attempt - 1, jitter: Double.random(in: 0...1))
                let until = ContinuousClock.now + delay
                while ContinuousClock.now < until {
                    if stopping { throw CancellationError() }
                    try await Task.sleep(for: min(.milliseconds(100), until - .now))
                }
            }
        }
    }
}
