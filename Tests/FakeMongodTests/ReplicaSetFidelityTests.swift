import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

/// The 3-member double against shared/spec/replication-ha.md §9.1, through libmongoc.
@Suite(.serialized) struct ReplicaSetFidelityTests {
    static let fast = FakeReplicaSetTimings(
        electionTimeout: .milliseconds(400),
        leaderElectWindow: .milliseconds(300),
        replicationLag: .milliseconds(5),
        livenessTimeout: .milliseconds(400),
        rollbackDuration: .milliseconds(100)
    )

    func withDirect<T>(_ set: FakeReplicaSet, _ index: Int, _ body: (MongoClient) async throws -> T) async throws -> T {
        try await withClient(uri: set.directURI(index), body)
    }

    func insert(_ client: MongoClient, _ id: Int) async throws {
        _ = try await client.runCommand(["insert": "c", "documents": [["_id": .int32(Int32(id))]]], database: "app")
    }

    func opTime(_ value: BSONValue?) -> FakeOpTime? {
        guard let document = value?.documentValue, let ts = document["ts"]?.timestampValue else { return nil }
        return FakeOpTime(ts: ts, t: document["t"]?.int64Value ?? -1)
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes.
    func eventually(_ timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return try await condition()
    }

    // §9.1 items 1, 2, 6: per-member hello.
    @Test func helloIsPerMember() async throws {
        let set = try FakeReplicaSet.start(timings: Self.fast)
        defer { set.stop() }
        for index in 0..<3 {
            let hello = try await withDirect(set, index) { try await $0.runCommand(["hello": 1]) }
            #expect(hello["hosts"] == .array(set.hosts.map { .string($0) }))
            #expect(hello["setName"] == "rs0")
            #expect(hello["setVersion"] == .int32(1))
            #expect(hello["me"] == .string(set.hosts[index]))
            #expect(hello["primary"] == .string(set.hosts[0]))
            #expect(hello["isWritablePrimary"] == .bool(index == 0))
            #expect(hello["secondary"] == .bool(index != 0))
            #expect((hello["electionId"] != nil) == (index == 0))
            let lastWrite = hello["lastWrite"]?.documentValue ?? [:]
            let written = opTime(lastWrite["opTime"])
            #expect(written != nil)
            #expect(opTime(lastWrite["majorityOpTime"]) != nil)
            #expect(lastWrite["lastWriteDate"] == .datetime(Int64(written?.ts.seconds ?? 0) * 1000))
        }
        let keys = try await withDirect(set, 1) { try await $0.runCommand(["hello": 1]) }.keys
        let order = ["hosts", "setName", "setVersion", "isWritablePrimary", "secondary", "primary", "me", "lastWrite"]
        #expect(keys.filter(order.contains) == order)
    }

    // §9.1 items 8, 9, 10: the commit point follows the 2nd-highest optime and freezes without a majority.
    @Test func commitPointNeedsAMajority() async throws {
        // A long liveness timeout: with both secondaries down the primary must stay primary until one returns (a
        // loaded machine stretched the 400 ms between kill and restart, the primary stepped down, and a new term's
        // no-op, not `third`, became the commit point).
        var timings = Self.fast
        timings.livenessTimeout = .seconds(10)
        let set = try FakeReplicaSet.start(timings: timings)
        defer { set.stop() }
        try await withDirect(set, 0) { client in
            try await insert(client, 1)
            let written = set.lastApplied(0)
            #expect(await eventually { set.majorityOpTime(0) == written })
            #expect(await eventually { set.majorityOpTime(1) == written && set.majorityOpTime(2) == written })
            set.kill(1)
            try await insert(client, 2)
            let second = set.lastApplied(0)
            // One secondary still replicates: 2 of 3 have it.
            #expect(await eventually { set.majorityOpTime(0) == second })
            set.kill(2)
            try await insert(client, 3)
            let third = set.lastApplied(0)
            try await Task.sleep(for: .milliseconds(200))
            let hello = try await client.runCommand(["hello": 1])
            #expect(opTime(hello[path: "lastWrite.opTime"]) == third)
            #expect(opTime(hello[path: "lastWrite.majorityOpTime"]) == second)
            let status = try await client.runCommand(["replSetGetStatus": 1])
            #expect(opTime(status[path: "optimes.lastCommittedOpTime"]) == second)
            #expect(opTime(status[path: "optimes.readConcernMajorityOpTime"]) == second)
            let members = status["members"]?.arrayValue?.compactMap(\.documentValue) ?? []
            let down = members.first { $0["name"] == .string(set.hosts[1]) }
            #expect(down?["health"] == .double(0))
            #expect(down?["state"] == .int32(8))
            #expect(down?["stateStr"] == "(not reachable/healthy)")
            #expect(opTime(down?["optime"]) == FakeOpTime(ts: BSONTimestamp(seconds: 0, increment: 0), t: -1))
            set.restart(1)
            #expect(await eventually { set.majorityOpTime(0) == third })
        }
    }

    // §9.1 items 2, 5, 7, 12: a killed primary is replaced after the election timeout, through the leader-elect
    // window, with term + 1 and a "new primary" no-op; writes fail with 10107 meanwhile.
    @Test func killedPrimaryIsReplaced() async throws {
        let set = try FakeReplicaSet.start(timings: Self.fast)
        defer { set.stop() }
        set.kill(0)
        var sawLeaderElect = false
        var leaderElectWriteCode: Int32?
        let deadline = ContinuousClock.now + .seconds(10)
        var winner: Int?
        while ContinuousClock.now < deadline && winner == nil {
            for index in 1...2 {
                let hello = try await withDirect(set, index) { try await $0.runCommand(["hello": 1]) }
                if hello["electionId"] != nil && hello["isWritablePrimary"] == false && hello["secondary"] == true
                    && hello["primary"] == .string(set.hosts[index])
                {
                    sawLeaderElect = true
                    leaderElectWriteCode = try await withDirect(set, index) { client in
                        await commandError(client, ["insert": "c", "documents": [["_id": 1]]], database: "app")?
                            .serverCode
                    }
                }
                if hello["isWritablePrimary"] == true { winner = index }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let primary = try #require(winner)
        #expect(sawLeaderElect)
        #expect(leaderElectWriteCode == 10107)
        let hello = try await withDirect(set, primary) { try await $0.runCommand(["hello": 1]) }
        #expect(hello["electionId"] == .objectID(BSONObjectID(hex: "7fffffff0000000000000002")!))
        #expect(hello["setVersion"] == .int32(1))
        let newPrimary = set.members[primary].oplogEntries.last { $0[path: "o.msg"] == "new primary" }
        #expect(newPrimary?["t"] == .int64(2))
        // The commit point moves into term 2 once the no-op is on two nodes.
        #expect(await eventually { set.majorityOpTime(primary)?.t == 2 })
        let other = primary == 1 ? 2 : 1
        let secondaryHello = try await withDirect(set, other) { try await $0.runCommand(["hello": 1]) }
        #expect(secondaryHello["primary"] == .string(set.hosts[primary]))
    }

    // §9.1 item 13: stepdown keeps connections and oplog getMores; errors; handoff.
    @Test func stepDownKeepsTailingCursors() async throws {
        let set = try FakeReplicaSet.start(timings: Self.fast)
        defer { set.stop() }
        try await withDirect(set, 0) { client in
            let found = try await client.runCommand(
                ["find": "oplog.rs", "filter": [:], "tailable": true, "awaitData": true, "batchSize": 1],
                database: "local"
            )
            let cursorID = try #require(found[path: "cursor.id"]?.int64Value)
            #expect(
                await commandError(client, ["replSetStepDown": 60, "secondaryCatchUpPeriodSecs": 61])?.serverCode == 2
            )
            _ = try await client.runCommand(["replSetStepDown": 60])
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["isWritablePrimary"] == false)
            #expect(hello["secondary"] == true)
            #expect(await commandError(client, ["replSetStepDown": 60])?.serverCode == 10107)
            #expect(
                await commandError(client, ["insert": "c", "documents": [["_id": 1]]], database: "app")?.serverCode
                    == 10107
            )
            // The oplog getMore on the same connection goes on, now reading a secondary.
            let more = try await client.runCommand(
                ["getMore": .int64(cursorID), "collection": "oplog.rs", "maxTimeMS": 50],
                database: "local"
            )
            #expect(more[path: "cursor.id"] == .int64(cursorID))
            // Election handoff: a caught-up secondary takes over well before an election timeout would fire.
            let primary = await set.waitForWritablePrimary(excluding: 0, timeout: .seconds(5))
            #expect(primary != nil)
        }
    }

