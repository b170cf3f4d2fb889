import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// Catch-up and catch-up takeover (shared/spec/replication-ha.md §4.1, §4.2 step 3, "Catch-up takeover") on a
/// 5-member double: a winner that is behind a secondary it could not hear from during the election first copies
/// what that secondary has; stuck in catch-up, it is taken over by that secondary after catchUpTakeoverDelay. In a
/// 3-member set a winner is never behind a reachable voter (voters refuse a staler candidate), hence five members.
@Suite(.serialized) struct ReplicaSetCatchUpTests {
    let support = ReplicaSetFidelityTests()

    static var timings: FakeReplicaSetTimings {
        var timings = FakeReplicaSetTimings(
            electionTimeout: .milliseconds(400),
            leaderElectWindow: .milliseconds(300),
            replicationLag: .milliseconds(5),
            livenessTimeout: .milliseconds(400),
            rollbackDuration: .milliseconds(100)
        )
        timings.catchUpTakeoverDelay = .milliseconds(500)
        return timings
    }

    /// Member 2 alone has the newest write; member 0 (the primary) dies, 2 is cut off during the election among
    /// 1, 3, 4, then comes back while the winner is leader-elect. Returns the winner and the write's optime.
    func winnerBehindMember2(_ set: FakeReplicaSet) async throws -> (winner: Int, write: FakeOpTime) {
        set.pauseReplication(to: [1, 3, 4])
        try await support.withDirect(set, 0) { try await support.insert($0, 1) }
        let write = try #require(set.lastApplied(0))
        #expect(await support.eventually { set.lastApplied(2) == write })
        set.kill(0)
        set.partition(2)
        set.pauseReplication(to: [])
        var winner: Int?
        _ = await support.eventually(.seconds(5)) {
            winner = [1, 3, 4].first { set.phase($0) == .drain }
            return winner != nil
        }
        set.heal()
        return (try #require(winner), write)
    }

    @Test func aLeaderElectCatchesUpFromAMoreRecentSecondary() async throws {
        let set = try FakeReplicaSet.start(memberCount: 5, timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        let (winner, write) = try await winnerBehindMember2(set)
        #expect(await set.waitForWritablePrimary(excluding: 0, timeout: .seconds(5)) == winner)
        // The write 2 alone had is in the new primary's oplog (caught up, not rolled back), below its no-op.
        let entries = set.members[winner].oplogEntries.map {
            FakeOpTime(ts: $0["ts"]!.timestampValue!, t: $0["t"]?.int64Value ?? -1)
        }
        #expect(entries.contains(write))
        #expect(set.rollbackCount == 0)
        let status = try await support.withDirect(set, winner) { try await $0.runCommand(["replSetGetStatus": 1]) }
        #expect((status[path: "electionCandidateMetrics.numCatchUpOps"]?.int64Value ?? 0) > 0)
    }

    @Test func aStuckCatchUpIsTakenOverByTheSecondaryAhead() async throws {
        let set = try FakeReplicaSet.start(memberCount: 5, timings: Self.timings, periodicNoopInterval: nil)
        defer { set.stop() }
        set.stallCatchUp(true)
        let (winner, write) = try await winnerBehindMember2(set)
        let started = ContinuousClock.now
        // Member 2 waits catchUpTakeoverDelay, wins a newer term, and the stuck leader-elect steps down.
        #expect(await set.waitForWritablePrimary(excluding: 0, timeout: .seconds(5)) == 2)
        #expect(ContinuousClock.now - started >= .milliseconds(400))
        #expect(set.phase(winner) == .secondary)
        let status = try await support.withDirect(set, 2) { try await $0.runCommand(["replSetGetStatus": 1]) }
        #expect(status[path: "electionCandidateMetrics.lastElectionReason"] == "catchupTakeover")
        set.stallCatchUp(false)
        // Nothing is lost: the write is committed in the new term's history everywhere.
        #expect(await support.eventually { (set.majorityOpTime(2) ?? write) > write })
        #expect(set.rollbackCount == 0)
    }
}
