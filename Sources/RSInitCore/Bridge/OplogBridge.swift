import AsyncAlgorithms
public import BSON
import Dispatch
import FoundationEssentials
public import Logging
public import MongoCWrapper
import NIOConcurrencyHelpers
public import ServiceLifecycle

/// Tails the oplog once and delivers every event to a publisher, at least once, in order.
///
/// - Loss-freedom: a batch is retried (with backoff, forever) until the publisher accepts it, and no further oplog
///   is read meanwhile (memory stays bounded); the checkpoint only ever names a delivered batch, so a restart
///   resumes after it (at worst repeating the batches that were in flight). A quiet stream still advances the
///   checkpoint (no-ops count).
/// - Pipelining: while full batches stream in, the next batch is sent before the previous one is confirmed (at
///   most ``publishWindow`` held); a short batch means the tail caught up, and everything is confirmed and
///   checkpointed at once. The rules are ``DeliveryStateMachine``'s (this class only executes its actions): a lost
///   connection sends every unconfirmed batch again, in order, on the next connection before anything new.
/// - History loss (the checkpoint rolled out of the oplog) is never skipped silently: ``OnHistoryLost/fail`` throws
///   ``OplogHistoryLost``; ``OnHistoryLost/fromEnd`` logs an error, counts it and restarts at the end of the oplog.
/// - Redis failover (Sentinel, Cluster): when the publisher's ``EventPublisher/connect()`` throws
///   ``PublisherFailover`` (a new connection on a topology that can fail over), what is held is dropped unsent, the
///   checkpoint is read again from the node now written to, and the tail restarts after it (or where this run
///   started when that node holds none): events after it are delivered again, never skipped.
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

    /// Where events come from.
    public enum Source: Sendable, Equatable {
        /// `local.oplog.rs` (``OplogTailer``).
        case oplog
        /// A change stream (``ChangeStreamTailer``) over `scope`; `fullDocument` asks for `updateLookup`. It reuses
        /// the tailer configuration's connection, mapping, batch size, await time and backoff.
        case changeStream(scope: ChangeStreamScope, fullDocument: Bool)
    }

    public struct Configuration: Sendable {
        public var tailer: OplogTailerConfiguration
        /// The oplog by default.
        public var source: Source = .oplog
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
    private let state: NIOLockedValueBox<(stopping: Bool, statistics: Statistics, health: BridgeHealth)>
    /// Namespaces already warned about for ids without a dedicated channel (then debug only; bounded).
    let idWarnedNamespaces = NIOLockedValueBox<Set<String>>([])

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
        self.state = NIOLockedValueBox(
            (false, Statistics(), BridgeHealth(policy: configuration.health, startedAt: .now))
        )
    }

    public var statistics: Statistics { state.withLockedValue { $0.statistics } }

    /// The `/healthz` verdict and body (JSON) right now.
    public func healthReport() -> (healthy: Bool, json: String) {
        state.withLockedValue { $0.health.report(at: .now) }
    }

    /// Asks the bridge to finish the in-flight batch, write its checkpoint and return from ``run()``.
    public func stop() { state.withLockedValue { $0.stopping = true } }

    private var stopping: Bool { state.withLockedValue { $0.stopping } }

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
            state.withLockedValue { $0.health.stopped(reason: "\(error)") }
            throw error
        }
        state.withLockedValue { $0.health.stopped(reason: "shutting down") }
    }

    /// Batches held at most: sent and not yet confirmed, or waiting to be sent again (the tail's read-ahead of one
    /// batch comes on top).
    static let publishWindow = 2

    /// What the bridge's loop waits for: the tail's next batch, or the publisher's answer for the newest batch in
    /// flight. The answer matters when a burst ends on a full batch: nothing follows it to push it out of the
    /// window, and the next heartbeat is up to `maxAwaitTime` away, so the loop confirms and checkpoints it then.
    private enum TailItem: Sendable {
        case batch(OplogBatch)
        case answered(DeliveryStateMachine.BatchID, ConnectionGeneration)
    }

    /// A batch read and not yet confirmed, with the publisher's ticket once sent.
    private struct Held<Pending: Sendable> {
        var batch: OplogBatch
        var ticket: PublishTicket<Pending>?
        var sentAt: UInt64 = 0
    }

    private func tail() async throws {
        try await tail(publisher)
    }

    /// The shell of ``DeliveryStateMachine``: runs the tail, executes the machine's actions against the publisher
    /// and reports their outcomes. It decides nothing itself.
    private func tail<Publisher: EventPublisher>(_ publisher: Publisher) async throws {
        let start: OplogStart
        let startCheckpoint: StoredCheckpoint?
        do { (start, startCheckpoint) = try await resolveStart(publisher) } catch is CancellationError {
            return  // stopped while Redis was unreachable at start-up: nothing was read, nothing to finish
        }
        var machine = DeliveryStateMachineOf<StoredCheckpoint>(window: Self.publishWindow)
        var held: [DeliveryStateMachine.BatchID: Held<Publisher.PendingBatch>] = [:]
        var sequence = 0
        var tailStart = start
        var tailCheckpoint = startCheckpoint
        // Where to go back to after a failover when the new Redis master holds no checkpoint: this run's start.
        var failoverFloor: OplogStart? = start == .end ? nil : start
        while true {
            var tailerConfiguration = configuration.tailer
            tailerConfiguration.start = tailStart
            tailerConfiguration.resumeCheckpoint = tailCheckpoint
            let makeBatches = batchSource(tailerConfiguration)
            // Read ahead by one batch: the next getMore and its mapping overlap this batch's publish. The machine
            // is the bound: while Redis is down it asks for nothing, and the oplog is not read further.
            let items = AsyncThrowingChannel<TailItem, any Error>()
            let lost: OplogHistoryLost?
            do {
                // Discarding: a notifier task per sent batch, over months, must not pile up as unread results.
                lost = try await withThrowingDiscardingTaskGroup(returning: OplogHistoryLost?.self) { group in
                    let shouldStop: @Sendable () -> Bool = { [weak self] in
                        (self?.stopping ?? true) || Task.isCancelled
                    }
                    group.addTask {
                        var iterator = makeBatches(shouldStop)
                        do {
                            while !Task.isCancelled, let batch = try await iterator.next() {
                                await items.send(.batch(batch))
                            }
                            await iterator.close()
                            items.finish()
                        } catch {
                            await iterator.close()
                            items.fail(error)
                        }
                    }
                    var iterator = items.makeAsyncIterator()
                    var lost: OplogHistoryLost?
                    var lastError: (any Error)?
                    var action = machine.start()
                    execute: while true {
                        switch action {
                        case .read:
                            if stopping {
                                action = machine.stop()
                                continue
                            }
                            let item: TailItem?
                            do { item = try await iterator.next() } catch let error as OplogHistoryLost {
                                // What was read before the loss is settled before deciding.
                                lost = error
                                action = machine.drain()
                                continue
                            }
                            if case .batch(let batch) = item {
                                reportUnexpressed(batch.unexpressed)
                                if failoverFloor == nil, let first = batch.events.first {
                                    failoverFloor = .at(first.timestamp)
                                }
                            }
                            switch item {
                            case nil:
                                action = machine.tailEnded()
                            case .answered(let id, let generation):
                                action = machine.answered(id, on: generation)
                            case .batch(let batch) where batch.events.isEmpty && batch.entriesRead == 0:
                                // Idle heartbeats carry nothing new: no Redis round trip, but the tail is alive and
                                // caught up.
                                state.withLockedValue { $0.health.caughtUp(at: .now) }
                                metrics.recordLag(seconds: 0)
                                action = machine.caughtUp()
                            case .batch(let batch):
                                sequence += 1
                                held[sequence] = Held(batch: batch)
                                action = machine.batchRead(
                                    sequence,
                                    position: batch.storedCheckpoint,
                                    full: batch.entriesRead >= configuration.tailer.batchSize
                                )
                            }
                        case .connect:
                            do {
                                action = machine.connected(try await publisher.connect())
                            } catch  where publisher.isTransient(error) {
                                lastError = error
                                action = machine.connectFailed()
                            }
                        case .send(let id, let generation, let checkpoint):
                            guard var entry = held[id] else { preconditionFailure("the machine sends a batch it read") }
                            entry.sentAt = DispatchTime.now().uptimeNanoseconds
                            do {
                                let ticket = try await publisher.send(
                                    entry.batch,
                                    checkpoint: checkpoint,
                                    on: generation
                                )
                                entry.ticket = ticket
                                held[id] = entry
                                switch ticket {
                                case .delivered:
                                    action = machine.sent(id, on: generation, delivered: true)
                                case .pending(let pending):
                                    group.addTask {
                                        await publisher.answered(pending)
                                        await items.send(.answered(id, generation))
                                    }
                                    action = machine.sent(id, on: generation, delivered: false)
                                }
                                if case .delivered(let receipt) = ticket, !machine.isHolding(id) {
                                    // Delivered while sent (HA, NDJSON): the machine confirmed it at once.
                                    record(entry.batch, receipt: receipt, since: entry.sentAt)
                                    held[id] = nil
                                }
                            } catch  where publisher.isTransient(error) {
                                lastError = error
                                action = machine.failed(on: generation)
                            }
                        case .confirm(let id, let generation):
                            guard let entry = held[id], let ticket = entry.ticket else {
                                preconditionFailure("the machine confirms a batch it sent")
                            }
                            do {
                                let receipt: PublishReceipt
                                switch ticket {
                                case .delivered(let delivered): receipt = delivered
                                case .pending(let pending): receipt = try await publisher.confirm(pending)
                                }
                                record(entry.batch, receipt: receipt, since: entry.sentAt)
                                held[id] = nil
                                action = machine.confirmed(id, on: generation)
                            } catch  where publisher.isTransient(error) {
                                lastError = error
                                action = machine.failed(on: generation)
                            }
                        case .writeCheckpoint(let position, let generation):
                            do {
                                try await publisher.writeCheckpoint(position, on: generation)
                                action = machine.checkpointWritten(position, on: generation)
                            } catch  where publisher.isTransient(error) {
                                lastError = error
                                action = machine.failed(on: generation)
                            }
                        case .pause(let attempt):
                            if try await pause(after: lastError, attempt: attempt) {
                                action = machine.pauseEnded()
                            } else {
                                // Stopping during an outage: what is held stays unacknowledged (no checkpoint), so
                                // a restart delivers it again — at least once, never lost.
                                action = machine.stop()
                            }
                        case .finish:
                            break execute
                        }
                    }
                    group.cancelAll()
                    return lost
                }
            } catch is CancellationError {
                return
            } catch let failover as PublisherFailover {
                // A new connection, maybe to another node (Sentinel/Cluster failover): what is held was confirmed,
                // if at all, by the old node only. Nothing held is sent on the new connection; a new machine starts
                // from the checkpoint the node now written to holds, so the checkpoint still names only a prefix
                // this node confirmed.
                held.removeAll()
                machine = DeliveryStateMachineOf<StoredCheckpoint>(window: Self.publishWindow)
                sequence = 0
                if stopping { return }
                do {
                    (tailStart, tailCheckpoint) = try await resumeAfter(failover, publisher, floor: failoverFloor)
                } catch is CancellationError {
                    return
                }
                continue
            }
            guard let lost, !stopping else { return }
            state.withLockedValue { $0.statistics.historyLost += 1 }
            metrics.recordHistoryLost()
            guard configuration.onHistoryLost == .fromEnd else { throw lost }
            logger.error(
                "OPLOG HISTORY LOST: events between the checkpoint and the end of the oplog were NOT delivered; restarting at the end (--on-history-lost from-end)",
                metadata: ["rsinit.position": "\(lost.position)", "rsinit.reason": "\(lost.reason)"]
            )
            tailStart = .end
            tailCheckpoint = nil
            held.removeAll()
        }
    }

    /// The seam between the bridge and its source: an iterator of batches from the oplog or a change stream.
    private func batchSource(
        _ tailer: OplogTailerConfiguration
    ) -> @Sendable (@escaping @Sendable () -> Bool) -> any BatchIterator {
        let logger = self.logger
        switch configuration.source {
        case .oplog:
            let source = OplogTailer(configuration: tailer, logger: logger)
            return { source.makeAsyncIterator(stoppingWhen: $0) }
        case .changeStream(let scope, let fullDocument):
            var streamConfiguration = ChangeStreamTailerConfiguration(
                connectionString: tailer.connectionString,
                scope: scope,
                start: tailer.start,
                mapping: tailer.mapping,
                fullDocument: fullDocument,
                batchSize: tailer.batchSize,
                maxAwaitTime: tailer.maxAwaitTime,
                backoff: tailer.backoff
            )
            streamConfiguration.replyMargin = tailer.replyMargin
            streamConfiguration.resumeCheckpoint = tailer.resumeCheckpoint
            let source = ChangeStreamTailer(configuration: streamConfiguration, logger: logger)
            return { source.makeAsyncIterator(stoppingWhen: $0) }
        }
    }

    /// After a Redis failover: the checkpoint the node now written to holds (events after it are delivered
    /// again), or this run's start when it holds none.
    private func resumeAfter(
        _ failover: PublisherFailover,
        _ publisher: some EventPublisher,
        floor: OplogStart?
    ) async throws -> (OplogStart, StoredCheckpoint?) {
        state.withLockedValue { $0.statistics.publishRetries += 1 }
        metrics.recordRetry()
        let checkpoint = try await retrying(publisher, "reading the checkpoint after a Redis failover") {
            try await publisher.loadStoredCheckpoint()
        }
        let start = try checkpoint.map(resumeStart) ?? floor ?? .end
        logger.warning(
            "Redis changed under the bridge (failover or reconnection); delivering again from the checkpoint it holds",
            metadata: [
                "rsinit.reason": "\(failover)", "rsinit.position": "\(checkpoint.map { "\($0)" } ?? "\(start)")",
            ]
        )
        return (start, checkpoint)
    }

    /// Where the tail starts for a stored checkpoint (format v1 or v2) on this bridge's source; a change-stream
    /// token read by the oplog source is refused (``StoredCheckpointError``), never misread.
    private func resumeStart(_ checkpoint: StoredCheckpoint) throws(StoredCheckpointError) -> OplogStart {
        let source: StoredCheckpoint.Source
        if case .changeStream = configuration.source { source = .changeStream } else { source = .oplog }
        switch try checkpoint.resume(for: source) {
        case .oplogAfter(let opTime): return .after(opTime.ts)
        case .changeStreamAfterTime(let ts): return .after(ts)
        case .changeStreamToken:
            // The tailer resumes after the token; the position is the one its batches report (a tick before).
            return .after(oneTickBefore(checkpoint.timestamp))
        }
    }

    private func resolveStart(_ publisher: some EventPublisher) async throws -> (OplogStart, StoredCheckpoint?) {
        switch configuration.start {
        case .end: return (.end, nil)
        case .timestamp(let ts): return (.at(ts), nil)
        case .checkpoint:
            let checkpoint = try await retrying(publisher, "reading the checkpoint") {
                try await publisher.loadStoredCheckpoint()
            }
            if let checkpoint {
                let start = try resumeStart(checkpoint)
                logger.info("resuming after the checkpoint", metadata: ["rsinit.position": "\(checkpoint)"])
                return (start, checkpoint)
            }
            logger.info("no checkpoint yet: starting at the end of the oplog")
            return (.end, nil)
        }
    }

    private func record(_ batch: OplogBatch, receipt: PublishReceipt, since sentAt: UInt64) {
        record(batch, receipt: receipt, publishNanoseconds: DispatchTime.now().uptimeNanoseconds - sentAt)
    }

    private func record(_ batch: OplogBatch, receipt: PublishReceipt, publishNanoseconds: UInt64) {
        let lagSeconds = batch.lastWallTime.map { Date().timeIntervalSince1970 - Double($0) / 1000 }
        metrics.recordDelivered(batch, receipt: receipt, publishNanoseconds: publishNanoseconds)
        if let lagSeconds { metrics.recordLag(seconds: max(0, lagSeconds)) }
        state.withLockedValue {
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
    private func retrying<T>(
        _ publisher: some EventPublisher,
        _ what: String,
        _ body: () async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch  where publisher.isTransient(error) {
                attempt += 1
                guard try await pause(after: error, attempt: attempt, what) else { throw CancellationError() }
            }
        }
    }

    /// Counts and logs a transient failure, then waits out the backoff. False when the bridge is stopping.
    private func pause(
        after error: (any Error)?,
        attempt: Int,
        _ what: String = "publishing a batch"
    ) async throws -> Bool {
        if stopping { return false }
        state.withLockedValue { $0.statistics.publishRetries += 1 }
        metrics.recordRetry()
        // Once, then every 20th attempt as a warning (an operator must see a stuck bridge, without a flood); the
        // others at debug, so that --verbose shows every cause.
        logger.log(
            level: attempt == 1 || attempt % 20 == 0 ? .warning : .debug,
            "\(what) failed; retrying (the oplog is held until it succeeds)",
            metadata: ["rsinit.error": "\(error.map { "\($0)" } ?? "unknown")", "rsinit.attempt": "\(attempt)"]
        )
        let delay = configuration.retryBackoff.delay(attempt: attempt - 1, jitter: Double.random(in: 0...1))
        let until = ContinuousClock.now + delay
        while ContinuousClock.now < until {
            if stopping { return false }
            try await Task.sleep(for: min(.milliseconds(100), until - .now))
        }
        return true
    }
}