    // §9.1 items 14, 15: a partitioned primary accepts w:1 writes, steps down, and is rolled back on heal.
    @Test func partitionedPrimaryIsRolledBackOnHeal() async throws {
        let set = try FakeReplicaSet.start(timings: Self.fast)
        defer { set.stop() }
        let committed = set.lastApplied(0)
        set.partition(0)
        try await withDirect(set, 0) { client in
            try await insert(client, 1)
            try await insert(client, 2)
        }
        let lost = set.members[0].oplogEntries.filter { $0["ns"] == "app.c" }
        #expect(lost.count == 2)
        let newPrimary = try #require(await set.waitForWritablePrimary(excluding: 0))
        #expect(set.phase(0) == .secondary)  // liveness: "Can't see a majority"
        #expect(set.majorityOpTime(0) == committed)
        try await withDirect(set, newPrimary) { client in try await insert(client, 3) }
        // A client on the old primary: its connection is closed by the rollback.
        let client = try MongoClient(uri: set.directURI(0), logger: logger)
        defer { Task { await client.close() } }
        _ = try await client.runCommand(["ping": 1])
        set.heal()
        #expect(await eventually { set.rollbackCount == 1 })
        #expect(await eventually { set.phase(0) == .secondary })
        #expect(await eventually { set.lastApplied(0) == set.lastApplied(newPrimary) })
        let after = set.members[0].oplogEntries
        #expect(after.filter { $0["ns"] == "app.c" }.map { $0[path: "o._id"] } == [.int32(3)])
        #expect(set.rolledBackEntries(0).filter { $0["ns"] == "app.c" }.count == 2)
        #expect(set.rollbackInvariantBreaches.isEmpty)
    }

    // §9.1 item 15: ROLLBACK state as clients see it.
    @Test func rollbackStateIsVisible() async throws {
        let set = try FakeReplicaSet.start(
            timings: FakeReplicaSetTimings(
                electionTimeout: .milliseconds(300),
                livenessTimeout: .milliseconds(300),
                rollbackDuration: .seconds(3)
            )
        )
        defer { set.stop() }
        set.partition(0)
        try await withDirect(set, 0) { client in try await insert(client, 1) }
        _ = try #require(await set.waitForWritablePrimary(excluding: 0))
        set.heal()
        #expect(await eventually { set.phase(0) == .rollback })
        try await withDirect(set, 0) { client in
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["isWritablePrimary"] == false)
            #expect(hello["secondary"] == false)
            let error = await commandError(client, ["find": "oplog.rs", "filter": [:]], database: "local")
            #expect(error?.serverCode == 13436)
            let status = try await client.runCommand(["replSetGetStatus": 1])
            #expect(status["myState"] == .int32(9))
        }
    }
}
