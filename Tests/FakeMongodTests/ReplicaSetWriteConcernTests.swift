import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// §9.1 item 13 (and §3.3, §4.4): write concern on set members: w:"majority" waits for the commit point, wtimeout
/// gives 64, a stepdown answers waiters with 189 and kills in-flight writes with 11602.
@Suite(.serialized) struct ReplicaSetWriteConcernTests {
    func majorityInsert(_ id: Int32, wtimeout: Int32? = nil) -> BSONDocument {
        var concern: BSONDocument = ["w": "majority"]
        if let wtimeout { concern.append("wtimeout", .int32(wtimeout)) }
        return ["insert": "c", "documents": [["_id": .int32(id)]], "writeConcern": .document(concern), "$db": "app"]
    }

    @Test func majorityWriteReturnsOnceCommitted() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        set.setReplicationLag(.milliseconds(300))
        let client = try MongoClient(uri: set.directURI(0), logger: logger)
        let reply = try await client.runCommand(
            ["insert": "c", "documents": [["_id": 1]], "writeConcern": ["w": "majority", "wtimeout": 20_000]],
            database: "app"
        )
        // Read right after the reply: the write is already majority-committed on the primary.
        let written = set.lastApplied(0)
        let committed = set.majorityOpTime(0)
        await client.close()
        #expect(reply["n"] == .int32(1))
        #expect(reply["writeConcernError"] == nil)
        let last = try #require(written)
        #expect(try #require(committed) >= last)
    }

    @Test func wtimeoutGivesWriteConcernFailedAndKeepsTheWrite() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        set.setReplicationLag(.seconds(60))
        let raw = try RawWireClient(port: set.members[0].port)
        let reply = try #require(raw.command(majorityInsert(1, wtimeout: 200)))
        #expect(reply["ok"] == .double(1))
        #expect(reply["n"] == .int32(1))
        let error = try #require(reply["writeConcernError"]?.documentValue)
        #expect(error["code"] == .int32(64))
        #expect(error["codeName"] == "WriteConcernFailed")
        #expect(error["errmsg"] == "waiting for replication timed out")
        #expect(error[path: "errInfo.wtimeout"] == true)
        #expect(error[path: "errInfo.writeConcern.w"] == "majority")
        // A write-concern error does not undo anything (§3.3).
        #expect(set.members[0].documents(in: "app.c").count == 1)
    }

    @Test func stepDownAnswersMajorityWaitersWith189() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        set.setReplicationLag(.seconds(60))
        let writer = try RawWireClient(port: set.members[0].port)
        var insert = majorityInsert(1)
        insert.append("lsid", ["id": .binary(BSONBinary(subtype: 4, data: Array(repeating: 7, count: 16)))])
        insert.append("txnNumber", .int64(1))
        writer.sendMessage(insert)
        // Let the write reach its majority wait (the double shows no "waiting" signal): if it had not, the
        // step-down would refuse it as a NotWritablePrimary error and the expectations below fail loudly.
        try await Task.sleep(for: .milliseconds(100))
        let admin = try RawWireClient(port: set.members[0].port)
        #expect(admin.command(["replSetStepDown": 60, "force": true, "$db": "admin"])?["ok"] == .double(1))
        let reply = try #require(writer.receive()?.document)
        #expect(reply["ok"] == .double(1))
        #expect(reply["n"] == .int32(1))
        let error = try #require(reply["writeConcernError"]?.documentValue)
        #expect(error["code"] == .int32(189))
        #expect(error["codeName"] == "PrimarySteppedDown")
        #expect(error["errmsg"] == "Primary stepped down while waiting for replication")
        #expect(reply["errorLabels"] == .array(["RetryableWriteError"]))
    }

    @Test func stepDownKillsInFlightWritesWith11602() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        set.holdWrites(0, true)
        let writer = try RawWireClient(port: set.members[0].port)
        writer.sendMessage(["insert": "c", "documents": [["_id": 1]], "$db": "app"])
        // Let the write reach the hold (the double shows no "held" signal); a missed hold fails loudly below.
        try await Task.sleep(for: .milliseconds(100))
        let admin = try RawWireClient(port: set.members[0].port)
        #expect(admin.command(["replSetStepDown": 60, "force": true, "$db": "admin"])?["ok"] == .double(1))
        let reply = try #require(writer.receive()?.document)
        #expect(reply["ok"] == .double(0))
        #expect(reply["code"] == .int32(11602))
        #expect(reply["codeName"] == "InterruptedDueToReplStateChange")
        #expect(reply["topologyVersion"] != nil)
        #expect(reply["errorLabels"] == nil)
        #expect(set.members[0].documents(in: "app.c").isEmpty)
        // The connection stays open (§4.4 point 8): the next command on it is answered.
        #expect(writer.command(["ping": 1, "$db": "admin"])?["ok"] == .double(1))
        set.holdWrites(0, false)
    }
}
