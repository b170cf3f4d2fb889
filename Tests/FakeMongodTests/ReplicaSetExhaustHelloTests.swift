import BSON
import Foundation
import RSInitTestUtils
import Testing

/// Streaming hello (`exhaustAllowed` → `moreToCome`, spec replication-ha §6.1, §9.1 item 4, mongod-behaviour §11.5)
/// on a raw socket, as the Node driver of redis-oplog and a pooled libmongoc monitor speak it (libmongoc 1.23's
/// single-threaded client never sends it): one request, several replies.
@Suite(.serialized) struct ReplicaSetExhaustHelloTests {
    @Test func oneExhaustHelloGetsAStreamOfReplies() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let monitor = try RawWireClient(port: set.members[0].port)
        let first = try #require(monitor.command(["hello": 1, "$db": "admin"]))
        let version = try #require(first["topologyVersion"]?.documentValue)
        let counter = try #require(version["counter"]?.int64Value)
        let request = monitor.sendMessage(
            ["hello": 1, "topologyVersion": .document(version), "maxAwaitTimeMS": 300, "$db": "admin"],
            flagBits: 0x1_0000
        )
        // Nothing changes: a reply after maxAwaitTimeMS, then another one, unasked, each chained to the previous.
        var started = ContinuousClock.now
        let one = try #require(monitor.receiveFrame())
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        #expect(one.moreToCome)
        #expect(one.responseTo == request)
        #expect(one.document["ok"] == .double(1))
        #expect(one.document[path: "topologyVersion.counter"] == .int64(counter))
        started = ContinuousClock.now
        let two = try #require(monitor.receiveFrame())
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        #expect(two.moreToCome)
        #expect(two.responseTo == one.requestID)
        #expect(two.requestID != one.requestID)
        // A change (stepdown start) is streamed at once, long before maxAwaitTimeMS would pass again... (the
        // primary goes SECONDARY and a handoff follows; every change comes as its own reply).
        let admin = try RawWireClient(port: set.members[0].port)
        started = ContinuousClock.now
        let stepDown = admin.command(["replSetStepDown": 60, "$db": "admin"])
        #expect(stepDown?["ok"] == .double(1))
        let three = try #require(monitor.receiveFrame())
        #expect(ContinuousClock.now - started < .milliseconds(250))
        #expect(three.moreToCome)
        #expect(three.responseTo == two.requestID)
        #expect((three.document[path: "topologyVersion.counter"]?.int64Value ?? 0) > counter)
        #expect(three.document["isWritablePrimary"] == false)
        // Quiesce: the error reply ends the stream (no moreToCome); the client may then send again.
        let shutdown = Task { await set.shutDown(0, quiesce: .milliseconds(800)) }
        var last = three
        while last.moreToCome {
            guard let frame = monitor.receiveFrame() else { break }
            #expect(frame.responseTo == last.requestID)
            last = frame
        }
        #expect(!last.moreToCome)
        #expect(last.document["code"] == .int32(91))
        let afterStream = monitor.command(["ping": 1, "$db": "admin"])
        #expect(afterStream?["ok"] == .double(1))
        await shutdown.value
    }

    /// Without `exhaustAllowed`, an awaitable hello is answered once (no `moreToCome`), as before.
    @Test func withoutExhaustAllowedOneReply() async throws {
        let set = try FakeReplicaSet.start(timings: ReplicaSetFidelityTests.fast)
        defer { set.stop() }
        let monitor = try RawWireClient(port: set.members[1].port)
        let version = try #require(monitor.command(["hello": 1, "$db": "admin"])?["topologyVersion"]?.documentValue)
        monitor.sendMessage(["hello": 1, "topologyVersion": .document(version), "maxAwaitTimeMS": 100, "$db": "admin"])
        let reply = try #require(monitor.receiveFrame())
        #expect(!reply.moreToCome)
        #expect(monitor.command(["ping": 1, "$db": "admin"])?["ok"] == .double(1))
    }
}
