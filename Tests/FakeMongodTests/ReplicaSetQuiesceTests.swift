import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// Quiesce mode and shutdown of a set member (shared/spec/replication-ha.md §1.1 "Special states", §4.1, §4.5,
/// §9.1 items 3 and 19): a signalled primary hands off, hello fails with 91 and `topologyVersion` (awaitable hellos
/// wake at once), open cursors keep reading during quiesce, and what still waits at shutdown ends with 11600.
@Suite(.serialized) struct ReplicaSetQuiesceTests {
    let support = ReplicaSetFidelityTests()

    func openOplogCursor(_ raw: RawWireClient) throws -> Int64 {
        let reply = try #require(
            raw.command([
                "find": "oplog.rs", "filter": [:], "tailable": true, "awaitData": true, "$db": "local",
            ])
        )
        return try #require(reply[path: "cursor.id"]?.int64Value)
    }

    func getMore(_ id: Int64, maxTimeMS: Int32 = 2000) -> BSONDocument {
        ["getMore": .int64(id), "collection": "oplog.rs", "maxTimeMS": .int32(maxTimeMS), "$db": "local"]
    }

    @Test func helloFailsWith91DuringQuiesceAndWaitersWake() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let monitor = try RawWireClient(port: set.members[0].port)
        let first = try #require(monitor.command(["hello": 1, "$db": "admin"]))
        let version = try #require(first["topologyVersion"]?.documentValue)
        let counter = try #require(version["counter"]?.int64Value)
        // An awaitable hello (as a pooled driver's monitor sends it) is waiting when the signal comes.
        monitor.sendMessage(
            ["hello": 1, "topologyVersion": .document(version), "maxAwaitTimeMS": 10_000, "$db": "admin"],
            flagBits: 0x10000
        )
        let started = ContinuousClock.now
        let shutdown = Task { await set.shutDown(0, quiesce: .milliseconds(1500)) }
        let woken = try #require(monitor.receive()?.document)
        #expect(ContinuousClock.now - started < .seconds(1))
        // The stepdown moved the counter first; the waiter sees that change, then asks again and gets 91.
        var reply = woken
        if reply["ok"] == .double(1) {
            #expect(reply["isWritablePrimary"] == false)
            reply = try #require(monitor.command(["hello": 1, "$db": "admin"]))
        }
        #expect(reply["ok"] == .double(0))
        #expect(reply["code"] == .int32(91))
        #expect(reply["codeName"] == "ShutdownInProgress")
        #expect(reply["errmsg"] == "The server is in quiesce mode and will shut down")
        #expect((reply[path: "topologyVersion.counter"]?.int64Value ?? 0) > counter)
        #expect(
            reply.keys.prefix(5) == ["ok", "errmsg", "code", "codeName", "topologyVersion"],
            "\(reply.keys)"
        )
        // Election handoff: another member is writable well before an election timeout would have passed.
        #expect(await set.waitForWritablePrimary(excluding: 0, timeout: .seconds(1)) != nil)
        // Through libmongoc too: a direct hello fails with 91.
        do {
            _ = try await support.withDirect(set, 0) { try await $0.runCommand(["hello": 1]) }
            Issue.record("hello succeeded during quiesce")
        } catch let error as MongoError {
            // libmongoc's handshake hello fails, so the error is a connection error carrying the server's text.
            #expect(error.message.contains("quiesce mode"), "\(error)")
        }
        await shutdown.value
    }

    @Test func cursorsReadDuringQuiesceAndWaitersGet11600AtShutdown() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let reader = try RawWireClient(port: set.members[1].port)
        let id = try openOplogCursor(reader)
        let shutdown = Task { await set.shutDown(1, quiesce: .milliseconds(600)) }
        try await Task.sleep(for: .milliseconds(100))
        // Quiesce: the open cursor keeps reading what the secondary copies.
        let primary = try #require(await set.waitForWritablePrimary())
        set.appendOnPrimary(primary, ["op": "n", "ns": "", "o": ["msg": "during quiesce"]])
        let during = try #require(reader.command(getMore(id)))
        #expect(during["ok"] == .double(1), "\(during)")
        // Shutdown: a getMore still waiting is interrupted with 11600, no topologyVersion (not in quiesce any more).
        let interrupted = try #require(reader.command(getMore(id, maxTimeMS: 5000)))
        #expect(interrupted["code"] == .int32(11600), "\(interrupted)")
        #expect(interrupted["codeName"] == "InterruptedAtShutdown")
        #expect(interrupted["topologyVersion"] == nil)
        // Then the connection closes.
        await shutdown.value
        #expect(reader.command(["ping": 1, "$db": "admin"]) == nil)
        set.restart(1)
        #expect(await support.eventually { set.phase(1) == .secondary })
    }
}
