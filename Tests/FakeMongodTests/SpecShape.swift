import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// The fields (and, where `mongod-behaviour.md` names them, the BSON types) the spec lists for each reply, checked
/// through libmongoc. One function runs every non-destructive check against whatever node a client talks to, so the
/// same list is held against the double and, with `RSINIT_TEST_MONGODB_URI`, against a real mongod.
enum SpecShape {
    static let int32: UInt8 = 0x10
    static let int64: UInt8 = 0x12
    static let date: UInt8 = 0x09
    static let timestamp: UInt8 = 0x11
    static let document: UInt8 = 0x03
    static let array: UInt8 = 0x04
    static let string: UInt8 = 0x02
    static let bool: UInt8 = 0x08
    static let objectID: UInt8 = 0x07

    /// `fields`: dotted path → required type byte (nil: any type). Returns "context: path …" per difference.
    static func missing(_ document: BSONDocument, _ fields: [(String, UInt8?)], _ context: String) -> [String] {
        fields.compactMap { path, type in
            guard let value = document[path: path] else { return "\(context): \(path) is missing" }
            if let type, value.typeByte != type {
                return "\(context): \(path) has BSON type 0x\(String(value.typeByte, radix: 16)), expected 0x"
                    + String(type, radix: 16)
            }
            return nil
        }
    }

    static func absent(_ document: BSONDocument, _ paths: [String], _ context: String) -> [String] {
        paths.compactMap { document[path: $0] == nil ? nil : "\(context): \($0) must be absent" }
    }

    /// §2.1/§2.3: every state. (`topologyVersion` is left out by design, §11.5, and not checked.)
    static let helloAlways: [(String, UInt8?)] = [
        ("maxBsonObjectSize", int32), ("maxMessageSizeBytes", int32), ("maxWriteBatchSize", int32),
        ("localTime", date), ("logicalSessionTimeoutMinutes", int32), ("connectionId", nil),
        ("minWireVersion", int32), ("maxWireVersion", int32), ("readOnly", bool), ("ok", nil),
    ]

    static func helloDifferences(_ hello: BSONDocument) -> [String] {
        var differences = missing(hello, helloAlways, "hello")
        let replicaSet = hello["setName"] != nil || hello["isreplicaset"] != nil
        if replicaSet {
            differences += missing(
                hello,
                [("$clusterTime.clusterTime", timestamp), ("operationTime", timestamp)],
                "hello"
            )
        }
        if hello["isreplicaset"] == true {
            // §2.2 B / B′.
            differences += missing(hello, [("secondary", bool), ("info", string)], "ghost hello")
            differences += absent(hello, ["setName", "setVersion", "hosts", "me", "lastWrite"], "ghost hello")
            if hello["info"] != "Does not have a valid replica set config" {
                differences.append("ghost hello: info is \(String(describing: hello["info"]))")
            }
        } else if hello["setName"] != nil {
            differences += missing(
                hello,
                [
                    ("setVersion", nil), ("hosts", array), ("me", string), ("secondary", bool),
                    ("lastWrite.opTime.ts", timestamp), ("lastWrite.opTime.t", int64),
                    ("lastWrite.lastWriteDate", date),
                    ("lastWrite.majorityOpTime", document), ("lastWrite.majorityWriteDate", date),
                ],
                "member hello"
            )
            if hello["isWritablePrimary"] == true {
                differences += missing(hello, [("primary", string), ("electionId", objectID)], "primary hello")
                if hello["primary"] != hello["me"] { differences.append("primary hello: primary != me") }
                if case .objectID(let id) = hello["electionId"], !id.hex.hasPrefix("7fffffff") {
                    differences.append("primary hello: electionId \(id.hex) does not start with 7fffffff")
                }
            }
        }
        return differences
    }

