import BSON
import Foundation

/// mongod's code names for the codes the double sends.
enum ServerCodeName {
    static func name(_ code: Int32) -> String {
        switch code {
        case 2: return "BadValue"
        case 9: return "FailedToParse"
        case 13: return "Unauthorized"
        case 14: return "TypeMismatch"
        case 17: return "ProtocolError"
        case 18: return "AuthenticationFailed"
        case 23: return "AlreadyInitialized"
        case 26: return "NamespaceNotFound"
        case 43: return "CursorNotFound"
        case 48: return "NamespaceExists"
        case 50: return "MaxTimeMSExpired"
        case 59: return "CommandNotFound"
        case 74: return "NodeNotFound"
        case 76: return "NoReplicationEnabled"
        case 91: return "ShutdownInProgress"
        case 64: return "WriteConcernFailed"
        case 109: return "ConfigurationInProgress"
        case 117: return "ConflictingOperationInProgress"
        case 262: return "ExceededTimeLimit"
        case 308: return "CurrentConfigNotCommittedYet"
        case 11600: return "InterruptedAtShutdown"
        case 93: return "InvalidReplicaSetConfig"
        case 94: return "NotYetInitialized"
        case 103: return "NewReplicaSetConfigurationIncompatible"
        case 72: return "InvalidOptions"
        case 73: return "InvalidNamespace"
        case 136: return "CappedPositionLost"
        case 260: return "InvalidResumeToken"
        case 280: return "ChangeStreamFatalError"
        case 10334: return "BSONObjectTooLarge"
        case 189: return "PrimarySteppedDown"
        case 286: return "ChangeStreamHistoryLost"
        case 334: return "MechanismUnavailable"
        case 40414: return "Location40414"
        case 10107: return "NotWritablePrimary"
        case 11000: return "DuplicateKey"
        case 11602: return "InterruptedDueToReplStateChange"
        case 13435: return "NotPrimaryNoSecondaryOk"
        case 13436: return "NotPrimaryOrSecondary"
        default: return "UnknownError"
        }
    }
}

/// A command failure carried to the reply builder.
struct CommandFailure: Error {
    var code: Int32
    var message: String
    var extra: [(String, BSONValue)] = []
}

/// The reply builder shared by a mongod member (`FakeMongodCore`) and the router (`FakeShardedCluster`).
enum CommandReply {
    /// A command's reply before gossip: its body with `ok: 1`, or mongod's error shape (`ok: 0`, `errmsg`, `code`,
    /// `codeName`, then the failure's extra fields).
    static func document(_ result: Result<BSONDocument, CommandFailure>) -> BSONDocument {
        switch result {
        case .success(var body):
            body.append("ok", .double(1))
            return body
        case .failure(let failure):
            var document: BSONDocument = [
                "ok": .double(0), "errmsg": .string(failure.message), "code": .int32(failure.code),
                "codeName": .string(ServerCodeName.name(failure.code)),
            ]
            for (key, value) in failure.extra { document.append(key, value) }
            return document
        }
    }

    /// The cluster-time gossip of a replica-set member or a router: `$clusterTime` with the all-zero signature of
    /// a deployment without keys, and `operationTime`.
    static func appendClusterTime(_ time: BSONTimestamp, to document: inout BSONDocument) {
        document.append(
            "$clusterTime",
            [
                "clusterTime": .timestamp(time),
                "signature": [
                    "hash": .binary(BSONBinary(subtype: 0, data: Array(repeating: 0, count: 20))), "keyId": .int64(0),
                ],
            ]
        )
        document.append("operationTime", .timestamp(time))
    }
}

extension FakeMongodCore {
    /// Commands an unauthenticated client may run when auth is required (canonical lower-case keys).
    static let unauthenticatedCommands: Set<String> = [
        "hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue", "authenticate", "endsessions",
        "logout",
    ]

    /// mongod's command registry is a case-sensitive map of names and aliases (§14 item 12): the registered
    /// spellings of the commands the double implements, to the key `handle` dispatches on. Anything else is 59.
    static let registeredCommands: [String: String] = {
        var map: [String: String] = [:]
        for name in [
            "hello", "isMaster", "ping", "buildInfo", "saslStart", "saslContinue", "authenticate", "logout",
            "endSessions", "refreshSessions", "killAllSessions", "replSetInitiate", "replSetGetStatus",
            "replSetGetConfig", "replSetReconfig", "replSetStepDown", "appendOplogNote", "insert", "update",
            "delete", "create", "drop", "dropDatabase", "find", "getMore", "killCursors", "listDatabases", "dbStats",
            "collStats", "aggregate",
        ] {
            map[name] = name.lowercased()
        }
        // Registered aliases (`Command(name, oldName)` in mongod).
        map["ismaster"] = "ismaster"
        map["buildinfo"] = "buildinfo"
        map["dbstats"] = "dbstats"
        return map
    }()

    /// Handles one request; may block (awaitData getMore, initiate) with the lock released.
    func handle(_ request: WireRequest, context: FakeConnectionContext) -> FakeResponse {
        if let router = locked({ router }) { return router.handle(request, context: context) }
        let command = request.command
        let name = command.firstKey ?? ""
        let lower = name.lowercased()
        let database =
            command["$db"]?.stringValue
            ?? {
                if case .query(_, let ns, _, _) = request.kind { return String(ns.prefix { $0 != "." }) }
                return "admin"
            }()
        let secondaryOk: Bool = {
            if context.secondaryOkFlag { return true }
            if let mode = command["$readPreference"]?.documentValue?["mode"]?.stringValue { return mode != "primary" }
            return false
        }()
        condition.lock()
        advance()
        receivedCommands.append(lower)
        if receivedCommands.count > 10_000 { receivedCommands.removeFirst(5_000) }
        let result: Result<BSONDocument, CommandFailure>
        var response: FakeResponse?
        if let canonical = Self.registeredCommands[name] {
            if configuration.auth == .required && context.session.authenticatedUser == nil
                && !Self.unauthenticatedCommands.contains(canonical)
            {
                result = .failure(CommandFailure(code: 13, message: "command \(name) requires authentication"))
            } else {
                (result, response) = dispatch(
                    canonical,
                    command,
                    database: database,
                    secondaryOk: secondaryOk,
                    context: context
                )
            }
        } else {
            result = .failure(CommandFailure(code: 59, message: "no such command: '\(name)'"))
        }
        let document = finish(result)
        condition.unlock()
        if let response { return response }
        return request.moreToCome ? .none : .reply(document)
    }

