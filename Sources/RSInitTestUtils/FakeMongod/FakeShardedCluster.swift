public import BSON
import Foundation

/// A sharded cluster double: a mongos router (`FakeMongos`, on its own loopback port) over in-process shard
/// replica sets (single-member primaries named `shard0`, `shard1`, …), for tests and `mongod-double --scenario
/// mongos`. libmongoc sees a mongos (`hello` says `msg: "isdbgrid"`, no `setName`/`hosts`).
///
/// The shard key of every collection is `_id`, placed by a fixed hash (FNV-1a 64 of the `_id` value's BSON bytes,
/// modulo the shard count; `shardIndex(for:)`), so a test can tell where a document lands. `moveDocument` migrates
/// one document the way a chunk migration does (insert on the recipient and delete on the donor, both written with
/// `fromMigrate: true`, so change streams do not show them) and pins its `_id` to the recipient.
public final class FakeShardedCluster: @unchecked Sendable {
    /// The shard replica sets' primaries, in shard order.
    public let shards: [FakeMongod]
    /// The router.
    public let mongos: FakeMongod
    let router: FakeMongosRouter

    /// A mongodb:// URI for the router (libmongoc discovers a mongos; short timeouts).
    public var uri: String {
        "mongodb://\(mongos.hostAndPort)/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000"
    }

    /// Starts `shardCount` shard primaries and a router. `periodicNoopInterval` is every shard's
    /// `periodicNoopIntervalSecs`: a cold shard's no-ops are what let the router release other shards' events
    /// (change-stream fact sheet §7.2), so tests use a short one.
    public static func start(
        shardCount: Int = 2,
        port: UInt16 = 0,
        periodicNoopInterval: Duration = .milliseconds(100)
    ) throws -> FakeShardedCluster {
        var shards: [FakeMongod] = []
        for index in 0..<max(shardCount, 1) {
            shards.append(
                try FakeMongod.start(
                    FakeMongodConfiguration(
                        scenario: .primary(setName: "shard\(index)"),
                        periodicNoopInterval: periodicNoopInterval
                    )
                )
            )
        }
        let router = FakeMongosRouter(shards: shards.map(\.core))
        let mongos = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .standalone, port: port, periodicNoopInterval: nil)
        )
        mongos.core.locked { mongos.core.router = router }
        return FakeShardedCluster(shards: shards, mongos: mongos, router: router)
    }

    private init(shards: [FakeMongod], mongos: FakeMongod, router: FakeMongosRouter) {
        self.shards = shards
        self.mongos = mongos
        self.router = router
    }

    deinit { stop() }

    /// Stops the router and every shard.
    public func stop() {
        mongos.stop()
        for shard in shards { shard.stop() }
    }

    /// The shard a document with this `_id` lives on (the hash rule, or where `moveDocument` put it).
    public func shardIndex(for id: BSONValue) -> Int { router.shardIndex(for: id) }

    /// Migrates the document with `id` in `namespace` to shard `target` (fromMigrate writes on both shards).
    /// False when no shard holds it.
    @discardableResult
    public func moveDocument(id: BSONValue, in namespace: String, toShard target: Int) -> Bool {
        router.moveDocument(id: id, namespace: namespace, target: target)
    }
}

/// The router's command handling. Runs on the mongos connection threads without the mongos core's lock; talks to
/// the shards by handing commands to their cores in process (each takes its own lock).
final class FakeMongosRouter: @unchecked Sendable {
    let shards: [FakeMongodCore]
    private let lock = NSLock()
    private var pinned: [[UInt8]: Int] = [:]
    private var cursors: [Int64: RouterChangeStream] = [:]
    private var nextCursorId: Int64 = 8_316_000_000_000_000_001
    private var requestCounter: Int32 = 1
    private let processId = FakeMongodCore.randomObjectID()
    private let sessions: [FakeConnectionSession]

    init(shards: [FakeMongodCore]) {
        self.shards = shards
        self.sessions = shards.map { _ in FakeConnectionSession() }
    }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Placement

