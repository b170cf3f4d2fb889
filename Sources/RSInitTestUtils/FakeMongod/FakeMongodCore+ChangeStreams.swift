import BSON
import Foundation

/// What a change-stream cursor watches.
enum ChangeStreamWatchScope: Equatable {
    case cluster
    case database(String)
    case collection(String, String)
}

/// One event a change-stream cursor will return, with its token's `_data` for ordering.
struct PendingChangeEvent {
    var token: String
    var clusterTime: BSONTimestamp
    var invalidates: Bool
    /// Built when the event is returned (an `updateLookup` reads the document then).
    var document: BSONDocument
    var lookup: (namespace: String, id: BSONValue)?
    /// The event's namespace, for filtering cached events by a cursor's scope.
    var database = ""
    var collection = ""
}

/// An open `$changeStream` cursor (change-stream fact sheet §2).
final class ChangeStreamCursor {
    let id: Int64
    let scope: ChangeStreamWatchScope
    /// The reply's `cursor.ns` (§1.2).
    let namespace: String
    let lookup: Bool
    let batchSize: Int?
    let match: DocumentFilter?
    /// Entries with `ts <= scannedThrough` were turned into events; nil: start at `startAt` (inclusive).
    var scannedThrough: BSONTimestamp?
    let startAt: BSONTimestamp
    /// Events whose token sorts at or before this `_data` were delivered before (resumeAfter / startAfter).
    let skipThrough: String?
    var pending: [PendingChangeEvent] = []
    var postBatchResumeToken: String
    /// The next event is over 16 MB: the next batch fails with 10334 (§7.5).
    var tooLarge: CommandFailure?

    init(
        id: Int64,
        scope: ChangeStreamWatchScope,
        namespace: String,
        lookup: Bool,
        batchSize: Int?,
        match: DocumentFilter?,
        startAt: BSONTimestamp,
        skipThrough: String?,
        postBatchResumeToken: String
    ) {
        self.id = id
        self.scope = scope
        self.namespace = namespace
        self.lookup = lookup
        self.batchSize = batchSize
        self.match = match
        self.startAt = startAt
        self.skipThrough = skipThrough
        self.postBatchResumeToken = postBatchResumeToken
    }
}

/// The double's change-stream state: open cursors and injected faults. Guarded by the core's lock.
final class ChangeStreamRegistry {
    var cursors: [Int64: ChangeStreamCursor] = [:]
    /// Faults for the next change-stream getMores: an error with or without the `ResumableChangeStreamError` label.
    var pendingFailures: [(code: Int32, message: String, resumable: Bool)] = []
}

extension FakeMongodCore {
    /// mongod's `BSONObjectMaxUserSize` plus its 16 KB of headroom.
    static let maximumEventSize = 16 * 1024 * 1024 + 16 * 1024

    /// Codes mongod labels `ResumableChangeStreamError` on a change-stream getMore (§6.1).
    static let resumableChangeStreamCodes: Set<Int32> = [
        6, 7, 89, 91, 133, 134, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436, 63,
    ]

    /// Top-level `aggregate` fields the strict IDL knows (§1.1; anything else is 40415). Generic arguments
    /// (`$db`, `lsid`, `$clusterTime`, `$readPreference`, …) start with `$` or are listed here.
    static let aggregateFields: Set<String> = [
        "aggregate", "pipeline", "cursor", "explain", "allowDiskUse", "maxTimeMS", "bypassDocumentValidation",
        "readConcern", "collation", "hint", "writeConcern", "let", "comment", "lsid", "txnNumber", "autocommit",
        "startTransaction", "apiVersion", "apiStrict", "apiDeprecationErrors", "maxAwaitTimeMS",
    ]

    static let changeStreamStageFields: Set<String> = [
        "resumeAfter", "startAfter", "startAtOperationTime", "fullDocument", "fullDocumentBeforeChange",
        "allChangesForCluster", "showExpandedEvents",
    ]