    /// Runs a registered command (under the lock).
    private func dispatch(
        _ lower: String,
        _ command: BSONDocument,
        database: String,
        secondaryOk: Bool,
        context: FakeConnectionContext
    ) -> (Result<BSONDocument, CommandFailure>, FakeResponse?) {
        let result: Result<BSONDocument, CommandFailure>
        var response: FakeResponse?
        switch lower {
        case "hello", "ismaster":
            if awaitTopologyChange(command, context: context) {
                result =
                    setMember && (quiescing || shuttingDown)
                    ? .failure(Self.quiesceFailure)
                    : .success(hello(command, legacy: lower != "hello", context: context))
            } else {
                result = .success([:])
                response = .hangUp
            }
        case "ping", "endsessions", "refreshsessions", "killallsessions":
            result = .success([:])
        case "logout":
            context.session.authenticatedUser = nil
            result = .success([:])
        case "buildinfo":
            result = .success([
                "version": "7.0.14", "versionArray": [7, 0, 14, 0], "bits": 64, "maxBsonObjectSize": 16_777_216,
            ])
        case "saslstart":
            result = saslStart(command, database: database, session: context.session)
        case "saslcontinue":
            result = saslContinue(command, session: context.session)
        case "authenticate":
            // MONGODB-CR / X.509 through `authenticate`: no such credentials on the double.
            result = .failure(CommandFailure(code: 18, message: "Authentication failed."))
        case "replsetinitiate":
            result = replSetInitiate(command)
        case "replsetgetstatus":
            result = replSetGetStatus()
        case "replsetgetconfig":
            result = replSetGetConfig(command)
        case "replsetreconfig":
            result = replSetReconfig(command)
        case "replsetstepdown":
            result = replSetStepDown(command)
        case "appendoplognote":
            result = appendOplogNote(command)
        case "insert", "update", "delete", "create", "drop", "dropdatabase":
            result =
                setMember
                ? writeWithConcern(lower, command, database: database) : write(lower, command, database: database)
        case "find":
            result = find(command, database: database, secondaryOk: secondaryOk)
        case "aggregate":
            result = aggregate(command, database: database, secondaryOk: secondaryOk)
        case "getmore":
            let stream = command["getMore"]?.int64Value.flatMap { changeStreams.cursors[$0] }
            let outcome =
                stream.map { changeStreamGetMore($0, command, context: context) }
                ?? getMore(command, database: database, context: context)
            switch outcome {
            case .hangUp:
                response = .hangUp
                result = .success([:])
            case .result(let r):
                result = r
            }
        case "killcursors":
            result = killCursors(command)
        case "collstats":
            result = collStats(command, database: database)
        case "listdatabases", "dbstats":
            result = readAllowed(database: database, secondaryOk: secondaryOk).map { _ in
                lower == "dbstats"
                    ? ["db": .string(database), "collections": .int32(Int32(self.collections.count))]
                    : ["databases": .array([]), "totalSize": 0]
            }
        default:
            result = .failure(CommandFailure(code: 59, message: "no such command: '\(lower)'"))
        }
        return (result, response)
    }

    /// Adds `ok`, error fields and the replica-set gossip fields.
    private func finish(_ result: Result<BSONDocument, CommandFailure>) -> BSONDocument {
        var document = CommandReply.document(result)
        if case .failure(let failure) = result, setMember,
            Self.notPrimaryErrorCodes.contains(failure.code)
                || (quiescing && Self.shutdownErrorCodes.contains(failure.code))
        {
            document.append("topologyVersion", .document(topologyVersionDocument))
        }
        if setName != nil {
            let clusterTime = oplogExists ? lastTimestamp : BSONTimestamp(seconds: 0, increment: 0)
            CommandReply.appendClusterTime(clusterTime, to: &document)
        }
        return document
    }

    // MARK: hello

    func hello(_ command: BSONDocument, legacy: Bool, context: FakeConnectionContext) -> BSONDocument {
        var reply = BSONDocument()
        // §1.1: topologyVersion comes first; set members only (see FakeMongodCore+Topology.swift).
        if setMember { reply.append("topologyVersion", .document(topologyVersionDocument)) }
        if command["helloOk"]?.isTruthy == true { reply.append("helloOk", true) }
        let writable = phase == .standalone || (phase == .primary && !steppingDown)
        // A set member follows §1.1's order (after setVersion); the lone double keeps its established order.
        let inSetOrder = setMember && ![.standalone, .uninitialized, .removed].contains(phase)
        if !inSetOrder { reply.append(legacy ? "ismaster" : "isWritablePrimary", .bool(writable)) }
        switch phase {
        case .standalone:
            break
        case .uninitialized, .removed:
            reply.append("secondary", false)
            reply.append("info", "Does not have a valid replica set config")
            reply.append("isreplicaset", true)
        case .startup2, .secondary, .drain, .primary, .rollback, .recovering, .arbiter:
            // topologyVersion: set members only, prepended above (the lone double has no awaitable hello).
            // hosts: electable data-bearing members; passives: priority 0; arbiters; hidden members are listed in
            // none of them (`TopologyCoordinator::fillHelloForReplSet`).
            let listed = configMembers.filter { $0["hidden"]?.isTruthy != true }
            let isArbiter = { (member: BSONDocument) in member["arbiterOnly"]?.isTruthy == true }
            let priority = { (member: BSONDocument) in member["priority"]?.doubleValue ?? 1 }
            let hosts = listed.filter { !isArbiter($0) && priority($0) > 0 }.compactMap { $0["host"] }
            let passives = listed.filter { !isArbiter($0) && priority($0) == 0 }.compactMap { $0["host"] }
            let arbiters = listed.filter(isArbiter).compactMap { $0["host"] }
            reply.append("hosts", .array(hosts))
            if !passives.isEmpty { reply.append("passives", .array(passives)) }
            if !arbiters.isEmpty { reply.append("arbiters", .array(arbiters)) }
            reply.append("setName", .string(setName ?? ""))
            reply.append("setVersion", replicaSetConfig?["version"] ?? .int32(1))
            if inSetOrder { reply.append(legacy ? "ismaster" : "isWritablePrimary", .bool(writable)) }
            reply.append("secondary", .bool(phase == .secondary || phase == .drain))
            if phase == .drain || phase == .primary {
                reply.append("primary", .string(selfHost ?? ""))
            } else if setMember, let knownPrimaryHost {
                reply.append("primary", .string(knownPrimaryHost))
            }
            // §2.2 D: self's non-default member options; a set member puts them before `me` (§1.1's order:
            // arbiterOnly, passive, hidden, buildIndexes, secondaryDelaySecs, tags, me), the lone double after
            // electionId as it always did.
            let me = configMembers.first(where: { $0["host"]?.stringValue == selfHost })
            let appendOptions = { (reply: inout BSONDocument) in
                guard let me else { return }
                if inSetOrder && isArbiter(me) { reply.append("arbiterOnly", true) }
                if priority(me) == 0 && !isArbiter(me) { reply.append("passive", true) }
                if me["hidden"]?.isTruthy == true { reply.append("hidden", true) }
                if let delay = me["secondaryDelaySecs"]?.int64Value, delay > 0 {
                    reply.append(legacy ? "slaveDelay" : "secondaryDelaySecs", .int64(delay))
                }
                if let tags = me["tags"]?.documentValue, !tags.isEmpty { reply.append("tags", .document(tags)) }
            }
            if inSetOrder { appendOptions(&reply) }
            reply.append("me", .string(selfHost ?? ""))
            if phase == .drain || phase == .primary {
                reply.append("electionId", .objectID(electionId))
            }
            if !inSetOrder { appendOptions(&reply) }
            let opTime = lastOpTime
            let lastWall = lastWallTime
            if phase == .arbiter {
                // §1.2: an arbiter has no oplog; its lastApplied is the commit point it learned (INFERRED in the
                // spec). Whether it has a committed snapshot is UNCONFIRMED: "a double may omit it" — omitted.
                let learned =
                    lastCommittedOpTime ?? ["ts": .timestamp(BSONTimestamp(seconds: 0, increment: 0)), "t": .int64(-1)]
                reply.append(
                    "lastWrite",
                    ["opTime": .document(learned), "lastWriteDate": Self.secondsDate(learned)]
                )
            } else if setMember {
                // §1.1: the dates are the seconds of the optimes' ts; majorityOpTime is the committed snapshot,
                // omitted while there is none.
                var lastWrite: BSONDocument = [
                    "opTime": .document(opTime), "lastWriteDate": Self.secondsDate(opTime),
                ]
                if let committedSnapshot {
                    lastWrite.append("majorityOpTime", .document(committedSnapshot))
                    lastWrite.append("majorityWriteDate", Self.secondsDate(committedSnapshot))
                }
                reply.append("lastWrite", .document(lastWrite))
            } else {
                reply.append(
                    "lastWrite",
                    [
                        "opTime": .document(opTime), "lastWriteDate": lastWall, "majorityOpTime": .document(opTime),
                        "majorityWriteDate": lastWall,
                    ]
                )
            }
        }
        reply.append("maxBsonObjectSize", .int32(16_777_216))
        reply.append("maxMessageSizeBytes", .int32(48_000_000))
        reply.append("maxWriteBatchSize", .int32(100_000))
        reply.append("localTime", .datetime(nowMillis()))
        reply.append("logicalSessionTimeoutMinutes", .int32(30))
        reply.append("connectionId", .int32(context.connectionId))
        reply.append("minWireVersion", .int32(0))
        reply.append("maxWireVersion", .int32(configuration.maxWireVersion))
        reply.append("readOnly", false)
        appendAuthenticationFields(command, to: &reply, session: context.session)
        return reply
    }