    /// The `_id` value's BSON bytes (as the value of a one-field document), the placement key.
    static func keyBytes(_ id: BSONValue) -> [UInt8] {
        var document = BSONDocument()
        document.append("k", id)
        return document.bytes
    }

    static func hash(_ id: BSONValue) -> UInt64 {
        let bytes = Self.keyBytes(id)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    func shardIndex(for id: BSONValue) -> Int {
        let key = Self.keyBytes(id)
        if let pinned = withLock({ pinned[key] }) { return pinned }
        return Int(Self.hash(id) % UInt64(shards.count))
    }

    func moveDocument(id: BSONValue, namespace: String, target: Int) -> Bool {
        guard shards.indices.contains(target) else { return false }
        let source = shardIndex(for: id)
        guard source != target else { return true }
        let document: BSONDocument? = shards[source].locked {
            let core = shards[source]
            guard let index = core.collections[namespace]?.documents.firstIndex(where: { $0["_id"] == id }),
                let document = core.collections[namespace]?.documents.remove(at: index)
            else { return nil }
            core.appendOplog([
                "op": "d", "ns": .string(namespace), "o": ["_id": id], "fromMigrate": true,
            ])
            return document
        }
        guard let document else { return false }
        let time = clusterTime()
        shards[target].locked {
            let core = shards[target]
            gossip(time, to: core)
            if core.collections[namespace] == nil {
                core.collections[namespace] = FakeCollection(
                    uuid: BSONBinary(subtype: 4, data: (0..<16).map { _ in UInt8.random(in: 0...255) })
                )
            }
            core.collections[namespace]?.documents.append(document)
            core.appendOplog([
                "op": "i", "ns": .string(namespace), "o": .document(document), "o2": ["_id": id],
                "fromMigrate": true,
            ])
        }
        withLock { pinned[Self.keyBytes(id)] = target }
        return true
    }

    // MARK: Cluster time

    /// The newest time any shard has (the router's vector clock).
    func clusterTime() -> BSONTimestamp {
        shards.map { core in core.locked { core.lastTimestamp } }.max() ?? BSONTimestamp(seconds: 0, increment: 0)
    }

    /// `$clusterTime` gossip: the shard's logical clock moves to at least `time` (under the shard's lock). An idle
    /// shard stays idle for its periodic no-op.
    func gossip(_ time: BSONTimestamp, to core: FakeMongodCore) {
        guard time > core.lastTimestamp else { return }
        let idle = core.lastNoopCheck == core.lastTimestamp
        core.lastTimestamp = time
        if idle { core.lastNoopCheck = time }
    }

    /// Runs `command` on shard `index` as a client would (its own lock, faults and replies).
    func run(_ command: BSONDocument, on index: Int) -> Result<BSONDocument, CommandFailure> {
        let core = shards[index]
        let time = clusterTime()
        let generation = core.locked { () -> Int in
            gossip(time, to: core)
            return core.generation
        }
        let id = withLock { () -> Int32 in
            requestCounter &+= 1
            return requestCounter
        }
        let request = WireRequest(requestID: id, kind: .message(flagBits: 0), command: command)
        let context = FakeConnectionContext(
            connectionId: 1,
            session: sessions[index],
            secondaryOkFlag: false,
            generation: generation
        )
        switch core.handle(request, context: context) {
        case .reply(let reply):
            if reply["ok"]?.isTruthy == true { return .success(reply) }
            var extra: [(String, BSONValue)] = []
            if let labels = reply["errorLabels"] { extra.append(("errorLabels", labels)) }
            return .failure(
                CommandFailure(
                    code: reply["code"]?.int64Value.map { Int32(clamping: $0) } ?? 1,
                    message: reply["errmsg"]?.stringValue ?? "shard error",
                    extra: extra
                )
            )
        case .hangUp, .none:
            return .failure(
                CommandFailure(
                    code: 6,
                    message: "Encountered non-retryable error during query :: caused by :: shard\(index) hung up",
                    extra: [("errorLabels", ["ResumableChangeStreamError"])]
                )
            )
        }
    }

    // MARK: Commands

    func handle(_ request: WireRequest, context: FakeConnectionContext) -> FakeResponse {
        let command = request.command
        let name = command.firstKey ?? ""
        let database = command["$db"]?.stringValue ?? "admin"
        let result: Result<BSONDocument, CommandFailure>
        switch name.lowercased() {
        case "hello", "ismaster":
            result = .success(hello(command, legacy: name.lowercased() == "ismaster", context: context))
        case "ping", "endsessions", "refreshsessions", "killallsessions":
            result = .success([:])
        case "buildinfo":
            result = .success([
                "version": "7.0.14", "versionArray": [7, 0, 14, 0], "bits": 64, "maxBsonObjectSize": 16_777_216,
            ])
        case _ where database == "local":
            result = .failure(CommandFailure(code: 20, message: "Can't use 'local' database through mongos"))
        case "insert":
            result = insert(command, database: database)
        case "update":
            result = modify(command, database: database, statements: "updates", key: "q")
        case "delete":
            result = modify(command, database: database, statements: "deletes", key: "q")
        case "create", "drop", "dropdatabase":
            result = ddl(command)
        case "find":
            result = find(command, database: database)
        case "aggregate":
            result = aggregate(command, database: database)
        case "getmore":
            result = getMore(command)
        case "killcursors":
            result = killCursors(command)
        default:
            result = .failure(CommandFailure(code: 59, message: "no such command: '\(name)'"))
        }
        return request.moreToCome ? .none : .reply(finish(result))
    }

    private func finish(_ result: Result<BSONDocument, CommandFailure>) -> BSONDocument {
        var document = CommandReply.document(result)
        CommandReply.appendClusterTime(clusterTime(), to: &document)
        return document
    }

    /// mongos's `hello`: writable, `msg: "isdbgrid"`, no replica-set fields (mongod-behaviour §… "isdbgrid").
    private func hello(_ command: BSONDocument, legacy: Bool, context: FakeConnectionContext) -> BSONDocument {
        var reply = BSONDocument()
        if command["helloOk"]?.isTruthy == true { reply.append("helloOk", true) }
        reply.append(legacy ? "ismaster" : "isWritablePrimary", true)
        reply.append("msg", "isdbgrid")
        reply.append("topologyVersion", ["processId": .objectID(processId), "counter": .int64(0)])
        reply.append("maxBsonObjectSize", .int32(16_777_216))
        reply.append("maxMessageSizeBytes", .int32(48_000_000))
        reply.append("maxWriteBatchSize", .int32(100_000))
        reply.append("localTime", .datetime(Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))))
        reply.append("logicalSessionTimeoutMinutes", .int32(30))
        reply.append("connectionId", .int32(context.connectionId))
        reply.append("minWireVersion", .int32(0))
        reply.append("maxWireVersion", .int32(21))
        reply.append("readOnly", false)
        return reply
    }

    // MARK: Writes

    private static func forwarded(
        _ command: BSONDocument,
        replacing key: String,
        with values: [BSONValue]
    )
        -> BSONDocument
    {
        var copy = BSONDocument()
        for (k, v) in command.elements where k != "lsid" && k != "$clusterTime" && k != "txnNumber" {
            copy.append(k, k == key ? .array(values) : v)
        }
        return copy
    }

    private func insert(_ command: BSONDocument, database: String) -> Result<BSONDocument, CommandFailure> {
        guard let documents = command["documents"]?.arrayValue else {
            return .failure(CommandFailure(code: 9, message: "BSON field 'insert.documents' is missing"))
        }
        var perShard: [[BSONValue]] = shards.map { _ in [] }
        for value in documents {
            guard var document = value.documentValue else {
                return .failure(CommandFailure(code: 14, message: "documents must be objects"))
            }
            if document["_id"] == nil {
                var withID: BSONDocument = ["_id": .objectID(FakeMongodCore.randomObjectID())]
                for (k, v) in document.elements { withID.append(k, v) }
                document = withID
            }
            perShard[shardIndex(for: document["_id"] ?? .null)].append(.document(document))
        }
        var inserted: Int64 = 0
        var writeErrors: [BSONValue] = []
        for (index, batch) in perShard.enumerated() where !batch.isEmpty {
            switch run(Self.forwarded(command, replacing: "documents", with: batch), on: index) {
            case .success(let reply):
                inserted += reply["n"]?.int64Value ?? 0
                writeErrors += reply["writeErrors"]?.arrayValue ?? []
            case .failure(let failure):
                return .failure(failure)
            }
        }
        var reply: BSONDocument = ["n": .int32(Int32(clamping: inserted))]
        if !writeErrors.isEmpty { reply.append("writeErrors", .array(writeErrors)) }
        return .success(reply)
    }

    /// The `_id` a query targets exactly (`{_id: v}` with a non-operator value), if any.
    static func targetedID(_ query: BSONDocument) -> BSONValue? {
        guard let id = query["_id"] else { return nil }
        if let document = id.documentValue, document.firstKey?.hasPrefix("$") == true { return nil }
        return id
    }

    /// update/delete: statements that name an `_id` go to its shard; others go to every shard (a single-document
    /// statement stops at the first shard that matched). An upsert must name the shard key (61, as mongos).
    private func modify(
        _ command: BSONDocument,
        database: String,
        statements key: String,
        key queryKey: String
    ) -> Result<BSONDocument, CommandFailure> {
        guard let statements = command[key]?.arrayValue else {
            return .failure(CommandFailure(code: 9, message: "BSON field '\(key)' is missing"))
        }
        var n: Int64 = 0
        var modified: Int64 = 0
        var upserted: [BSONValue] = []
        for (position, value) in statements.enumerated() {
            guard let statement = value.documentValue, let query = statement[queryKey]?.documentValue else {
                return .failure(CommandFailure(code: 9, message: "malformed \(key) statement"))
            }
            let id = Self.targetedID(query)
            let multi = key == "updates" ? statement["multi"]?.isTruthy == true : statement["limit"]?.int64Value == 0
            if id == nil, statement["upsert"]?.isTruthy == true {
                return .failure(
                    CommandFailure(
                        code: 61,
                        message:
                            "Failed to target upsert by query :: could not extract exact shard key :: Shard key (_id) not found in query"
                    )
                )
            }
            let targets = id.map { [shardIndex(for: $0)] } ?? Array(shards.indices)
            shardLoop: for index in targets {
                switch run(Self.forwarded(command, replacing: key, with: [value]), on: index) {
                case .success(let reply):
                    let matched = reply["n"]?.int64Value ?? 0
                    n += matched
                    modified += reply["nModified"]?.int64Value ?? 0
                    for entry in reply["upserted"]?.arrayValue ?? [] {
                        guard var document = entry.documentValue else { continue }
                        document.set("index", .int32(Int32(clamping: position)))
                        upserted.append(.document(document))
                    }
                    if matched > 0 && !multi { break shardLoop }
                case .failure(let failure):
                    return .failure(failure)
                }
            }
        }
        var reply: BSONDocument = ["n": .int32(Int32(clamping: n))]
        if key == "updates" {
            reply.append("nModified", .int32(Int32(clamping: modified)))
            if !upserted.isEmpty { reply.append("upserted", .array(upserted)) }
        }
        return .success(reply)
    }

    /// create/drop/dropDatabase run on every shard; the first shard (every database's primary shard) writes the
    /// visible oplog entry, the others are marked `fromMigrate` as 7.0 does, so a stream shows one event.
    private func ddl(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        var first: Result<BSONDocument, CommandFailure> = .success([:])
        for index in shards.indices {
            let core = shards[index]
            let before = core.locked { core.oplog.count }
            let result = run(Self.forwarded(command, replacing: "", with: []), on: index)
            if index == 0 {
                first = result
                continue
            }
            core.locked {
                for position in before..<core.oplog.count where core.oplog[position].document["op"]?.stringValue == "c"
                {
                    let record = core.oplog[position]
                    var document = record.document
                    document.set("fromMigrate", true)
                    core.oplog[position] = OplogRecord(ts: record.ts, document: document)
                }
            }
        }
        return first
    }

    private func find(_ command: BSONDocument, database: String) -> Result<BSONDocument, CommandFailure> {
        guard let collection = command["find"]?.stringValue else {
            return .failure(CommandFailure(code: 2, message: "find must name a collection"))
        }
        var documents: [BSONValue] = []
        var copy = Self.forwarded(command, replacing: "", with: [])
        copy.set("batchSize", .int64(Int64(Int32.max)))
        copy.set("singleBatch", true)
        let targets = command["filter"]?.documentValue.flatMap(Self.targetedID).map { [shardIndex(for: $0)] }
        for index in targets ?? Array(shards.indices) {
            switch run(copy, on: index) {
            case .success(let reply):
                documents += reply["cursor"]?.documentValue?["firstBatch"]?.arrayValue ?? []
            case .failure(let failure):
                return .failure(failure)
            }
        }
        if let limit = command["limit"]?.int64Value, limit > 0, documents.count > limit {
            documents = Array(documents.prefix(Int(limit)))
        }
        return .success([
            "cursor": ["firstBatch": .array(documents), "id": .int64(0), "ns": .string("\(database).\(collection)")]
        ])
    }

    // MARK: Change streams (§7.2, §7.3)

    private func aggregate(_ command: BSONDocument, database: String) -> Result<BSONDocument, CommandFailure> {
        guard let stages = command["pipeline"]?.arrayValue,
            let first = stages.first?.documentValue, first.firstKey == "$changeStream",
            let spec = first["$changeStream"]?.documentValue
        else {
            return .failure(CommandFailure(code: 2, message: "the mongos double serves only $changeStream aggregates"))
        }
        if spec["showMigrationEvents"]?.isTruthy == true {
            return .failure(
                CommandFailure(code: 31123, message: "Change stream opened against a mongos with showMigrationEvents")
            )
        }
        // Where each shard starts: the token's clusterTime (events at or before the token are skipped here), the
        // given operation time, or one tick past the cluster time.
        let token = (spec["resumeAfter"] ?? spec["startAfter"])?.documentValue
        let decoded = token.flatMap(ChangeStreamResumeToken.decode)
        if token != nil && decoded == nil {
            return .failure(CommandFailure(code: 260, message: "Failed to decode the resume token"))
        }
        let start: BSONTimestamp
        if let decoded {
            start = decoded.clusterTime
        } else if let time = spec["startAtOperationTime"]?.timestampValue {
            start = time
        } else {
            let now = clusterTime()
            start = BSONTimestamp(seconds: now.seconds, increment: now.increment &+ 1)
        }
        var shardSpec = BSONDocument()
        for (k, v) in spec.elements where !["resumeAfter", "startAfter", "startAtOperationTime"].contains(k) {
            shardSpec.append(k, v)
        }
        if spec["resumeAfter"] != nil && spec["startAfter"] != nil {
            return .failure(
                CommandFailure(
                    code: 50865,
                    message: "Do not specify both 'resumeAfter' and 'startAfter' in a $changeStream stage"
                )
            )
        }
        if token != nil, spec["startAtOperationTime"] != nil {
            return .failure(
                CommandFailure(
                    code: 40674,
                    message: "Only one type of resume option is allowed, but multiple were found."
                )
            )
        }
        shardSpec.append("startAtOperationTime", .timestamp(start))
        var pipeline = stages
        pipeline[0] = .document(["$changeStream": .document(shardSpec)])
        var shardCommand = Self.forwarded(command, replacing: "pipeline", with: pipeline)
        shardCommand.set("cursor", ["batchSize": .int32(0)])
        let stream = RouterChangeStream(
            namespace: "",
            skipThrough: decoded == nil ? nil : token?["_data"]?.stringValue,
            postBatchResumeToken: token?["_data"]?.stringValue
                ?? ChangeStreamResumeToken.highWaterMark(start).data,
            shardCount: shards.count
        )
        var namespace = "\(database).$cmd.aggregate"
        for index in shards.indices {
            switch run(shardCommand, on: index) {
            case .success(let reply):
                guard let cursor = reply["cursor"]?.documentValue, let id = cursor["id"]?.int64Value else {
                    closeShardCursors(stream)
                    return .failure(CommandFailure(code: 1, message: "shard\(index) returned no cursor"))
                }
                namespace = cursor["ns"]?.stringValue ?? namespace
                stream.shardCursors[index] = id
                stream.absorb(cursor, batchKey: "firstBatch", shard: index)
            case .failure(let failure):
                closeShardCursors(stream)
                return .failure(failure)
            }
        }
        stream.namespace = namespace
        let id = withLock { () -> Int64 in
            nextCursorId += 1
            cursors[nextCursorId] = stream
            return nextCursorId
        }
        stream.id = id
        // Through mongos the first batch is always empty (§7.3).
        return .success([
            "cursor": [
                "firstBatch": .array([]), "postBatchResumeToken": ["_data": .string(stream.postBatchResumeToken)],
                "id": .int64(id), "ns": .string(namespace),
            ]
        ])
    }

    private func closeShardCursors(_ stream: RouterChangeStream) {
        for (index, id) in stream.shardCursors.enumerated() where id != 0 {
            _ = run(
                ["killCursors": .string(stream.collectionName), "cursors": [.int64(id)], "$db": "admin"],
                on: index
            )
            stream.shardCursors[index] = 0
        }
    }

    private func killCursors(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        var killed: [BSONValue] = []
        var notFound: [BSONValue] = []
        for value in command["cursors"]?.arrayValue ?? [] {
            guard let id = value.int64Value else { continue }
            if let stream = withLock({ cursors.removeValue(forKey: id) }) {
                stream.lock.lock()
                closeShardCursors(stream)
                stream.lock.unlock()
                killed.append(.int64(id))
            } else {
                notFound.append(.int64(id))
            }
        }
        return .success([
            "cursorsKilled": .array(killed), "cursorsNotFound": .array(notFound), "cursorsAlive": [],
            "cursorsUnknown": [],
        ])
    }

    /// Polls every shard (no wait on the shards), releases the buffered events no shard can still precede (token
    /// at or below every live shard's post-batch token), merged by token (the sort key; ties cannot occur between
    /// distinct events: the document key and txnOpIndex follow the clusterTime), and waits up to maxTimeMS
    /// (default 1000) for at least one.
    private func getMore(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        guard let id = command["getMore"]?.int64Value, let stream = withLock({ cursors[id] }) else {
            let id = command["getMore"]?.int64Value ?? 0
            return .failure(CommandFailure(code: 43, message: "cursor id \(id) not found"))
        }
        stream.lock.lock()
        defer { stream.lock.unlock() }
        let batchSize = command["batchSize"]?.int64Value.map { Int(clamping: $0) } ?? 0
        let maxTime = command["maxTimeMS"]?.int64Value ?? 1000
        let deadline = ContinuousClock.now + .milliseconds(max(maxTime, 0))
        while true {
            for index in shards.indices where stream.shardCursors[index] != 0 {
                let poll: BSONDocument = [
                    "getMore": .int64(stream.shardCursors[index]), "collection": .string(stream.collectionName),
                    "maxTimeMS": .int64(0), "$db": .string(stream.databaseName),
                ]
                switch run(poll, on: index) {
                case .success(let reply):
                    guard let cursor = reply["cursor"]?.documentValue else { continue }
                    stream.absorb(cursor, batchKey: "nextBatch", shard: index)
                    if cursor["id"]?.int64Value == 0 { stream.shardCursors[index] = 0 }
                case .failure(let failure):
                    stream.shardCursors[index] = 0
                    closeShardCursors(stream)
                    withLock { cursors[id] = nil }
                    return .failure(failure)
                }
            }
            let (batch, invalidated) = stream.release(limit: batchSize)
            if !batch.isEmpty || ContinuousClock.now >= deadline {
                if invalidated {
                    closeShardCursors(stream)
                    withLock { cursors[id] = nil }
                }
                var body: BSONDocument = [
                    "nextBatch": .array(batch.map { .document($0) }),
                    "postBatchResumeToken": ["_data": .string(stream.postBatchResumeToken)],
                ]
                if invalidated { body.append("invalidated", true) }
                body.append("id", .int64(invalidated ? 0 : id))
                body.append("ns", .string(stream.namespace))
                return .success(["cursor": .document(body)])
            }
            Thread.sleep(forTimeInterval: 0.002)
            if withLock({ cursors[id] }) == nil {
                return .failure(CommandFailure(code: 43, message: "cursor id \(id) not found"))
            }
        }
    }
}