    /// `aggregate` with a leading `$changeStream` stage: validates (§1.1), resolves the start (§2.3) and returns the
    /// first batch (no wait).
    func aggregate(_ command: BSONDocument, database: String, secondaryOk: Bool) -> Result<BSONDocument, CommandFailure>
    {
        for key in command.keys where !key.hasPrefix("$") && !Self.aggregateFields.contains(key) {
            return .failure(CommandFailure(code: 40415, message: "BSON field 'aggregate.\(key)' is an unknown field."))
        }
        guard let stages = command["pipeline"]?.arrayValue else {
            return .failure(CommandFailure(code: 14, message: "'pipeline' option must be specified as an array"))
        }
        guard let cursorOptions = command["cursor"]?.documentValue else {
            return .failure(
                CommandFailure(
                    code: 9,
                    message: "The 'cursor' option is required, except for aggregate with the explain argument"
                )
            )
        }
        guard let first = stages.first?.documentValue, first.firstKey == "$changeStream" else {
            return .failure(CommandFailure(code: 2, message: "the double serves only $changeStream aggregates"))
        }
        guard let spec = first["$changeStream"]?.documentValue else {
            return .failure(CommandFailure(code: 50808, message: "$changeStream stage expects a document as argument"))
        }
        for key in spec.keys where !Self.changeStreamStageFields.contains(key) {
            return .failure(
                CommandFailure(code: 40415, message: "BSON field '$changeStream.\(key)' is an unknown field.")
            )
        }
        if phase == .standalone || setName == nil {
            return .failure(
                CommandFailure(code: 40573, message: "The $changeStream stage is only supported on replica sets")
            )
        }
        if case .failure(let failure) = readAllowed(database: database, secondaryOk: secondaryOk) {
            return .failure(failure)
        }
        // Scope (§1.2).
        let allChanges = spec["allChangesForCluster"]?.isTruthy ?? false
        let scope: ChangeStreamWatchScope
        let replyNamespace: String
        switch command["aggregate"] {
        case .string(let collection):
            if allChanges {
                return .failure(
                    CommandFailure(code: 72, message: "allChangesForCluster requires aggregate: 1 on admin")
                )
            }
            if ["admin", "config", "local"].contains(database) || collection.hasPrefix("system.") {
                return .failure(
                    CommandFailure(
                        code: 73,
                        message: "$changeStream may not be opened on the internal \(database).\(collection) collection"
                    )
                )
            }
            scope = .collection(database, collection)
            replyNamespace = "\(database).\(collection)"
        case .int32(1), .int64(1), .double(1):
            if allChanges {
                guard database == "admin" else {
                    return .failure(
                        CommandFailure(code: 72, message: "allChangesForCluster is only allowed on the admin database")
                    )
                }
                scope = .cluster
            } else {
                if ["admin", "config", "local"].contains(database) {
                    return .failure(
                        CommandFailure(
                            code: 73,
                            message: "$changeStream may not be opened on the internal \(database) database"
                        )
                    )
                }
                scope = .database(database)
            }
            replyNamespace = "\(database).$cmd.aggregate"
        default:
            return .failure(CommandFailure(code: 2, message: "aggregate must be a collection name or 1"))
        }
        // Start options (§1.1, §2.3).
        let resumeAfter = spec["resumeAfter"]?.documentValue
        let startAfter = spec["startAfter"]?.documentValue
        let startAtOperationTime = spec["startAtOperationTime"]?.timestampValue
        if resumeAfter != nil && startAfter != nil {
            return .failure(
                CommandFailure(
                    code: 50865,
                    message: "Do not specify both 'resumeAfter' and 'startAfter' in a $changeStream stage"
                )
            )
        }
        if startAtOperationTime != nil && (resumeAfter != nil || startAfter != nil) {
            return .failure(
                CommandFailure(
                    code: 40674,
                    message: "Only one type of resume option is allowed, but multiple were found."
                )
            )
        }
        let lookup: Bool
        switch spec["fullDocument"]?.stringValue ?? "default" {
        case "default": lookup = false
        case "updateLookup": lookup = true
        default:
            return .failure(
                CommandFailure(code: 2, message: "the double supports fullDocument 'default' and 'updateLookup' only")
            )
        }
        var match: DocumentFilter?
        for stage in stages.dropFirst() {
            guard let filter = stage.documentValue?["$match"]?.documentValue, stage.documentValue?.keys.count == 1
            else {
                return .failure(CommandFailure(code: 2, message: "the double supports only $match after $changeStream"))
            }
            match = DocumentFilter(filter)
        }
        let startAt: BSONTimestamp
        var skipThrough: String?
        let initialToken: String
        if let token = resumeAfter ?? startAfter {
            guard let data = token["_data"]?.stringValue, let decoded = ChangeStreamResumeToken.decode(token) else {
                return .failure(CommandFailure(code: 260, message: "Failed to decode the resume token"))
            }
            if resumeAfter != nil && decoded.fromInvalidate {
                return .failure(
                    CommandFailure(
                        code: 260,
                        message:
                            "Attempting to resume a change stream using 'resumeAfter' is not allowed from an invalidate notification."
                    )
                )
            }
            if case .collection = scope, decoded.tokenType == .event, decoded.collectionUUID == nil {
                return .failure(
                    CommandFailure(
                        code: 260,
                        message:
                            "Attempted to resume a single-collection stream, but the resume token does not include a UUID."
                    )
                )
            }
            if let lost = historyLost(at: decoded.clusterTime) { return .failure(lost) }
            if decoded.tokenType == .event {
                // §2.3/S:ensure: the event the token names must still be found at its clusterTime.
                let events = changeEvents(at: decoded.clusterTime, scope: scope)
                if !events.contains(where: { $0.token == data.uppercased() }) {
                    return .failure(
                        CommandFailure(
                            code: 280,
                            message: "cannot resume stream; the resume token was not found. \(token)"
                        )
                    )
                }
            }
            startAt = decoded.clusterTime
            skipThrough = data.uppercased()
            initialToken = data.uppercased()
        } else if let time = startAtOperationTime {
            if let lost = historyLost(at: time) { return .failure(lost) }
            startAt = time
            initialToken = ChangeStreamResumeToken.highWaterMark(time).data
        } else {
            // One tick beyond the most recent operation.
            let next = BSONTimestamp(seconds: lastTimestamp.seconds, increment: lastTimestamp.increment &+ 1)
            startAt = next
            initialToken = ChangeStreamResumeToken.highWaterMark(next).data
        }
        let cursor = ChangeStreamCursor(
            id: nextCursorId,
            scope: scope,
            namespace: replyNamespace,
            lookup: lookup,
            batchSize: cursorOptions["batchSize"]?.int64Value.map { Int(clamping: $0) },
            match: match,
            startAt: startAt,
            skipThrough: skipThrough,
            postBatchResumeToken: initialToken
        )
        nextCursorId += 1
        let (batch, invalidated) = takeChangeBatch(cursor, limit: cursor.batchSize ?? 101)
        if batch.isEmpty, let tooLarge = cursor.tooLarge { return .failure(tooLarge) }
        if !invalidated { changeStreams.cursors[cursor.id] = cursor }
        return .success(changeStreamReply(cursor, batch: batch, first: true, invalidated: invalidated))
    }

