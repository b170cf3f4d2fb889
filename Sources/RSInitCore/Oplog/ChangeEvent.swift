public import BSON

/// One change to publish, from one oplog entry (or one operation inside a transaction).
public struct ChangeEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case insert, update, replace, delete
        /// `drop`, `dropDatabase`, `renameCollection` or `create`: see ``ChangeEvent/command``.
        case command
    }

    /// A collection- or database-level command.
    public struct Command: Sendable, Equatable {
        /// `drop`, `dropDatabase`, `renameCollection` or `create`.
        public var name: String
        /// For `renameCollection`: the new namespace.
        public var renamedTo: Namespace?

        public init(name: String, renamedTo: Namespace? = nil) {
            self.name = name
            self.renamedTo = renamedTo
        }
    }

    public var kind: Kind
    /// The collection (or, for `dropDatabase`, the database with an empty collection).
    public var namespace: Namespace
    /// The document's `_id`, of any BSON type, exactly as in the oplog; nil for commands (and malformed entries).
    public var documentID: BSONValue?
    /// Changed fields (`f`): top-level keys for inserts and replacements, the update's fields, `[]` for deletes.
    public var changedFields: [String]
    /// The oplog entry's `ts` (for a transaction: the committing entry's `ts`).
    public var timestamp: BSONTimestamp
    /// The operation's index inside its transaction (depth-first through nested `applyOps`), 0 outside one.
    public var transactionIndex: Int
    /// The entry's `wall` time (ms since the epoch), when present.
    public var wallTime: Int64?
    /// The change-stream event's resume token (`_id._data`, uppercase hex); nil from the oplog. Keys HA
    /// dedupe: unlike `(clusterTime, txnOpIndex)`, it is unique when two shards write at one clusterTime.
    public var resumeToken: String?
    /// The fields most events lack, in one box (nil when both are): every copy and release of an event costs one
    /// reference count for them instead of four (the bridge copies each event on its hot path). The resume token
    /// stays a field: every change-stream event has one, and a box would cost each an allocation.
    private var extras: Extras?

    /// The inserted or replacement document, when full documents were requested.
    public var fullDocument: BSONDocument? {
        get { extras?.fullDocument }
        set { updateExtras { $0.fullDocument = newValue } }
    }
    public var command: Command? {
        get { extras?.command }
        set { updateExtras { $0.command = newValue } }
    }

    /// An event from any source (the oplog mapper, a test, a future change-stream source).
    public init(
        kind: Kind,
        namespace: Namespace,
        documentID: BSONValue?,
        changedFields: [String],
        timestamp: BSONTimestamp,
        transactionIndex: Int = 0,
        wallTime: Int64? = nil,
        fullDocument: BSONDocument? = nil,
        command: Command? = nil,
        resumeToken: String? = nil
    ) {
        self.kind = kind
        self.namespace = namespace
        self.documentID = documentID
        self.changedFields = changedFields
        self.timestamp = timestamp
        self.transactionIndex = transactionIndex
        self.wallTime = wallTime
        self.resumeToken = resumeToken
        self.extras = Extras(fullDocument: fullDocument, command: command)
    }

    public static func == (lhs: ChangeEvent, rhs: ChangeEvent) -> Bool {
        lhs.kind == rhs.kind && lhs.namespace == rhs.namespace && lhs.documentID == rhs.documentID
            && lhs.changedFields == rhs.changedFields && lhs.timestamp == rhs.timestamp
            && lhs.transactionIndex == rhs.transactionIndex && lhs.wallTime == rhs.wallTime
            && lhs.fullDocument == rhs.fullDocument && lhs.command == rhs.command && lhs.resumeToken == rhs.resumeToken
    }

    /// Copy on write: a change makes a new box (others sharing the old one keep it).
    private mutating func updateExtras(_ change: (inout Extras.Fields) -> Void) {
        var fields = extras?.fields ?? Extras.Fields()
        change(&fields)
        extras = Extras(fields)
    }

    /// Immutable once made, so sharing it between copies and threads is safe.
    private final class Extras: Sendable {
        struct Fields {
            var fullDocument: BSONDocument?
            var command: Command?
        }

        let fullDocument: BSONDocument?
        let command: Command?

        var fields: Fields { Fields(fullDocument: fullDocument, command: command) }

        /// nil when both fields are: most events need no box at all.
        convenience init?(fullDocument: BSONDocument?, command: Command?) {
            guard fullDocument != nil || command != nil else { return nil }
            self.init(fullDocument, command)
        }

        convenience init?(_ fields: Fields) {
            self.init(fullDocument: fields.fullDocument, command: fields.command)
        }

        private init(_ fullDocument: BSONDocument?, _ command: Command?) {
            self.fullDocument = fullDocument
            self.command = command
        }
    }
}