    /// §4 after initiation.
    static func statusDifferences(_ status: BSONDocument) -> [String] {
        var differences = missing(
            status,
            [
                ("set", string), ("date", date), ("myState", nil), ("term", int64), ("syncSourceHost", string),
                ("syncSourceId", nil), ("heartbeatIntervalMillis", int64), ("majorityVoteCount", nil),
                ("writeMajorityCount", nil), ("votingMembersCount", nil), ("writableVotingMembersCount", nil),
                ("optimes.lastCommittedOpTime.ts", timestamp), ("optimes.lastCommittedWallTime", date),
                ("optimes.readConcernMajorityOpTime", document), ("optimes.appliedOpTime.ts", timestamp),
                ("optimes.appliedOpTime.t", int64), ("optimes.durableOpTime", document),
                ("optimes.lastAppliedWallTime", date), ("optimes.lastDurableWallTime", date),
                ("lastStableRecoveryTimestamp", timestamp), ("members", array),
            ],
            "replSetGetStatus"
        )
        let members = status["members"]?.arrayValue?.compactMap(\.documentValue) ?? []
        guard let me = members.first(where: { $0["self"] == true }) else {
            return differences + ["replSetGetStatus: no member with self: true"]
        }
        var selfFields: [(String, UInt8?)] = [
            ("_id", nil), ("name", string), ("health", nil), ("state", nil), ("stateStr", string), ("uptime", nil),
            ("optime.ts", timestamp), ("optime.t", int64), ("optimeDate", date), ("lastAppliedWallTime", date),
            ("lastDurableWallTime", date), ("syncSourceHost", string), ("syncSourceId", nil), ("infoMessage", string),
            ("configVersion", nil), ("configTerm", nil), ("lastHeartbeatMessage", nil),
        ]
        if status["myState"]?.int64Value == 1 {
            selfFields += [("electionTime", timestamp), ("electionDate", date)]
            differences += missing(
                status,
                [
                    ("electionCandidateMetrics.lastElectionReason", string),
                    ("electionCandidateMetrics.lastElectionDate", date),
                    ("electionCandidateMetrics.electionTerm", int64),
                    ("electionCandidateMetrics.lastCommittedOpTimeAtElection", document),
                    ("electionCandidateMetrics.lastSeenOpTimeAtElection", document),
                    ("electionCandidateMetrics.numVotesNeeded", nil),
                    ("electionCandidateMetrics.priorityAtElection", nil),
                    ("electionCandidateMetrics.electionTimeoutMillis", int64),
                ],
                "replSetGetStatus"
            )
        }
        differences += missing(me, selfFields, "replSetGetStatus self member")
        for other in members where other["self"] != true {
            differences += missing(
                other,
                [
                    ("optimeDurable", document), ("optimeDurableDate", date), ("lastHeartbeat", date),
                    ("lastHeartbeatRecv", date), ("pingMs", nil),
                ],
                "replSetGetStatus member \(other["name"]?.stringValue ?? "?")"
            )
            if other["health"]?.doubleValue == 0 && other["stateStr"] != "(not reachable/healthy)" {
                differences.append(
                    "replSetGetStatus: an unhealthy member's stateStr is \(String(describing: other["stateStr"]))"
                )
            }
        }
        return differences
    }

    /// §5 (7.0 shape).
    static func configDifferences(_ reply: BSONDocument, writablePrimary: Bool) -> [String] {
        var differences = missing(
            reply,
            [
                ("config._id", string), ("config.version", nil), ("config.term", nil), ("config.members", array),
                ("config.protocolVersion", int64), ("config.writeConcernMajorityJournalDefault", bool),
                ("config.settings.chainingAllowed", bool), ("config.settings.heartbeatIntervalMillis", nil),
                ("config.settings.heartbeatTimeoutSecs", nil), ("config.settings.electionTimeoutMillis", nil),
                ("config.settings.catchUpTimeoutMillis", nil), ("config.settings.catchUpTakeoverDelayMillis", nil),
                ("config.settings.getLastErrorModes", document), ("config.settings.getLastErrorDefaults", document),
                ("config.settings.replicaSetId", objectID),
            ],
            "replSetGetConfig"
        )
        for member in reply[path: "config.members"]?.arrayValue?.compactMap(\.documentValue) ?? [] {
            differences += missing(
                member,
                [
                    ("_id", nil), ("host", string), ("arbiterOnly", bool), ("buildIndexes", bool), ("hidden", bool),
                    ("priority", nil), ("tags", document), ("secondaryDelaySecs", int64), ("votes", nil),
                ],
                "replSetGetConfig member"
            )
        }
        if writablePrimary, (reply[path: "config.term"]?.int64Value ?? 0) < 1 {
            differences.append(
                "replSetGetConfig: term is \(String(describing: reply[path: "config.term"])) on a primary"
            )
        }
        return differences
    }

    /// §9.5 field types of oplog entries.
    static func oplogDifferences(_ entries: [BSONDocument]) -> [String] {
        entries.enumerated().flatMap { index, entry -> [String] in
            var fields: [(String, UInt8?)] = [
                ("op", string), ("ns", string), ("o", document), ("ts", timestamp), ("v", int64), ("wall", date),
            ]
            if entry[path: "o.msg"] != "initiating set" { fields.append(("t", int64)) }
            return missing(entry, fields, "oplog entry \(index)")
        }
    }