    /// 286 when the oplog no longer reaches back to `time` (§6.1).
    private func historyLost(at time: BSONTimestamp) -> CommandFailure? {
        guard let oldest = liveOplog.first, oldest.ts > time else { return nil }
        return CommandFailure(
            code: 286,
            message: "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
            extra: [("errorLabels", ["NonResumableChangeStreamError"])]
        )
    }

    private func changeStreamReply(
        _ cursor: ChangeStreamCursor,
        batch: [BSONDocument],
        first: Bool,
        invalidated: Bool
    ) -> BSONDocument {
        var body: BSONDocument = [
            first ? "firstBatch" : "nextBatch": .array(batch.map { .document($0) }),
            "postBatchResumeToken": ["_data": .string(cursor.postBatchResumeToken)],
        ]
        if invalidated { body.append("invalidated", true) }
        body.append("id", .int64(invalidated ? 0 : cursor.id))
        body.append("ns", .string(cursor.namespace))
        return ["cursor": .document(body)]
    }

    /// Scans the oplog into `cursor.pending` and returns up to `limit` events (all when `limit <= 0`, capped by
    /// 16 MB), moving the post-batch resume token (§2.3). True when an invalidate ended the stream.
    private func takeChangeBatch(_ cursor: ChangeStreamCursor, limit: Int) -> ([BSONDocument], Bool) {
        let wanted = limit > 0 ? limit : Int.max
        scanChanges(cursor, until: wanted)
        var batch: [BSONDocument] = []
        var bytes = 0
        var invalidated = false
        var taken = 0
        defer { if !invalidated { cursor.pending.removeFirst(taken) } }
        while taken < cursor.pending.count && batch.count < wanted {
            let next = cursor.pending[taken]
            var document = next.document
            if cursor.lookup, let lookup = next.lookup {
                let current = collections[lookup.namespace]?.documents.first { $0["_id"] == lookup.id }
                document = Self.inserting(
                    ("fullDocument", current.map { .document($0) } ?? .null),
                    before: "ns",
                    in: document
                )
            }
            let size = document.byteCount
            if size > Self.maximumEventSize {
                // §7.5: an event over 16 MB fails the cursor (no $changeStreamSplitLargeEvent support).
                if batch.isEmpty {
                    cursor.tooLarge = CommandFailure(
                        code: 10334,
                        message:
                            "Executor error during getMore :: caused by :: BSONObj size: \(size) is invalid. Size must be between 0 and 16793600(16MB)"
                    )
                }
                break
            }
            if !batch.isEmpty && bytes + size > 16 * 1024 * 1024 { break }
            bytes += size
            taken += 1
            batch.append(document)
            cursor.postBatchResumeToken = next.token
            if next.invalidates {
                invalidated = true
                cursor.pending.removeAll()
                break
            }
        }
        if !invalidated, taken == cursor.pending.count, let scanned = cursor.scannedThrough {
            let mark = ChangeStreamResumeToken.highWaterMark(scanned).data
            if mark > cursor.postBatchResumeToken { cursor.postBatchResumeToken = mark }
        }
        return (batch, invalidated)
    }

