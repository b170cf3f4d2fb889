public import MongoCWrapper

/// Where the bridge delivers events: Redis, or NDJSON on stdout. One of the two seams of the design.
public protocol EventPublisher: Sendable {
    /// Delivers a batch's events and then records `batch.resumePosition` as the checkpoint (if the sink keeps one).
    /// Throws only when delivery failed; the bridge retries the same batch.
    @discardableResult func publish(_ batch: OplogBatch) async throws -> PublishReceipt
    /// The stored checkpoint, nil when there is none.
    func loadCheckpoint() async throws -> BSONTimestamp?
    /// Releases connections.
    func close() async
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
