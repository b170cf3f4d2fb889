public import BSON
import Foundation

/// An optime `(ts, t)`, ordered term first as mongod orders them (replication-ha §5.3).
public struct FakeOpTime: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var ts: BSONTimestamp
    public var t: Int64

    public init(ts: BSONTimestamp, t: Int64) {
        self.ts = ts
        self.t = t
    }

    init?(_ document: BSONDocument?) {
        guard let document, let ts = document["ts"]?.timestampValue else { return nil }
        self.init(ts: ts, t: document["t"]?.int64Value ?? -1)
    }

    public static func < (lhs: FakeOpTime, rhs: FakeOpTime) -> Bool {
        lhs.t != rhs.t ? lhs.t < rhs.t : lhs.ts < rhs.ts
    }

    public var document: BSONDocument { ["ts": .timestamp(ts), "t": .int64(t)] }
    public var description: String { "(\(ts), t\(t))" }
}

/// The member-side half of ``FakeReplicaSet``: what a request handler does on a set member. Everything here runs
/// under the core's lock; the set pushes its view of the other members in (never the other way round, so a
/// handler never waits for the set's lock).
extension FakeMongodCore {
    /// `(ts, t)` of a record.
    static func opTime(_ record: OplogRecord) -> FakeOpTime {
        FakeOpTime(ts: record.ts, t: record.document["t"]?.int64Value ?? -1)
    }

    /// The newest entry's optime, nil with an empty oplog.
    var lastAppliedOpTime: FakeOpTime? { liveOplog.last.map(Self.opTime) }

    /// `replSetStepDown` on a set member (§4.4): arguments and their errors, the attempt (not writable at once,
    /// 117 for a concurrent one), the wait for an electable caught-up secondary (262 on timeout), then SECONDARY
    /// with election handoff. Connections and oplog getMores are untouched.
    func replicaSetStepDown(_ command: BSONDocument) -> Result<BSONDocument, CommandFailure> {
        func seconds(_ value: BSONValue?, default fallback: Double) -> Double? {
            guard let value else { return fallback }
            guard let number = value.doubleValue else { return fallback }
            return number
        }
        var stepDownSecs = seconds(command["replSetStepDown"], default: 60) ?? 60
        if stepDownSecs == 0 { stepDownSecs = 60 }
        guard stepDownSecs > 0 else {
            return .failure(CommandFailure(code: 2, message: "stepdown period must be a positive integer"))
        }
        let force = command["force"]?.isTruthy ?? false
        let catchUp = seconds(command["secondaryCatchUpPeriodSecs"], default: force ? 0 : 10) ?? 10
        guard catchUp <= stepDownSecs else {
            return .failure(
                CommandFailure(code: 2, message: "stepdown period must be longer than secondaryCatchUpPeriodSecs")
            )
        }
        guard !steppingDown else {
            return .failure(
                CommandFailure(code: 117, message: "This node is already in the process of stepping down")
            )
        }
        steppingDown = true
        topologyCounter += 1
        condition.broadcast()
        let deadline = Date().addingTimeInterval(catchUp)
        while !electableSecondaryCaughtUp && !force && Date() < deadline && phase == .primary {
            _ = condition.wait(until: deadline)
        }
        steppingDown = false
        guard phase == .primary else {
            topologyCounter += 1
            return .success([:])
        }
        guard electableSecondaryCaughtUp || force else {
            topologyCounter += 1
            let date = ISO8601DateFormatter().string(from: Date())
            return .failure(
                CommandFailure(
                    code: 262,
                    message: "No electable secondaries caught up as of \(date). Please use the replSetStepDown "
                        + "command with the argument {force: true} to force node to step down."
                )
            )
        }
        phase = .secondary
        knownPrimaryHost = nil
        topologyCounter += 1
        stepDownUntil = .now + .milliseconds(Int64(stepDownSecs * 1000))
        phaseDeadline = nil
        handoffRequested = !force
        condition.broadcast()
        return .success([:])
    }

    /// Whether this member's config entry says `arbiterOnly: true`.
    var isConfiguredArbiter: Bool {
        configMembers.first { $0["host"]?.stringValue == selfHost }?["arbiterOnly"]?.isTruthy == true
    }

    /// Hosts of the config's voting members (`votes` > 0), `newlyAdded` ones included.
    var votingHosts: Set<String> {
        Set(configMembers.filter { ($0["votes"]?.int64Value ?? 1) > 0 }.compactMap { $0["host"]?.stringValue })
    }

