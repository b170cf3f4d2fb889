import BSON
public import CoreMetrics
import Metrics
import MongoCWrapper
import NIOConcurrencyHelpers

/// The bridge's metrics, emitted through the swift-metrics API (the application picks the backend; `rsinit tail
/// --http` serves them in Prometheus text format).
///
/// Metric objects are created once; the per-namespace counters are cached by `(namespace, op)`, a set bounded by
/// the application's collections.
public final class BridgeMetrics: Sendable {
    /// Metric names, one place (Prometheus conventions: `_total` counters, base units).
    public enum Name {
        public static let events = "rsinit_events_total"
        public static let oplogEntries = "rsinit_oplog_entries_total"
        public static let publishBatches = "rsinit_publish_batches_total"
        public static let publishDuration = "rsinit_publish_duration_seconds"
        public static let lag = "rsinit_lag_seconds"
        public static let dedupeHits = "rsinit_dedupe_hits_total"
        public static let retries = "rsinit_publish_retries_total"
        public static let historyLost = "rsinit_history_lost_total"
        public static let checkpoint = "rsinit_checkpoint_timestamp_seconds"
        public static let oplogSkipped = "rsinit_oplog_skipped_total"
    }

    private let factory: any MetricsFactory
    private let oplogEntries: Counter
    private let publishBatches: Counter
    private let publishDuration: CoreMetrics.Timer
    private let lag: Gauge
    private let dedupeHits: Counter
    private let retries: Counter
    private let historyLost: Counter
    private let checkpoint: Gauge
    /// `rsinit_oplog_skipped_total{reason}`, one counter per fixed reason.
    private let skipped: [UnexpressedEntry.Reason: Counter]
    private let eventCounters = NIOLockedValueBox<[EventKey: Counter]>([:])

    private struct EventKey: Hashable {
        var namespace: Namespace
        var kind: ChangeEvent.Kind
    }

    /// `factory` defaults to the process's bootstrapped backend (a no-op one unless the application chose one).
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        oplogEntries = Counter(label: Name.oplogEntries, factory: factory)
        publishBatches = Counter(label: Name.publishBatches, factory: factory)
        publishDuration = CoreMetrics.Timer(label: Name.publishDuration, dimensions: [], factory: factory)
        lag = Gauge(label: Name.lag, factory: factory)
        dedupeHits = Counter(label: Name.dedupeHits, factory: factory)
        retries = Counter(label: Name.retries, factory: factory)
        historyLost = Counter(label: Name.historyLost, factory: factory)
        checkpoint = Gauge(label: Name.checkpoint, factory: factory)
        var skipped: [UnexpressedEntry.Reason: Counter] = [:]
        for reason in UnexpressedEntry.Reason.allCases {
            skipped[reason] = Counter(
                label: Name.oplogSkipped,
                dimensions: [("reason", reason.rawValue)],
                factory: factory
            )
        }
        self.skipped = skipped
    }

    /// A delivered batch: events by namespace and op, entries read, publish latency, duplicates.
    func recordDelivered(_ batch: OplogBatch, receipt: PublishReceipt, publishNanoseconds: UInt64) {
        // Counted per run of equal keys first: batches are mostly long runs of one collection and op.
        var counts: [EventKey: Int] = [:]
        // The run's key in two plain variables, events through a buffer pointer: two fields compared in place per
        // event, where an optional key or an array's element would be copied (every field retained and released).
        var runKind: ChangeEvent.Kind?
        var runNamespace = Namespace(database: "", collection: "")
        var runCount = 0
        batch.events.withUnsafeBufferPointer { events in
            for index in events.indices {
                if events[index].kind == runKind, events[index].namespace == runNamespace {
                    runCount += 1
                    continue
                }
                if let runKind { counts[EventKey(namespace: runNamespace, kind: runKind), default: 0] += runCount }
                runKind = events[index].kind
                runNamespace = events[index].namespace
                runCount = 1
            }
        }
        if let runKind { counts[EventKey(namespace: runNamespace, kind: runKind), default: 0] += runCount }
        let counters = eventCounters.withLockedValue { cache in
            counts.map { key, count in
                let counter =
                    cache[key]
                    ?? {
                        let made = Counter(
                            label: Name.events,
                            dimensions: [("namespace", key.namespace.description), ("op", key.kind.rawValue)],
                            factory: factory
                        )
                        cache[key] = made
                        return made
                    }()
                return (counter, count)
            }
        }
        for (counter, count) in counters { counter.increment(by: count) }
        oplogEntries.increment(by: batch.entriesRead)
        publishBatches.increment()
        publishDuration.recordNanoseconds(Int64(clamping: publishNanoseconds))
        if receipt.duplicates > 0 { dedupeHits.increment(by: receipt.duplicates) }
        if let position = batch.resumePosition { checkpoint.record(Double(position.seconds)) }
    }

    /// Lag in seconds with millisecond precision (0 when the tail is caught up).
    func recordLag(seconds: Double) { lag.record((seconds * 1000).rounded() / 1000) }
    func recordRetry() { retries.increment() }
    func recordHistoryLost() { historyLost.increment() }
    func recordUnexpressed(_ reason: UnexpressedEntry.Reason) { skipped[reason]?.increment() }
}

/// What a publisher did with a batch.
public struct PublishReceipt: Sendable, Equatable {
    /// Events this publisher delivered.
    public var published: Int
    /// Events it did not deliver because another bridge already had (HA dedupe).
    public var duplicates: Int

    public init(published: Int, duplicates: Int = 0) {
        self.published = published
        self.duplicates = duplicates
    }
}
