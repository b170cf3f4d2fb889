import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// PSA (primary, secondary, arbiter) against shared/spec/replication-ha.md §1.2, §2.1–§2.2, §3.1, §3.3, through
/// libmongoc: the arbiter's hello and status entry, the vote/write counts, and a commit point that needs the
/// secondary (the arbiter votes but does not count for write majority).
@Suite(.serialized) struct ReplicaSetArbiterTests {
    let support = ReplicaSetFidelityTests()

    func primaryNamed(by set: FakeReplicaSet, _ index: Int) async -> String? {
        let hello = try? await support.withDirect(set, index) { try await $0.runCommand(["hello": 1]) }
        return hello?["primary"]?.stringValue
    }

    @Test func arbiterHelloAndStatusEntry() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast, arbiters: [2])
        defer { set.stop() }
        #expect(set.phase(2) == .arbiter)
        let dataHosts: BSONValue = .array([.string(set.hosts[0]), .string(set.hosts[1])])
        let arbiters: BSONValue = .array([.string(set.hosts[2])])
        // Every member lists the arbiter under `arbiters`, never under `hosts` (§1.1).
        for index in 0..<3 {
            let hello = try await support.withDirect(set, index) { try await $0.runCommand(["hello": 1]) }
            #expect(hello["hosts"] == dataHosts)
            #expect(hello["arbiters"] == arbiters)
        }
        _ = await support.eventually { await primaryNamed(by: set, 2) == set.hosts[0] }
        let hello = try await support.withDirect(set, 2) { try await $0.runCommand(["hello": 1]) }
        #expect(hello["isWritablePrimary"] == false)
        #expect(hello["secondary"] == false)
        #expect(hello["arbiterOnly"] == true)
        #expect(hello["primary"] == .string(set.hosts[0]))
        #expect(hello["electionId"] == nil)
        // §1.2 CONSTRUCTED order: …, setVersion, isWritablePrimary, secondary, primary, arbiterOnly, me, lastWrite.
        let order = [
            "topologyVersion", "hosts", "arbiters", "setName", "setVersion", "isWritablePrimary", "secondary",
            "primary", "arbiterOnly", "me", "lastWrite",
        ]
        #expect(hello.keys.filter(order.contains) == order)
        // No data: lastWrite.opTime is the commit point it learned; no committed snapshot (UNCONFIRMED: omitted).
        let lastWrite = try #require(hello["lastWrite"]?.documentValue)
        #expect(lastWrite.keys == ["opTime", "lastWriteDate"])
        #expect(support.opTime(lastWrite["opTime"]) == set.majorityOpTime(0))

        // §2.1 counts and §2.2's arbiter entry (no optimes, no wall times), as the primary reports them.
        _ = await support.eventually {
            let status = try? await support.withDirect(set, 0) { try await $0.runCommand(["replSetGetStatus": 1]) }
            return status?["members"]?.arrayValue?.last?.documentValue?["state"] == .int32(7)
        }
        let status = try await support.withDirect(set, 0) { try await $0.runCommand(["replSetGetStatus": 1]) }
        #expect(status["majorityVoteCount"] == .int32(2))
        #expect(status["writeMajorityCount"] == .int32(2))
        #expect(status["votingMembersCount"] == .int32(3))
        #expect(status["writableVotingMembersCount"] == .int32(2))
        let entry = try #require(status["members"]?.arrayValue?.last?.documentValue)
        #expect(entry["stateStr"] == "ARBITER")
        #expect(entry["health"] == .double(1))
        #expect(
            entry.keys == [
                "_id", "name", "health", "state", "stateStr", "uptime", "lastHeartbeat", "lastHeartbeatRecv",
                "pingMs", "lastHeartbeatMessage", "syncSourceHost", "syncSourceId", "infoMessage", "configVersion",
                "configTerm",
            ]
        )
        // The arbiter's own status: myState 7, its self entry without optimes.
        let own = try await support.withDirect(set, 2) { try await $0.runCommand(["replSetGetStatus": 1]) }
        #expect(own["myState"] == .int32(7))
        let me = try #require(own["members"]?.arrayValue?.last?.documentValue)
        #expect(me["self"] == true)
        #expect(me["optime"] == nil && me["lastAppliedWallTime"] == nil)
    }

    /// §3.1/§3.3: PSA with the secondary down keeps its primary (the arbiter's vote keeps a majority for liveness)
    /// and accepts w:1 writes, but the commit point freezes; w:majority times out with 64. Once the secondary is
    /// back, the commit point covers the writes.
    @Test func commitPointNeedsTheSecondary() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast, arbiters: [2])
        defer { set.stop() }
        let frozen = try #require(set.majorityOpTime(0))
        set.kill(1)
        try await support.withDirect(set, 0) { client in
            try await support.insert(client, 1)
            let reply = try await client.runCommand(
                ["insert": "c", "documents": [["_id": 2]], "writeConcern": ["w": "majority", "wtimeout": 300]],
                database: "app"
            )
            #expect(reply["n"] == .int32(1))
            #expect(reply[path: "writeConcernError.code"] == .int32(64))
        }
        // Well past the liveness timeout: still the writable primary, commit point unchanged.
        try await Task.sleep(for: .milliseconds(800))
        #expect(set.writablePrimary == 0)
        #expect(set.majorityOpTime(0) == frozen)
        let written = try #require(set.lastApplied(0))
        #expect(written > frozen)
        set.restart(1)
        #expect(await support.eventually { (set.majorityOpTime(0) ?? frozen) >= written })
        #expect(set.writablePrimary == 0)
    }

    /// Elections in PSA: with the primary killed, the secondary wins with the arbiter's vote (2 of 3); the arbiter
    /// never becomes primary.
    @Test func arbiterVotesButIsNeverElected() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast, arbiters: [2])
        defer { set.stop() }
        set.kill(0)
        #expect(await set.waitForWritablePrimary(excluding: 0) == 1)
        #expect(set.phase(2) == .arbiter)
        #expect(await support.eventually { await primaryNamed(by: set, 2) == set.hosts[1] })
    }
}
