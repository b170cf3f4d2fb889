import BSON
import Foundation
import Logging
import MongoCWrapper
import NIOConcurrencyHelpers
import RSInitCore
import RSInitTestUtils
import Testing

let tailLogger = Logger(label: "rsinit.test.tail")

func primaryDouble(
    noop: Duration? = nil,
    configure: (inout FakeMongodConfiguration) -> Void = { _ in }
) throws -> FakeMongod {
    var configuration = FakeMongodConfiguration(scenario: .primary(setName: "rs0"), periodicNoopInterval: noop)
    configure(&configuration)
    return try FakeMongod.start(configuration)
}

func tailer(
    _ server: FakeMongod,
    start: StartPosition = .end,
    mapping: OplogEventMapper.Configuration = .init(),
    batchSize: Int = 1000
) throws -> OplogTailer {
    OplogTailer(
        configuration: OplogTailerConfiguration(
            connectionString: try MongoConnectionString(server.uri),
            start: start,
            mapping: mapping,
            batchSize: batchSize,
            maxAwaitTime: .milliseconds(300),
            backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))
        ),
        logger: tailLogger
    )
}

/// Reads batches until `until` says stop, or the timeout passes.
func collect(
    _ tail: OplogTailer,
    timeout: Duration = .seconds(10),
    until: @escaping @Sendable ([ChangeEvent], OplogBatch) -> Bool
) async throws -> (events: [ChangeEvent], last: OplogBatch?) {
    try await withThrowingTaskGroup(of: ([ChangeEvent], OplogBatch?).self) { group in
        group.addTask {
            var events: [ChangeEvent] = []
            var last: OplogBatch?
            var iterator = tail.makeAsyncIterator()
            while let batch = try await iterator.next() {
                events += batch.events
                last = batch
                if until(events, batch) { break }
            }
            await iterator.close()
            return (events, last)
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw CancellationError()
        }
        let result = try await group.next()!
        group.cancelAll()
        return result
    }
}

func insert(_ client: MongoClient, _ ids: Range<Int>, collection: String = "c", database: String = "app") async throws {
    for id in ids {
        _ = try await client.runCommand(
            ["insert": .string(collection), "documents": [["_id": .int32(Int32(id)), "n": .int32(Int32(id))]]],
            database: database
        )
    }
}

func ids(_ events: [ChangeEvent]) -> [Int64] { events.compactMap { $0.documentID?.int64Value } }