    /// `replSetReconfig` without `force` on a set member (§7.1–§7.2): only on a writable primary, only when the
    /// current config is committed, version greater, at most one voter added or removed; new voters are
    /// `newlyAdded` until they reach SECONDARY (the set then reconfigures again with version + 1).
    func replicaSetReconfig(
        _ command: BSONDocument,
        setName: String,
        current: BSONDocument
    ) -> Result<BSONDocument, CommandFailure> {
        guard phase == .primary && !steppingDown else {
            return .failure(
                CommandFailure(
                    code: 10107,
                    message: "Safe reconfig is only allowed on a writable PRIMARY. Current state \(phase.stateString)"
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
        let oldVersion = current["version"]?.int64Value ?? 1
        guard configCommitted else {
            return .failure(
                CommandFailure(
                    code: 308,
                    message:
                        "Current config with {version: \(oldVersion), term: \(term)} is not yet majority committed."
                )
            )
        }
        let documents = members.compactMap(\.documentValue)
        if documents.contains(where: { $0.contains("newlyAdded") }) {
            return .failure(
                CommandFailure(code: 93, message: "newly added field is not user-settable: newlyAdded")
            )
        }
        let newVersion = config["version"]?.int64Value ?? 0
        guard newVersion > oldVersion else {
            return .failure(
                CommandFailure(
                    code: 103,
                    message: "New replica set configuration version and term must be greater than old, but "
                        + "{version: \(newVersion), term: \(term)} is not greater than {version: \(oldVersion), "
                        + "term: \(term)}"
                )
            )
        }
        let oldIDs = Dictionary(
            configMembers.map { ($0["_id"]?.int64Value ?? -1, $0["host"]?.stringValue ?? "") },
            uniquingKeysWith: { a, _ in a }
        )
        for member in documents {
            if let id = member["_id"]?.int64Value, let old = oldIDs[id], old != member["host"]?.stringValue {
                return .failure(
                    CommandFailure(
                        code: 103,
                        message: "New and old configurations both have members with _id of \(id) but in the new "
                            + "configuration the host is \(member["host"]?.stringValue ?? "") and in the old "
                            + "configuration it is \(old) for replica set \(setName)"
                    )
                )
            }
        }
        let newVoters = Set(
            documents.filter { ($0["votes"]?.int64Value ?? 1) > 0 }.compactMap { $0["host"]?.stringValue }
        )
        let oldVoters = votingHosts
        guard newVoters.symmetricDifference(oldVoters).count <= 1 else {
            return .failure(
                CommandFailure(
                    code: 103,
                    message: "Non force replica set reconfig can only add or remove at most 1 voting member."
                )
            )
        }
        // Settings: the current ones, with what the new config sets on top (e.g. chainingAllowed).
        var settings = current["settings"]?.documentValue ?? [:]
        for (key, value) in config["settings"]?.documentValue?.elements ?? [] { settings.set(key, value) }
        var stored = normalizedConfig(setName: setName, members: members, version: Int32(clamping: newVersion))
        if !settings.isEmpty { stored.set("settings", .document(settings)) }
        replicaSetConfig = stored
        newlyAddedHosts.formUnion(newVoters.subtracting(oldVoters))
        newlyAddedHosts.formIntersection(newVoters)
        configCommitted = false
        appendNoop(["msg": "Reconfig set", "version": .int32(Int32(clamping: newVersion))])
        return .success([:])
    }

    /// Rollback's truncation (§5.2 step 8): drops every entry after `commonPoint`, resets lastApplied and every
    /// open cursor.
    func truncateOplog(after commonPoint: FakeOpTime?) {
        let keep: Int
        if let commonPoint {
            keep = oplogIndex(after: commonPoint.ts, strict: true)
        } else {
            keep = oplogStart
        }
        oplog.removeSubrange(keep...)
        lastTimestamp = oplog.last?.ts ?? BSONTimestamp(seconds: 0, increment: 0)
        cursors.removeAll()
    }

    /// Copies entries from the sync source as they are (their `ts`, `t`, `wall` kept), waking awaitData getMores.
    func applyReplicated(_ records: [OplogRecord]) {
        for record in records {
            oplog.append(record)
            if record.ts > lastTimestamp { lastTimestamp = record.ts }
        }
        trimOplog()
        if let t = records.last?.document["t"]?.int64Value, t > term { term = t }
        condition.broadcast()
    }
}
