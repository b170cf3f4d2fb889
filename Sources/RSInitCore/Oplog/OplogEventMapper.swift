public import BSON

/// Turns oplog entries into ``ChangeEvent``s, in order, and tracks the position a restart must resume from.
///
/// Pure (no I/O): skips no-ops, `fromMigrate`, `system.*`, `config`, `local`, `admin` (except transactions and
/// renames) and filtered namespaces; expands `applyOps` (nested, with a running transaction index); holds
/// `partialTxn` chains and prepared transactions until they commit (dropping aborted ones); maps `drop`,
/// `dropDatabase`, `renameCollection` and `create` to command events. Every entry, skipped or not, advances
/// ``lastRead``; ``resumePosition`` never passes the first entry of a transaction that has not committed yet.
public struct OplogEventMapper: Sendable {
    /// Why an entry produced no event (for metrics and logs).
    public enum Skip: String, Sendable, CaseIterable {
        case noop, fromMigrate, internalNamespace, filtered, otherCommand, pendingTransaction, abortedTransaction
        /// An entry that cannot be read as an operation (no `ts`, no `op`, no `o`, a command without its name…).
        case malformed
        /// An `op` this version does not know.
        case unknownOperation
    }

    /// What one entry did.
    public enum Disposition: Sendable, Equatable {
        case emitted(Int)
        case skipped(Skip)
    }

    public struct Configuration: Sendable {
        public var fieldsMode: ChangedFieldsMode
        public var filter: NamespaceFilter
        /// Attach the inserted / replacement document to events.
        public var includeFullDocuments: Bool
        /// Operations open transactions may hold until their commit (see ``OplogTransactionTooLarge``).
        public var maximumPendingOperations: Int

        public init(
            fieldsMode: ChangedFieldsMode = .deep,
            filter: NamespaceFilter = .everything,
            includeFullDocuments: Bool = false,
            maximumPendingOperations: Int = OplogEventMapper.maximumPendingOperations
        ) {
            self.fieldsMode = fieldsMode
            self.filter = filter
            self.includeFullDocuments = includeFullDocuments
            self.maximumPendingOperations = maximumPendingOperations
        }
    }

    private struct PendingTransaction {
        /// The position before the chain's first entry (nil: before the start position itself).
        var resumeBefore: BSONTimestamp?
        var operations: [BSONDocument]
    }

    private struct TransactionKey: Hashable {
        let session: BSONValue
        let number: Int64
    }

    public let configuration: Configuration
    /// The newest entry read (every entry advances it).
    public private(set) var lastRead: BSONTimestamp?
    /// `wall` of the newest entry that had one (ms since the epoch), for lag.
    public private(set) var lastWallTime: Int64?
    private var pending: [TransactionKey: PendingTransaction] = [:]
    /// Operations held in ``pending`` (all open transactions together).
    public private(set) var pendingOperationCount = 0
    /// The default bound on operations waiting for their commit at once: ``OplogTransactionTooLarge`` beyond it.
    /// A transaction of more operations cannot be delivered with bounded memory (MongoDB itself caps one at 60 s
    /// of lifetime; a million small operations are a few hundred MB held here).
    public static let maximumPendingOperations = 1_000_000
    /// The last `ns` (`lastNamespaceText`) split into a ``Namespace`` (entries come in long runs of one
    /// collection). Two plain variables, not an optional tuple: compared in place, with nothing copied.
    private var lastNamespaceText = ""
    private var lastNamespace = Namespace(database: "", collection: "")
    /// Whether `lastNamespace` is skipped (internal or filtered out), decided once per run of entries in it: the
    /// string comparisons of the filter ran for every entry before.
    private var lastNamespaceSkip: Skip?
    /// False before the first entry of a batch: `""` is a namespace too, whose skip was never decided.
    private var lastNamespaceKnown = false
    /// The top-level keys of the last insert or replacement: the next document of the same shape shares this
    /// array as its changed fields (no allocation per event).
    private var lastKeys: [String] = []
    /// Updates whose `o` named no field somewhere (malformed operators); for a metric.
    public private(set) var unprocessableFieldCount = 0
    /// Entries (or operations inside a transaction) the format cannot fully express, since the last
    /// ``takeUnexpressed()``: to be logged and counted, never dropped silently.
    private var unexpressed: [UnexpressedEntry] = []

    /// - Parameter startPosition: the entry the tail resumes after (already handled), if any.
    public init(configuration: Configuration, startPosition: BSONTimestamp?) {
        self.configuration = configuration
        self.lastRead = startPosition
    }