    /// The seconds of an optime's `ts` as a Date (`lastWriteDate`, `optimeDate`).
    static func secondsDate(_ opTime: BSONDocument) -> BSONValue {
        .datetime(Int64(opTime["ts"]?.timestampValue?.seconds ?? 0) * 1000)
    }

    /// A peer's positions in a `replSetGetStatus` member entry: applied and durable alike (the double journals at
    /// once), with their dates and wall times.
    static func appendPeerOpTimes(
        _ opTime: BSONDocument,
        date: BSONValue,
        wall: BSONValue,
        to entry: inout BSONDocument
    ) {
        entry.append("optime", .document(opTime))
        entry.append("optimeDurable", .document(opTime))
        entry.append("optimeDate", date)
        entry.append("optimeDurableDate", date)
        entry.append("lastAppliedWallTime", wall)
        entry.append("lastDurableWallTime", wall)
    }

    /// `7fffffff` + the term as 8 big-endian bytes (protocol version 1's election id).
    var electionId: BSONObjectID {
        var bytes: [UInt8] = [0x7f, 0xff, 0xff, 0xff]
        withUnsafeBytes(of: term.bigEndian) { bytes.append(contentsOf: $0) }
        return BSONObjectID(bytes: bytes) ?? BSONObjectID(bytes: Array(repeating: 0, count: 12))!
    }

    // MARK: replSetInitiate

    func replSetInitiate(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        guard let setName else {
            return .failure(CommandFailure(code: 76, message: "This node was not started with replication enabled."))
        }
        guard replicaSetConfig == nil && !initiating else {
            return .failure(
                CommandFailure(
                    code: 23,
                    message: "already initialized",
                    extra: [("info", "try querying local.system.replset to see current configuration")]
                )
            )
        }
        initiating = true
        let work = configuration.timings.initiate
        let outcome = validateInitiate(command["replSetInitiate"], setName: setName)
        // The work (and the isSelf slow path) happens without the lock, so concurrent initiates see "in progress".
        condition.unlock()
        var delay = work
        if case .failure(let failure) = outcome, failure.message.hasPrefix("No host described") {
            delay += configuration.selfNotFoundDelay
        }
        if delay > .zero { Thread.sleep(forTimeInterval: delay.seconds) }
        condition.lock()
        initiating = false
        switch outcome {
        case .failure(let failure):
            return .failure(failure)
        case .success(let (config, me, usedDefault)):
            replicaSetConfig = config
            selfHost = me
            acceptedInitiates += 1
            createOplog()
            appendNoop(["msg": "initiating set"], includeTerm: false)
            beginStartupSequence(firstElection: true)
            if usedDefault {
                return .success([
                    "info2": "no configuration specified. Using a default configuration for the set",
                    "me": .string(me),
                ])
            }
            return .success([:])
        }
    }

