import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `mongod-double --scenario mongos --shards 2` from its command line: a mongos libmongoc can use.
@Suite struct MongodDoubleMongosCLITests {
    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: MongodDoubleAuthFlagTests.binary.path),
            "mongod-double is not built"
        )
    )
    func theMongosScenarioServesAShardedCluster() async throws {
        let (process, port, _) = try await onDedicatedThread {
            let launched = try MongodDoubleAuthFlagTests.launch([
                "--scenario", "mongos", "--shards", "2", "--noop-interval", "0.1",
            ])
            return (UncheckedBox(launched.0), launched.1, UncheckedBox(launched.2))
        }
        defer {
            kill(process.value.processIdentifier, SIGKILL)
            process.value.waitUntilExit()
        }
        try #require(port != 0)
        let client = try MongoClient(
            uri: "mongodb://127.0.0.1:\(port)/?serverSelectionTimeoutMS=5000",
            logger: Logger(label: "mongos-cli")
        )
        let hello = try await client.runCommand(["hello": 1])
        #expect(hello["msg"]?.stringValue == "isdbgrid" && hello["setName"] == nil)
        let documents: [BSONValue] = (0..<8).map { .document(["_id": .int32(Int32($0))]) }
        let insert: BSONDocument = ["insert": "c", "documents": .array(documents)]
        _ = try await client.runCommand(insert, database: "db")
        let found = try await client.runCommand(["find": "c", "filter": [:]], database: "db")
        #expect(found[path: "cursor.firstBatch"]?.arrayValue?.count == 8)
        await client.close()
        let refused = try MongodDoubleAuthFlagTests.launch(["--scenario", "mongos", "--members", "3"])
        refused.0.waitUntilExit()
        #expect(refused.0.terminationStatus != 0)
    }
}
