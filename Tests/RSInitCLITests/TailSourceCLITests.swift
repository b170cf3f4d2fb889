import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `rsinit tail --source` and `--full-document`.
@Suite struct TailSourceCLITests {
    @Test func changeStreamSourceWithFullDocuments() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(from.seconds).\(from.increment)",
            "--full-document",
        ])
        let client = try MongoClient(uri: mongo.uri, logger: .init(label: "cli"))
        _ = try await client.runCommand(["insert": "Foo", "documents": [["_id": "id0", "n": 1]]], database: "tests")
        _ = try await client.runCommand(
            ["update": "Foo", "updates": [["q": ["_id": "id0"], "u": ["$set": ["n": 2]]]]],
            database: "tests"
        )
        // The lookup happens when the event is read (as on mongod): delete only after the update went out.
        let readUpdate = ContinuousClock.now + .seconds(15)
        while tail.output.components(separatedBy: "\"message\"").count < 3 && ContinuousClock.now < readUpdate {
            try await Task.sleep(for: .milliseconds(20))
        }
        _ = try await client.runCommand(
            ["delete": "Foo", "deletes": [["q": ["_id": "id0"], "limit": 1]]],
            database: "tests"
        )
        await client.close()
        let deadline = ContinuousClock.now + .seconds(15)
        while tail.output.components(separatedBy: "\"message\"").count < 4 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        #expect(tail.errors.contains("source: change stream (cluster): --full-document needs one"), "\(tail.errors)")
        let lines = tail.output.split(separator: "\n").filter { $0.contains("\"message\"") }
        #expect(lines.count == 3, "\(tail.output)")
        guard lines.count == 3 else { return }
        #expect(lines[0].contains(#""message":{"e":"i","d":{"_id":"id0","n":1},"f":["_id","n"]}"#), "\(lines[0])")
        #expect(lines[1].contains(#""message":{"e":"u","d":{"_id":"id0","n":2},"f":["n"]}"#), "\(lines[1])")
        #expect(lines[2].contains(#""message":{"e":"r","d":{"_id":"id0"},"f":[]}"#), "\(lines[2])")
    }

    @Test func autoPicksTheOplogOnAReadableMemberAndFlagsAreChecked() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(from.seconds).\(from.increment)",
        ])
        try await insertMany(mongo, 0..<1)
        // Signal only once the bridge runs (its signal handlers are installed): a message is out.
        let deadline = ContinuousClock.now + .seconds(15)
        while !tail.output.contains("\"message\"") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        #expect(tail.errors.contains("source: oplog: local.oplog.rs is readable on this member"), "\(tail.errors)")
        let refused = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--source", "oplog", "--full-document",
        ])
        #expect(try await refused.exitCode() == 2)
        #expect(refused.errors.contains("rsinit: error: --full-document needs the change-stream source"))
        #expect(refused.errors.contains("rsinit: fix: use --source change-stream"))
        let bad = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)", "--source", "river"])
        #expect(try await bad.exitCode() == 2)
    }

    @Test func sourceDecisions() throws {
        let member = SourceChoice.Facts(isMongos: false, oplogReadable: true)
        let router = SourceChoice.Facts(isMongos: true, oplogReadable: nil)
        let restricted = SourceChoice.Facts(isMongos: false, oplogReadable: false)
        #expect(
            try SourceChoice.decide(requested: nil, fullDocument: false, include: [], facts: member).source == .oplog
        )
        #expect(
            try SourceChoice.decide(requested: nil, fullDocument: false, include: ["app"], facts: router).source
                == .changeStream(scope: .database("app"), fullDocument: false)
        )
        #expect(
            try SourceChoice.decide(requested: nil, fullDocument: false, include: ["a", "b.c"], facts: restricted)
                .source == .changeStream(scope: .cluster, fullDocument: false)
        )
        #expect(try SourceChoice.decide(requested: nil, fullDocument: false, include: [], facts: nil).source == .oplog)
        #expect(
            try SourceChoice.decide(
                requested: true,
                fullDocument: true,
                include: ["app.tasks", "app.x"],
                facts: member
            )
            .source == .changeStream(scope: .database("app"), fullDocument: true)
        )
        #expect(SourceChoice.scope(include: ["tenant_*"]) == .cluster)
        #expect(throws: InputError.self) {
            try SourceChoice.decide(requested: false, fullDocument: true, include: [], facts: member)
        }
    }
}
