public import BSON

/// The checkpoint value kept in Redis (`<metadata-prefix>checkpoint`), format v2, and the v1 value it replaces.
///
/// Every value starts with the 20-digit ordering key `(t << 32) | i` of a timestamp, so that string order is
/// oplog / clusterTime order (the HA script only moves the checkpoint forward by comparing strings):
///
/// | Value | Written by | Meaning |
/// |---|---|---|
/// | `<ts20>` | rsinit before v2 (read only) | resume after oplog `ts`, term unknown |
/// | `<ts20>:v2:oplog:<t>` | oplog source | resume after the entry `(ts, t)` |
/// | `<ts20>:v2:cs:<HEX>` | change-stream source | resume after the token whose `_data` is `HEX`, clusterTime `ts20` |
///
/// A v2 value sorts after the v1 value of the same timestamp, so an upgraded bridge moves an old checkpoint
/// forward on its first write. Parsing is total: garbage, truncated values, unknown versions, huge numbers are a
/// ``StoredCheckpointError`` (never a trap, never a misread).
public enum StoredCheckpoint: Sendable, Hashable, CustomStringConvertible {
    /// A v1 value: the oplog timestamp only (the term is unknown).
    case legacyTimestamp(BSONTimestamp)
    /// The oplog source's position: the last handled entry's optime.
    case oplog(ts: BSONTimestamp, t: Int64)
    /// The change-stream source's position: a resume token's `_data` (uppercase hex) and its clusterTime.
    case changeStream(token: String, clusterTime: BSONTimestamp)

    /// The source a checkpoint is read by.
    public enum Source: String, Sendable {
        case oplog
        case changeStream = "change-stream"
    }

    /// How a source resumes from this checkpoint.
    public enum Resume: Sendable, Hashable {
        /// The oplog after `ts` (the anchor check uses `t` when known).
        case oplogAfter(OplogOpTime)
        /// `startAtOperationTime` one tick after this timestamp (every event up to it was delivered).
        case changeStreamAfterTime(BSONTimestamp)
        /// `resumeAfter` this token (`startAfter` when it is an invalidate's).
        case changeStreamToken(BSONDocument, invalidate: Bool)
    }

    /// The timestamp that orders this checkpoint (the oplog `ts` or the token's clusterTime).
    public var timestamp: BSONTimestamp {
        switch self {
        case .legacyTimestamp(let ts), .oplog(let ts, _): ts
        case .changeStream(_, let clusterTime): clusterTime
        }
    }

    /// The oplog optime, when this checkpoint names one.
    public var opTime: OplogOpTime? {
        switch self {
        case .legacyTimestamp(let ts): OplogOpTime(ts: ts, t: nil)
        case .oplog(let ts, let t): OplogOpTime(ts: ts, t: t)
        case .changeStream: nil
        }
    }

    /// The format version (`1` for the old timestamp-only value).
    public var version: Int {
        if case .legacyTimestamp = self { return 1 }
        return 2
    }

    public var description: String {
        switch self {
        case .legacyTimestamp(let ts): "oplog \(ts.seconds).\(ts.increment) (format v1, term unknown)"
        case .oplog(let ts, let t): "oplog \(ts.seconds).\(ts.increment) t=\(t)"
        case .changeStream(let token, let time):
            "change-stream token \(token) (clusterTime \(time.seconds).\(time.increment))"
        }
    }

    // MARK: - Codec

    /// The stored string.
    public var encoded: String {
        let key = CheckpointEncoding.encode(timestamp)
        switch self {
        case .legacyTimestamp: return key
        case .oplog(_, let t): return "\(key):v2:oplog:\(t)"
        case .changeStream(let token, _): return "\(key):v2:cs:\(token)"
        }
    }

    /// The largest token accepted (a v2 `_data` is far smaller; this bounds what a damaged key can make us hold).
    public static let maximumTokenLength = 16 * 1024