    /// Turns oplog entries after the cursor's position into pending events until `wanted` are pending.
    private func scanChanges(_ cursor: ChangeStreamCursor, until wanted: Int) {
        var index =
            cursor.scannedThrough.map { oplogIndex(after: $0, strict: true) }
            ?? oplogIndex(after: cursor.startAt, strict: false)
        while index < oplog.count && cursor.pending.count < wanted {
            let record = oplog[index]
            for event in cachedChangeEvents(at: index, scope: cursor.scope) {
                if let skip = cursor.skipThrough, event.token <= skip { continue }
                if let match = cursor.match, !match.matches(event.document) { continue }
                cursor.pending.append(event)
            }
            cursor.scannedThrough = record.ts
            index += 1
        }
    }

    /// The events of `oplog[index]` for `scope`. CRUD and applyOps events do not depend on the scope beyond
    /// visibility: they are built once per entry (cluster scope, the widest) and filtered by namespace here;
    /// command events (drop, rename, dropDatabase, invalidate) depend on the scope and are built each time.
    func cachedChangeEvents(at index: Int, scope: ChangeStreamWatchScope) -> [PendingChangeEvent] {
        let events: [PendingChangeEvent]
        if let cached = oplog[index].changeEvents {
            events = cached
        } else {
            let record = oplog[index]
            let isCommand =
                record.document["op"]?.stringValue == "c"
                && record.document["o"]?.documentValue?["applyOps"] == nil
            if isCommand { return changeEvents(for: record, scope: scope) }
            events = changeEvents(for: record, scope: .cluster)
            oplog[index].changeEvents = events
        }
        if scope == .cluster { return events }
        return events.filter { Self.visible($0.database, $0.collection, in: scope) }
    }