    /// Where a restart must resume (`ts >= resumePosition`, that entry being already handled): ``lastRead``, or
    /// just before the oldest transaction still waiting for its commit.
    public var resumePosition: BSONTimestamp? {
        guard !pending.isEmpty else { return lastRead }
        let befores = pending.values.map(\.resumeBefore)
        if befores.contains(where: { $0 == nil }) { return nil }
        return befores.compactMap { $0 }.min()
    }

    /// The entries reported since the last call (the tailer attaches them to the batch).
    public mutating func takeUnexpressed() -> [UnexpressedEntry] {
        guard !unexpressed.isEmpty else { return [] }
        defer { unexpressed.removeAll() }
        return unexpressed
    }

    private mutating func report(
        _ reason: UnexpressedEntry.Reason,
        ts: BSONTimestamp?,
        namespace: String,
        _ detail: String
    ) {
        unexpressed.append(UnexpressedEntry(timestamp: ts, reason: reason, namespace: namespace, detail: detail))
    }

    /// Whether the transactions waiting for their commit hold more than ``maximumPendingOperations``.
    public var pendingTransactionsExceedBound: Bool {
        pendingOperationCount > configuration.maximumPendingOperations
    }

    /// Whether a multi-entry transaction is waiting for its commit.
    public var hasPendingTransactions: Bool { !pending.isEmpty }

    /// Starts a new batch: forgets the namespace and keys shared by the last batch's events. Those values are
    /// retained here, on the tail's thread, and released on the publisher's once their batch is confirmed; shared
    /// across batches, both threads would count references on one object (its cache line bouncing between the
    /// cores on every event). Shared within a batch only, each batch's copies die together, after the mapper moved
    /// on. Costs one array and one namespace per batch.
    public mutating func startBatch() {
        lastNamespaceText = ""
        lastNamespace = Namespace(database: "", collection: "")
        lastNamespaceSkip = nil
        lastNamespaceKnown = false
        lastKeys = []
    }

    /// Maps one entry, appending its events to `events`.
    public mutating func map(_ document: BSONDocument, into events: inout [ChangeEvent]) -> Disposition {
        let entry = OplogEntry(document, namespaceHint: lastNamespaceText)
        let previous = lastRead
        if let ts = entry.timestamp { lastRead = ts }
        if let wall = entry.wall { lastWallTime = wall }
        guard let ts = entry.timestamp else {
            report(
                .malformed,
                ts: nil,
                namespace: entry.namespace,
                "no ts (Timestamp) field; after \(previous.map { "\($0)" } ?? "the start")"
            )
            return .skipped(.malformed)
        }
        if entry.op == "n" { return .skipped(.noop) }
        if entry.fromMigrate { return .skipped(.fromMigrate) }
        if !lastNamespaceKnown || lastNamespaceText != entry.namespace {
            lastNamespaceKnown = true
            lastNamespace = Namespace(entry.namespace)
            lastNamespaceText = entry.namespace
            lastNamespaceSkip = namespaceSkip(lastNamespace)
        }
        let namespace = lastNamespace
        if entry.op == "c" && namespace.collection == "$cmd" {
            return mapCommand(entry, database: namespace.database, ts: ts, previous: previous, into: &events)
        }
        let before = events.count
        let disposition = mapOperation(
            entry,
            namespace: namespace,
            namespaceSkip: lastNamespaceSkip,
            ts: ts,
            wall: entry.wall,
            transactionIndex: 0,
            into: &events
        )
        if case .skipped = disposition { return disposition }
        return .emitted(events.count - before)
    }

    // MARK: - Commands and transactions

