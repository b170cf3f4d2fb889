/// The majority line of `rsinit status` / `rsinit wait` (pure). Arbiters vote, so they count for elections
/// (`majorityVoteCount`), but they hold no data, so they never count for the commit point: a majority write needs
/// `writeMajorityCount` healthy **data-bearing** voters (shared/spec/replication-ha.md §2.1, §3.1 "the arbiter does
/// not help"). A PSA set with its secondary down has an election majority and still commits nothing.
public enum MajoritySummary {
    /// nil for a one-member set or a status without the counts.
    public static func line(_ status: StatusSummary) -> String? {
        guard let voting = status.votingMembers, let needed = status.majorityVoteCount, status.members.count > 1 else {
            return nil
        }
        let healthy = status.members.filter { $0.isSelf || $0.isHealthy }
        var line = "\(min(healthy.count, voting)) of \(voting) voting members healthy; a majority needs \(needed)"
        guard let writable = status.writableVotingMembers, writable < voting else {
            return line + (healthy.count < needed ? " (NO MAJORITY: nothing new can be majority-committed)" : "")
        }
        // Data-bearing members in a state that applies writes (the node's own entry counts by its state too).
        let dataBearing = healthy.filter { [1, 2].contains($0.state) }.count
        let writeNeeded = status.writeMajorityCount ?? min(needed, writable)
        let arbiters = voting - writable
        line += " (\(arbiters) arbiter\(arbiters == 1 ? "" : "s"))"
        if healthy.count < needed { return line + " (NO MAJORITY: no primary can be elected or kept)" }
        line +=
            "; \(min(dataBearing, writable)) of \(writable) data-bearing voters healthy, majority writes need "
            + "\(writeNeeded)"
        if dataBearing < writeNeeded {
            line += " (NO WRITE MAJORITY: w:1 writes go on, nothing new can be majority-committed)"
        }
        return line
    }
}