    /// Builds the change events of every live CRUD/applyOps entry now (the cache `cachedChangeEvents` reads), so
    /// a benchmark's measured window serves events rather than producing them. Returns how many entries it built.
    @discardableResult
    func prepareChangeEvents() -> Int {
        var built = 0
        for index in oplogStart..<oplog.count where oplog[index].changeEvents == nil {
            _ = cachedChangeEvents(at: index, scope: .cluster)
            built += 1
        }
        return built
    }

    /// The events the entries at exactly `time` produce for `scope` (for the 280 check).
    private func changeEvents(at time: BSONTimestamp, scope: ChangeStreamWatchScope) -> [PendingChangeEvent] {
        var index = oplogIndex(after: time, strict: false)
        var events: [PendingChangeEvent] = []
        while index < oplog.count, oplog[index].ts == time {
            events += changeEvents(for: oplog[index], scope: scope)
            index += 1
        }
        return events
    }

    /// A change-stream getMore: waits up to `maxTimeMS` (default 1000) for at least one event (§2.4).
    func changeStreamGetMore(
        _ cursor: ChangeStreamCursor,
        _ command: BSONDocument,
        context: FakeConnectionContext
    ) -> GetMoreOutcome {
        if pendingGetMoreHangUps > 0 {
            pendingGetMoreHangUps -= 1
            return .hangUp
        }
        if !changeStreams.pendingFailures.isEmpty || !pendingGetMoreFailures.isEmpty {
            let failure: (code: Int32, message: String, resumable: Bool)
            if !changeStreams.pendingFailures.isEmpty {
                failure = changeStreams.pendingFailures.removeFirst()
            } else {
                let legacy = pendingGetMoreFailures.removeFirst()
                failure = (legacy.code, legacy.message, Self.resumableChangeStreamCodes.contains(legacy.code))
            }
            changeStreams.cursors[cursor.id] = nil
            var extra: [(String, BSONValue)] = []
            if failure.resumable { extra.append(("errorLabels", ["ResumableChangeStreamError"])) }
            return .result(.failure(CommandFailure(code: failure.code, message: failure.message, extra: extra)))
        }
        if let collection = command["collection"]?.stringValue,
            cursor.namespace.split(separator: ".", maxSplits: 1).last.map(String.init) != collection
        {
            return .result(
                .failure(
                    CommandFailure(code: 13, message: "Requested getMore on namespace with a different collection")
                )
            )
        }
        let batchSize = command["batchSize"]?.int64Value.map { Int(clamping: $0) } ?? 0
        let maxTime = command["maxTimeMS"]?.int64Value ?? 1000
        let deadline = Date().addingTimeInterval(Double(max(maxTime, 0)) / 1000)
        while true {
            if let scanned = cursor.scannedThrough, let oldest = liveOplog.first, oldest.ts > scanned,
                cursor.pending.isEmpty
            {
                changeStreams.cursors[cursor.id] = nil
                return .result(
                    .failure(
                        CommandFailure(
                            code: 136,
                            message:
                                "Executor error during getMore :: caused by :: CollectionScan died due to position in capped collection being deleted."
                        )
                    )
                )
            }
            let (batch, invalidated) = takeChangeBatch(cursor, limit: batchSize)
            if batch.isEmpty, let tooLarge = cursor.tooLarge {
                changeStreams.cursors[cursor.id] = nil
                return .result(.failure(tooLarge))
            }
            if !batch.isEmpty || Date() >= deadline {
                if invalidated { changeStreams.cursors[cursor.id] = nil }
                return .result(
                    .success(changeStreamReply(cursor, batch: batch, first: false, invalidated: invalidated))
                )
            }
            _ = condition.wait(until: deadline)
            if generation != context.generation { return .hangUp }
            if pendingGetMoreHangUps > 0 {
                pendingGetMoreHangUps -= 1
                return .hangUp
            }
            if changeStreams.cursors[cursor.id] == nil {
                return .result(.failure(CommandFailure(code: 43, message: "cursor id \(cursor.id) not found")))
            }
            advance()
        }
    }

