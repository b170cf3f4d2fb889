public import BSON

/// Turns change-stream events (mongod 7.0 through libmongoc 1.23.1, change-streams.md §3) into the same
/// ``ChangeEvent``s the oplog source produces, so both sources publish identical redis-oplog messages.
///
/// Pure (no I/O). insert → `.insert` (fields: the document's top-level keys), update → `.update` (fields from
/// `updateDescription`, in ``ChangedFieldsMode/top`` or ``ChangedFieldsMode/deep`` mode), replace → `.replace`,
/// delete → `.delete`; drop, rename and dropDatabase → command events (`drop`, `renameCollection`,
/// `dropDatabase`) for the control channel; invalidate ends the stream (the tailer reopens with `startAfter`).
/// `transactionIndex` is the token's `txnOpIndex`, `timestamp` the event's `clusterTime` (a transaction's commit
/// time). The namespace filter and the internal-namespace rule are the oplog mapper's.
public struct ChangeStreamEventMapper: Sendable {
    /// What one event did.
    public enum Outcome: Sendable, Equatable {
        case emitted(ChangeEvent)
        case skipped(OplogEventMapper.Skip)
        /// The stream was invalidated (its collection or database went away): reopen after this token.
        case invalidated
    }

    public let configuration: OplogEventMapper.Configuration
    /// Events the format cannot fully express, since the last ``takeUnexpressed()``.
    private var unexpressed: [UnexpressedEntry] = []
    /// Updates whose `updateLookup` found no document (deleted since): published without a full document.
    public private(set) var missingLookups = 0

    public init(configuration: OplogEventMapper.Configuration) {
        self.configuration = configuration
    }

    /// The entries reported since the last call.
    public mutating func takeUnexpressed() -> [UnexpressedEntry] {
        guard !unexpressed.isEmpty else { return [] }
        defer { unexpressed.removeAll() }
        return unexpressed
    }

    private static let eventKeys = BSONKeySet([
        "operationType", "clusterTime", "wallTime", "ns", "documentKey", "fullDocument", "updateDescription", "to",
        "_id",
    ])

