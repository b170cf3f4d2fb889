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
        /// ``StartPosition/checkpoint`` by default: the publisher's stored checkpoint, else the end.
        public var start: StartPosition
        public var onHistoryLost: OnHistoryLost
        public var retryBackoff: Backoff
        /// When `/healthz` calls the bridge stalled or lagging.
        public var health: BridgeHealth.Policy

        public init(
            tailer: OplogTailerConfiguration,
            start: StartPosition = .checkpoint,
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
        /// The position the bridge stands at: its last confirmed batch's, or after a Redis failover the checkpoint
        /// the node now written to holds (which an HA partner may have moved past this bridge's own batches).
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

    /// The delivery loop's state, kept across the tail's restarts (after a history loss, after a failover).
    private struct Delivery<Pending: Sendable> {
        var machine = DeliveryStateMachineOf<StoredCheckpoint>(window: OplogBridge.publishWindow)
        var held: [DeliveryStateMachine.BatchID: Held<Pending>] = [:]
        var sequence = 0
        /// Where to go back to after a failover when the new Redis master holds no checkpoint: this run's start.
        var failoverFloor: StartPosition?

        /// After a failover: nothing held is sent on the new connection; a new machine starts.
        mutating func restart() {
            held.removeAll()
            machine = DeliveryStateMachineOf<StoredCheckpoint>(window: OplogBridge.publishWindow)
            sequence = 0
        }
    }

    /// One pass of the machine's loop: the reader of the channel of tail items, the outcome so far.
    private struct Pass {
        var iterator: AsyncThrowingChannel<TailItem, any Error>.Iterator
        var lost: OplogHistoryLost?
        var lastError: (any Error)?
    }

    /// The shell of ``DeliveryStateMachine``: runs the tail, executes the machine's actions against the publisher
    /// and reports their outcomes. It decides nothing itself.
    private func tail<Publisher: EventPublisher>(_ publisher: Publisher) async throws {
        var tailStart: StartPosition
        do { tailStart = try await resolveStart(publisher) } catch is CancellationError {
            return  // stopped while Redis was unreachable at start-up: nothing was read, nothing to finish
        }
        var delivery = Delivery<Publisher.PendingBatch>(failoverFloor: tailStart == .end ? nil : tailStart)
        while true {
            var tailerConfiguration = configuration.tailer
            tailerConfiguration.start = tailStart
            let lost: OplogHistoryLost?
            do {
                lost = try await deliver(from: batchSource(tailerConfiguration), &delivery, publisher)
            } catch is CancellationError {
                return
            } catch let failover as PublisherFailover {
                // A new connection, maybe to another node (Sentinel/Cluster failover): what is held was confirmed,
                // if at all, by the old node only. Nothing held is sent on the new connection; a new machine starts
                // from the checkpoint the node now written to holds, so the checkpoint still names only a prefix
                // this node confirmed.
                delivery.restart()
                if stopping { return }
                do {
                    tailStart = try await resumeAfter(
                        failover,
                        publisher,
                        floor: delivery.failoverFloor
                    )
                } catch is CancellationError {
                    return
                }
                continue
            }
            guard let lost, !stopping else { return }
            try historyLost(lost)
            tailStart = .end
            delivery.held.removeAll()
        }
    }

    /// Counts a history loss; throws it unless ``OnHistoryLost/fromEnd`` asks to restart at the end (logged loudly).
    private func historyLost(_ lost: OplogHistoryLost) throws {
        state.withLockedValue { $0.statistics.historyLost += 1 }
        metrics.recordHistoryLost()
        guard configuration.onHistoryLost == .fromEnd else { throw lost }
        logger.error(
            "OPLOG HISTORY LOST: events between the checkpoint and the end of the oplog were NOT delivered; restarting at the end (--on-history-lost from-end)",
            metadata: ["rsinit.position": "\(lost.position)", "rsinit.reason": "\(lost.reason)"]
        )
    }

    /// Tails one source until it ends (stop, cancellation: nil) or loses history (the loss, once what was read
    /// before it is settled). Throws a ``PublisherFailover`` or a failure a retry cannot fix.
    private func deliver<Publisher: EventPublisher>(
        from makeBatches: @escaping @Sendable (@escaping @Sendable () -> Bool) -> any BatchIterator,
        _ delivery: inout Delivery<Publisher.PendingBatch>,
        _ publisher: Publisher
    ) async throws -> OplogHistoryLost? {
        // Read ahead by one batch: the next getMore and its mapping overlap this batch's publish. The machine
        // is the bound: while Redis is down it asks for nothing, and the oplog is not read further.
        let items = AsyncThrowingChannel<TailItem, any Error>()
        // Discarding: a notifier task per sent batch, over months, must not pile up as unread results.
        return try await withThrowingDiscardingTaskGroup(returning: OplogHistoryLost?.self) { group in
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
            var pass = Pass(iterator: items.makeAsyncIterator())
            try await execute(&delivery, &pass, items: items, group: &group, publisher)
            group.cancelAll()
            return pass.lost
        }
    }

    /// Executes the machine's actions until it finishes.
    private func execute<Publisher: EventPublisher>(
        _ delivery: inout Delivery<Publisher.PendingBatch>,
        _ pass: inout Pass,
        items: AsyncThrowingChannel<TailItem, any Error>,
        group: inout ThrowingDiscardingTaskGroup<any Error>,
        _ publisher: Publisher
    ) async throws {
        var action = delivery.machine.start()
        while true {
            switch action {
            case .read:
                action = try await read(&delivery, &pass)
            case .connect:
                do {
                    action = delivery.machine.connected(try await publisher.connect())
                } catch  where publisher.isTransient(error) {
                    pass.lastError = error
                    action = delivery.machine.connectFailed()
                }
            case .send(let id, let generation, let checkpoint):
                action = try await send(id, generation, checkpoint, &delivery, &pass, items, &group, publisher)
            case .confirm(let id, let generation):
                action = try await confirm(id, generation, &delivery, &pass, publisher)
            case .writeCheckpoint(let position, let generation):
                do {
                    try await publisher.writeCheckpoint(position, on: generation)
                    action = delivery.machine.checkpointWritten(position, on: generation)
                } catch  where publisher.isTransient(error) {
                    pass.lastError = error
                    action = delivery.machine.failed(on: generation)
                }
            case .pause(let attempt):
                if try await pause(after: pass.lastError, attempt: attempt) {
                    action = delivery.machine.pauseEnded()
                } else {
                    // Stopping during an outage: what is held stays unacknowledged (no checkpoint), so
                    // a restart delivers it again — at least once, never lost.
                    action = delivery.machine.stop()
                }
            case .finish:
                return
            }
        }
    }

    /// The machine asks for the next item: a batch of the tail, the publisher's answer, the tail's end or loss.
    private func read<Pending: Sendable>(
        _ delivery: inout Delivery<Pending>,
        _ pass: inout Pass
    ) async throws -> DeliveryStateMachineOf<StoredCheckpoint>.Action {
        if stopping {
            return delivery.machine.stop()
        }
        let item: TailItem?
        do { item = try await pass.iterator.next() } catch let error as OplogHistoryLost {
            // What was read before the loss is settled before deciding.
            pass.lost = error
            return delivery.machine.drain()
        }
        if case .batch(let batch) = item {
            reportUnexpressed(batch.unexpressed)
            if delivery.failoverFloor == nil, let first = batch.events.first {
                delivery.failoverFloor = .at(first.timestamp)
            }
        }
        switch item {
        case nil:
            return delivery.machine.tailEnded()
        case .answered(let id, let generation):
            return delivery.machine.answered(id, on: generation)
        case .batch(let batch) where batch.events.isEmpty && batch.entriesRead == 0:
            // Idle heartbeats carry nothing new: no Redis round trip, but the tail is alive and
            // caught up.
            state.withLockedValue { $0.health.caughtUp(at: .now) }
            metrics.recordLag(seconds: 0)
            return delivery.machine.caughtUp()
        case .batch(let batch):
            delivery.sequence += 1
            delivery.held[delivery.sequence] = Held(batch: batch)
            return delivery.machine.batchRead(
                delivery.sequence,
                position: batch.storedCheckpoint,
                full: batch.entriesRead >= configuration.tailer.batchSize
            )
        }
    }

    /// Sends a held batch (again, after a lost connection); a pending answer is awaited by a task of the group.
    private func send<Publisher: EventPublisher>(
        _ id: DeliveryStateMachine.BatchID,
        _ generation: ConnectionGeneration,
        _ checkpoint: StoredCheckpoint?,
        _ delivery: inout Delivery<Publisher.PendingBatch>,
        _ pass: inout Pass,
        _ items: AsyncThrowingChannel<TailItem, any Error>,
        _ group: inout ThrowingDiscardingTaskGroup<any Error>,
        _ publisher: Publisher
    ) async throws -> DeliveryStateMachineOf<StoredCheckpoint>.Action {
        // trap-checked: the machine's invariant
        guard var entry = delivery.held[id] else { preconditionFailure("the machine sends a batch it read") }
        entry.sentAt = DispatchTime.now().uptimeNanoseconds
        do {
            let ticket = try await publisher.send(
                entry.batch,
                checkpoint: checkpoint,
                on: generation
            )
            entry.ticket = ticket
            delivery.held[id] = entry
            let action: DeliveryStateMachineOf<StoredCheckpoint>.Action
            switch ticket {
            case .delivered:
                action = delivery.machine.sent(id, on: generation, delivered: true)
            case .pending(let pending):
                group.addTask {
                    await publisher.answered(pending)
                    await items.send(.answered(id, generation))
                }
                action = delivery.machine.sent(id, on: generation, delivered: false)
            }
            if case .delivered(let receipt) = ticket, !delivery.machine.isHolding(id) {
                // Delivered while sent (HA, NDJSON): the machine confirmed it at once.
                record(entry.batch, receipt: receipt, since: entry.sentAt)
                delivery.held[id] = nil
            }
            return action
        } catch  where publisher.isTransient(error) {
            pass.lastError = error
            return delivery.machine.failed(on: generation)
        }
    }

    /// Waits for the publisher's answer for a sent batch, then records it as delivered.
    private func confirm<Publisher: EventPublisher>(
        _ id: DeliveryStateMachine.BatchID,
        _ generation: ConnectionGeneration,
        _ delivery: inout Delivery<Publisher.PendingBatch>,
        _ pass: inout Pass,
        _ publisher: Publisher
    ) async throws -> DeliveryStateMachineOf<StoredCheckpoint>.Action {
        guard let entry = delivery.held[id], let ticket = entry.ticket else {
            preconditionFailure("the machine confirms a batch it sent")  // trap-checked: the machine's invariant
        }
        do {
            let receipt: PublishReceipt
            switch ticket {
            case .delivered(let delivered): receipt = delivered
            case .pending(let pending): receipt = try await publisher.confirm(pending)
            }
            record(entry.batch, receipt: receipt, since: entry.sentAt)
            delivery.held[id] = nil
            return delivery.machine.confirmed(id, on: generation)
        } catch  where publisher.isTransient(error) {
            pass.lastError = error
            return delivery.machine.failed(on: generation)
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
            let source = ChangeStreamTailer(configuration: streamConfiguration, logger: logger)
            return { source.makeAsyncIterator(stoppingWhen: $0) }
        }
    }

    /// After a Redis failover: the checkpoint the node now written to holds (events after it are delivered
    /// again), or this run's start when it holds none.
    private func resumeAfter(
        _ failover: PublisherFailover,
        _ publisher: some EventPublisher,
        floor: StartPosition?
    ) async throws -> StartPosition {
        state.withLockedValue { $0.statistics.publishRetries += 1 }
        metrics.recordRetry()
        let checkpoint = try await retrying(publisher, "reading the checkpoint after a Redis failover") {
            try await publisher.loadStoredCheckpoint()
        }
        let start = try checkpoint.map(resumeStart) ?? floor ?? .end
        // Delivering again from there: a position only confirmed batches move on. Kept, an older one would lag
        // behind for good when the HA partner had delivered everything (this bridge then reads nothing new).
        if let checkpoint { state.withLockedValue { $0.statistics.lastPosition = checkpoint.timestamp } }
        logger.warning(
            "Redis changed under the bridge (failover or reconnection); delivering again from the checkpoint it holds",
            metadata: [
                "rsinit.reason": "\(failover)", "rsinit.position": "\(checkpoint.map { "\($0)" } ?? "\(start)")",
            ]
        )
        return start
    }

    /// Where the tail starts for a stored checkpoint (format v1 or v2) on this bridge's source; a change-stream
    /// token read by the oplog source is refused (``StoredCheckpointError``), never misread.
    private func resumeStart(_ checkpoint: StoredCheckpoint) throws(StoredCheckpointError) -> StartPosition {
        let source: StoredCheckpoint.Source
        if case .changeStream = configuration.source { source = .changeStream } else { source = .oplog }
        try checkpoint.checkUsable(by: source)
        return .stored(checkpoint)
    }

    /// The configured start, with ``StartPosition/checkpoint`` read from the publisher (retried while Redis is
    /// unreachable) and any stored checkpoint checked against this bridge's source.
    private func resolveStart(_ publisher: some EventPublisher) async throws -> StartPosition {
        switch configuration.start {
        case .end, .at, .after: return configuration.start
        case .stored(let checkpoint): return try resumeStart(checkpoint)
        case .checkpoint:
            let checkpoint = try await retrying(publisher, "reading the checkpoint") {
                try await publisher.loadStoredCheckpoint()
            }
            if let checkpoint {
                let start = try resumeStart(checkpoint)
                logger.info("resuming after the checkpoint", metadata: ["rsinit.position": "\(checkpoint)"])
                return start
            }
            logger.info("no checkpoint yet: starting at the end of the oplog")
            return .end
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
