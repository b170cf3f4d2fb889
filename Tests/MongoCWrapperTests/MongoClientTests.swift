import BSON
import Foundation
import InMemoryLogging
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

let testLogger = Logger(label: "rsinit.test")

@Suite struct MongoClientTests {
    @Test func commandRoundTrip() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "rs0")))
        defer { server.stop() }
        let client = try MongoClient(uri: server.uri, logger: testLogger)
        let status = try await client.runCommand(["replSetGetStatus": 1])
        #expect(status["set"] == "rs0")
        #expect(status["myState"] == .int32(1))
        await client.close()
    }

    @Test func findIteratesAcrossBatches() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "rs0")))
        defer { server.stop() }
        let client = try MongoClient(uri: server.uri, logger: testLogger)
        let documents = (0..<250).map { BSONValue.document(["_id": .int32(Int32($0)), "even": .bool($0 % 2 == 0)]) }
        let inserted = try await client.runCommand(
            ["insert": "items", "documents": .array(documents)],
            database: "app"
        )
        #expect(inserted["n"] == .int32(250))
        let cursor = try await client.find(
            database: "app",
            collection: "items",
            filter: ["even": true],
            options: ["batchSize": 40]
        )
        var ids: [Int64] = []
        while let document = try await cursor.next() { ids.append(document["_id"]!.int64Value!) }
        #expect(ids == stride(from: 0, to: 250, by: 2).map { Int64($0) })
        #expect(!cursor.isAlive)
        #expect(server.receivedCommandNames.filter { $0 == "getmore" }.count == 3)
        await cursor.close()
        await client.close()
    }

    @Test func serverErrorsArriveMapped() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .uninitialized(setName: "steedos")))
        defer { server.stop() }
        let client = try MongoClient(uri: server.uri, logger: testLogger)
        let error = await #expect(throws: MongoError.self) { try await client.runCommand(["replSetGetStatus": 1]) }
        #expect(error?.code == .notYetInitialized)
        #expect(error?.serverCode == 94)
        #expect(error?.codeName == "NotYetInitialized")
        #expect(error?.message == "no replset config has been received")
        await client.close()
    }

    @Test func unreachableServerIsAServerSelectionError() async throws {
        let (port, reservation) = try #require(refusingLoopbackPort())
        defer { close(reservation) }
        let client = try MongoClient(
            uri: "mongodb://127.0.0.1:\(port)/?directConnection=true&connectTimeoutMS=500&serverSelectionTimeoutMS=500",
            logger: testLogger
        )
        let error = await #expect(throws: MongoError.self) { try await client.runCommand(["ping": 1]) }
        #expect(error?.code == .serverSelection)
        #expect(error?.message.contains("connection refused") == true)
        await client.close()
    }

    @Test func invalidURIsNeverEchoThePassword() {
        for uri in ["notmongodb://x", "mongodb://user:hunter2@host:notaport", "mongodb://user:hunter2@/"] {
            do {
                _ = try MongoConnectionString(uri)
                Issue.record("accepted \(uri)")
            } catch {
                #expect(error.code == .invalidURI)
                #expect(!error.description.contains("hunter2"))
            }
        }
    }

    @Test func connectionStringReadsWhatLibmongocParsed() throws {
        let parsed = try MongoConnectionString("mongodb://root:pw@mongodb:27017,other:27018/admin?replicaSet=steedos")
        #expect(parsed.hosts == ["mongodb:27017", "other:27018"])
        #expect(parsed.replicaSet == "steedos")
        #expect(parsed.username == "root")
        #expect(parsed.hasPassword)
        #expect(parsed.description == "mongodb://root:***@mongodb:27017,other:27018/admin?replicaSet=steedos")
        let direct = try parsed.settingOptions(int32: ["connectTimeoutMS": 700], bool: ["directConnection": true])
        #expect(direct.overriddenOptions == ["connectTimeoutMS": "700", "directConnection": "true"])
        #expect(throws: MongoError.self) { try parsed.settingOptions(int32: ["noSuchOption": 1]) }
        #expect(!direct.redacted.contains("pw@"))
    }

    @Test func closedClientAndCancellation() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "rs0")))
        defer { server.stop() }
        let client = try MongoClient(uri: server.uri, logger: testLogger)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.runCommand(["ping": 1])
        }
        let cancelled = await #expect(throws: MongoError.self) { try await task.value }
        #expect(cancelled?.code == .cancelled)
        await client.close()
        await client.close()
        let closed = await #expect(throws: MongoError.self) { try await client.runCommand(["ping": 1]) }
        #expect(closed?.code == .closed)
    }

    @Test func blockingCallsDoNotOccupyTheCooperativePool() async throws {
        // Eight tailable getMores block for ~2 s each; the cooperative pool (2 threads here) must stay free: if they
        // held it, the probe would wait ~8 s.
        let server = try FakeMongod.start(
            FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: nil)
        )
        defer { server.stop() }
        let clients = try (0..<8).map { _ in try MongoClient(uri: server.uri, logger: testLogger) }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients {
                group.addTask {
                    let cursor = try await client.find(
                        database: "local",
                        collection: "oplog.rs",
                        filter: ["ts": ["$gt": .timestamp(BSONTimestamp(seconds: .max, increment: 0))]],
                        options: ["tailable": true, "awaitData": true, "maxAwaitTimeMS": 2000]
                    )
                    _ = try await cursor.next()  // find: empty firstBatch
                    _ = try await cursor.next()  // getMore: waits 2 s
                    await cursor.close()
                }
            }
            // The probe itself (the test's subject, not a wait for an event): this sleep resumes on time only if a
            // cooperative thread is free while the blocking calls run.
            try await Task.sleep(for: .milliseconds(100))
            // If the blocking calls held cooperative threads, this would not run until they finish.
            let probe = ContinuousClock.now - start
            #expect(probe < .milliseconds(1500))
            try await group.waitForAll()
        }
        for client in clients { await client.close() }
    }

    @Test func srvResolutionDoesNotOccupyTheCooperativePool() async throws {
        // Creating a libmongoc client for a `mongodb+srv://` URI resolves SRV and TXT records with the blocking
        // res_nsearch. `.invalid` never resolves (RFC 6761). The lookups run on each client's own queue when it is
        // first used, so `init` does not throw and the first command fails with the resolver's answer. Eight such
        // clients at once, more than the cooperative pool has threads: if resolution ran on a task's thread, the
        // probe below would wait for the lookups whenever the resolver is slow to answer.
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: (index: Int, error: MongoError?).self) { group in
            for index in 0..<8 {
                group.addTask {
                    let uri = "mongodb+srv://cluster\(index).rsinit-test.invalid/?serverSelectionTimeoutMS=500"
                    // Creating the client resolves nothing on this thread, so an unresolvable host does not throw here.
                    let client = try MongoClient(uri: uri, logger: testLogger)
                    let failure = await #expect(throws: MongoError.self) { try await client.runCommand(["ping": 1]) }
                    await client.close()
                    return (index, failure)
                }
            }
            // The probe itself (the test's subject): it resumes on time only if a cooperative thread is free.
            try await Task.sleep(for: .milliseconds(100))
            // If the lookups held cooperative threads, this would not run until they finish.
            let probe = ContinuousClock.now - start
            #expect(probe < .milliseconds(1000))
            var outcomes: [(index: Int, error: MongoError?)] = []
            for try await outcome in group { outcomes.append(outcome) }
            // Every client fails, with libmongoc's reason naming the host it could not resolve.
            #expect(outcomes.count == 8)
            for outcome in outcomes {
                let message = outcome.error?.message ?? "no MongoError"
                #expect(message.contains("cluster\(outcome.index).rsinit-test.invalid"), "\(message)")
            }
        }
    }

    @Test func libmongocLogsGoToSwiftLog() async throws {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "rsinit.mongoc", factory: { _ in handler })
        logger.logLevel = .trace
        MongoRuntime.setLogger(logger)
        // An unknown URI option, which libmongoc only logs as a warning, is an error carrying that warning.
        #expect(throws: MongoError.self) { try MongoConnectionString("mongodb://127.0.0.1:1/?notAnOption=1") }
        #expect(!handler.entries.contains { "\($0.message)".lowercased().contains("notanoption") })
        // Other libmongoc log lines reach swift-log: setting an app name the URI already sets is logged as an error.
        // (The logger is process-wide and other tests set theirs too: set it right before, and try a few times.)
        for _ in 0..<10 {
            MongoRuntime.setLogger(logger)
            let client = try MongoClient(
                try MongoConnectionString("mongodb://127.0.0.1:1/?appname=fromURI"),
                appName: "again",
                logger: logger
            )
            await client.close()
            if handler.entries.contains(where: { "\($0.message)".lowercased().contains("appname") }) { break }
        }
        #expect(
            handler.entries.contains { $0.level == .error && "\($0.message)".lowercased().contains("appname") },
            "\(handler.entries)"
        )
    }
}