    // MARK: Events from oplog entries (§3, §4, §7.4)

    private static func split(_ namespace: String) -> (String, String) {
        let parts = namespace.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        return (parts.first.map(String.init) ?? "", parts.count > 1 ? String(parts[1]) : "")
    }

    private static func visible(_ database: String, _ collection: String, in scope: ChangeStreamWatchScope) -> Bool {
        if collection.hasPrefix("system.") || collection.hasPrefix("$") { return false }
        switch scope {
        case .cluster: return !["admin", "config", "local"].contains(database)
        case .database(let name): return database == name
        case .collection(let db, let coll): return database == db && (collection == coll || collection.isEmpty)
        }
    }

    /// The events one oplog entry produces for `scope`, in order, with their tokens.
    func changeEvents(for record: OplogRecord, scope: ChangeStreamWatchScope) -> [PendingChangeEvent] {
        let entry = record.document
        guard let op = entry["op"]?.stringValue, entry["fromMigrate"]?.isTruthy != true else { return [] }
        let wall = entry["wall"]
        if op == "c", let operations = entry["o"]?.documentValue?["applyOps"]?.arrayValue {
            var events: [PendingChangeEvent] = []
            let session: [(String, BSONValue)] =
                entry["lsid"].map { lsid in
                    [("txnNumber", entry["txnNumber"] ?? .null), ("lsid", lsid)]
                } ?? []
            for (index, operation) in operations.enumerated() {
                guard let document = operation.documentValue else { continue }
                events += crudEvents(
                    document,
                    ts: record.ts,
                    wall: wall,
                    txnOpIndex: index,
                    session: session,
                    scope: scope
                )
            }
            return events
        }
        if op == "c" {
            return commandEvents(entry, ts: record.ts, wall: wall, scope: scope)
        }
        return crudEvents(entry, ts: record.ts, wall: wall, txnOpIndex: 0, session: [], scope: scope)
    }