    /// Checks an initiate config the way mongod 7.0 does; returns the normalised config and self's host.
    private func validateInitiate(
        _ value: BSONValue?,
        setName: String
    ) -> Result<(BSONDocument, String, Bool), CommandFailure> {
        guard case .document(let config) = value, !config.isEmpty else {
            let me = "\(configuration.hostName ?? "127.0.0.1"):\(port)"
            let members: [BSONValue] = [.document(["_id": 0, "host": .string(me)])]
            return .success((normalizedConfig(setName: setName, members: members, version: 1), me, true))
        }
        func invalid(_ message: String) -> Result<(BSONDocument, String, Bool), CommandFailure> {
            .failure(CommandFailure(code: 93, message: message))
        }
        guard let id = config["_id"] else {
            return invalid("BSON field 'ReplSetConfig._id' is missing but a required field")
        }
        guard case .string(let name) = id else {
            return invalid(
                "BSON field 'ReplSetConfig._id' is the wrong type '\(Self.typeName(id))', expected type 'string'"
            )
        }
        guard let membersValue = config["members"] else {
            return invalid("BSON field 'ReplSetConfig.members' is missing but a required field")
        }
        guard case .array(let members) = membersValue else {
            return invalid(
                "BSON field 'ReplSetConfig.members' is the wrong type '\(Self.typeName(membersValue))', expected type 'array'"
            )
        }
        var hosts: [String] = []
        for (index, member) in members.enumerated() {
            guard case .document(let m) = member else {
                return invalid("Expected type of members.\(index) to be Object, but found \(Self.typeName(member))")
            }
            guard let host = m["host"]?.stringValue else {
                return invalid("BSON field 'MemberConfig.host' is missing but a required field")
            }
            guard m["_id"]?.int64Value != nil else {
                return invalid("BSON field 'MemberConfig._id' is missing but a required field")
            }
            hosts.append(host)
        }
        guard !members.isEmpty else { return invalid("Replica set configuration must contain at least one member") }
        guard name == setName else {
            return invalid(
                "Rejecting initiate with a set name that differs from command line set name, initiate set name: "
                    + "\(name), command line set name: \(setName)"
            )
        }
        let version = config["version"]?.int64Value ?? 1
        guard version == 1 else {
            return invalid("Configuration used to initiate a replica set must  have version 1, but found \(version)")
        }
        let localCount = hosts.filter(Self.isLocalhostReference).count
        if localCount > 0 && localCount < hosts.count {
            return invalid(
                "Either all host names in a replica set configuration must be localhost references, or none must "
                    + "be; found \(localCount) out of \(hosts.count)"
            )
        }
        let selfIndexes = hosts.indices.filter { mapsToSelf(hosts[$0]) }
        let configText = "with {version: 1, term: 0} for replica set \(setName)"
        if selfIndexes.isEmpty {
            return invalid("No host described in new configuration \(configText) maps to this node")
        }
        if selfIndexes.count > 1 {
            let names = selfIndexes.map { hosts[$0] }
            return invalid(
                "The hosts \(names.joined(separator: " and ")) all map to this node in new configuration \(configText)"
            )
        }
        let selfIndex = selfIndexes[0]
        let selfMember = members[selfIndex].documentValue!
        if let priority = selfMember["priority"]?.doubleValue, priority == 0 {
            return invalid(
                "This node, \(hosts[selfIndex]), with _id \(selfMember["_id"]?.int64Value ?? 0) is not electable under "
                    + "the new configuration \(configText)"
            )
        }
        let unreachable = hosts.indices.filter { $0 != selfIndex && !configuration.reachablePeers.contains(hosts[$0]) }
        if !unreachable.isEmpty {
            let details = unreachable.map {
                "\(hosts[$0]) failed with Error connecting to \(hosts[$0]) :: caused by :: Connection refused"
            }
            return .failure(
                CommandFailure(
                    code: 74,
                    message: "replSetInitiate quorum check failed because not all proposed set members responded "
                        + "affirmatively: \(details.joined(separator: ", "))"
                )
            )
        }
        return .success((normalizedConfig(setName: setName, members: members, version: 1), hosts[selfIndex], false))
    }

    static func typeName(_ value: BSONValue) -> String {
        switch value {
        case .double: return "double"
        case .string: return "string"
        case .document: return "object"
        case .array: return "array"
        case .binary: return "binData"
        case .undefined: return "undefined"
        case .objectID: return "objectId"
        case .bool: return "bool"
        case .datetime: return "date"
        case .null: return "null"
        case .regex: return "regex"
        case .int32: return "int"
        case .int64: return "long"
        case .timestamp: return "timestamp"
        case .decimal128: return "decimal"
        default: return "unknown"
        }
    }

    // MARK: replSetGetStatus / replSetGetConfig / reconfig / stepDown

    func replSetGetStatus() -> Result<BSONDocument, CommandFailure> {
        guard setName != nil else { return .failure(CommandFailure(code: 76, message: "not running with --replSet")) }
        switch phase {
        case .uninitialized, .standalone:
            return .failure(CommandFailure(code: 94, message: "no replset config has been received"))
        case .removed:
            return .failure(
                CommandFailure(
                    code: 93,
                    message: "Our replica set config is invalid or we are not a member of it",
                    extra: [
                        ("state", .int32(10)), ("stateStr", "REMOVED"),
                        ("uptime", .int32(Int32(Date().timeIntervalSince(startedAt)))),
                        ("optime", .document(lastOpTime)),
                        ("optimeDate", .datetime(Int64(lastTimestamp.seconds) * 1000)),
                        ("lastHeartbeatMessage", ""), ("syncSourceHost", ""), ("syncSourceId", .int32(-1)),
                        ("infoMessage", ""),
                    ]
                )
            )
        case .startup2, .secondary, .drain, .primary, .rollback, .recovering, .arbiter:
            break
        }
        let opTime = lastOpTime
        let wall = lastWallTime
        let optimeDate = BSONValue.datetime(Int64(lastTimestamp.seconds) * 1000)
        let unknownOpTime: BSONDocument = ["ts": .timestamp(BSONTimestamp(seconds: 0, increment: 0)), "t": .int64(-1)]
        let uptime = BSONValue.int32(Int32(clamping: Int64(Date().timeIntervalSince(startedAt))))
        let configVersion = replicaSetConfig?["version"] ?? .int32(1)
        let members = configMembers.map { member -> BSONValue in
            let host = member["host"]?.stringValue ?? ""
            var entry: BSONDocument = ["_id": member["_id"] ?? 0, "name": .string(host)]
            if host == selfHost {
                entry.append("health", .double(1))
                entry.append("state", .int32(phase.memberStateCode))
                entry.append("stateStr", .string(phase.stateString))
                entry.append("uptime", uptime)
                if phase != .arbiter {
                    // §2.2: an arbiter's entry has no optimes (it holds no data).
                    entry.append("optime", .document(opTime))
                    entry.append("optimeDate", optimeDate)
                    entry.append("lastAppliedWallTime", wall)
                    entry.append("lastDurableWallTime", wall)
                }
                entry.append("syncSourceHost", .string(syncSource?.host ?? ""))
                entry.append("syncSourceId", .int32(syncSource?.id ?? -1))
                entry.append("infoMessage", "")
                if phase == .primary || phase == .drain {
                    entry.append("electionTime", .timestamp(electionTime))
                    entry.append("electionDate", .datetime(electionDate))
                }
                entry.append("configVersion", configVersion)
                entry.append("configTerm", .int64(term))
                entry.append("self", true)
                entry.append("lastHeartbeatMessage", "")
                return .document(entry)
            }
            if setMember, let view = peerStatus[host] { return .document(view) }
            let reachable = configuration.reachablePeers.contains(host)
            let peerOpTime = reachable ? opTime : unknownOpTime
            let peerDate: BSONValue = reachable ? optimeDate : .datetime(0)
            let peerWall: BSONValue = reachable ? wall : .datetime(0)
            entry.append("health", .double(reachable ? 1 : 0))
            entry.append("state", .int32(reachable ? 2 : 8))
            entry.append("stateStr", reachable ? "SECONDARY" : "(not reachable/healthy)")
            entry.append("uptime", reachable ? uptime : .int32(0))
            Self.appendPeerOpTimes(peerOpTime, date: peerDate, wall: peerWall, to: &entry)
            entry.append("lastHeartbeat", .datetime(nowMillis()))
            entry.append("lastHeartbeatRecv", reachable ? .datetime(nowMillis()) : .datetime(0))
            entry.append("pingMs", .int64(0))
            entry.append(
                "lastHeartbeatMessage",
                reachable ? "" : .string("Error connecting to \(host) :: caused by :: Connection refused")
            )
            entry.append("syncSourceHost", "")
            entry.append("syncSourceId", -1)
            entry.append("infoMessage", "")
            entry.append("configVersion", reachable ? configVersion : .int32(-1))
            entry.append("configTerm", .int64(reachable ? term : -1))
            return .document(entry)
        }
        // §2.1 (S:RSC `_calculateMajorities`): voters exclude `newlyAdded`; writable voters exclude arbiters;
        // writeMajorityCount = min(majorityVoteCount, writableVotingMembersCount).
        let voters = configMembers.filter {
            ($0["votes"]?.int64Value ?? 1) > 0 && !newlyAddedHosts.contains($0["host"]?.stringValue ?? "")
        }
        let votingMembers = Int32(clamping: voters.count)
        let writableVoters = Int32(clamping: voters.filter { $0["arbiterOnly"]?.isTruthy != true }.count)
        let majorityCount = votingMembers / 2 + 1
        var reply: BSONDocument = [
            "set": .string(setName ?? ""), "date": .datetime(nowMillis()), "myState": .int32(phase.memberStateCode),
            "term": .int64(term), "syncSourceHost": .string(syncSource?.host ?? ""),
            "syncSourceId": .int32(syncSource?.id ?? -1), "heartbeatIntervalMillis": .int64(2000),
            "majorityVoteCount": .int32(majorityCount),
            "writeMajorityCount": .int32(min(majorityCount, writableVoters)),
            "votingMembersCount": .int32(votingMembers), "writableVotingMembersCount": .int32(writableVoters),
            "optimes": [
                "lastCommittedOpTime": .document(setMember ? lastCommittedOpTime ?? unknownOpTime : opTime),
                "lastCommittedWallTime": wall,
                "readConcernMajorityOpTime": .document(setMember ? committedSnapshot ?? unknownOpTime : opTime),
                "appliedOpTime": .document(opTime),
                "durableOpTime": .document(opTime), "lastAppliedWallTime": wall, "lastDurableWallTime": wall,
            ],
            "lastStableRecoveryTimestamp": .timestamp(lastTimestamp),
        ]
        if phase == .primary || phase == .drain, let metrics = electionCandidateMetrics {
            reply.append("electionCandidateMetrics", .document(metrics))
        }
        reply.append("members", .array(members))
        // §2.1: `tooStale` right after `term`, only while too stale (FakeReplicaSet's tooStale path).
        if tooStale { reply = Self.inserting(("tooStale", true), before: "syncSourceHost", in: reply) }
        return .success(reply)
    }

