public import BSON

/// What a `hello` / `isMaster` reply says about a node (the fields the bootstrap decides on).
public struct HelloSummary: Sendable, Equatable {
    /// `isWritablePrimary`, or legacy `ismaster`.
    public var isWritablePrimary: Bool
    public var isSecondary: Bool
    /// `isreplicaset: true`: a `--replSet` member without a valid config (uninitialised or REMOVED).
    public var isReplicaSetGhost: Bool
    public var setName: String?
    public var hosts: [String]
    public var me: String?
    public var primary: String?
    /// `msg: "isdbgrid"`: a mongos.
    public var isMongos: Bool
    public var lastWrite: BSONTimestamp?
    /// `lastWrite.majorityOpTime.ts`: the node's committed snapshot (absent while it has none).
    public var majorityWrite: BSONTimestamp?

    public init(_ reply: BSONDocument) {
        isWritablePrimary = (reply["isWritablePrimary"] ?? reply["ismaster"])?.isTruthy ?? false
        isSecondary = reply["secondary"]?.isTruthy ?? false
        isReplicaSetGhost = reply["isreplicaset"]?.isTruthy ?? false
        setName = reply["setName"]?.stringValue
        hosts = (reply["hosts"]?.arrayValue ?? []).compactMap(\.stringValue)
        me = reply["me"]?.stringValue
        primary = reply["primary"]?.stringValue
        isMongos = reply["msg"]?.stringValue == "isdbgrid"
        lastWrite = reply[path: "lastWrite.opTime.ts"]?.timestampValue
        majorityWrite = reply[path: "lastWrite.majorityOpTime.ts"]?.timestampValue
    }

    /// A mongod without `--replSet`.
    public var isStandalone: Bool { !isMongos && setName == nil && !isReplicaSetGhost && isWritablePrimary }
}

/// One member line of `replSetGetStatus`.
public struct MemberStatus: Sendable, Equatable, Codable {
    public var name: String
    public var state: Int
    public var stateStr: String
    public var health: Double
    public var isSelf: Bool

    public var isHealthy: Bool { health >= 1 && [1, 2, 7].contains(state) }
}

/// What `replSetGetStatus` says about the set.
public struct StatusSummary: Sendable, Equatable {
    public var setName: String
    public var myState: Int
    public var members: [MemberStatus]
    /// `votingMembersCount` (voters, `newlyAdded` excluded), `majorityVoteCount`, `writeMajorityCount`.
    public var votingMembers: Int?
    public var majorityVoteCount: Int?
    public var writeMajorityCount: Int?
    /// `writableVotingMembersCount`: voters that are not arbiters.
    public var writableVotingMembers: Int?

    public init(_ reply: BSONDocument) {
        writableVotingMembers = reply["writableVotingMembersCount"]?.int64Value.map { Int(clamping: $0) }
        votingMembers = reply["votingMembersCount"]?.int64Value.map { Int(clamping: $0) }
        majorityVoteCount = reply["majorityVoteCount"]?.int64Value.map { Int(clamping: $0) }
        writeMajorityCount = reply["writeMajorityCount"]?.int64Value.map { Int(clamping: $0) }
        setName = reply["set"]?.stringValue ?? ""
        myState = Int(reply["myState"]?.int64Value ?? -1)  // trap-checked: Int64 to a 64-bit Int
        members = (reply["members"]?.arrayValue ?? []).compactMap(\.documentValue).map { member in
            MemberStatus(
                name: member["name"]?.stringValue ?? "?",
                state: Int(member["state"]?.int64Value ?? -1),  // trap-checked: Int64 to a 64-bit Int
                stateStr: member["stateStr"]?.stringValue ?? "?",
                health: member["health"]?.doubleValue ?? 0,
                isSelf: member["self"]?.isTruthy ?? false
            )
        }
    }

    /// This node's member entry.
    public var selfMember: MemberStatus? { members.first(where: \.isSelf) }

    /// Other members that are not PRIMARY/SECONDARY/ARBITER with health 1, as "name (stateStr)".
    public var unhealthyMembers: [String] {
        members.filter { !$0.isSelf && !$0.isHealthy }.map { "\($0.name) (\($0.stateStr))" }
    }
}

/// The mongod member state names (`replSetGetStatus.myState`).
public enum MemberStateName {
    public static func name(_ state: Int) -> String {
        switch state {
        case 0: return "STARTUP"
        case 1: return "PRIMARY"
        case 2: return "SECONDARY"
        case 3: return "RECOVERING"
        case 5: return "STARTUP2"
        case 6: return "UNKNOWN"
        case 7: return "ARBITER"
        case 8: return "DOWN"
        case 9: return "ROLLBACK"
        case 10: return "REMOVED"
        default: return "STATE \(state)"
        }
    }
}