    private mutating func mapCommand(
        _ entry: OplogEntry,
        database: String,
        ts: BSONTimestamp,
        previous: BSONTimestamp?,
        into events: inout [ChangeEvent]
    ) -> Disposition {
        guard let object = entry.object, let name = object.firstKey else {
            report(.malformed, ts: ts, namespace: entry.namespace, "command entry without a command document")
            return .skipped(.malformed)
        }
        let key = entry.sessionID.flatMap { session in
            entry.transactionNumber.map { TransactionKey(session: session, number: $0) }
        }
        switch name {
        case "applyOps":
            let isPartial = object["partialTxn"]?.isTruthy ?? false
            let isPrepare = object["prepare"]?.isTruthy ?? false
            let operations = (object["applyOps"]?.arrayValue ?? []).compactMap(\.documentValue)
            if let key, isPartial || isPrepare {
                var chain = pending[key] ?? PendingTransaction(resumeBefore: previous, operations: [])
                chain.operations += operations
                pending[key] = chain
                pendingOperationCount += operations.count
                return .skipped(.pendingTransaction)
            }
            var all = operations
            if let key, let chain = pending.removeValue(forKey: key) {
                pendingOperationCount -= chain.operations.count
                all = chain.operations + operations
            }
            return emitTransaction(all, ts: ts, wall: entry.wall, into: &events)
        case "commitTransaction":
            guard let key, let chain = pending.removeValue(forKey: key) else { return .skipped(.otherCommand) }
            pendingOperationCount -= chain.operations.count
            return emitTransaction(chain.operations, ts: ts, wall: entry.wall, into: &events)
        case "abortTransaction":
            if let key, let chain = pending.removeValue(forKey: key) { pendingOperationCount -= chain.operations.count }
            return .skipped(.abortedTransaction)
        default:
            let before = events.count
            let disposition = commandEvent(
                name: name,
                object: object,
                database: database,
                ts: ts,
                wall: entry.wall,
                transactionIndex: 0,
                into: &events
            )
            if case .skipped = disposition { return disposition }
            return .emitted(events.count - before)
        }
    }

    private mutating func emitTransaction(
        _ operations: [BSONDocument],
        ts: BSONTimestamp,
        wall: Int64?,
        into events: inout [ChangeEvent]
    ) -> Disposition {
        var index = 0
        let before = events.count
        expand(operations, ts: ts, wall: wall, index: &index, into: &events)
        let emitted = events.count - before
        return emitted > 0 ? .emitted(emitted) : .skipped(.filtered)
    }

    /// Depth-first through nested `applyOps`; every inner operation takes the next index, emitted or not, so
    /// indexes (and dedupe keys) are stable whatever the filter.
    private mutating func expand(
        _ operations: [BSONDocument],
        ts: BSONTimestamp,
        wall: Int64?,
        index: inout Int,
        into events: inout [ChangeEvent]
    ) {
        for document in operations {
            let inner = OplogEntry(document)
            if inner.op == "c", let nested = inner.object?["applyOps"]?.arrayValue {
                expand(nested.compactMap(\.documentValue), ts: ts, wall: wall, index: &index, into: &events)
                continue
            }
            let namespace = Namespace(inner.namespace)
            if inner.op == "c", namespace.collection == "$cmd", let object = inner.object, let name = object.firstKey {
                _ = commandEvent(
                    name: name,
                    object: object,
                    database: namespace.database,
                    ts: ts,
                    wall: wall,
                    transactionIndex: index,
                    into: &events
                )
            } else {
                _ = mapOperation(
                    inner,
                    namespace: namespace,
                    namespaceSkip: namespaceSkip(namespace),
                    ts: ts,
                    wall: wall,
                    transactionIndex: index,
                    into: &events
                )
            }
            index += 1
        }
    }

    private mutating func commandEvent(
        name: String,
        object: BSONDocument,
        database: String,
        ts: BSONTimestamp,
        wall: Int64?,
        transactionIndex: Int,
        into events: inout [ChangeEvent]
    ) -> Disposition {
        let namespace: Namespace
        var renamedTo: Namespace?
        switch name {
        case "drop", "create":
            guard let collection = object[name]?.stringValue else {
                report(.malformed, ts: ts, namespace: database + ".$cmd", "\(name) without a collection name")
                return .skipped(.malformed)
            }
            namespace = Namespace(database: database, collection: collection)
        case "dropDatabase":
            namespace = Namespace(database: database, collection: "")
        case "renameCollection":
            guard let from = object[name]?.stringValue, let to = object["to"]?.stringValue else {
                report(.malformed, ts: ts, namespace: database + ".$cmd", "renameCollection without its names")
                return .skipped(.malformed)
            }
            namespace = Namespace(from)
            renamedTo = Namespace(to)
        default:
            return .skipped(.otherCommand)
        }
        let sourceInternal = Self.isInternal(namespace)
        let targetInternal = renamedTo.map(Self.isInternal) ?? true
        if sourceInternal && targetInternal { return .skipped(.internalNamespace) }
        let visible = configuration.filter.includes(namespace) || renamedTo.map(configuration.filter.includes) == true
        guard visible else { return .skipped(.filtered) }
        events.append(
            ChangeEvent(
                kind: .command,
                namespace: namespace,
                documentID: nil,
                changedFields: [],
                timestamp: ts,
                transactionIndex: transactionIndex,
                wallTime: wall,
                fullDocument: nil,
                command: ChangeEvent.Command(name: name, renamedTo: renamedTo)
            )
        )
        return .emitted(1)
    }