    /// The `wall` of the newest oplog entry (epoch before the oplog exists).
    var lastWallTime: BSONValue {
        liveOplog.last?.document["wall"] ?? .datetime(0)
    }

    func replSetGetConfig(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        guard setName != nil else { return .failure(CommandFailure(code: 76, message: "not running with --replSet")) }
        guard let replicaSetConfig else {
            return .failure(CommandFailure(code: 94, message: "no replset config has been received"))
        }
        // §5: the config's term is the current term (0 until the first election, 1 after it on a fresh set).
        var config = replicaSetConfig
        config.set("term", .int32(Int32(clamping: max(term, 0))))
        guard command["commitmentStatus"]?.isTruthy == true else { return .success(["config": .document(config)]) }
        guard phase == .primary else {
            return .failure(CommandFailure(code: 10107, message: "commitmentStatus is only supported on primary."))
        }
        // A single writable node has committed its config by definition.
        return .success(["config": .document(config), "commitmentStatus": true])
    }

    func replSetReconfig(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        guard let setName else { return .failure(CommandFailure(code: 76, message: "not running with --replSet")) }
        guard let current = replicaSetConfig else {
            return .failure(CommandFailure(code: 94, message: "no replset config has been received"))
        }
        let force = command["force"]?.isTruthy ?? false
        if setMember && !force { return replicaSetReconfig(command, setName: setName, current: current) }
        guard force || phase == .primary else {
            return .failure(
                CommandFailure(
                    code: 10107,
                    message:
                        "replSetReconfig should only be run on a writable PRIMARY. Current state \(phase.stateString);"
                )
            )
        }
        guard let config = command["replSetReconfig"]?.documentValue, let members = config["members"]?.arrayValue,
            config["_id"]?.stringValue == setName
        else {
            return .failure(
                CommandFailure(code: 93, message: "replSetReconfig: invalid config (wrong _id or no members)")
            )
        }
        let hosts = members.compactMap { $0.documentValue?["host"]?.stringValue }
        guard hosts.contains(where: mapsToSelf) else {
            return .failure(
                CommandFailure(
                    code: 74,
                    message:
                        "No host described in new configuration with {version: \(config["version"]?.int64Value ?? 0), "
                        + "term: \(term)} for replica set \(setName) maps to this node"
                )
            )
        }
        let oldVersion = current["version"]?.int64Value ?? 1
        let newVersion =
            force
            ? oldVersion + 10_000 + Int64.random(in: 0...100_000) : (config["version"]?.int64Value ?? oldVersion + 1)
        replicaSetConfig = normalizedConfig(setName: setName, members: members, version: Int32(clamping: newVersion))
        appendNoop(["msg": "Reconfig set", "version": .int32(Int32(clamping: newVersion))])
        if phase == .removed || !(selfHost.map(mapsToSelf) ?? false) {
            revalidateSelf(firstElection: false)
        }
        return .success([:])
    }

    func replSetStepDown(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        guard phase == .primary else {
            return .failure(CommandFailure(code: 10107, message: "not primary so can't step down"))
        }
        if setMember { return replicaSetStepDown(command) }
        let seconds = command["replSetStepDown"]?.int64Value ?? 60
        stepDown(for: .seconds(seconds))
        return .success([:])
    }

    /// Primary → SECONDARY until `duration` has passed, then a new election (term + 1).
    func stepDown(for duration: Duration) {
        guard phase == .primary || phase == .drain else { return }
        phase = .secondary
        topologyCounter += 1
        stepDownUntil = .now + duration
        phaseDeadline = .now + duration
        condition.broadcast()
    }

    // MARK: appendOplogNote

