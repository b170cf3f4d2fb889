import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// The mongos double (FakeShardedCluster) through libmongoc: hello as mongos, no oplog, writes placed by the
/// shard key, change streams merged by clusterTime (change-streams.md §7.2, §7.3).
@Suite struct MongosFidelityTests {
    @Test func helloIsMongosAndTheRouterHasNoOplog() async throws {
        let cluster = try FakeShardedCluster.start()
        defer { cluster.stop() }
        let client = try MongoClient(uri: cluster.uri, logger: logger)
        let hello = try await client.runCommand(["hello": 1])
        #expect(hello["msg"]?.stringValue == "isdbgrid")
        #expect(hello["setName"] == nil && hello["hosts"] == nil)
        #expect(hello["isWritablePrimary"]?.isTruthy == true)
        do {
            _ = try await client.runCommand(["find": "oplog.rs", "filter": [:], "limit": 1], database: "local")
            Issue.record("a find on local.oplog.rs through mongos succeeded")
        } catch let error as MongoError {
            #expect(error.serverCode == 20)
        }
        await client.close()
    }

    @Test func writesOnBothShardsArriveMergedInClusterTimeOrder() async throws {
        let cluster = try FakeShardedCluster.start()
        defer { cluster.stop() }
        let client = try MongoClient(uri: cluster.uri, logger: logger)
        let stream = try await client.watch(.cluster, options: ChangeStreamOptions(maxAwaitTimeMS: 200))
        for id in 0..<40 {
            _ = try await client.runCommand(
                ["insert": "coll", "documents": [["_id": .int32(Int32(id))]]],
                database: "db"
            )
        }
        _ = try await client.runCommand(
            ["update": "coll", "updates": [["q": ["_id": 3], "u": ["$set": ["a": 1]]]]],
            database: "db"
        )
        _ = try await client.runCommand(
            ["delete": "coll", "deletes": [["q": ["_id": 4], "limit": 1]]],
            database: "db"
        )
        let events = try await ChangeStreamFidelityTests.drain(stream, count: 42)
        #expect(events.count == 42)
        // Both shards hold documents, and the stream shows the writes in the order they were made.
        let placed = Set((0..<40).map { cluster.shardIndex(for: .int32(Int32($0))) })
        #expect(placed == [0, 1])
        #expect(
            cluster.shards[0].documents(in: "db.coll").count + cluster.shards[1].documents(in: "db.coll").count == 39
        )
        let ids = events.compactMap { $0[path: "documentKey._id"]?.int64Value }
        #expect(ids == (0..<40).map(Int64.init) + [3, 4])
        #expect(events.suffix(2).map { $0["operationType"]?.stringValue } == ["update", "delete"])
        let times = events.compactMap { $0["clusterTime"]?.timestampValue }
        #expect(times == times.sorted())
        let tokens = events.compactMap { $0[path: "_id._data"]?.stringValue }
        #expect(tokens == tokens.sorted() && Set(tokens).count == 42)
        // Resume from the 10th event: exactly the ones after it.
        await stream.close()
        let resumed = try await client.watch(
            .cluster,
            options: ChangeStreamOptions(resumeAfter: ["_data": .string(tokens[9])], maxAwaitTimeMS: 200)
        )
        let again = try await ChangeStreamFidelityTests.drain(resumed, count: 32)
        #expect(again.compactMap { $0[path: "_id._data"]?.stringValue } == Array(tokens[10...]))
        await resumed.close()
        await client.close()
    }

    @Test func migrationsAreInvisibleAndDropIsOneEvent() async throws {
        let cluster = try FakeShardedCluster.start()
        defer { cluster.stop() }
        let client = try MongoClient(uri: cluster.uri, logger: logger)
        _ = try await client.runCommand(["insert": "coll", "documents": [["_id": "m", "v": 0]]], database: "db")
        let stream = try await client.watch(
            .collection(database: "db", collection: "coll"),
            options: ChangeStreamOptions(fullDocument: "updateLookup", maxAwaitTimeMS: 200)
        )
        let from = cluster.shardIndex(for: "m")
        #expect(cluster.moveDocument(id: "m", in: "db.coll", toShard: 1 - from))
        #expect(cluster.shardIndex(for: "m") == 1 - from)
        #expect(cluster.shards[1 - from].documents(in: "db.coll").count == 1)
        #expect(cluster.shards[from].documents(in: "db.coll").isEmpty)
        _ = try await client.runCommand(
            ["update": "coll", "updates": [["q": ["_id": "m"], "u": ["$set": ["v": 1]]]]],
            database: "db"
        )
        _ = try await client.runCommand(
            ["insert": "coll", "documents": [["_id": 1], ["_id": 2], ["_id": 5]]],
            database: "db"
        )
        // updateLookup reads the document when the event is returned: drain before the drop.
        var events = try await ChangeStreamFidelityTests.drain(stream, count: 4)
        _ = try await client.runCommand(["drop": "coll"], database: "db")
        events += try await ChangeStreamFidelityTests.drain(stream, count: 2)
        #expect(
            events.map { $0["operationType"]?.stringValue } == [
                "update", "insert", "insert", "insert", "drop", "invalidate",
            ]
        )
        #expect(events.first?["documentKey"] == ["_id": "m"])
        #expect(events.first?["fullDocument"] == ["_id": "m", "v": 1])
        // An upsert must name the shard key, as on mongos.
        do {
            _ = try await client.runCommand(
                ["update": "coll", "updates": [["q": ["v": 9], "u": ["$set": ["v": 1]], "upsert": true]]],
                database: "db"
            )
            Issue.record("an untargeted upsert succeeded")
        } catch let error as MongoError {
            #expect(error.serverCode == 61)
        }
        await stream.close()
        await client.close()
    }

    @Test func untargetedWritesFollowTheRouterRules() async throws {
        let cluster = try FakeShardedCluster.start()
        defer { cluster.stop() }
        let client = try MongoClient(uri: cluster.uri, logger: logger)
        let documents: [BSONValue] = (0..<10).map { .document(["_id": .int32(Int32($0)), "v": 0]) }
        _ = try await client.runCommand(["insert": "coll", "documents": .array(documents)], database: "db")
        #expect(cluster.shards.allSatisfy { !$0.documents(in: "db.coll").isEmpty })
        // Without the shard key a single-document write changes one document in the cluster, a multi one all.
        let one = try await client.runCommand(
            ["update": "coll", "updates": [["q": ["v": 0], "u": ["$set": ["v": 1]]]]],
            database: "db"
        )
        #expect(one["n"]?.int64Value == 1)
        let all = try await client.runCommand(
            ["update": "coll", "updates": [["q": ["v": 0], "u": ["$set": ["v": 2]], "multi": true]]],
            database: "db"
        )
        #expect(all["n"]?.int64Value == 9)
        let deleted = try await client.runCommand(
            ["delete": "coll", "deletes": [["q": ["v": 2], "limit": 1]]],
            database: "db"
        )
        #expect(deleted["n"]?.int64Value == 1)
        let found = try await client.runCommand(["find": "coll", "filter": [:]], database: "db")
        #expect(found[path: "cursor.firstBatch"]?.arrayValue?.count == 9)
        await client.close()
    }
}
