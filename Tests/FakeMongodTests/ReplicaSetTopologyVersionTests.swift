import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// §9.1 items 3, 4 and 19: topologyVersion, awaitable hello and topologyVersion on NotPrimaryError replies.
@Suite(.serialized) struct ReplicaSetTopologyVersionTests {
    func topologyVersion(_ reply: BSONDocument?) -> (processId: BSONObjectID, counter: Int64)? {
        guard let version = reply?["topologyVersion"]?.documentValue,
            let processId = version["processId"]?.objectIDValue, let counter = version["counter"]?.int64Value
        else { return nil }
        return (processId, counter)
    }

    @Test func helloCarriesTopologyVersionFirst() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        var processIds: Set<BSONObjectID> = []
        for index in 0..<3 {
            let client = try MongoClient(uri: set.directURI(index), logger: logger)
            let hello = try await client.runCommand(["hello": 1])
            await client.close()
            #expect(hello.firstKey == "topologyVersion")
            let version = try #require(topologyVersion(hello))
            processIds.insert(version.processId)
        }
        // One process id per member process.
        #expect(processIds.count == 3)
        // The lone double keeps leaving it out (no awaitable hello there).
        let lone = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs1", memberHost: "127.0.0.1:27017"))
        )
        defer { lone.stop() }
        let raw = try RawWireClient(port: lone.port)
        #expect(raw.command(["hello": 1, "$db": "admin"])?["topologyVersion"] == nil)
    }

    @Test func awaitableHelloWaitsForTheCounterToMove() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let monitor = try RawWireClient(port: set.members[0].port)
        let first = try #require(monitor.command(["hello": 1, "$db": "admin"]))
        let version = try #require(topologyVersion(first))
        #expect(first["isWritablePrimary"] == true)
        let current: BSONDocument = ["processId": .objectID(version.processId), "counter": .int64(version.counter)]

        // Unchanged counter: the reply waits for maxAwaitTimeMS (a lower bound, safe under load).
        let started = ContinuousClock.now
        let waited = monitor.command([
            "hello": 1, "topologyVersion": .document(current), "maxAwaitTimeMS": 300, "$db": "admin",
        ])
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        #expect(topologyVersion(waited)?.counter == version.counter)

        // A stale counter (or another process id) is answered at once with the current version.
        let stale: BSONDocument = ["processId": .objectID(version.processId), "counter": .int64(version.counter - 1)]
        let immediate = monitor.command([
            "hello": 1, "topologyVersion": .document(stale), "maxAwaitTimeMS": 30_000, "$db": "admin",
        ])
        #expect(topologyVersion(immediate)?.counter == version.counter)

        // A waiting hello (exhaustAllowed, as libmongoc's streaming monitor sends it) returns at the stepdown's start,
        // long before its maxAwaitTimeMS.
        monitor.sendMessage(
            ["hello": 1, "topologyVersion": .document(current), "maxAwaitTimeMS": 30_000, "$db": "admin"],
            flagBits: 1 << 16
        )
        let admin = try RawWireClient(port: set.members[0].port)
        let stepDown = admin.command(["replSetStepDown": 60, "$db": "admin"])
        #expect(stepDown?["ok"] == .double(1))
        let changed = try #require(monitor.receive()?.document)
        let moved = try #require(topologyVersion(changed))
        #expect(moved.processId == version.processId)
        #expect(moved.counter > version.counter)
        #expect(changed["isWritablePrimary"] == false)
    }

    @Test func notPrimaryErrorsCarryTopologyVersion() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let secondary = try RawWireClient(port: set.members[1].port)
        let hello = secondary.command(["hello": 1, "$db": "admin"])
        let reply = try #require(
            secondary.command(["insert": "c", "documents": [["_id": 1]], "$db": "app"])
        )
        #expect(reply["code"] == .int32(10107))
        let keys = reply.keys.filter { ["errmsg", "code", "codeName", "topologyVersion", "$clusterTime"].contains($0) }
        #expect(keys == ["errmsg", "code", "codeName", "topologyVersion", "$clusterTime"])
        #expect(topologyVersion(reply)?.counter == topologyVersion(hello)?.counter)
        // Not in the category: no topologyVersion (59 CommandNotFound).
        let other = secondary.command(["noSuchCommand": 1, "$db": "admin"])
        #expect(other?["code"] == .int32(59))
        #expect(other?["topologyVersion"] == nil)
    }
}
