import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// `settings.chainingAllowed` and `syncSourceHost` (shared/spec/replication-ha.md §2.1, §2.2, §9.1 item 8), through
/// libmongoc: a secondary may sync from the other secondary while chaining is allowed (the default); the commit
/// point still counts it; with `chainingAllowed: false` every secondary syncs from the primary.
@Suite(.serialized) struct ReplicaSetChainingTests {
    let support = ReplicaSetFidelityTests()

    func status(_ set: FakeReplicaSet, _ index: Int) async throws -> BSONDocument {
        try await support.withDirect(set, index) { try await $0.runCommand(["replSetGetStatus": 1]) }
    }

    @Test func aChainedSecondaryReportsItsSourceAndStillCounts() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast, periodicNoopInterval: nil)
        defer { set.stop() }
        // Default: both secondaries sync from the primary; the primary has none.
        #expect(await support.eventually { (try? await status(set, 2))?["syncSourceHost"] == .string(set.hosts[0]) })
        let primaryStatus = try await status(set, 0)
        #expect(primaryStatus["syncSourceHost"] == "")
        #expect(primaryStatus["syncSourceId"] == .int32(-1))
        set.chainSync(2, from: 1)
        #expect(await support.eventually { (try? await status(set, 2))?["syncSourceHost"] == .string(set.hosts[1]) })
        let chained = try await status(set, 2)
        #expect(chained["syncSourceId"] == .int32(1))
        // The primary's view of member 2 names member 1 as its source (heartbeat data).
        #expect(
            await support.eventually {
                let members = (try? await status(set, 0))?["members"]?.arrayValue ?? []
                return members.last?.documentValue?["syncSourceHost"] == .string(set.hosts[1])
            }
        )
        // Writes reach member 2 through member 1; with member 1's copy alone the commit point could not count 2
        // twice: kill 1, and 2 (now without a chain) falls back to the primary and keeps the majority going.
        try await support.withDirect(set, 0) { try await support.insert($0, 1) }
        let written = try #require(set.lastApplied(0))
        #expect(await support.eventually { set.lastApplied(2) == written })
        #expect(await support.eventually { (set.majorityOpTime(0) ?? written) >= written })
        set.kill(1)
        try await support.withDirect(set, 0) { try await support.insert($0, 2) }
        let second = try #require(set.lastApplied(0))
        #expect(await support.eventually { set.lastApplied(2) == second })
        #expect(await support.eventually { (set.majorityOpTime(0) ?? written) >= second })
    }

    @Test func chainingAllowedFalseKeepsEverySecondaryOnThePrimary() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast, periodicNoopInterval: nil)
        defer { set.stop() }
        set.chainSync(2, from: 1)
        #expect(await support.eventually { (try? await status(set, 2))?["syncSourceHost"] == .string(set.hosts[1]) })
        try await support.withDirect(set, 0) { client in
            var config = try #require(try await client.runCommand(["replSetGetConfig": 1])["config"]?.documentValue)
            config.set("version", .int32(Int32(clamping: (config["version"]?.int64Value ?? 1) + 1)))
            config.set("settings", ["chainingAllowed": false])
            _ = try await client.runCommand(["replSetReconfig": .document(config)])
            let stored = try await client.runCommand(["replSetGetConfig": 1])
            #expect(stored[path: "config.settings.chainingAllowed"] == false)
            // The other settings are kept.
            #expect(stored[path: "config.settings.electionTimeoutMillis"] != nil)
        }
        #expect(await support.eventually { (try? await status(set, 2))?["syncSourceHost"] == .string(set.hosts[0]) })
    }
}