    func appendOplogNote(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        guard setName != nil else {
            return .failure(
                CommandFailure(code: 76, message: "Must have replication set up to run \"appendOplogNote\"")
            )
        }
        guard configuration.appendOplogNoteAllowed else {
            return .failure(
                CommandFailure(
                    code: 13,
                    message:
                        "not authorized on admin to execute command { appendOplogNote: 1, data: { ... }, $db: \"admin\" }"
                )
            )
        }
        guard let data = command["data"]?.documentValue else {
            return .failure(
                CommandFailure(
                    code: 40414,
                    message: "BSON field 'appendOplogNote.data' is missing but a required field"
                )
            )
        }
        guard phase == .primary else { return .failure(CommandFailure(code: 10107, message: "not primary")) }
        appendNoop(data)
        return .success([:])
    }

    // MARK: Reads

    func readAllowed(database: String, secondaryOk: Bool) -> Result<Void, CommandFailure> {
        if phase == .rollback || (setMember && phase == .startup2) {
            // §4.5, §8: oplog (and, INFERRED, all) reads in ROLLBACK.
            return .failure(
                CommandFailure(
                    code: 13436,
                    message: "Oplog collection reads are not allowed while in the rollback or startup state."
                )
            )
        }
        if phase == .standalone || phase == .primary || database == "local" { return .success(()) }
        if !secondaryOk { return .failure(CommandFailure(code: 13435, message: "not primary and secondaryOk=false")) }
        switch phase {
        case .secondary, .drain: return .success(())
        default: return .failure(CommandFailure(code: 13436, message: "node is not in primary or recovering state"))
        }
    }

    func find(_ command: BSONDocument, database: String, secondaryOk: Bool) -> Result<BSONDocument, CommandFailure> {
        if case .failure(let failure) = readAllowed(database: database, secondaryOk: secondaryOk) {
            return .failure(failure)
        }
        guard let collection = command["find"]?.stringValue else {
            return .failure(CommandFailure(code: 2, message: "collection name has invalid type"))
        }
        let namespace = "\(database).\(collection)"
        let filter = command["filter"]?.documentValue ?? [:]
        let batchSize = command["batchSize"]?.int64Value.map { Int($0) }
        let limit = command["limit"]?.int64Value.map { Int($0) } ?? 0
        let tailable = command["tailable"]?.isTruthy ?? false
        let awaitData = command["awaitData"]?.isTruthy ?? false
        let isOplog = namespace == "local.oplog.rs"
        if isOplog && !oplogExists || !isOplog && collections[namespace] == nil {
            return .success(["cursor": ["firstBatch": .array([]), "id": .int64(0), "ns": .string(namespace)]])
        }
        if tailable && !isOplog {
            return .failure(
                CommandFailure(
                    code: 2,
                    message: "error processing query: \(namespace) tailable cursor requested on non capped collection"
                )
            )
        }
        let cursor = ServerCursor(
            id: nextCursorId,
            namespace: namespace,
            isOplog: isOplog,
            tailable: tailable,
            awaitData: awaitData,
            filter: filter,
            batchSize: batchSize
        )
        nextCursorId += 1
        var batch: [BSONValue]
        if isOplog {
            if command["sort"]?.documentValue?["$natural"]?.int64Value == -1 {
                // Reverse scan (find the newest entry): a plain, non-tailable cursor.
                let matches = liveOplog.reversed().lazy.filter { cursor.matcher.matches($0.document) }
                let wanted = limit > 0 ? limit : (batchSize ?? 101)
                batch = matches.prefix(wanted).map { .document($0.document) }
                return .success(["cursor": ["firstBatch": .array(batch), "id": .int64(0), "ns": .string(namespace)]])
            }
            batch = scanOplog(cursor, max: batchSize ?? 101).map { .document($0) }
        } else {
            var matches = collections[namespace]!.documents.filter { cursor.matcher.matches($0) }
            if limit > 0 { matches = Array(matches.prefix(limit)) }
            let first = batchSize ?? 101
            batch = matches.prefix(first).map { .document($0) }
            cursor.pending = Array(matches.dropFirst(first))
        }
        let open = cursor.tailable || !cursor.pending.isEmpty
        if open { cursors[cursor.id] = cursor }
        return .success([
            "cursor": ["firstBatch": .array(batch), "id": .int64(open ? cursor.id : 0), "ns": .string(namespace)]
        ])
    }

    /// Returns up to `max` matching oplog entries after the cursor's position and moves it.
    func scanOplog(_ cursor: ServerCursor, max: Int) -> [BSONDocument] {
        var index: Int
        if let last = cursor.lastScanned {
            index = oplogIndex(after: last, strict: true)
        } else if let lower = Self.timestampLowerBound(cursor.filter) {
            index = oplogIndex(after: lower.ts, strict: lower.strict)
        } else {
            index = oplogStart
        }
        var result: [BSONDocument] = []
        let limit = max <= 0 ? Int.max : max
        while index < oplog.count && result.count < limit {
            let record = oplog[index]
            if cursor.matcher.matches(record.document) { result.append(record.document) }
            cursor.lastScanned = record.ts
            index += 1
        }
        return result
    }

    /// The `ts` lower bound of an oplog filter (`ts: {$gt|$gte: T}` at the top level or inside `$and`).
    static func timestampLowerBound(_ filter: BSONDocument) -> (ts: BSONTimestamp, strict: Bool)? {
        if let ts = filter["ts"]?.documentValue {
            if let t = ts["$gt"]?.timestampValue { return (t, true) }
            if let t = ts["$gte"]?.timestampValue { return (t, false) }
        }
        for clause in filter["$and"]?.arrayValue?.compactMap(\.documentValue) ?? [] {
            if let bound = timestampLowerBound(clause) { return bound }
        }
        return nil
    }

    enum GetMoreOutcome {
        case result(Result<BSONDocument, CommandFailure>)
        case hangUp
    }