    /// Maps one event document.
    public mutating func map(_ event: BSONDocument) -> Outcome {
        let values = event.values(for: Self.eventKeys)
        guard case .string(let operationType)? = values[0] else {
            report(.malformed, ts: values[1]?.timestampValue, namespace: "", "event without operationType")
            return .skipped(.malformed)
        }
        if operationType == "invalidate" { return .invalidated }
        guard let ts = values[1]?.timestampValue else {
            report(.malformed, ts: nil, namespace: "", "\(operationType.prefix(32)) event without clusterTime")
            return .skipped(.malformed)
        }
        let wall: Int64? = {
            if case .datetime(let millis)? = values[2] { return millis }
            return nil
        }()
        let ns = values[3]?.documentValue
        guard let database = ns?["db"]?.stringValue else {
            report(.malformed, ts: ts, namespace: "", "\(operationType.prefix(32)) event without ns.db")
            return .skipped(.malformed)
        }
        let namespace = Namespace(database: database, collection: ns?["coll"]?.stringValue ?? "")
        let transactionIndex =
            values[8]?.documentValue.flatMap(ChangeStreamResumeToken.decode).map(\.txnOpIndex) ?? 0
        // Servers send uppercase hex; normalise only when needed (no copy per event on the hot path).
        let resumeToken = values[8]?.documentValue?["_data"]?.stringValue.flatMap { data -> String? in
            if data.isEmpty { return nil }
            return data.utf8.contains(where: { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") })
                ? data.uppercased() : data
        }
        switch operationType {
        case "drop", "rename", "dropDatabase":
            if operationType != "dropDatabase" && OplogEventMapper.isInternal(namespace) {
                return .skipped(.internalNamespace)
            }
            guard configuration.filter.includes(namespace) else { return .skipped(.filtered) }
            var command = ChangeEvent.Command(name: operationType == "rename" ? "renameCollection" : operationType)
            if operationType == "rename" {
                guard let to = values[7]?.documentValue, let db = to["db"]?.stringValue,
                    let coll = to["coll"]?.stringValue
                else {
                    report(.malformed, ts: ts, namespace: namespace.description, "rename event without `to`")
                    return .skipped(.malformed)
                }
                command.renamedTo = Namespace(database: db, collection: coll)
            }
            return .emitted(
                ChangeEvent(
                    kind: .command,
                    namespace: namespace,
                    documentID: nil,
                    changedFields: [],
                    timestamp: ts,
                    transactionIndex: transactionIndex,
                    wallTime: wall,
                    command: command,
                    resumeToken: resumeToken
                )
            )
        case "insert", "update", "replace", "delete":
            break
        default:
            // create, createIndexes, modify, …: only with showExpandedEvents, which libmongoc 1.23.1 cannot ask for.
            return .skipped(.otherCommand)
        }
        if OplogEventMapper.isInternal(namespace) { return .skipped(.internalNamespace) }
        guard configuration.filter.includes(namespace) else { return .skipped(.filtered) }
        let documentID = values[4]?.documentValue?["_id"]
        let full = values[5]?.documentValue
        let kind: ChangeEvent.Kind
        let fields: [String]
        switch operationType {
        case "insert", "replace":
            guard let full else {
                report(.malformed, ts: ts, namespace: namespace.description, "\(operationType) without fullDocument")
                return .skipped(.malformed)
            }
            kind = operationType == "insert" ? .insert : .replace
            fields = full.keys
        case "update":
            guard let description = values[6]?.documentValue else {
                report(.malformed, ts: ts, namespace: namespace.description, "update without updateDescription")
                return .skipped(.malformed)
            }
            kind = .update
            fields = Self.changedFields(description, mode: configuration.fieldsMode)
            if configuration.includeFullDocuments && full == nil { missingLookups += 1 }
        default:
            kind = .delete
            fields = []
        }
        if let reason = RedisOplogFormat.collectionChannelOnlyReason(documentID) {
            report(.idNotStringifiable, ts: ts, namespace: namespace.description, reason)
        }
        return .emitted(
            ChangeEvent(
                kind: kind,
                namespace: namespace,
                documentID: documentID,
                changedFields: fields,
                timestamp: ts,
                transactionIndex: transactionIndex,
                wallTime: wall,
                fullDocument: configuration.includeFullDocuments ? full : nil,
                resumeToken: resumeToken
            )
        )
    }

    /// Changed fields from `updateDescription` (§4): every `updatedFields` key, `removedFields` entry and
    /// `truncatedArrays[].field`. `top`: their first path component (never ambiguous unless a name holds a dot).
    /// `deep`: the dotted paths, with a replaced sub-document expanded to its leaf paths as the oplog source does
    /// (not below a numeric last component, which is most likely an array element, as the oplog reports it).
    public static func changedFields(_ description: BSONDocument, mode: ChangedFieldsMode) -> [String] {
        var fields: [String] = []
        var seen: Set<String> = []
        func add(_ path: String) {
            let field = mode == .top ? String(path.prefix { $0 != "." }) : path
            if seen.insert(field).inserted { fields.append(field) }
        }
        func flatten(_ document: BSONDocument, _ path: String) {
            guard !document.isEmpty else { return add(path) }
            for (key, value) in document.elements {
                if case .document(let inner) = value { flatten(inner, path + "." + key) } else { add(path + "." + key) }
            }
        }
        for (path, value) in description["updatedFields"]?.documentValue?.elements ?? [] {
            let last = path.split(separator: ".").last ?? ""
            if mode == .deep, case .document(let inner) = value, !last.allSatisfy(\.isNumber) {
                flatten(inner, path)
            } else {
                add(path)
            }
        }
        for value in description["removedFields"]?.arrayValue ?? [] {
            if let path = value.stringValue { add(path) }
        }
        for value in description["truncatedArrays"]?.arrayValue ?? [] {
            if let path = value.documentValue?["field"]?.stringValue { add(path) }
        }
        return fields
    }

    private mutating func report(
        _ reason: UnexpressedEntry.Reason,
        ts: BSONTimestamp?,
        namespace: String,
        _ detail: String
    ) {
        unexpressed.append(UnexpressedEntry(timestamp: ts, reason: reason, namespace: namespace, detail: detail))
    }
}