/// One change stream opened on the router: a cursor per shard and the events they returned, not yet released.
final class RouterChangeStream: @unchecked Sendable {
    let lock = NSLock()
    var id: Int64 = 0
    var namespace: String
    var shardCursors: [Int64]
    /// Per shard: returned events (`_data`, document) from `heads[shard]` on, and the shard's post-batch token.
    var buffers: [[(token: String, document: BSONDocument)]]
    var heads: [Int]
    var shardTokens: [String]
    let skipThrough: String?
    var postBatchResumeToken: String

    init(namespace: String, skipThrough: String?, postBatchResumeToken: String, shardCount: Int) {
        self.namespace = namespace
        self.skipThrough = skipThrough
        self.postBatchResumeToken = postBatchResumeToken
        self.shardCursors = Array(repeating: 0, count: shardCount)
        self.buffers = Array(repeating: [], count: shardCount)
        self.heads = Array(repeating: 0, count: shardCount)
        self.shardTokens = Array(repeating: "", count: shardCount)
    }

    var databaseName: String { String(namespace.prefix { $0 != "." }) }

    /// The `collection` field of a getMore: the part after the database.
    var collectionName: String {
        guard let dot = namespace.firstIndex(of: ".") else { return namespace }
        return String(namespace[namespace.index(after: dot)...])
    }

