public import BSON
import RedisClient

/// Where the bridge delivers events: Redis, or NDJSON on stdout. One of the two seams of the design.
///
/// Two ways to deliver: ``publish(_:)`` does a whole batch (events, then the checkpoint); ``connect()``,
/// ``send(_:checkpoint:on:)`` and ``confirm(_:)`` split it so that the bridge can send the next batch while the
/// sink still works on this one (pipelining), under ``DeliveryStateMachine``'s rules. A sink that does not pipeline
/// implements ``publish(_:)`` and ``loadCheckpoint()`` only: every sent batch is then delivered at once.
public protocol EventPublisher: Sendable {
    /// What the sink keeps about a batch sent and not yet confirmed (`Never` for sinks that deliver while sending).
    associatedtype PendingBatch: Sendable = Never

    /// Delivers a batch's events and then records `batch.resumePosition` as the checkpoint (if the sink keeps one).
    /// Throws only when delivery failed.
    @discardableResult func publish(_ batch: OplogBatch) async throws -> PublishReceipt
    /// The open connection's generation, opening a new connection (with a new generation) when there is none or
    /// the last one failed. The only place a publisher (re)connects. Throws ``PublisherFailover`` when the new
    /// connection may reach another node than the old one (Sentinel, Cluster) until ``loadCheckpoint()`` read the
    /// checkpoint again: the bridge then drops what it holds and tails again from that checkpoint.
    func connect() async throws -> ConnectionGeneration
    /// Writes a batch on the connection of `generation` — never on another one: if that connection is gone, it
    /// throws a transient error without writing anything. `checkpoint`, when given, is written behind the batch's
    /// events (it names an earlier batch, already confirmed). Batches are sent and confirmed in order.
    func send(
        _ batch: OplogBatch,
        checkpoint: StoredCheckpoint?,
        on generation: ConnectionGeneration
    ) async throws -> PublishTicket<PendingBatch>
    /// Waits until the sink answered for a sent batch. A failure means the connection is lost: this batch, and
    /// every one sent after it, is sent again on a new connection.
    func confirm(_ batch: PendingBatch) async throws -> PublishReceipt
    /// Returns once ``confirm(_:)`` of this batch would not wait (the sink answered, or failed). Must not change
    /// the publisher's state: it runs concurrently with the other calls.
    func answered(_ batch: PendingBatch) async
    /// Records `position` (a confirmed batch's) as the checkpoint, on the connection of `generation` only.
    func writeCheckpoint(_ position: StoredCheckpoint, on generation: ConnectionGeneration) async throws
    /// The stored checkpoint, nil when there is none (after a ``PublisherFailover``: the one the node now written
    /// to holds). A value that is not a checkpoint throws a clear error (``StoredCheckpointError`` in it).
    func loadStoredCheckpoint() async throws -> StoredCheckpoint?
    /// Whether an error this publisher threw is worth retrying (the sink may come back); the bridge then holds the
    /// oplog and retries with backoff. Other errors end the run.
    func isTransient(_ error: any Error) -> Bool
    /// Releases connections.
    func close() async
}

/// What ``EventPublisher/send(_:checkpoint:on:)`` returns: the batch is delivered, or pending confirmation.
public enum PublishTicket<Pending: Sendable>: Sendable {
    /// The publisher finished the batch (and the checkpoint given with it) while sending it.
    case delivered(PublishReceipt)
    /// Written; ``EventPublisher/confirm(_:)`` tells whether the sink accepted it.
    case pending(Pending)
}

extension EventPublisher {
    /// A sink without connections: always the same generation.
    public func connect() async throws -> ConnectionGeneration { ConnectionGeneration(0) }

    /// Nothing to flush: ``publish(_:)`` records the checkpoint itself.
    public func writeCheckpoint(_ position: StoredCheckpoint, on generation: ConnectionGeneration) async throws {}

    /// The stored checkpoint's timestamp (the oplog `ts`, or the token's clusterTime).
    public func loadCheckpoint() async throws -> BSONTimestamp? {
        try await loadStoredCheckpoint()?.timestamp
    }

    /// ``writeCheckpoint(_:on:)`` with a bare oplog timestamp (a v1 checkpoint: the term unknown).
    @_disfavoredOverload
    public func writeCheckpoint(_ position: BSONTimestamp, on generation: ConnectionGeneration) async throws {
        try await writeCheckpoint(StoredCheckpoint.legacyTimestamp(position), on: generation)
    }

    /// ``send(_:checkpoint:on:)`` with a bare oplog timestamp (a v1 checkpoint: the term unknown).
    @_disfavoredOverload
    public func send(
        _ batch: OplogBatch,
        checkpoint: BSONTimestamp?,
        on generation: ConnectionGeneration
    ) async throws -> PublishTicket<PendingBatch> {
        try await send(batch, checkpoint: checkpoint.map(StoredCheckpoint.legacyTimestamp), on: generation)
    }

    /// Redis errors the server may recover from (`RedisError.isTransient`).
    public func isTransient(_ error: any Error) -> Bool {
        (error as? RedisError)?.isTransient ?? false
    }
}

extension EventPublisher where PendingBatch == Never {
    /// Delivers the batch completely while sending (no pipelining).
    public func send(
        _ batch: OplogBatch,
        checkpoint: StoredCheckpoint?,
        on generation: ConnectionGeneration
    ) async throws -> PublishTicket<Never> {
        .delivered(try await publish(batch))
    }

    /// Never called: nothing is pending (the parameter is uninhabited).
    public func confirm(_ batch: Never) async throws -> PublishReceipt {}

    public func answered(_ batch: Never) async {}
}

/// The ordering key of checkpoint values: the 64-bit `(t << 32) | i` of the oplog `ts`, zero-padded to 20 decimal
/// digits so that string order is oplog order (the HA script only moves a checkpoint forward). A v1 checkpoint is
/// this key alone; v2 values (``StoredCheckpoint``) start with it.
public enum CheckpointEncoding {
    public static func encode(_ ts: BSONTimestamp) -> String {
        let digits = String(ts.rawValue)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }

    /// The timestamp of a stored value, v1 or v2 (nil when it is not one).
    public static func decode(_ text: String) -> BSONTimestamp? {
        (try? StoredCheckpoint.decode(text))?.timestamp
    }

    /// Accepts `T.I`, `T,I` or the raw 64-bit decimal (for `--from`).
    public static func parseTimestamp(_ text: String) -> BSONTimestamp? {
        for separator in [".", ","] where text.contains(separator) {
            let parts = text.split(separator: Character(separator))
            // trap-checked: parsing text
            guard parts.count == 2, let t = UInt32(parts[0]), let i = UInt32(parts[1]) else { return nil }
            return BSONTimestamp(seconds: t, increment: i)
        }
        return UInt64(text).map(BSONTimestamp.init(rawValue:))  // trap-checked: parsing text: nil, not a trap
    }
}