@Suite struct OplogTailerTests {
    @Test func writesThroughLibmongocArriveInOrder() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let writer = try MongoClient(uri: server.uri, logger: tailLogger)
        let tail = try tailer(server, start: .after(server.lastOplogTimestamp))
        async let collected = collect(tail) { events, _ in events.count >= 5 }
        _ = await eventually { server.receivedCommandNames.contains("getmore") }  // the tail is running
        _ = try await writer.runCommand(
            ["insert": "users", "documents": [["_id": "a", "name": "x"]]],
            database: "app"
        )
        _ = try await writer.runCommand(
            ["update": "users", "updates": [["q": ["_id": "a"], "u": ["$set": ["name": "y", "tags": ["t"]]]]]],
            database: "app"
        )
        _ = try await writer.runCommand(
            ["update": "users", "updates": [["q": ["_id": "a"], "u": ["_id": "a", "z": 1]]]],
            database: "app"
        )
        _ = try await writer.runCommand(
            ["delete": "users", "deletes": [["q": ["_id": "a"], "limit": 1]]],
            database: "app"
        )
        let all = try await collected.events
        // mongod logs the implicit collection creation first: a command event.
        #expect(all.first?.command?.name == "create")
        #expect(all.first?.namespace.description == "app.users")
        let events = Array(all.dropFirst())
        #expect(events.map(\.kind) == [.insert, .update, .replace, .delete])
        #expect(events.map(\.changedFields) == [["_id", "name"], ["name", "tags"], ["_id", "z"], []])
        #expect(events.allSatisfy { $0.namespace.description == "app.users" && $0.documentID == "a" })
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.timestamp < $1.timestamp })
        await writer.close()
    }

    @Test func resumeFromACheckpointYieldsExactlyTheMissedEntries() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let writer = try MongoClient(uri: server.uri, logger: tailLogger)
        try await insert(writer, 0..<5)
        let oldest = try #require(server.oplogEntries.first?["ts"]?.timestampValue)
        let first = try await collect(try tailer(server, start: .at(oldest))) { events, _ in
            ids(events).contains(4)
        }
        #expect(ids(first.events) == [0, 1, 2, 3, 4])
        let checkpoint = try #require(first.last?.resumePosition)
        try await insert(writer, 5..<10)
        let resumed = try await collect(try tailer(server, start: .after(checkpoint))) { events, _ in
            ids(events).contains(9)
        }
        #expect(ids(resumed.events) == [5, 6, 7, 8, 9])
        await writer.close()
    }

    @Test func aCheckpointThatRolledOverIsHistoryLost() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let writer = try MongoClient(uri: server.uri, logger: tailLogger)
        try await insert(writer, 0..<3)
        let checkpoint = server.lastOplogTimestamp
        try await insert(writer, 3..<10)
        server.truncateOplog(keepingLast: 4)
        await #expect(throws: OplogHistoryLost.self) {
            _ = try await collect(try tailer(server, start: .after(checkpoint))) { _, _ in true }
        }
        do {
            _ = try await collect(try tailer(server, start: .after(checkpoint))) { _, _ in true }
        } catch let lost as OplogHistoryLost {
            #expect(lost.position == checkpoint)
            #expect(lost.oldestAvailable == server.oplogEntries.first?["ts"]?.timestampValue)
            #expect(lost.description.contains("rolled over"))
        }
        // A start timestamp older than the oplog is lost too; a checkpoint from the future is named as such.
        await #expect(throws: OplogHistoryLost.self) {
            _ = try await collect(try tailer(server, start: .at(BSONTimestamp(seconds: 1, increment: 0)))) { _, _ in
                true
            }
        }
        do {
            _ = try await collect(try tailer(server, start: .after(BSONTimestamp(seconds: .max, increment: 1)))) {
                _,
                _ in true
            }
            Issue.record("a future checkpoint was accepted")
        } catch let lost as OplogHistoryLost {
            #expect(lost.reason.contains("newer than every entry"))
        }
        await writer.close()
    }

    @Test func truncationUnderARunningTailIsHistoryLost() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let writer = try MongoClient(uri: server.uri, logger: tailLogger)
        let tail = try tailer(server, start: .after(server.lastOplogTimestamp), batchSize: 1)
        Task {
            _ = await eventually { server.receivedCommandNames.contains("getmore") }  // the tail is running
            server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": 0]])
        }
        await #expect(throws: OplogHistoryLost.self) {
            _ = try await collect(tail) { events, _ in
                if ids(events) == [0] {
                    // The consumer is slow; meanwhile the oplog rolls over past its position.
                    for i in 1..<20 {
                        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(Int32(i))]])
                    }
                    server.truncateOplog(keepingLast: 3)
                }
                return false
            }
        }
        _ = writer
        await writer.close()
    }

    @Test(arguments: ["hang-up", "cursor-killed", "stepdown", "restart", "136"])
    func faultsLoseNothingAndDuplicateNothing(_ fault: String) async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let writer = try MongoClient(uri: server.uri, logger: tailLogger)
        let tail = try tailer(server, start: .after(server.lastOplogTimestamp), batchSize: 7)
        async let collected = collect(tail, timeout: .seconds(20)) { events, _ in ids(events).count >= 100 }
        _ = await eventually { server.receivedCommandNames.contains("getmore") }  // the tail is running
        try await insert(writer, 0..<50)
        switch fault {
        case "hang-up": server.hangUpNextGetMore(count: 2)
        case "cursor-killed": server.failNextGetMore(code: 43, message: "cursor id 1 not found")
        case "stepdown": server.stepDown(for: .milliseconds(300))
        case "restart": server.restart(downtime: .milliseconds(200))
        default:
            server.failNextGetMore(
                code: 136,
                message: "CollectionScan died due to position in capped collection being deleted."
            )
        }
        // Keep writing through the fault (retrying while the node is not writable).
        var next = 50
        while next < 100 {
            do {
                try await insert(writer, next..<(next + 1))
                next += 1
            } catch {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let events = try await collected.events
        #expect(ids(events) == Array(0..<100).map(Int64.init), "\(fault)")
        await writer.close()
    }

    @Test func skippedEntriesAdvanceThePosition() async throws {
        let server = try primaryDouble(noop: .milliseconds(100))
        defer { server.stop() }
        let start = server.lastOplogTimestamp
        let (events, last) = try await collect(try tailer(server)) { _, batch in
            (batch.resumePosition ?? start) > start && batch.skipped[.noop, default: 0] > 0
        }
        #expect(events.isEmpty)
        #expect(try #require(last?.resumePosition) > start)
        #expect(last?.resumePosition == last?.lastRead)
    }

    @Test func cancellationEndsTheTailPromptly() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let tail = try tailer(server)
        let task = Task {
            var count = 0
            for try await _ in tail { count += 1 }
            return count
        }
        // Cancel while the tail waits in a getMore (awaitData), not before it started.
        _ = await eventually { server.receivedCommandNames.contains("getmore") }
        let cancelledAt = ContinuousClock.now
        task.cancel()
        _ = try await task.value
        #expect(ContinuousClock.now - cancelledAt < .seconds(2))
    }

    /// `--include app.keep`: the tail asks the server for database `app` only (plus no-ops and `admin.$cmd`), so
    /// the entries of database `other` never reach the client; `app.skip` does, and the client skips it.
    @Test func serverSideNamespaceFilter() async throws {
        let server = try primaryDouble(noop: nil)
        defer { server.stop() }
        let writer = try MongoClient(uri: server.uri, logger: tailLogger)
        let mapping = OplogEventMapper.Configuration(filter: NamespaceFilter(include: ["app.keep"]))
        // Start after a write the server filter excludes: the continuity check must still find it.
        try await insert(writer, 100..<101, collection: "first", database: "other")
        let start = server.lastOplogTimestamp
        let entriesRead = NIOLockedValueBox(0)
        async let collected = collect(try tailer(server, start: .after(start), mapping: mapping)) { events, batch in
            entriesRead.withLockedValue { $0 += batch.entriesRead }
            return events.filter { $0.kind == .insert }.count >= 2
        }
        _ = await eventually { server.receivedCommandNames.contains("getmore") }  // the tail is running
        try await insert(writer, 0..<3, collection: "drop", database: "other")
        try await insert(writer, 0..<1, collection: "skip")
        try await insert(writer, 0..<2, collection: "keep")
        let events = try await collected.events
        #expect(events.allSatisfy { $0.namespace.description == "app.keep" })
        #expect(ids(events.filter { $0.kind == .insert }) == [0, 1])
        // The client read exactly database app's entries written after the start (app.skip's and app.keep's):
        // the server filtered database other out; app.skip reached the client and was skipped there.
        let after = server.oplogEntries.filter { ($0["ts"]?.timestampValue).map { $0 > start } ?? false }
        let inApp = after.filter { $0["ns"]?.stringValue?.hasPrefix("app.") == true }
        #expect(after.count > inApp.count, "database other wrote entries after the start")
        #expect(entriesRead.withLockedValue { $0 } == inApp.count)
        await writer.close()
    }

    @Test func transactionsAppendedRawArriveAsOneIndexedGroup() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        let tail = try tailer(server, start: .after(server.lastOplogTimestamp))
        async let collected = collect(tail) { events, _ in events.count >= 3 }
        _ = await eventually { server.receivedCommandNames.contains("getmore") }  // the tail is running
        server.appendOplogEntry(
            try BSONDocument(
                extendedJSON: #"""
                    {"op":"c","ns":"admin.$cmd","o":{"applyOps":[{"op":"i","ns":"test.Tx","o":{"_id":"foo","bar":"baz"}},
                     {"op":"c","ns":"admin.$cmd","o":{"applyOps":[{"op":"u","ns":"test.Tx","o2":{"_id":"foo"},"o":{"$v":2,"diff":{"u":{"bar":"quux"}}}}]}},
                     {"op":"d","ns":"test.Tx","o":{"_id":"foo"}}]}}
                    """#
            )
        )
        let events = try await collected.events
        #expect(events.map(\.kind) == [.insert, .update, .delete])
        #expect(events.map(\.transactionIndex) == [0, 1, 2])
        #expect(Set(events.map(\.timestamp)).count == 1)
    }
}

@Suite struct OplogMappingFuzzTests {
    /// Random documents and update specs through the mapper: no crash, no hang, and every update names a field
    /// unless its diff is genuinely empty.
    @Test func randomEntries() async throws {
        let lastRead = try await onDedicatedThread { Self.mapRandomEntries() }
        #expect(lastRead != nil)
    }

    static func mapRandomEntries() -> BSONTimestamp? {
        var generator = SystemRandomNumberGenerator()
        var mapper = OplogEventMapper(configuration: .init(fieldsMode: .deep), startPosition: nil)
        var topMapper = OplogEventMapper(configuration: .init(fieldsMode: .top), startPosition: nil)
        var events: [ChangeEvent] = []
        // 50k here keeps the suite light; `rsinit-bench fuzz` runs millions in a release build.
        let iterations = 50_000
        for index in 0..<iterations {
            let document = OplogFuzzInput.random(index: index, using: &generator)
            events.removeAll(keepingCapacity: true)
            _ = mapper.map(document, into: &events)
            _ = topMapper.map(document, into: &events)
            // Odd ids included: the redis-oplog encoding of whatever came out must not trap either.
            for event in events where event.kind != .command {
                _ = RedisOplogFormat.message(for: event)
                _ = RedisOplogFormat.channels(for: event, prefix: "p.")
            }
            _ = mapper.takeUnexpressed()
            _ = topMapper.takeUnexpressed()
        }
        return mapper.lastRead
    }
}