    func absorb(_ cursor: BSONDocument, batchKey: String, shard: Int) {
        for value in cursor[batchKey]?.arrayValue ?? [] {
            guard let document = value.documentValue,
                let token = document["_id"]?.documentValue?["_data"]?.stringValue
            else { continue }
            if let skip = skipThrough, token <= skip { continue }
            buffers[shard].append((token, document))
        }
        if let token = cursor["postBatchResumeToken"]?.documentValue?["_data"]?.stringValue {
            shardTokens[shard] = token
        }
    }

    /// Takes the releasable events in token order (up to `limit`, all when `limit <= 0`); true when an invalidate
    /// ended the stream.
    func release(limit: Int) -> ([BSONDocument], Bool) {
        let live = shardCursors.indices.filter { shardCursors[$0] != 0 }
        // Shards whose cursor ended (invalidated) cannot precede anything any more.
        let watermark = live.map { shardTokens[$0] }.min()
        var batch: [BSONDocument] = []
        let wanted = limit > 0 ? limit : Int.max
        while batch.count < wanted {
            var best: Int?
            for shard in buffers.indices where heads[shard] < buffers[shard].count {
                if let current = best, buffers[current][heads[current]].token <= buffers[shard][heads[shard]].token {
                    continue
                }
                best = shard
            }
            guard let shard = best else { break }
            let next = buffers[shard][heads[shard]]
            if let watermark, next.token > watermark { break }
            heads[shard] += 1
            batch.append(next.document)
            postBatchResumeToken = next.token
            if next.document["operationType"]?.stringValue == "invalidate" { return (batch, true) }
        }
        for shard in buffers.indices where heads[shard] >= buffers[shard].count && heads[shard] > 0 {
            buffers[shard].removeAll(keepingCapacity: true)
            heads[shard] = 0
        }
        let drained = buffers.indices.allSatisfy { heads[$0] >= buffers[$0].count }
        if drained, let watermark, watermark > postBatchResumeToken { postBatchResumeToken = watermark }
        return (batch, false)
    }
}
