public import BSON

/// Where a tail starts: for ``OplogBridge`` (``OplogBridge/Configuration/start``, `rsinit tail --from`),
/// ``OplogTailer`` and ``ChangeStreamTailer`` alike.
///
/// | Case | `--from` | Oplog source | Change-stream source |
/// |---|---|---|---|
/// | ``checkpoint`` | `checkpoint` | the bridge's stored checkpoint, else the end | the same |
/// | ``end`` | `end` | after the newest entry | no start option (after the newest operation) |
/// | ``at(_:)`` | `T.I` | the first entry with `ts >= T` | `startAtOperationTime: T` |
/// | ``after(_:)`` | | after the entry with `ts == T` (must still be in the oplog) | `startAtOperationTime` one tick after `T` |
/// | ``stored(_:)`` | | after the checkpoint's entry `(ts, t)` (the term judges a rollback) | `resumeAfter` its token (`startAfter` an invalidate's), or one tick after an oplog checkpoint's `ts` |
///
/// Only a bridge can read a checkpoint (from its publisher): a tailer given ``checkpoint`` starts at the end.
public enum StartPosition: Sendable, Hashable, CustomStringConvertible {
    /// The stored checkpoint if there is one, else the end (the bridge's default).
    case checkpoint
    /// After the newest entry at start-up, ignoring any checkpoint.
    case end
    /// At the first entry with `ts >= T`; fails (``OplogHistoryLost``) if the oplog no longer reaches back to `T`.
    case at(BSONTimestamp)
    /// After the entry with this `ts`: it was fully handled and must still be in the oplog.
    case after(BSONTimestamp)
    /// After a stored checkpoint: an oplog optime `(ts, t)` (format v1: `ts` only) or a change stream's resume
    /// token. An oplog tail refuses a token (``StoredCheckpointError/wrongSource(_:)``).
    case stored(StoredCheckpoint)

    public var description: String {
        switch self {
        case .checkpoint: "the stored checkpoint"
        case .end: "the end"
        case .at(let ts): "at \(ts.seconds).\(ts.increment)"
        case .after(let ts): "after \(ts.seconds).\(ts.increment)"
        case .stored(let checkpoint): "after \(checkpoint)"
        }
    }

    /// The oplog entry the tail resumes after (``after(_:)``, or an oplog ``stored(_:)`` checkpoint with its term).
    var oplogAfter: OplogOpTime? {
        switch self {
        case .after(let ts): OplogOpTime(ts: ts, t: nil)
        case .stored(let checkpoint): checkpoint.opTime
        case .checkpoint, .end, .at: nil
        }
    }
}
