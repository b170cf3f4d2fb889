import AsyncAlgorithms
import Dispatch
import FoundationEssentials
public import Logging
public import MongoCWrapper
public import ServiceLifecycle
import Synchronization

/// Tails the oplog once and delivers every event to a publisher, at least once, in order.
///
/// - Loss-freedom: a batch is retried (with backoff, forever) until the publisher accepts it, and no further oplog
///   is read meanwhile (memory stays bounded); the checkpoint only ever names a delivered batch, so a restart
///   resumes after it (at worst repeating the batches that were in flight). A quiet stream still advances the
///   checkpoint (no-ops count).
/// - Pipelining: while full batches stream in, the next batch is sent before the previous one is confirmed (at
///   most ``publishWindow`` in flight); a short batch means the tail caught up, and everything is confirmed and
///   checkpointed at once. A failed confirmation sends that batch and every later one again, in order.
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
    /// Namespaces already warned about for ids without a dedicated channel (then debug only; bounded).
    let idWarnedNamespaces = Mutex<Set<String>>([])

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

    /// Batches sent and not yet confirmed, at most (full batches only; the tail's read-ahead comes on top).
    static let publishWindow = 2

    /// A batch handed to the publisher and not yet confirmed.
    private struct SentBatch {
        var batch: OplogBatch
        var ticket: PublishTicket
        var sentAt: UInt64
        /// Numbers the batches of a run, for ``TailItem/answered(_:)``.
        var sequence: Int
    }

    /// What the bridge's loop waits for: the tail's next batch, or the publisher's answer for the newest batch in
    /// flight. The answer matters when a burst ends on a full batch: nothing follows it to push it out of the
    /// window, and the next heartbeat is up to `maxAwaitTime` away, so the loop confirms and checkpoints it then.
    private enum TailItem: Sendable {
        case batch(OplogBatch)
        case answered(_ sequence: Int)
    }

    private func tail() async throws {
        var start: OplogStart
        do { start = try await resolveStart() } catch is CancellationError {
            return  // stopped while Redis was unreachable at start-up: nothing was read, nothing to finish
        }
        var inFlight: [SentBatch] = []
        var sequence = 0
        // Where to go back to after a failover when the new Redis master holds no checkpoint: this run's start.
        var failoverFloor: OplogStart? = start == .end ? nil : start
        while !stopping && !Task.isCancelled {
            var tailerConfiguration = configuration.tailer
            tailerConfiguration.start = start
            let tailer = OplogTailer(configuration: tailerConfiguration, logger: logger)
            // Read ahead by one batch: the next getMore and its mapping overlap this batch's publish. The batch in
            // hand is the bound: while Redis is down the reader waits and the oplog is not read further.
            let batches = AsyncThrowingChannel<TailItem, any Error>()
            do {
                // Discarding: a notifier task per full batch, over months, must not pile up as unread results.
                try await withThrowingDiscardingTaskGroup { group in
                    let shouldStop: @Sendable () -> Bool = { [weak self] in
                        (self?.stopping ?? true) || Task.isCancelled
                    }
                    group.addTask {
                        var iterator = tailer.makeAsyncIterator(stoppingWhen: shouldStop)
                        do {
                            while !Task.isCancelled, let batch = try await iterator.next() {
                                await batches.send(.batch(batch))
                            }
                            await iterator.close()
                            batches.finish()
                        } catch {
                            await iterator.close()
                            batches.fail(error)
                        }
                    }
                    receiving: for try await item in batches {
                        let batch: OplogBatch
                        switch item {
                        case .batch(let next):
                            batch = next
                            reportUnexpressed(batch.unexpressed)
                        case .answered(let answered):
                            // Still the newest in flight: no batch came after it, so confirm and checkpoint now.
                            if inFlight.last?.sequence == answered { try await settle(&inFlight) }
                            if stopping { break receiving }
                            continue
                        }
                        // Idle heartbeats carry nothing new: no Redis round trip, but the tail is alive and
                        // caught up.
                        if batch.events.isEmpty, batch.entriesRead == 0 {
                            try await settle(&inFlight)
                            state.withLock { $0.health.caughtUp(at: .now) }
                            metrics.recordLag(seconds: 0)
                        } else {
                            if failoverFloor == nil, let first = batch.events.first {
                                failoverFloor = .at(first.timestamp)
                            }
                            sequence += 1
                            try await send(batch, sequence: sequence, &inFlight)
                            let delivered = inFlight.last?.ticket.isDelivered ?? false
                            if batch.entriesRead < configuration.tailer.batchSize || stopping || delivered {
                                // A short batch: the tail caught up, so no next batch is coming soon to carry the
                                // checkpoint; confirm and write it now. A publisher that does not pipeline (HA,
                                // NDJSON) already delivered it: nothing to wait for either.
                                try await settle(&inFlight)
                            } else if inFlight.count >= Self.publishWindow {
                                try await confirmOldest(&inFlight)
                            }
                            if let newest = inFlight.last {
                                let publisher = self.publisher
                                group.addTask {
                                    await publisher.answered(newest.ticket)
                                    await batches.send(.answered(newest.sequence))
                                }
                            }
                            if let position = batch.resumePosition { start = .after(position) }
                        }
                        if stopping { break }
                    }
                    try await settle(&inFlight)
                    group.cancelAll()
                }
                return
            } catch let failover as PublisherFailover {
                inFlight.removeAll()
                do { start = try await resumeAfter(failover, floor: failoverFloor) } catch is CancellationError {
                    return
                }
            } catch let lost as OplogHistoryLost {
                // What was read before the loss was sent; finish it before deciding.
                do { try await settle(&inFlight) } catch is CancellationError { return } catch let failover
                    as PublisherFailover
                {
                    inFlight.removeAll()
                    do { start = try await resumeAfter(failover, floor: failoverFloor) } catch is CancellationError {
                        return
                    }
                    continue
                }
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

    /// After a Redis failover: the checkpoint the new master holds (events after it are delivered again), or this
    /// run's start when it holds none.
    private func resumeAfter(_ failover: PublisherFailover, floor: OplogStart?) async throws -> OplogStart {
        state.withLock { $0.statistics.publishRetries += 1 }
        metrics.recordRetry()
        let checkpoint = try await retrying("reading the checkpoint after a Redis failover") {
            try await self.publisher.loadCheckpoint()
        }
        let start = checkpoint.map { OplogStart.after($0) } ?? floor ?? .end
        logger.warning(
            "Redis changed under the bridge (failover or reconnection); delivering again from the checkpoint it holds",
            metadata: ["rsinit.reason": "\(failover)", "rsinit.position": "\(start)"]
        )
        return start
    }

    /// Sends a batch without waiting for the publisher; if that fails, what is in flight is settled and the batch
    /// delivered one at a time.
    private func send(_ batch: OplogBatch, sequence: Int, _ inFlight: inout [SentBatch]) async throws {
        let sentAt = DispatchTime.now().uptimeNanoseconds
        do {
            inFlight.append(
                SentBatch(batch: batch, ticket: try await publisher.send(batch), sentAt: sentAt, sequence: sequence)
            )
        } catch let error as RedisError where error.isTransient {
            try await settle(&inFlight)
            try await pause(after: error, attempt: 1, "publishing a batch")
            try await deliver(batch)
        }
    }

    /// Confirms the oldest batch in flight; on failure, it and every batch after it are delivered again in order.
    private func confirmOldest(_ inFlight: inout [SentBatch]) async throws {
        let oldest = inFlight.removeFirst()
        do {
            let receipt = try await publisher.confirm(oldest.ticket)
            record(
                oldest.batch,
                receipt: receipt,
                publishNanoseconds: DispatchTime.now().uptimeNanoseconds - oldest.sentAt
            )
        } catch let error as RedisError where error.isTransient {
            let again = [oldest.batch] + inFlight.map(\.batch)
            inFlight.removeAll()
            try await pause(after: error, attempt: 1, "publishing a batch")
            for batch in again { try await deliver(batch) }
        }
    }

    /// Confirms everything in flight, then writes the checkpoint of the last batch.
    private func settle(_ inFlight: inout [SentBatch]) async throws {
        while !inFlight.isEmpty { try await confirmOldest(&inFlight) }
        try await retrying("writing the checkpoint") { try await self.publisher.flushCheckpoint() }
    }

    /// One batch, completely (events and checkpoint), retried until it succeeds.
    private func deliver(_ batch: OplogBatch) async throws {
        let started = DispatchTime.now().uptimeNanoseconds
        let receipt = try await retrying("publishing a batch") { try await self.publisher.publish(batch) }
        record(batch, receipt: receipt, publishNanoseconds: DispatchTime.now().uptimeNanoseconds - started)
    }

    private func record(_ batch: OplogBatch, receipt: PublishReceipt, publishNanoseconds: UInt64) {
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
                attempt += 1
                try await pause(after: error, attempt: attempt, what)
            }
        }
    }

    /// Counts and logs a transient failure, then waits out the backoff.
    private func pause(after error: RedisError, attempt: Int, _ what: String) async throws {
        // Stopping during an outage: the batch stays unacknowledged (no checkpoint), so a restart delivers it
        // again — at least once, never lost.
        if stopping { throw CancellationError() }
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
