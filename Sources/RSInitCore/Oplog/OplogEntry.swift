public import BSON

/// The fields of one `local.oplog.rs` entry that the tailer needs, read in one pass without converting the rest.
public struct OplogEntry: Sendable, Equatable {
    /// `i`, `u`, `d`, `c`, `n` (or anything else a future server writes).
    public var op: String
    /// `db.collection`, `db.$cmd` for commands, `""` for no-ops.
    public var namespace: String
    public var timestamp: BSONTimestamp?
    /// `wall` in milliseconds since the epoch.
    public var wall: Int64?
    /// The operation: document, update spec, delete key or command.
    public var object: BSONDocument?
    /// `o2` (the update's `{_id}` query).
    public var object2: BSONDocument?
    public var fromMigrate: Bool
    /// The session (`lsid.id`) and `txnNumber` that link a multi-entry transaction.
    public var sessionID: BSONValue?
    public var transactionNumber: Int64?

    static let fields = BSONKeySet(["op", "ns", "ts", "wall", "o", "o2", "fromMigrate"])
    static let sessionFields = BSONKeySet(["lsid", "txnNumber"])

    /// Reads the entry; inner `applyOps` entries have no `ts`/`wall` (they inherit the outer ones). Session fields
    /// are read only for commands (they link multi-entry transactions).
    public init(_ document: BSONDocument) {
        self.init(document, namespaceHint: nil)
    }

    /// ``init(_:)``; when `ns` is byte for byte `namespaceHint` (entries come in long runs of one collection), the
    /// hint itself is kept instead of a new `String` (one allocation per entry for names over 15 bytes), and a
    /// one-letter ASCII `op` is a constant.
    public init(_ document: BSONDocument, namespaceHint: String?) {
        var op = ""
        var namespace = ""
        var timestamp: BSONTimestamp?
        var wall: Int64?
        var object: BSONDocument?
        var object2: BSONDocument?
        var fromMigrate = false
        // Both closures inline (non-escaping): a closure held in a local would box the captured variables.
        document.forEachValue(
            for: Self.fields,
            strings: { index, utf8 in
                switch index {
                case 0:
                    guard utf8.count == 1, utf8[0] < 0x80 else { return false }
                    op = Self.asciiLetters[Int(utf8[0])]  // trap-checked: index < 128
                    return true
                case 1:
                    guard let hint = namespaceHint, Self.bytes(of: hint, equal: utf8) else { return false }
                    namespace = hint
                    return true
                default:
                    return false
                }
            },
            { index, value in
                switch index {
                case 0: op = value.stringValue ?? ""
                case 1: namespace = value.stringValue ?? ""
                case 2: timestamp = value.timestampValue
                case 3: if case .datetime(let ms) = value { wall = ms }
                case 4: object = value.documentValue
                case 5: object2 = value.documentValue
                default: fromMigrate = value.isTruthy
                }
            }
        )
        self.op = op
        self.namespace = namespace
        self.timestamp = timestamp
        self.wall = wall
        self.object = object
        self.object2 = object2
        self.fromMigrate = fromMigrate
        if op == "c" {
            let session = document.values(for: Self.sessionFields)
            sessionID = session[0]?.documentValue?["id"]
            transactionNumber = session[1]?.int64Value
        } else {
            sessionID = nil
            transactionNumber = nil
        }
    }

    /// Every one-byte ASCII string, by its byte.
    // trap-checked: every value is below 128
    private static let asciiLetters: [String] = (0..<128).map { String(UnicodeScalar(UInt8($0))) }

    private static func bytes(of text: String, equal utf8: UnsafeRawBufferPointer) -> Bool {
        var text = text
        return text.withUTF8 { $0.count == utf8.count && $0.elementsEqual(utf8) }
    }

    /// The document id: `o2._id` for updates, `o._id` otherwise.
    public var documentID: BSONValue? {
        if op == "u", let id = object2?["_id"] { return id }
        return object?["_id"] ?? object2?["_id"]
    }
}

/// `db.collection` split at the first dot (`foo.system.indexes` → `foo`, `system.indexes`; `foo` → `foo`, ``).
public struct Namespace: Sendable, Hashable, CustomStringConvertible {
    public var database: String
    public var collection: String

    public init(database: String, collection: String) {
        self.database = database
        self.collection = collection
    }

    public init(_ namespace: String) {
        // Over UTF-8 bytes, not Characters: this runs for every oplog entry.
        let bytes = namespace.utf8
        if let dot = bytes.firstIndex(of: UInt8(ascii: ".")) {
            database = String(Substring(bytes[..<dot]))
            collection = String(Substring(bytes[bytes.index(after: dot)...]))
        } else {
            database = namespace
            collection = ""
        }
    }

    public var description: String { collection.isEmpty ? database : "\(database).\(collection)" }
}
