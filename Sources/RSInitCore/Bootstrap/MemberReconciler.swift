public import BSON

/// The next step of "add the missing members, one voter per reconfig" (shared/spec/replication-ha.md §7.3). Pure:
/// the bootstrapper reads `replSetGetConfig`/`replSetGetStatus` on the primary and runs what this decides.
public enum MemberReconcileStep: Sendable, Equatable {
    /// Every wanted host is in the config and every voter counts (no member is still `newlyAdded`).
    case done
    /// A member added earlier is still `newlyAdded` (catching up): wait, then read again.
    case waitForNewVoter
    /// Send `replSetReconfig` with this config (version + 1, one member appended).
    case reconfig(BSONDocument, adding: String)
}

public enum MemberReconciler {
    /// Decides from the current config (as `replSetGetConfig` shows it: `newlyAdded` hidden), the status's
    /// `votingMembersCount` (which excludes `newlyAdded` members) and the wanted hosts, compared exactly (a host
    /// spelled differently is a different member to mongod).
    public static func next(config: BSONDocument, votingMembersCount: Int, wanted: [String]) -> MemberReconcileStep {
        let members = config["members"]?.arrayValue?.compactMap(\.documentValue) ?? []
        let voters = members.filter { ($0["votes"]?.int64Value ?? 1) > 0 }.count
        if votingMembersCount < voters { return .waitForNewVoter }
        let present = Set(members.compactMap { $0["host"]?.stringValue })
        guard let missing = wanted.first(where: { !present.contains($0) }) else { return .done }
        let nextID = (members.compactMap { $0["_id"]?.int64Value }.max() ?? -1) + 1
        let version = config["version"]?.int64Value ?? 1
        var updated = config
        updated.set("version", .int32(Int32(clamping: version + 1)))
        updated.set(
            "members",
            .array(
                members.map { BSONValue.document($0) } + [
                    .document(["_id": .int32(Int32(clamping: nextID)), "host": .string(missing)])
                ]
            )
        )
        return .reconfig(updated, adding: missing)
    }
}