    /// Every non-destructive check against the node `client` talks to (direct connection); one line per difference.
    static func probe(_ client: MongoClient) async -> [String] {
        var differences: [String] = []
        func run(_ command: BSONDocument, database: String = "admin") async -> Result<BSONDocument, MongoError> {
            do { return .success(try await client.runCommand(command, database: database)) } catch let error
                as MongoError
            {
                return .failure(error)
            } catch {
                return .failure(MongoError(code: .commandNotFound, message: "\(error)"))
            }
        }
        guard case .success(let hello) = await run(["hello": 1]) else { return ["hello failed"] }
        differences += helloDifferences(hello)
        // §14 item 12: exact, case-sensitive names; isMaster and ismaster are both registered.
        for name in ["isMaster", "ismaster"] {
            if case .success(let legacy) = await run([name: 1]) {
                if legacy["ismaster"] == nil { differences.append("\(name): no ismaster field") }
                if legacy["isWritablePrimary"] != nil { differences.append("\(name): isWritablePrimary present") }
            } else {
                differences.append("\(name) failed")
            }
        }
        for name in ["PING", "Hello", "frobnicate"] {
            switch await run([name: 1]) {
            case .success: differences.append("\(name) succeeded; expected 59")
            case .failure(let error):
                if error.serverCode != 59 || error.codeName != "CommandNotFound"
                    || error.message != "no such command: '\(name)'"
                {
                    differences.append("\(name): \(error.serverCode ?? 0) \(error.codeName ?? "") \(error.message)")
                }
            }
        }
        guard hello["setName"] != nil else { return differences }
        let writable = hello["isWritablePrimary"] == true
        switch await run(["replSetGetStatus": 1]) {
        case .success(let status): differences += statusDifferences(status)
        case .failure(let error): differences.append("replSetGetStatus failed: \(error.message)")
        }
        switch await run(["replSetGetConfig": 1]) {
        case .success(let config): differences += configDifferences(config, writablePrimary: writable)
        case .failure(let error): differences.append("replSetGetConfig failed: \(error.message)")
        }
        // §14 item 6: cursor ids are int64 (non-zero and zero).
        switch await run(["find": "oplog.rs", "batchSize": 2], database: "local") {
        case .success(let reply):
            differences += missing(
                reply,
                [("cursor.id", int64), ("cursor.ns", string), ("cursor.firstBatch", array)],
                "find"
            )
            let entries = reply[path: "cursor.firstBatch"]?.arrayValue?.compactMap(\.documentValue) ?? []
            differences += oplogDifferences(entries)
            if let id = reply[path: "cursor.id"]?.int64Value, id != 0 {
                if case .success(let more) = await run(
                    ["getMore": .int64(id), "collection": "oplog.rs", "batchSize": 2],
                    database: "local"
                ) {
                    differences += missing(more, [("cursor.id", int64), ("cursor.nextBatch", array)], "getMore")
                    let moreEntries = more[path: "cursor.nextBatch"]?.arrayValue?.compactMap(\.documentValue) ?? []
                    differences += oplogDifferences(moreEntries)
                } else {
                    differences.append("getMore failed")
                }
                _ = await run(["killCursors": "oplog.rs", "cursors": [.int64(id)]], database: "local")
            }
        case .failure(let error): differences.append("find on local.oplog.rs failed: \(error.message)")
        }
        switch await run(["find": "oplog.rs", "filter": ["op": "no such op"], "batchSize": 1], database: "local") {
        case .success(let reply): differences += missing(reply, [("cursor.id", int64)], "empty find")
        case .failure(let error): differences.append("empty find failed: \(error.message)")
        }
        return differences
    }
}

/// The same checks against a real mongod, when `RSINIT_TEST_MONGODB_URI` names one (a direct connection, e.g.
/// `mongodb://127.0.0.1:27017/?directConnection=true`): each difference is recorded. Read-only: hello, the status and
/// config commands, unknown command names and an oplog find.
@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["RSINIT_TEST_MONGODB_URI"] != nil,
        "RSINIT_TEST_MONGODB_URI is not set: the double is not compared with a real mongod in this run"
    )
)
struct RealServerFidelityTests {
    @Test func theSpecsShapeHoldsOnTheRealServer() async throws {
        let uri = ProcessInfo.processInfo.environment["RSINIT_TEST_MONGODB_URI"] ?? ""
        let client = try MongoClient(uri: uri, logger: logger)
        let differences = await SpecShape.probe(client)
        await client.close()
        for difference in differences { Issue.record("real mongod differs from the spec: \(difference)") }
    }
}
