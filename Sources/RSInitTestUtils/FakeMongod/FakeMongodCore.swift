import BSON
import Foundation

/// What the double sends back for one request.
enum FakeResponse {
    case reply(BSONDocument)
    /// Close the connection without answering (a crash or hang-up mid-command).
    case hangUp
    /// `moreToCome`: the client expects nothing.
    case none
}

/// What one connection has authenticated as and its SCRAM conversations in progress (mongod's
/// `AuthorizationSession` and `AuthenticationSession`). Only touched under the core's lock.
final class FakeConnectionSession: @unchecked Sendable {
    /// `db.user` once a SCRAM exchange succeeded.
    var authenticatedUser: String?
    var conversation: SCRAMServerConversation?
    var conversationUser: String = ""
    /// Whether the next saslContinue must be the empty step (the client did not ask for skipEmptyExchange).
    var awaitingEmptyStep = false
    var proofAccepted = false
}

/// Per-connection facts a command may depend on.
struct FakeConnectionContext {
    let connectionId: Int32
    let session: FakeConnectionSession
    /// OP_QUERY flag 4 (SecondaryOk) was set on the request.
    let secondaryOkFlag: Bool
    /// The server generation the connection belongs to; a restart bumps it and all older connections die.
    let generation: Int
}

/// One oplog entry with its timestamp pulled out (the oplog is ordered by it).
struct OplogRecord {
    let ts: BSONTimestamp
    let document: BSONDocument
    /// The change events of a CRUD or applyOps entry, built once (any scope; cursors filter by namespace).
    var changeEvents: [PendingChangeEvent]? = nil
}

/// An open server-side cursor.
final class ServerCursor {
    let id: Int64
    let namespace: String
    let isOplog: Bool
    let tailable: Bool
    let awaitData: Bool
    let filter: BSONDocument
    /// `filter`, parsed once for the entries a tailing cursor scans.
    let matcher: DocumentFilter
    let batchSize: Int?
    /// Oplog cursors: the timestamp of the last entry examined (the cursor's record position).
    var lastScanned: BSONTimestamp?
    /// Plain cursors: documents not yet returned.
    var pending: [BSONDocument] = []

    init(
        id: Int64,
        namespace: String,
        isOplog: Bool,
        tailable: Bool,
        awaitData: Bool,
        filter: BSONDocument,
        batchSize: Int?
    ) {
        self.id = id
        self.namespace = namespace
        self.isOplog = isOplog
        self.tailable = tailable
        self.awaitData = awaitData
        self.filter = filter
        self.matcher = DocumentFilter(filter)
        self.batchSize = batchSize
    }
}

/// A user collection: its UUID (`ui` in the oplog) and documents in insertion order.
struct FakeCollection {
    var uuid: BSONBinary
    var documents: [BSONDocument] = []
}

/// The double's whole server state. Every field is guarded by `condition`'s lock; `condition` is also what
/// awaitData getMores wait on and what writers broadcast.
final class FakeMongodCore: @unchecked Sendable {
    let condition = NSCondition()
    var configuration: FakeMongodConfiguration
    var port: UInt16 = 0

    // Replica-set state
    var setName: String?
    var replicaSetConfig: BSONDocument?
    var selfHost: String?
    var phase: FakeMongodPhase
    var phaseDeadline: ContinuousClock.Instant?
    var initiating = false
    var firstElectionPending = false
    var term: Int64 = 0
    var electionDate: Int64 = 0
    var electionTime = BSONTimestamp(seconds: 0, increment: 0)
    /// replSetGetStatus `electionCandidateMetrics` of the last election this node won (§4).
    var electionCandidateMetrics: BSONDocument?
    var processId: BSONObjectID
    var topologyCounter: Int64 = 0
    var startedAt = Date()
    var generation = 0
    var stepDownUntil: ContinuousClock.Instant?
    /// When the node last became a writable primary (for the bootstrap benchmark).
    var writableSince: ContinuousClock.Instant?