    private func crudEvents(
        _ entry: BSONDocument,
        ts: BSONTimestamp,
        wall: BSONValue?,
        txnOpIndex: Int,
        session: [(String, BSONValue)],
        scope: ChangeStreamWatchScope
    ) -> [PendingChangeEvent] {
        guard let op = entry["op"]?.stringValue, let namespace = entry["ns"]?.stringValue,
            let object = entry["o"]?.documentValue
        else { return [] }
        let (database, collection) = Self.split(namespace)
        guard !collection.isEmpty, Self.visible(database, collection, in: scope) else { return [] }
        let uuid = entry["ui"].flatMap { value -> [UInt8]? in
            if case .binary(let binary) = value { return binary.data }
            return nil
        }
        var operationType: String
        var fullDocument: BSONValue?
        var documentKey: BSONDocument
        var updateDescription: BSONDocument?
        var lookup: (String, BSONValue)?
        switch op {
        case "i":
            operationType = "insert"
            fullDocument = .document(object)
            documentKey = entry["o2"]?.documentValue ?? object["_id"].map { ["_id": $0] } ?? [:]
        case "u":
            documentKey = entry["o2"]?.documentValue ?? object["_id"].map { ["_id": $0] } ?? [:]
            if case .document(let diff)? = object["diff"], object["$v"]?.int64Value == 2 {
                operationType = "update"
                updateDescription = Self.updateDescription(fromDiff: diff)
                if let id = documentKey["_id"] { lookup = (namespace, id) }
            } else if object.keys.contains(where: { $0.hasPrefix("$") }) {
                return []  // $v:1 updates are not produced by 7.0 (§4)
            } else {
                operationType = "replace"
                fullDocument = .document(object)
            }
        case "d":
            operationType = "delete"
            documentKey = object
        default:
            return []
        }
        let token = ChangeStreamResumeToken(
            clusterTime: ts,
            tokenType: .event,
            txnOpIndex: txnOpIndex,
            collectionUUID: uuid,
            eventIdentifier: ["operationType": .string(operationType), "documentKey": .document(documentKey)]
        ).data
        var document = BSONDocument()
        for (key, value) in session { document.append(key, value) }
        document.append("_id", ["_data": .string(token)])
        document.append("operationType", .string(operationType))
        document.append("clusterTime", .timestamp(ts))
        if let wall { document.append("wallTime", wall) }
        if let fullDocument { document.append("fullDocument", fullDocument) }
        document.append("ns", ["db": .string(database), "coll": .string(collection)])
        document.append("documentKey", .document(documentKey))
        if let updateDescription { document.append("updateDescription", .document(updateDescription)) }
        let pendingLookup = operationType == "update" ? lookup.map { (namespace: $0.0, id: $0.1) } : nil
        var event = PendingChangeEvent(
            token: token,
            clusterTime: ts,
            invalidates: false,
            document: document,
            lookup: pendingLookup
        )
        event.database = database
        event.collection = collection
        return [event]
    }

    private func commandEvents(
        _ entry: BSONDocument,
        ts: BSONTimestamp,
        wall: BSONValue?,
        scope: ChangeStreamWatchScope
    ) -> [PendingChangeEvent] {
        guard let object = entry["o"]?.documentValue, let name = object.firstKey,
            let namespace = entry["ns"]?.stringValue
        else { return [] }
        let (database, _) = Self.split(namespace)
        let uuid = entry["ui"].flatMap { value -> [UInt8]? in
            if case .binary(let binary) = value { return binary.data }
            return nil
        }
        var document = BSONDocument()
        var identifier: BSONDocument
        let invalidates: Bool
        var eventUUID = uuid
        switch name {
        case "drop":
            guard let collection = object["drop"]?.stringValue, Self.visible(database, collection, in: scope) else {
                return []
            }
            identifier = ["operationType": "drop"]
            invalidates = scope == .collection(database, collection)
            document.append("_id", ["_data": .string("")])
            document.append("operationType", "drop")
            document.append("clusterTime", .timestamp(ts))
            if let wall { document.append("wallTime", wall) }
            document.append("ns", ["db": .string(database), "coll": .string(collection)])
        case "renameCollection":
            guard let from = object["renameCollection"]?.stringValue, let to = object["to"]?.stringValue else {
                return []
            }
            let (fromDatabase, fromCollection) = Self.split(from)
            let (toDatabase, toCollection) = Self.split(to)
            guard Self.visible(fromDatabase, fromCollection, in: scope) else { return [] }
            let target: BSONDocument = ["db": .string(toDatabase), "coll": .string(toCollection)]
            identifier = ["operationType": "rename", "operationDescription": ["to": .document(target)]]
            invalidates = scope == .collection(fromDatabase, fromCollection)
            document.append("to", .document(target))
            document.append("_id", ["_data": .string("")])
            document.append("operationType", "rename")
            document.append("clusterTime", .timestamp(ts))
            if let wall { document.append("wallTime", wall) }
            document.append("ns", ["db": .string(fromDatabase), "coll": .string(fromCollection)])
        case "dropDatabase":
            switch scope {
            case .cluster: invalidates = false
            case .database(let name) where name == database: invalidates = true
            default: return []
            }
            guard Self.visible(database, "", in: scope) else { return [] }
            identifier = ["operationType": "dropDatabase"]
            eventUUID = nil
            document.append("_id", ["_data": .string("")])
            document.append("operationType", "dropDatabase")
            document.append("clusterTime", .timestamp(ts))
            if let wall { document.append("wallTime", wall) }
            document.append("ns", ["db": .string(database)])
        default:
            return []  // create, createIndexes, …: expanded events only (§3.1)
        }
        var token = ChangeStreamResumeToken(
            clusterTime: ts,
            tokenType: .event,
            collectionUUID: eventUUID,
            eventIdentifier: identifier
        )
        document.set("_id", ["_data": .string(token.data)])
        var events = [
            PendingChangeEvent(token: token.data, clusterTime: ts, invalidates: false, document: document, lookup: nil)
        ]
        if invalidates {
            token.fromInvalidate = true
            var invalidate: BSONDocument = ["_id": ["_data": .string(token.data)], "operationType": "invalidate"]
            invalidate.append("clusterTime", .timestamp(ts))
            if let wall { invalidate.append("wallTime", wall) }
            events.append(
                PendingChangeEvent(
                    token: token.data,
                    clusterTime: ts,
                    invalidates: true,
                    document: invalidate,
                    lookup: nil
                )
            )
        }
        return events
    }