    /// Parses a stored value. Throws ``StoredCheckpointError`` for anything that is not exactly one of the formats.
    public static func decode(_ text: String) throws(StoredCheckpointError) -> StoredCheckpoint {
        let bytes = Array(text.utf8)
        func bad(_ why: String) -> StoredCheckpointError { .malformed(text, why) }
        func timestamp(_ digits: ArraySlice<UInt8>) throws(StoredCheckpointError) -> BSONTimestamp {
            guard !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                // trap-checked: parsing text: nil, not a trap
                let raw = UInt64(String(decoding: digits, as: UTF8.self))
            else { throw bad("the position is not a 64-bit number of at most 20 digits") }
            return BSONTimestamp(rawValue: raw)
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else {
            return .legacyTimestamp(try timestamp(bytes[...]))
        }
        let ts = try timestamp(bytes[..<colon])
        let rest = String(decoding: bytes[(colon + 1)...], as: UTF8.self)
        let fields = rest.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3 else { throw bad("expected <position>:v2:<source>:<value>") }
        guard fields[0] == "v2" else {
            throw bad(
                "unknown checkpoint format \"\(InputValue.shown(String(fields[0])))\" (this rsinit reads v1 and v2)"
            )
        }
        let value = fields[2]
        switch fields[1] {
        case "oplog":
            guard !value.isEmpty, value.utf8.count <= 20,
                value.utf8.enumerated().allSatisfy({ $1 >= 0x30 && $1 <= 0x39 || ($0 == 0 && $1 == 0x2D) }),
                let t = Int64(value), t >= -1  // trap-checked: parsing text: nil, not a trap
            else { throw bad("the term is not a number from -1 to 2^63-1") }
            return .oplog(ts: ts, t: t)
        case "cs":
            guard !value.isEmpty, value.utf8.count <= maximumTokenLength, value.utf8.count.isMultiple(of: 2),
                value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) })
            else { throw bad("the resume token is not an even-length uppercase hex string") }
            let token = String(value)
            if let decoded = ChangeStreamResumeToken.decode(data: token),
                decoded.clusterTime != ts
            {
                throw bad("the resume token's clusterTime is not the stored position")
            }
            return .changeStream(token: token, clusterTime: ts)
        default:
            throw bad("unknown source \"\(InputValue.shown(String(fields[1])))\" (oplog or cs)")
        }
    }

    /// A change-stream checkpoint at `token` (its clusterTime decoded from the token, else `fallback`).
    public static func changeStream(token: BSONDocument, fallback: BSONTimestamp?) -> StoredCheckpoint? {
        guard case .string(let data)? = token["_data"], !data.isEmpty,
            let time = ChangeStreamResumeToken.decode(token)?.clusterTime ?? fallback
        else { return nil }
        return .changeStream(token: data.uppercased(), clusterTime: time)
    }

    // MARK: - Cross-source rules

    /// Throws ``StoredCheckpointError/wrongSource(_:)`` when `source` cannot resume from this checkpoint (a
    /// change-stream token read by the oplog source); every other pair can. A check without building the resume
    /// value (discarding that value from a typed-throws call crashed Swift 6.3.1's release optimizer).
    public func checkUsable(by source: Source) throws(StoredCheckpointError) {
        if case .changeStream = self, case .oplog = source { throw .wrongSource(self) }
    }

    /// How `source` resumes from this checkpoint: an oplog position works for both sources (the change stream
    /// starts at the next tick, as `--from T.I` does); a resume token only for the change stream — an oplog tail
    /// from a clusterTime is not sound on a sharded cluster (and would be a guess on a replica set), so it is
    /// refused.
    public func resume(for source: Source) throws(StoredCheckpointError) -> Resume {
        switch (self, source) {
        case (.legacyTimestamp(let ts), .oplog): return .oplogAfter(OplogOpTime(ts: ts, t: nil))
        case (.oplog(let ts, let t), .oplog): return .oplogAfter(OplogOpTime(ts: ts, t: t))
        case (.legacyTimestamp(let ts), .changeStream), (.oplog(let ts, _), .changeStream):
            return .changeStreamAfterTime(ts)
        case (.changeStream(let token, _), .changeStream):
            let document: BSONDocument = ["_data": .string(token)]
            let invalidate = ChangeStreamResumeToken.decode(data: token)?.fromInvalidate ?? false
            return .changeStreamToken(document, invalidate: invalidate)
        case (.changeStream, .oplog):
            throw .wrongSource(self)
        }
    }
}

/// A stored checkpoint that cannot be used: a clear error naming the value (shortened, redacted) and the fix.
public enum StoredCheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not a checkpoint rsinit writes.
    case malformed(String, String)
    /// A change-stream token read by the oplog source.
    case wrongSource(StoredCheckpoint)

    public var message: String {
        switch self {
        case .malformed(let value, let why):
            "the stored checkpoint \"\(InputValue.shown(value))\" is not one rsinit writes: \(why)"
        case .wrongSource(let checkpoint):
            "the stored checkpoint is the change-stream source's (\(InputValue.shown(checkpoint.description))); "
                + "the oplog source cannot resume from a resume token"
        }
    }

    public var fix: String {
        switch self {
        case .malformed:
            "delete the checkpoint key, or start once with --from end or --from <T.I> (events before are not replayed)"
        case .wrongSource:
            "run with --source change-stream (as the checkpoint was written), or start the oplog source once with "
                + "--from <T.I> or --from end"
        }
    }

    public var description: String { "\(message); fix: \(fix)" }
}
