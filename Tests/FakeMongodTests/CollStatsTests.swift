import BSON
import MongoCWrapper
import RSInitTestUtils
import Testing

/// `collStats` through libmongoc (what `rsinit doctor` reads for the oplog's configured size).
@Suite struct CollStatsTests {
    @Test func oplogReportsItsEntriesBytesAndCapacity() async throws {
        let server = try startDouble(.primary(setName: "rs0")) { $0.oplogCapacity = 500 }
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(
                ["insert": "items", "documents": [["_id": 1], ["_id": 2]]],
                database: "app"
            )
            let stats = try await client.runCommand(["collStats": "oplog.rs"], database: "local")
            #expect(stats["ns"]?.stringValue == "local.oplog.rs")
            #expect(stats["capped"]?.isTruthy == true)
            #expect(stats["max"]?.int64Value == 500)
            let count = try #require(stats["count"]?.int64Value)
            #expect(count >= 3)  // "new primary" and the two inserts
            let size = try #require(stats["size"]?.int64Value)
            #expect(size > count * 50)
            let items = try await client.runCommand(["collStats": "items"], database: "app")
            #expect(items["count"]?.int64Value == 2)
            #expect(items["capped"]?.isTruthy == false)
            #expect(items["max"] == nil)
        }
    }

    @Test func missingCollectionIsNamespaceNotFound() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let error = await commandError(client, ["collStats": "nothing"], database: "app")
            #expect(error?.serverCode == 26)
        }
    }
}