    func getMore(_ command: BSONDocument, database: String, context: FakeConnectionContext) -> GetMoreOutcome {
        guard let id = command["getMore"]?.int64Value else {
            return .result(.failure(CommandFailure(code: 2, message: "getMore cursor id must be a long")))
        }
        if pendingGetMoreHangUps > 0 {
            pendingGetMoreHangUps -= 1
            return .hangUp
        }
        if !pendingGetMoreFailures.isEmpty {
            let failure = pendingGetMoreFailures.removeFirst()
            cursors[id] = nil
            return .result(.failure(CommandFailure(code: failure.code, message: failure.message)))
        }
        guard let cursor = cursors[id] else {
            return .result(.failure(CommandFailure(code: 43, message: "cursor id \(id) not found")))
        }
        let batchSize = command["batchSize"]?.int64Value.map { Int($0) } ?? cursor.batchSize ?? 0
        if !cursor.isOplog {
            let count = batchSize > 0 ? batchSize : cursor.pending.count
            let batch = cursor.pending.prefix(count).map { BSONValue.document($0) }
            cursor.pending.removeFirst(min(count, cursor.pending.count))
            if cursor.pending.isEmpty { cursors[id] = nil }
            return .result(
                .success([
                    "cursor": [
                        "nextBatch": .array(batch), "id": .int64(cursor.pending.isEmpty ? 0 : id),
                        "ns": .string(cursor.namespace),
                    ]
                ])
            )
        }
        let maxTime = Duration.milliseconds(command["maxTimeMS"]?.int64Value ?? 1000)
        let deadline = Date().addingTimeInterval(maxTime.seconds)
        while true {
            if let last = cursor.lastScanned, let oldest = liveOplog.first, oldest.ts > last {
                cursors[id] = nil
                return .result(
                    .failure(
                        CommandFailure(
                            code: 136,
                            message: "CollectionScan died due to position in capped collection being deleted. "
                                + "Last seen record id: RecordId(\(last.rawValue))"
                        )
                    )
                )
            }
            let batch = scanOplog(cursor, max: batchSize > 0 ? batchSize : 10_000)
            if !batch.isEmpty || !cursor.tailable || !cursor.awaitData || Date() >= deadline {
                let alive = cursor.tailable
                if !alive { cursors[id] = nil }
                return .result(
                    .success([
                        "cursor": [
                            "nextBatch": .array(batch.map { .document($0) }),
                            "id": .int64(alive ? id : 0), "ns": .string(cursor.namespace),
                        ]
                    ])
                )
            }
            _ = condition.wait(until: deadline)
            if generation != context.generation { return .hangUp }
            if shuttingDown {
                cursors[id] = nil
                return .result(.failure(Self.shutdownInterruption))
            }
            if pendingGetMoreHangUps > 0 {
                pendingGetMoreHangUps -= 1
                return .hangUp
            }
            advance()
        }
    }

    func killCursors(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        var killed: [BSONValue] = []
        var notFound: [BSONValue] = []
        for value in command["cursors"]?.arrayValue ?? [] {
            guard let id = value.int64Value else { continue }
            if cursors.removeValue(forKey: id) != nil || changeStreams.cursors.removeValue(forKey: id) != nil {
                killed.append(.int64(id))
            } else {
                notFound.append(.int64(id))
            }
        }
        return .success([
            "cursorsKilled": .array(killed), "cursorsNotFound": .array(notFound),
            "cursorsAlive": .array([]), "cursorsUnknown": .array([]),
        ])
    }

    // MARK: Writes

    func write(_ name: String, _ command: BSONDocument, database: String) -> Result<BSONDocument, CommandFailure> {
        guard phase == .standalone || (phase == .primary && !steppingDown) else {
            return .failure(CommandFailure(code: 10107, message: "not primary"))
        }
        guard let target = command.firstKey.flatMap({ command[$0] }) else {
            return .failure(CommandFailure(code: 2, message: "missing target"))
        }
        let session = SessionInfo(command: command)
        switch name {
        case "dropdatabase":
            let prefix = database + "."
            let dropped = collections.keys.filter { $0.hasPrefix(prefix) }.sorted()
            for namespace in dropped {
                let uuid = collections[namespace]!.uuid
                collections[namespace] = nil
                logCommand(database: database, uuid: uuid, ["drop": .string(String(namespace.dropFirst(prefix.count)))])
            }
            logCommand(database: database, uuid: nil, ["dropDatabase": 1])
            return .success(["dropped": .string(database)])
        case "create":
            guard let collection = target.stringValue else {
                return .failure(CommandFailure(code: 2, message: "bad name"))
            }
            let namespace = "\(database).\(collection)"
            guard collections[namespace] == nil else {
                return .failure(CommandFailure(code: 48, message: "Collection \(namespace) already exists."))
            }
            _ = ensureCollection(namespace, database: database)
            return .success([:])
        case "drop":
            guard let collection = target.stringValue else {
                return .failure(CommandFailure(code: 2, message: "bad name"))
            }
            let namespace = "\(database).\(collection)"
            guard let existing = collections.removeValue(forKey: namespace) else {
                return .failure(CommandFailure(code: 26, message: "ns not found"))
            }
            logCommand(database: database, uuid: existing.uuid, ["drop": .string(collection)])
            return .success(["ns": .string(namespace), "nIndexesWas": 1])
        default:
            break
        }
        guard let collection = target.stringValue else { return .failure(CommandFailure(code: 2, message: "bad name")) }
        let namespace = "\(database).\(collection)"
        let result: Result<BSONDocument, CommandFailure>
        switch name {
        case "insert":
            result = insert(
                command["documents"]?.arrayValue ?? [],
                into: namespace,
                database: database,
                session: session
            )
        case "update":
            result = update(command["updates"]?.arrayValue ?? [], in: namespace, database: database, session: session)
        default:
            result = delete(command["deletes"]?.arrayValue ?? [], in: namespace, database: database, session: session)
        }
        // §11.2: a replica-set member's write replies carry the client's last op and the election id (mongos reads
        // them); a no-op write reports the node's last op, as mongod's `setLastOpToSystemLastOpTime` does.
        guard phase != .standalone else { return result }
        return result.map { body in
            var reply = body
            reply.append("electionId", .objectID(electionId))
            reply.append("opTime", ["ts": .timestamp(lastTimestamp), "t": .int64(term)])
            return reply
        }
    }

    /// Retryable-write session fields, written to the oplog when the client sent `txnNumber` (as mongod does).
    struct SessionInfo {
        var lsid: BSONDocument?
        var txnNumber: Int64?
        var previous: BSONDocument = ["ts": .timestamp(BSONTimestamp(seconds: 0, increment: 0)), "t": .int64(-1)]

        init(command: BSONDocument) {
            if let txn = command["txnNumber"]?.int64Value, let id = command["lsid"]?.documentValue?["id"] {
                lsid = ["id": id, "uid": .binary(FakeMongodCore.anonymousSessionUID)]
                txnNumber = txn
            }
        }
    }

    private func ensureCollection(_ namespace: String, database: String) -> BSONBinary {
        if let existing = collections[namespace] { return existing.uuid }
        let uuid = Self.randomUUID()
        collections[namespace] = FakeCollection(uuid: uuid)
        let name = String(namespace.dropFirst(database.count + 1))
        logCommand(
            database: database,
            uuid: uuid,
            ["create": .string(name), "idIndex": ["v": 2, "key": ["_id": 1], "name": "_id_"]]
        )
        return uuid
    }

    private func logCommand(database: String, uuid: BSONBinary?, _ object: BSONDocument) {
        if phase == .standalone { return }
        var entry: BSONDocument = ["op": "c", "ns": .string("\(database).$cmd")]
        if let uuid { entry.append("ui", .binary(uuid)) }
        entry.append("o", .document(object))
        appendOplog(entry)
    }