    /// `config`, `local`, `admin` and `system.*` collections are internal.
    static func isInternal(_ namespace: Namespace) -> Bool {
        switch namespace.database {
        case "config", "local", "admin": return true
        default: return namespace.collection.hasPrefix("system.")
        }
    }

    /// Why operations on `namespace` are not published (internal, or outside the filter); nil when they are.
    private func namespaceSkip(_ namespace: Namespace) -> Skip? {
        if Self.isInternal(namespace) { return .internalNamespace }
        return configuration.filter.includes(namespace) ? nil : .filtered
    }

    // MARK: - CRUD

    private mutating func mapOperation(
        _ entry: OplogEntry,
        namespace: Namespace,
        namespaceSkip: Skip?,
        ts: BSONTimestamp,
        wall: Int64?,
        transactionIndex: Int,
        into events: inout [ChangeEvent]
    ) -> Disposition {
        if entry.fromMigrate { return .skipped(.fromMigrate) }
        if let namespaceSkip { return .skipped(namespaceSkip) }
        guard let object = entry.object else {
            report(
                .malformed,
                ts: ts,
                namespace: namespace.description,
                "op \"\(entry.op.prefix(16))\" without an o document"
            )
            return .skipped(.malformed)
        }
        let kind: ChangeEvent.Kind
        var fields: [String]
        var full: BSONDocument?
        switch entry.op {
        case "i":
            kind = .insert
            fields = object.keys(reusing: lastKeys)
            lastKeys = fields
            full = object
        case "d":
            kind = .delete
            fields = []
        case "u":
            let format = ChangedFields.format(of: object)
            if case .replacement = format {
                kind = .replace
                fields = object.keys(reusing: lastKeys)
                lastKeys = fields
                full = object
            } else {
                kind = .update
                let result = ChangedFields.update(object, format: format, mode: configuration.fieldsMode)
                fields = result.fields
                unprocessableFieldCount += result.unprocessable
            }
        case "c":
            return .skipped(.otherCommand)
        case "":
            report(.malformed, ts: ts, namespace: namespace.description, "no op field")
            return .skipped(.malformed)
        default:
            report(.unknownOperation, ts: ts, namespace: namespace.description, "op \"\(entry.op.prefix(16))\"")
            return .skipped(.unknownOperation)
        }
        let documentID = entry.documentID
        if let reason = RedisOplogFormat.collectionChannelOnlyReason(documentID) {
            report(.idNotStringifiable, ts: ts, namespace: namespace.description, reason)
        }
        events.append(
            ChangeEvent(
                kind: kind,
                namespace: namespace,
                documentID: documentID,
                changedFields: fields,
                timestamp: ts,
                transactionIndex: transactionIndex,
                wallTime: wall,
                fullDocument: configuration.includeFullDocuments ? full : nil,
                command: nil
            )
        )
        return .emitted(1)
    }
}

/// An oplog entry (or an operation inside a transaction) the redis-oplog format cannot fully express: logged once
/// with its `ts` and counted in `rsinit_oplog_skipped_total{reason}` by the bridge, printed in NDJSON mode; the
/// position moves past it either way.
public struct UnexpressedEntry: Sendable, Equatable {
    /// Bounded, fixed reasons (the metric's label values).
    public enum Reason: String, Sendable, CaseIterable {
        /// Not published: the entry cannot be read as an operation.
        case malformed
        /// Not published: an `op` this version does not know.
        case unknownOperation = "unknown_op"
        /// Published on the collection channel only: Meteor cannot stringify this `_id` (a document, array,
        /// binary, date, decimal128, regex, …) or there is none.
        case idNotStringifiable = "id_not_stringifiable"
    }

    /// The entry's `ts` (nil when it has none).
    public var timestamp: BSONTimestamp?
    public var reason: Reason
    public var namespace: String
    /// A short human explanation (never document contents).
    public var detail: String

    public init(timestamp: BSONTimestamp?, reason: Reason, namespace: String, detail: String) {
        self.timestamp = timestamp
        self.reason = reason
        self.namespace = namespace
        self.detail = detail
    }
}

/// Open transactions hold more operations than ``OplogEventMapper/maximumPendingOperations`` before their commit:
/// the tail stops rather than buffer without bound (nothing is skipped: the checkpoint stays before them).
public struct OplogTransactionTooLarge: Error, Sendable, CustomStringConvertible {
    public var operations: Int
    public var maximum: Int

    public init(operations: Int, maximum: Int) {
        self.operations = operations
        self.maximum = maximum
    }

    public var description: String {
        "transactions waiting for their commit hold \(operations) operations, more than rsinit buffers (\(maximum))"
    }
}
