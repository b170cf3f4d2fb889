import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Testing

/// The majority line with arbiters (pure): arbiters count for elections, never for majority writes (§2.1, §3.1).
struct MajoritySummaryTests {
    static func status(_ members: [(state: Int, health: Double)], arbiters: Int) -> StatusSummary {
        let voting = members.count
        let majority = voting / 2 + 1
        let entries: [BSONValue] = members.enumerated().map { index, member in
            var entry: BSONDocument = [
                "_id": .int32(Int32(index)), "name": .string("m\(index):27017"), "health": .double(member.health),
                "state": .int32(Int32(member.state)), "stateStr": "X",
            ]
            if index == 0 { entry.append("self", true) }
            return .document(entry)
        }
        return StatusSummary([
            "set": "rs0", "myState": .int32(Int32(members[0].state)), "majorityVoteCount": .int32(Int32(majority)),
            "writeMajorityCount": .int32(Int32(min(majority, voting - arbiters))),
            "votingMembersCount": .int32(Int32(voting)), "writableVotingMembersCount": .int32(Int32(voting - arbiters)),
            "members": .array(entries),
        ])
    }

    @Test func pssIsUnchanged() {
        #expect(
            MajoritySummary.line(Self.status([(1, 1), (2, 1), (2, 1)], arbiters: 0))
                == "3 of 3 voting members healthy; a majority needs 2"
        )
        #expect(
            MajoritySummary.line(Self.status([(1, 1), (8, 0), (8, 0)], arbiters: 0))
                == "1 of 3 voting members healthy; a majority needs 2 (NO MAJORITY: nothing new can be majority-committed)"
        )
        #expect(MajoritySummary.line(Self.status([(1, 1)], arbiters: 0)) == nil)
    }

    @Test func psaCountsTheArbiterForElectionsOnly() {
        #expect(
            MajoritySummary.line(Self.status([(1, 1), (2, 1), (7, 1)], arbiters: 1))
                == "3 of 3 voting members healthy; a majority needs 2 (1 arbiter); 2 of 2 data-bearing voters "
                + "healthy, majority writes need 2"
        )
        // The secondary down: the primary stays (P + A are a majority), but nothing can be majority-committed.
        #expect(
            MajoritySummary.line(Self.status([(1, 1), (8, 0), (7, 1)], arbiters: 1))
                == "2 of 3 voting members healthy; a majority needs 2 (1 arbiter); 1 of 2 data-bearing voters "
                + "healthy, majority writes need 2 (NO WRITE MAJORITY: w:1 writes go on, nothing new can be "
                + "majority-committed)"
        )
        // The arbiter down: writes still commit (P + S).
        #expect(
            MajoritySummary.line(Self.status([(1, 1), (2, 1), (8, 0)], arbiters: 1))
                == "2 of 3 voting members healthy; a majority needs 2 (1 arbiter); 2 of 2 data-bearing voters "
                + "healthy, majority writes need 2"
        )
        // Two of three down: no majority at all.
        #expect(
            MajoritySummary.line(Self.status([(2, 1), (8, 0), (8, 0)], arbiters: 1))
                == "1 of 3 voting members healthy; a majority needs 2 (1 arbiter) (NO MAJORITY: no primary can be "
                + "elected or kept)"
        )
    }
}

/// The bridge's majority gate on a PSA set (§3.1, §9.2 rules 4 and 9) through libmongoc and real Redis: with the
/// secondary down the primary keeps taking w:1 writes, the commit point stays put and nothing is published; once
/// the secondary is back every held event is published, in order. The control with `--majority off` publishes
/// them at once (so the test can fail).
@Suite(.serialized, .enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct ArbiterBridgeTests {
    let support = ReplicaSetBridgeTests()

    func run(majority: MajorityMode) async throws -> (whileDown: [String], after: [String]) {
        let set = try FakeReplicaSet.start(
            timings: ReplicaSetBridgeTests.timings,
            periodicNoopInterval: nil,
            arbiters: [2]
        )
        defer { set.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let (bridge, publisher) = try await support.makeSetBridge(
            set.uri,
            redis,
            seed: set.majorityOpTime(0)?.ts,
            majority: majority
        )
        let run = Task { try await bridge.run() }
        try await support.write(set.uri, 0..<5)
        _ = await support.waitPublished(subscriber, ReplicaSetBridgeTests.ids(0..<5))
        set.kill(1)
        try await support.write(set.uri, 5..<15)
        // Three liveness timeouts: the primary stays (the arbiter's vote), the commit point does not move.
        try await Task.sleep(for: .milliseconds(1500))
        let whileDown = support.published(subscriber)
        #expect(set.writablePrimary == 0)
        set.restart(1)
        let after = await support.waitPublished(subscriber, ReplicaSetBridgeTests.ids(0..<15))
        bridge.stop()
        try await run.value
        subscriber.stop()
        await publisher.close()
        return (whileDown, after)
    }

    @Test func eventsAreHeldWhileTheSecondaryIsDownThenPublishedInOrder() async throws {
        let result = try await run(majority: .auto)
        #expect(result.whileDown == ReplicaSetBridgeTests.ids(0..<5))
        #expect(result.after == ReplicaSetBridgeTests.ids(0..<15))
    }

    @Test func withoutGatingTheyArePublishedAtOnce() async throws {
        let result = try await run(majority: .off)
        #expect(result.whileDown == ReplicaSetBridgeTests.ids(0..<15))
        #expect(result.after == ReplicaSetBridgeTests.ids(0..<15))
    }
}