    private func logWrite(
        op: String,
        namespace: String,
        uuid: BSONBinary,
        object: BSONDocument,
        object2: BSONDocument?,
        session: inout SessionInfo,
        statement: Int
    ) {
        if phase == .standalone { return }
        var entry = BSONDocument()
        if let lsid = session.lsid, let txn = session.txnNumber {
            entry.append("lsid", .document(lsid))
            entry.append("txnNumber", .int64(txn))
        }
        entry.append("op", .string(op))
        entry.append("ns", .string(namespace))
        entry.append("ui", .binary(uuid))
        entry.append("o", .document(object))
        if let object2 { entry.append("o2", .document(object2)) }
        if session.txnNumber != nil { entry.append("stmtId", .int32(Int32(statement))) }
        let ts = nextTimestamp()
        entry.append("ts", .timestamp(ts))
        entry.append("t", .int64(term))
        entry.append("v", .int64(2))
        entry.append("wall", .datetime(nowMillis()))
        if session.txnNumber != nil {
            entry.append("prevOpTime", .document(session.previous))
            session.previous = ["ts": .timestamp(ts), "t": .int64(term)]
        }
        appendOplog(entry)
    }

    private func insert(
        _ documents: [BSONValue],
        into namespace: String,
        database: String,
        session: SessionInfo
    ) -> Result<BSONDocument, CommandFailure> {
        var session = session
        let uuid = ensureCollection(namespace, database: database)
        var inserted = 0
        var writeErrors: [BSONValue] = []
        for (index, value) in documents.enumerated() {
            guard var document = value.documentValue else { continue }
            if document["_id"] == nil {
                var withID: BSONDocument = ["_id": .objectID(Self.randomObjectID())]
                for (k, v) in document.elements { withID.append(k, v) }
                document = withID
            }
            let id = document["_id"]!
            if collections[namespace]!.documents.contains(where: { $0["_id"] == id }) {
                writeErrors.append(
                    .document([
                        "index": .int32(Int32(index)), "code": 11000,
                        "errmsg": .string(
                            "E11000 duplicate key error collection: \(namespace) index: _id_ dup key: { _id: \(id) }"
                        ),
                    ])
                )
                break
            }
            collections[namespace]!.documents.append(document)
            logWrite(
                op: "i",
                namespace: namespace,
                uuid: uuid,
                object: document,
                object2: ["_id": id],
                session: &session,
                statement: index
            )
            inserted += 1
        }
        var reply: BSONDocument = ["n": .int32(Int32(inserted))]
        if !writeErrors.isEmpty { reply.append("writeErrors", .array(writeErrors)) }
        return .success(reply)
    }

    private func update(
        _ updates: [BSONValue],
        in namespace: String,
        database: String,
        session: SessionInfo
    ) -> Result<BSONDocument, CommandFailure> {
        var session = session
        var matched = 0
        var modified = 0
        var upserted: [BSONValue] = []
        for (index, value) in updates.enumerated() {
            guard let spec = value.documentValue, let query = spec["q"]?.documentValue,
                let change = spec["u"]?.documentValue
            else {
                return .failure(
                    CommandFailure(code: 9, message: "pipeline-style updates are not supported by the double")
                )
            }
            let multi = spec["multi"]?.isTruthy ?? false
            let uuid = ensureCollection(namespace, database: database)
            let indexes = collections[namespace]!.documents.indices.filter {
                DocumentMatcher.matches(collections[namespace]!.documents[$0], query)
            }
            let targets = multi ? indexes : Array(indexes.prefix(1))
            if targets.isEmpty, spec["upsert"]?.isTruthy == true {
                var base = BSONDocument()
                for (k, v) in query.elements
                where !k.hasPrefix("$") && !(v.documentValue?.firstKey?.hasPrefix("$") ?? false) {
                    base.append(k, v)
                }
                let created: BSONDocument
                do { created = try UpdateApplier.apply(change, to: base) } catch {
                    return .failure(CommandFailure(code: error.code, message: error.message))
                }
                var document = created
                if document["_id"] == nil {
                    document = ["_id": .objectID(Self.randomObjectID())]
                    for (k, v) in created.elements { document.append(k, v) }
                }
                collections[namespace]!.documents.append(document)
                logWrite(
                    op: "i",
                    namespace: namespace,
                    uuid: uuid,
                    object: document,
                    object2: ["_id": document["_id"]!],
                    session: &session,
                    statement: index
                )
                upserted.append(.document(["index": .int32(Int32(index)), "_id": document["_id"]!]))
                continue
            }
            for position in targets {
                let old = collections[namespace]!.documents[position]
                let new: BSONDocument
                do { new = try UpdateApplier.apply(change, to: old) } catch {
                    return .failure(CommandFailure(code: error.code, message: error.message))
                }
                matched += 1
                guard new != old else { continue }
                modified += 1
                collections[namespace]!.documents[position] = new
                let isReplacement = change.firstKey?.hasPrefix("$") != true
                let object: BSONDocument =
                    isReplacement ? new : ["$v": 2, "diff": .document(OplogDiff.diff(from: old, to: new))]
                logWrite(
                    op: "u",
                    namespace: namespace,
                    uuid: uuid,
                    object: object,
                    object2: ["_id": old["_id"] ?? .null],
                    session: &session,
                    statement: index
                )
            }
        }
        var reply: BSONDocument = ["n": .int32(Int32(matched + upserted.count)), "nModified": .int32(Int32(modified))]
        if !upserted.isEmpty { reply.append("upserted", .array(upserted)) }
        return .success(reply)
    }

    private func delete(
        _ deletes: [BSONValue],
        in namespace: String,
        database: String,
        session: SessionInfo
    ) -> Result<BSONDocument, CommandFailure> {
        var session = session
        var removed = 0
        guard let collection = collections[namespace] else { return .success(["n": 0]) }
        for (index, value) in deletes.enumerated() {
            guard let spec = value.documentValue, let query = spec["q"]?.documentValue else { continue }
            let limit = spec["limit"]?.int64Value ?? 0
            var remaining = collections[namespace]!.documents
            var kept: [BSONDocument] = []
            var removedHere = 0
            for document in remaining {
                if (limit == 0 || removedHere < limit) && DocumentMatcher.matches(document, query) {
                    removedHere += 1
                    logWrite(
                        op: "d",
                        namespace: namespace,
                        uuid: collection.uuid,
                        object: ["_id": document["_id"] ?? .null],
                        object2: nil,
                        session: &session,
                        statement: index
                    )
                } else {
                    kept.append(document)
                }
            }
            remaining = kept
            collections[namespace]!.documents = remaining
            removed += removedHere
        }
        return .success(["n": .int32(Int32(removed))])
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) / 1e18
    }
}
