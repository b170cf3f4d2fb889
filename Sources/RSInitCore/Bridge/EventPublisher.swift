public import MongoCWrapper

/// Where the bridge delivers events: Redis, or NDJSON on stdout. One of the two seams of the design.
///
/// Two ways to deliver: ``publish(_:)`` does a whole batch (events, then the checkpoint); ``send(_:)`` and
/// ``confirm(_:)`` split it so that the bridge can send the next batch while the sink still works on this one
/// (pipelining). Sinks that do not pipeline get both from ``publish(_:)`` by default.
public protocol EventPublisher: Sendable {
    /// Delivers a batch's events and then records `batch.resumePosition` as the checkpoint (if the sink keeps one).
    /// Throws only when delivery failed; the bridge retries the same batch.
    @discardableResult func publish(_ batch: OplogBatch) async throws -> PublishReceipt
    /// Starts delivering a batch; ``confirm(_:)`` tells whether it was. Batches are sent and confirmed in order.
    /// A checkpoint may be written with a later batch or by ``flushCheckpoint()``, but never before its batch and
    /// every one before it were confirmed.
    func send(_ batch: OplogBatch) async throws -> PublishTicket
    /// Waits until the sink answered for a sent batch. A failure means this batch, and every one sent after it,
    /// must be delivered again (the bridge does so with ``publish(_:)``).
    func confirm(_ ticket: PublishTicket) async throws -> PublishReceipt
    /// Returns once ``confirm(_:)`` of this ticket would not wait (the sink answered, or failed). Must not change
    /// the publisher's state: it runs concurrently with the other calls.
    func answered(_ ticket: PublishTicket) async
    /// Records the position of the last confirmed batch as the checkpoint, if not yet done.
    func flushCheckpoint() async throws
    /// The stored checkpoint, nil when there is none.
    func loadCheckpoint() async throws -> BSONTimestamp?
    /// Releases connections.
    func close() async
}

/// A batch sent to an ``EventPublisher`` and not yet confirmed.
public struct PublishTicket: Sendable {
    /// The outcome, when the publisher finished the batch while sending it.
    let receipt: PublishReceipt?
    /// The publisher's own record of a batch still in flight.
    let inFlight: (any Sendable)?

    /// A batch the publisher already delivered completely.
    public static func delivered(_ receipt: PublishReceipt) -> PublishTicket {
        PublishTicket(receipt: receipt, inFlight: nil)
    }

    /// A batch still in flight, with what the publisher needs to confirm it.
    public static func inFlight(_ state: any Sendable) -> PublishTicket {
        PublishTicket(receipt: nil, inFlight: state)
    }

    /// Whether the publisher finished the batch while sending it (``EventPublisher/confirm(_:)`` will not wait).
    var isDelivered: Bool { receipt != nil }

    /// The publisher's record of an in-flight batch.
    public func state<State>(as type: State.Type) -> State? { inFlight as? State }
}

extension EventPublisher {
    /// Delivers the batch completely while sending (no pipelining).
    public func send(_ batch: OplogBatch) async throws -> PublishTicket {
        .delivered(try await publish(batch))
    }

    public func confirm(_ ticket: PublishTicket) async throws -> PublishReceipt {
        ticket.receipt ?? PublishReceipt(published: 0)
    }

    /// Sent batches were delivered completely.
    public func answered(_ ticket: PublishTicket) async {}

    /// Nothing to flush: ``publish(_:)`` records the checkpoint itself.
    public func flushCheckpoint() async throws {}
}

/// Checkpoint values are the 64-bit `(t << 32) | i` of the oplog `ts`, zero-padded to 20 decimal digits so that
/// string order is oplog order (the HA script only moves a checkpoint forward).
public enum CheckpointEncoding {
    public static func encode(_ ts: BSONTimestamp) -> String {
        let digits = String(ts.rawValue)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }

    public static func decode(_ text: String) -> BSONTimestamp? {
        guard !text.isEmpty, text.utf8.count <= 20, let raw = UInt64(text) else { return nil }
        return BSONTimestamp(rawValue: raw)
    }

    /// Accepts `T.I`, `T,I` or the raw 64-bit decimal (for `--from`).
    public static func parseTimestamp(_ text: String) -> BSONTimestamp? {
        for separator in [".", ","] where text.contains(separator) {
            let parts = text.split(separator: Character(separator))
            guard parts.count == 2, let t = UInt32(parts[0]), let i = UInt32(parts[1]) else { return nil }
            return BSONTimestamp(seconds: t, increment: i)
        }
        return UInt64(text).map(BSONTimestamp.init(rawValue:))
    }
}