    // Multi-member state, driven by a `FakeReplicaSet` (replication-ha §1–§5); unused on a lone double.
    /// Whether a `FakeReplicaSet` drives this node's elections, replication and commit point.
    var setMember = false
    /// The committed snapshot (`lastWrite.majorityOpTime`, `readConcernMajorityOpTime`); nil until there is one.
    var committedSnapshot: BSONDocument?
    /// The commit point as this node knows it (`lastCommittedOpTime`).
    var lastCommittedOpTime: BSONDocument?
    /// The primary this node knows of (`hello.primary` on a secondary).
    var knownPrimaryHost: String?
    /// `replSetGetStatus` entries of the other members, as the set last saw them (by host).
    var peerStatus: [String: BSONDocument] = [:]
    /// A stepdown attempt is running (§4.4): not writable, `secondary:false`.
    var steppingDown = false
    /// Set by the set: an electable secondary has caught up with this primary's last write.
    var electableSecondaryCaughtUp = false
    /// Set by a successful `replSetStepDown`: the set hands the election off to a caught-up secondary.
    var handoffRequested = false
    /// Members added as voters by a reconfig and not yet SECONDARY (§7.2 `newlyAdded`: votes 0 until then).
    var newlyAddedHosts: Set<String> = []
    /// Whether a majority of the config's voters has the current config (§7.2 config commitment).
    var configCommitted = true
    /// Test control (set members): writes block before applying, as if waiting for a lock, until released or
    /// killed by a state change with 11602 (FakeMongodCore+WriteConcern.swift).
    var writesHeld = false
    /// RECOVERING because its position fell off its sync source's oplog (§5.1 `TooStaleToSyncFromSource`).
    var tooStale = false
    /// Quiesce mode of a signalled shutdown (set members; replication-ha §1.1, §4.5): hello fails with 91.
    var quiescing = false
    /// A set member's sync source (`replSetGetStatus.syncSourceHost`/`syncSourceId`), pushed in by the set.
    var syncSource: (host: String, id: Int32)?
    /// The shutdown after quiesce: waiting operations end with 11600 InterruptedAtShutdown.
    var shuttingDown = false

    // Data
    var oplogExists = false
    var oplog: [OplogRecord] = []
    var oplogStart = 0
    var lastTimestamp = BSONTimestamp(seconds: 0, increment: 0)
    var lastNoopCheck: BSONTimestamp?
    var nextNoopAt: ContinuousClock.Instant?
    var collections: [String: FakeCollection] = [:]
    var cursors: [Int64: ServerCursor] = [:]
    /// `$changeStream` cursors and their faults (FakeMongodCore+ChangeStreams.swift).
    let changeStreams = ChangeStreamRegistry()
    /// Set on a mongos double: every command goes to the router (FakeShardedCluster.swift).
    var router: FakeMongosRouter?
    var nextCursorId: Int64 = 7_216_000_000_000_000_001
    var nextConnectionId: Int32 = 1
    /// SCRAM credentials by `db.user`, derived once per user and mechanism.
    var credentials: [String: [SCRAMMechanism: SCRAMCredentials]] = [:]

    // Observability and faults
    var acceptedInitiates = 0
    var receivedCommands: [String] = []
    var pendingGetMoreHangUps = 0
    var pendingGetMoreFailures: [(code: Int32, message: String)] = []

    init(configuration: FakeMongodConfiguration) {
        self.configuration = configuration
        self.processId = FakeMongodCore.randomObjectID()
        self.phase = .standalone
    }