    /// `updateDescription` from a `$v: 2` diff (§4 parser rules).
    static func updateDescription(fromDiff diff: BSONDocument) -> BSONDocument {
        var updated = BSONDocument()
        var removed: [BSONValue] = []
        var truncated: [BSONValue] = []
        parseDiff(diff, prefix: nil, updated: &updated, removed: &removed, truncated: &truncated)
        return [
            "updatedFields": .document(updated), "removedFields": .array(removed),
            "truncatedArrays": .array(truncated),
        ]
    }

    private static func join(_ prefix: String?, _ name: String) -> String {
        prefix.map { $0 + "." + name } ?? name
    }

    private static func parseDiff(
        _ diff: BSONDocument,
        prefix: String?,
        updated: inout BSONDocument,
        removed: inout [BSONValue],
        truncated: inout [BSONValue]
    ) {
        if diff["a"]?.isTruthy == true, let path = prefix {
            for (key, value) in diff.elements {
                if key == "l", let size = value.int64Value {
                    truncated.append(["field": .string(path), "newSize": .int32(Int32(clamping: size))])
                } else if key.hasPrefix("u") && key.count > 1 {
                    updated.append(path + "." + key.dropFirst(), value)
                } else if key.hasPrefix("s") && key.count > 1, let sub = value.documentValue {
                    parseDiff(
                        sub,
                        prefix: path + "." + key.dropFirst(),
                        updated: &updated,
                        removed: &removed,
                        truncated: &truncated
                    )
                }
            }
            return
        }
        for section in ["u", "i"] {
            for (key, value) in diff[section]?.documentValue?.elements ?? [] {
                updated.append(join(prefix, key), value)
            }
        }
        for key in diff["d"]?.documentValue?.keys ?? [] { removed.append(.string(join(prefix, key))) }
        for (key, value) in diff.elements where key.hasPrefix("s") && key.count > 1 {
            guard let sub = value.documentValue else { continue }
            parseDiff(
                sub,
                prefix: join(prefix, String(key.dropFirst())),
                updated: &updated,
                removed: &removed,
                truncated: &truncated
            )
        }
    }

    /// `document` with `field` inserted before `key` (or appended when `key` is absent).
    static func inserting(_ field: (String, BSONValue), before key: String, in document: BSONDocument) -> BSONDocument {
        var out = BSONDocument()
        var placed = false
        for (name, value) in document.elements {
            if name == field.0 { continue }
            if name == key && !placed {
                out.append(field.0, field.1)
                placed = true
            }
            out.append(name, value)
        }
        if !placed { out.append(field.0, field.1) }
        return out
    }
}
