import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// §4.2 priority takeover: a caught-up secondary of higher priority than the primary calls an election.
@Suite(.serialized) struct ReplicaSetPriorityTakeoverTests {
    @Test func higherPrioritySecondaryTakesOver() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let client = try MongoClient(uri: set.directURI(0), logger: logger)
        let current = try await client.runCommand(["replSetGetConfig": 1])
        var config = try #require(current["config"]?.documentValue)
        let listed = try #require(config["members"]?.arrayValue)
        var members = listed.compactMap { $0.documentValue }
        members[2].set("priority", .double(2))
        config.set("members", .array(members.map { .document($0) }))
        config.set("version", .int32(Int32(clamping: (config["version"]?.int64Value ?? 1) + 1)))
        _ = try await client.runCommand(["replSetReconfig": .document(config)])
        await client.close()
        // Member 2 wins a new term; the old primary sees the higher term and steps down.
        let winner = await set.waitForWritablePrimary(excluding: 0, timeout: .seconds(10))
        #expect(winner == 2)
        #expect(await ReplicaSetFidelityTests().eventually { set.phase(0) == .secondary })
        let raw = try RawWireClient(port: set.members[2].port)
        let status = try #require(raw.command(["replSetGetStatus": 1, "$db": "admin"]))
        #expect(status["term"] == .int64(2))
        #expect(status[path: "electionCandidateMetrics.lastElectionReason"] == "priorityTakeover")
        // Equal priorities stay put: member 1 (priority 1) never takes over from member 2 (a negative check over
        // several election timeouts, kept as a sleep).
        try await Task.sleep(for: .milliseconds(1500))
        #expect(set.phase(2) == .primary)
    }
}