    // MARK: Locking

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }

    // MARK: Scenario set-up (called before listening, under the lock)

    func applyScenario() {
        for user in configuration.users { addUser(user) }
        switch configuration.scenario {
        case .standalone:
            setName = nil
            phase = .standalone
        case .uninitialized(let name):
            setName = name
            phase = .uninitialized
        case .primary(let name, let memberHost):
            setName = name
            let host = memberHost ?? "127.0.0.1:\(port)"
            let members: [BSONValue] = [.document(["_id": 0, "host": .string(host)])]
            replicaSetConfig = normalizedConfig(setName: name, members: members, version: 1)
            selfHost = host
            writeInitialHistory()
            phase = .primary
            armNoopTimer()
        case .removed(let name, let storedHosts):
            setName = name
            let members = storedHosts.enumerated().map { index, host -> BSONValue in
                .document(["_id": .int32(Int32(index)), "host": .string(host)])
            }
            replicaSetConfig = normalizedConfig(setName: name, members: members, version: 1)
            // The history it wrote while it was primary under its old host name (§9.1, §9.2).
            selfHost = storedHosts.first
            writeInitialHistory()
            selfHost = nil
            electionCandidateMetrics = nil
            phase = .removed
        }
    }

    /// What a real node's oplog holds after initiate and its first election (§9.1, §9.2): "initiating set"
    /// without `t`, the election to term 1, "new primary", the `config` collections and the `admin.system.keys`.
    func writeInitialHistory() {
        createOplog()
        appendNoop(["msg": "initiating set"], includeTerm: false)
        beginElection()
        completeElection()
        appendStartupCollections()
    }

    /// Wins an election: term + 1, a new election id, the candidate metrics (the node is in drain mode next).
    func beginElection() {
        let seen = lastOpTime
        term += 1
        electionDate = nowMillis()
        electionTime = BSONTimestamp(seconds: UInt32(clamping: electionDate / 1000), increment: 1)
        let voters = configMembers.filter { ($0["votes"]?.int64Value ?? 1) > 0 }.count
        let priority = configMembers.first { $0["host"]?.stringValue == selfHost }?["priority"] ?? .double(1)
        electionCandidateMetrics = [
            // A lone electable node elects itself at once (kSingleNodePromptElection); mongod 6.0–8.0 report the
            // reason as "electionTimeout" (see the issue note).
            "lastElectionReason": "electionTimeout",
            "lastElectionDate": .datetime(electionDate),
            "electionTerm": .int64(term),
            "lastCommittedOpTimeAtElection": .document(
                term == 1 ? ["ts": .timestamp(BSONTimestamp(seconds: 0, increment: 0)), "t": .int64(-1)] : seen
            ),
            "lastSeenOpTimeAtElection": .document(seen),
            "numVotesNeeded": .int32(Int32(clamping: voters / 2 + 1)),
            "priorityAtElection": .double(priority.doubleValue ?? 1),
            "electionTimeoutMillis": .int64(10_000),
            "numCatchUpOps": .int64(0),
        ]
    }

    /// Drain done: the "new primary" no-op opens the term; the metrics get its start and write-availability dates.
    func completeElection() {
        appendNoop(["msg": "new primary"])
        let now = BSONValue.datetime(nowMillis())
        electionCandidateMetrics?.append("newTermStartDate", now)
        electionCandidateMetrics?.append("wMajorityWriteAvailabilityDate", now)
    }

    /// The op time of the newest entry (`t` -1 when it has none).
    var lastOpTime: BSONDocument {
        let t = liveOplog.last?.document["t"]?.int64Value ?? -1
        return ["ts": .timestamp(lastTimestamp), "t": .int64(t)]
    }

    /// Stores SCRAM credentials for `user` (replacing an existing user of that name).
    func addUser(_ user: FakeMongodUser) {
        var stored: [SCRAMMechanism: SCRAMCredentials] = [:]
        for mechanism in user.mechanisms {
            stored[mechanism] = SCRAMCredentials(mechanism: mechanism, user: user.name, password: user.password)
        }
        credentials["\(user.database).\(user.name)"] = stored
    }

    // MARK: Time-driven transitions

    /// Applies every transition whose time has come; called under the lock by the ticker and every request.
    func advance(now: ContinuousClock.Instant = .now) {
        while let deadline = phaseDeadline, deadline <= now {
            switch phase {
            case .startup2:
                phase = .secondary
                topologyCounter += 1
                phaseDeadline = deadline + configuration.timings.secondary
            case .secondary:
                if let until = stepDownUntil, until > now {
                    phaseDeadline = until
                    continue
                }
                stepDownUntil = nil
                beginElection()
                phase = .drain
                topologyCounter += 1
                phaseDeadline = deadline + configuration.timings.drain
            case .drain:
                phase = .primary
                writableSince = .now
                topologyCounter += 1
                phaseDeadline = nil
                completeElection()
                if firstElectionPending {
                    firstElectionPending = false
                    appendStartupCollections()
                }
                armNoopTimer()
                condition.broadcast()
            case .standalone, .uninitialized, .removed, .primary, .rollback, .recovering, .arbiter:
                phaseDeadline = nil
            }
        }
        if phase == .primary, let interval = configuration.periodicNoopInterval, let due = nextNoopAt, due <= now {
            if lastNoopCheck == lastTimestamp { appendNoop(["msg": "periodic noop"]) }
            lastNoopCheck = lastTimestamp
            nextNoopAt = due + interval
            if nextNoopAt! <= now { nextNoopAt = now + interval }
        }
    }

    /// When the ticker must next wake up.
    func nextWakeUp() -> ContinuousClock.Instant? {
        let candidates = [phaseDeadline, phase == .primary ? nextNoopAt : nil].compactMap { $0 }
        return candidates.min()
    }

    func armNoopTimer() {
        guard let interval = configuration.periodicNoopInterval else { return }
        lastNoopCheck = lastTimestamp
        nextNoopAt = .now + interval
    }

    /// Enters STARTUP2 and schedules SECONDARY → drain → PRIMARY.
    func beginStartupSequence(firstElection: Bool) {
        if setMember {
            // A `FakeReplicaSet` member: SECONDARY; the set runs the election (after its election timeout).
            phase = .secondary
            topologyCounter += 1
            firstElectionPending = firstElection
            phaseDeadline = nil
            return
        }
        phase = .startup2
        topologyCounter += 1
        firstElectionPending = firstElection
        phaseDeadline = .now + configuration.timings.startup2
        advance()
    }

    // MARK: Oplog

    func createOplog() {
        guard !oplogExists else { return }
        oplogExists = true
        collections["local.oplog.rs"] = nil
    }

    func nextTimestamp() -> BSONTimestamp {
        let seconds = UInt32(max(Date().timeIntervalSince1970, 0))
        if seconds > lastTimestamp.seconds {
            lastTimestamp = BSONTimestamp(seconds: seconds, increment: 1)
        } else {
            lastTimestamp = BSONTimestamp(seconds: lastTimestamp.seconds, increment: lastTimestamp.increment + 1)
        }
        return lastTimestamp
    }

    func nowMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Appends an entry, filling `ts`, `t`, `v` and `wall` where absent, and trims to the capacity.
    @discardableResult
    func appendOplog(_ entry: BSONDocument, includeTerm: Bool = true) -> BSONTimestamp {
        var document = entry
        let ts: BSONTimestamp
        if let given = document["ts"]?.timestampValue {
            ts = given
            if given > lastTimestamp { lastTimestamp = given }
        } else {
            ts = nextTimestamp()
            document.append("ts", .timestamp(ts))
        }
        if includeTerm && !document.contains("t") { document.append("t", .int64(term)) }
        if !document.contains("v") { document.append("v", .int64(2)) }
        if !document.contains("wall") { document.append("wall", .datetime(nowMillis())) }
        oplog.append(OplogRecord(ts: ts, document: document))
        trimOplog()
        condition.broadcast()
        return ts
    }

    func appendNoop(_ object: BSONDocument, includeTerm: Bool = true) {
        appendOplog(["op": "n", "ns": "", "o": .document(object)], includeTerm: includeTerm)
    }

    func trimOplog() {
        let excess = (oplog.count - oplogStart) - configuration.oplogCapacity
        if excess > 0 { oplogStart += excess }
        if oplogStart > 4096 && oplogStart * 2 > oplog.count {
            oplog.removeFirst(oplogStart)
            oplogStart = 0
        }
    }

    var liveOplog: ArraySlice<OplogRecord> { oplog[oplogStart...] }

    /// Index of the first live entry with `ts >= bound` (or `> bound` when `strict`).
    func oplogIndex(after bound: BSONTimestamp, strict: Bool) -> Int {
        var low = oplogStart
        var high = oplog.count
        while low < high {
            let mid = (low + high) / 2
            let ts = oplog[mid].ts
            if strict ? ts <= bound : ts < bound { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Internal collections mongod creates on its first step-up (§9.2, as observed on 8.0.26): `config.$cmd`
    /// creates (with the `parent_lsid` index of `config.transactions`), then `admin.system.keys` and its two HMAC
    /// keys.
    func appendStartupCollections() {
        let idIndex: BSONDocument = ["v": 2, "key": ["_id": 1], "name": "_id_"]
        for name in [
            "transactions", "image_collection", "system.indexBuilds", "system.preimages",
            "analyzeShardKeySplitPoints", "sampledQueries", "sampledQueriesDiff",
        ] {
            let uuid = Self.randomUUID()
            appendOplog([
                "op": "c", "ns": "config.$cmd", "ui": .binary(uuid),
                "o": ["create": .string(name), "idIndex": .document(idIndex)],
            ])
            if name == "transactions" {
                appendOplog([
                    "op": "c", "ns": "config.$cmd", "ui": .binary(uuid),
                    "o": [
                        "createIndexes": "transactions", "v": 2,
                        "key": ["parentLsid": 1, "_id.txnNumber": 1, "_id": 1],
                        "name": "parent_lsid", "partialFilterExpression": ["parentLsid": ["$exists": true]],
                    ],
                ])
            }
        }
        let keysUUID = Self.randomUUID()
        appendOplog([
            "op": "c", "ns": "admin.$cmd", "ui": .binary(keysUUID),
            "o": ["create": "system.keys", "idIndex": .document(idIndex)],
        ])
        for offset in 0..<2 {
            let id = Int64(bitPattern: lastTimestamp.rawValue) + Int64(offset)
            appendOplog([
                "op": "i", "ns": "admin.system.keys", "ui": .binary(keysUUID),
                "o": [
                    "_id": .int64(id), "purpose": "HMAC",
                    "key": .binary(BSONBinary(subtype: 0, data: (0..<20).map { _ in UInt8.random(in: 0...255) })),
                    "expiresAt": .timestamp(
                        BSONTimestamp(seconds: lastTimestamp.seconds &+ UInt32(7_776_000 * (offset + 1)), increment: 0)
                    ),
                ],
                "o2": ["_id": .int64(id)],
            ])
        }
    }

    // MARK: Replica-set config

    func normalizedConfig(setName: String, members: [BSONValue], version: Int32) -> BSONDocument {
        let normalized = members.map { member -> BSONValue in
            let m = member.documentValue ?? [:]
            return .document([
                "_id": m["_id"] ?? .int32(0),
                "host": m["host"] ?? "",
                "arbiterOnly": m["arbiterOnly"] ?? false,
                "buildIndexes": m["buildIndexes"] ?? true,
                "hidden": m["hidden"] ?? false,
                "priority": m["priority"] ?? .double(1),
                "tags": m["tags"] ?? .document([:]),
                "secondaryDelaySecs": .int64(m["secondaryDelaySecs"]?.int64Value ?? 0),
                "votes": m["votes"] ?? .int32(1),
            ])
        }
        return [
            "_id": .string(setName),
            "version": .int32(version),
            "term": .int32(Int32(truncatingIfNeeded: max(term, 0))),
            "members": .array(normalized),
            "protocolVersion": .int64(1),
            "writeConcernMajorityJournalDefault": true,
            "settings": [
                "chainingAllowed": true, "heartbeatIntervalMillis": 2000, "heartbeatTimeoutSecs": 10,
                "electionTimeoutMillis": 10000, "catchUpTimeoutMillis": -1, "catchUpTakeoverDelayMillis": 30000,
                "getLastErrorModes": .document([:]), "getLastErrorDefaults": ["w": 1, "wtimeout": 0],
                "replicaSetId": .objectID(Self.randomObjectID()),
            ],
        ]
    }

    var configMembers: [BSONDocument] {
        replicaSetConfig?["members"]?.arrayValue?.compactMap(\.documentValue) ?? []
    }

    /// Whether `host` ("name:port", port defaulting to 27017) names this process.
    func mapsToSelf(_ host: String) -> Bool {
        let (name, hostPort) = Self.splitHost(host)
        let names = Set(
            (configuration.selfHostNames + ["127.0.0.1"] + [configuration.hostName].compactMap { $0 })
                .map { $0.lowercased() }
        )
        return names.contains(name.lowercased()) && hostPort == Int(port)
    }

    static func splitHost(_ host: String) -> (String, Int) {
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let name = String(host[host.index(after: host.startIndex)..<close])
            let rest = host[host.index(after: close)...]
            return (name, rest.hasPrefix(":") ? Int(rest.dropFirst()) ?? 27017 : 27017)
        }
        guard let colon = host.lastIndex(of: ":") else { return (host, 27017) }
        return (String(host[..<colon]), Int(host[host.index(after: colon)...]) ?? -1)
    }

    static func isLocalhostReference(_ host: String) -> Bool {
        let name = splitHost(host).0.lowercased()
        return name == "localhost" || name.hasPrefix("127.") || name == "::1"
    }

    /// Re-reads the stored config after a restart or reconfig: self found → startup sequence, else REMOVED.
    func revalidateSelf(firstElection: Bool) {
        guard setName != nil else {
            phase = .standalone
            return
        }
        guard replicaSetConfig != nil else {
            phase = .uninitialized
            return
        }
        if let me = configMembers.compactMap({ $0["host"]?.stringValue }).first(where: mapsToSelf) {
            selfHost = me
            beginStartupSequence(firstElection: firstElection)
        } else {
            selfHost = nil
            phase = .removed
            phaseDeadline = nil
            topologyCounter += 1
        }
    }

    // MARK: Helpers

    static func randomObjectID() -> BSONObjectID {
        BSONObjectID(bytes: (0..<12).map { _ in UInt8.random(in: 0...255) })!
    }

    static func randomUUID() -> BSONBinary {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return BSONBinary(subtype: BSONBinary.uuid, data: bytes)
    }

    /// SHA-256 of the empty string: the `lsid.uid` mongod records for unauthenticated sessions.
    static let anonymousSessionUID = BSONBinary(
        subtype: 0,
        data: HexBytes.decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    )
}

enum HexBytes {
    static func decode(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var iterator = hex.utf8.makeIterator()
        while let hi = iterator.next(), let lo = iterator.next() {
            result.append(UInt8(String(decoding: [hi, lo], as: UTF8.self), radix: 16) ?? 0)
        }
        return result
    }
}
