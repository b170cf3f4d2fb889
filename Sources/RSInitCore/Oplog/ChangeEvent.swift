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
    /// The inserted or replacement document, when full documents were requested.
    public var fullDocument: BSONDocument?
    public var command: Command?
    /// The change-stream event's resume token (`_id._data`, uppercase hex); nil from the oplog. Keys HA
    /// dedupe: unlike `(clusterTime, txnOpIndex)`, it is unique when two shards write at one clusterTime.
    public var resumeToken: String?

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
        self.resumeToken = resumeToken
        self.kind = kind
        self.namespace = namespace
        self.documentID = documentID
        self.changedFields = changedFields
        self.timestamp = timestamp
        self.transactionIndex = transactionIndex
        self.wallTime = wallTime
        self.fullDocument = fullDocument
        self.command = command
    }
}
