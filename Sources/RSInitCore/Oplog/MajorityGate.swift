public import BSON

/// Whether the tail delivers only majority-committed entries (shared/spec/replication-ha.md §9.2).
public enum MajorityMode: String, Sendable, CaseIterable {
    /// On for a replica set with more than one member, off for a single-member set (whose every write is committed
    /// at once).
    case auto
    /// Always gate on the pinned node's `lastWrite.majorityOpTime`.
    case on
    /// Deliver what the oplog holds as soon as it is read: faster, but a write that a failover later rolls back
    /// has already been published.
    case off

    /// Whether a deployment whose `hello` lists `memberCount` members (hosts, passives and arbiters) is gated.
    public func isGated(memberCount: Int) -> Bool {
        switch self {
        case .on: return true
        case .off: return false
        case .auto: return memberCount > 1
        }
    }
}

/// An oplog entry's identity: `(ts, t)`. `t` is nil when unknown (a checkpoint written before terms were kept).
public struct OplogOpTime: Sendable, Hashable, CustomStringConvertible {
    public var ts: BSONTimestamp
    public var t: Int64?

    public init(ts: BSONTimestamp, t: Int64?) {
        self.ts = ts
        self.t = t
    }

    /// The optime of an oplog entry or of a `{ts, t}` document, nil without a timestamp `ts`.
    public init?(_ document: BSONDocument?) {
        guard let document, let ts = document["ts"]?.timestampValue else { return nil }
        self.init(ts: ts, t: document["t"]?.int64Value)
    }

    /// Whether `other` names the same entry (both terms compared when both are known).
    public func isSameEntry(as other: OplogOpTime) -> Bool {
        guard ts == other.ts else { return false }
        guard let t, let otherT = other.t else { return true }
        return t == otherT
    }

    public var description: String { "(\(ts), t: \(t.map { "\($0)" } ?? "?"))" }
}

/// Holds entries read from one node until that node's committed snapshot (`hello.lastWrite.majorityOpTime`) covers
/// them (§9.2 rule 4). Pure: no I/O. Comparing timestamps is valid because the committed snapshot is a prefix of the
/// node's own oplog; the snapshot of another node must never be used.
public struct MajorityGate: Sendable {
    /// Entries read but not yet released, in oplog order.
    public private(set) var held: [BSONDocument] = []

    public init() {}

    /// Whether nothing is held.
    public var isEmpty: Bool { held.isEmpty }

    /// The newest held entry's timestamp.
    public var newestHeld: BSONTimestamp? {
        held.last { $0["ts"]?.timestampValue != nil }?["ts"]?.timestampValue
    }

    /// Adds entries as the cursor returned them.
    public mutating func hold(_ entries: [BSONDocument]) {
        held.append(contentsOf: entries)
    }

    /// Releases, in order, the longest prefix of held entries whose `ts` ≤ `majority` (nothing for a nil
    /// majority). An entry without a timestamp `ts` cannot be placed; it is released as soon as it reaches the
    /// head of the queue (the mapper counts it as a malformed skip; it never publishes).
    public mutating func release(upTo majority: BSONTimestamp?) -> [BSONDocument] {
        var count = 0
        for entry in held {
            if let ts = entry["ts"]?.timestampValue {
                guard let majority, ts <= majority else { break }
            }
            count += 1
        }
        let released = Array(held.prefix(count))
        held.removeFirst(count)
        return released
    }

    /// Drops everything held (a cursor error: the entries are read again from the checkpoint, rule 6).
    public mutating func discard() { held.removeAll() }
}

/// What a resume finds at the checkpoint C on the pinned node (§9.2 rule 3, §5.5).
public enum OplogResumeVerdict: Sendable, Equatable {
    /// The first entry returned is C: drop it and continue.
    case anchorFound
    /// The node has not committed C (`majorityOpTime.ts < C.ts`, or none): it lags or sits on a divergent branch
    /// that will roll back. Judge nothing there: wait or move to another node.
    case nodeBehind
    /// The oldest entry is newer than C: history rolled off the capped oplog.
    case rolledOff(oldest: BSONTimestamp?)
    /// C is missing from a node whose history covers it. Impossible for a majority-committed C (a loud invariant
    /// breach when gated); with gating off, C was rolled back.
    case missing

    /// Classifies a resume. `majority` is the pinned node's committed snapshot (only consulted when `gated`),
    /// `first` the first entry `find {ts: {$gte: C.ts}}` returned, `oldest` the node's oldest entry (read only
    /// when `first` is not C).
    public static func classify(
        checkpoint: OplogOpTime,
        gated: Bool,
        majority: BSONTimestamp?,
        first: OplogOpTime?,
        oldest: BSONTimestamp?
    ) -> OplogResumeVerdict {
        if gated {
            guard let majority, majority >= checkpoint.ts else { return .nodeBehind }
        }
        if let first, first.isSameEntry(as: checkpoint) { return .anchorFound }
        guard let oldest else { return .rolledOff(oldest: nil) }
        if oldest > checkpoint.ts { return .rolledOff(oldest: oldest) }
        return .missing
    }
}

/// A majority-committed entry the tail delivered is missing from a node whose committed history covers it
/// (§9.2 rule 3): majority data loss, `writeConcernMajorityJournalDefault: false`, or a forced reconfig. Never
/// retried: what consumers were told may no longer be true.
public struct OplogCommittedEntryMissing: Error, Sendable, Equatable, CustomStringConvertible {
    /// The delivered entry.
    public var checkpoint: OplogOpTime
    /// The node that lacks it.
    public var host: String

    public var description: String {
        "the delivered, majority-committed oplog entry \(checkpoint) is missing on \(host), whose committed history "
            + "covers it (majority data loss, writeConcernMajorityJournalDefault: false, or a forced reconfig)"
    }
}
