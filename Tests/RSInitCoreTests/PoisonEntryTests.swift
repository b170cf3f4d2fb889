import BSON
import Foundation
import Logging
import MetricsTestKit
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Synchronization
import Testing

/// Issue 13: no oplog entry can crash or stop the bridge. Odd ids and malformed entries, then normal ones, through
/// the double (real libmongoc), the bridge and a real Redis.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct PoisonEntryTests {
    /// Every odd id of the issue, with the channel suffix Meteor's idStringify gives (nil: collection channel
    /// only) and the `d._id` text.
    static let oddIDs: [(BSONValue, String?, String)] = [
        (.double(0x1p63), "~9223372036854776000", "9223372036854776000"),
        (.double(0x1p74), "~1.888946593147858e+22", "1.888946593147858e+22"),
        (.double(1e21), "~1e+21", "1e+21"),
        (.double(9.999999999999999e20), "~999999999999999900000", "999999999999999900000"),
        (.double(0x1p60), "~1152921504606847000", "1152921504606847000"),
        (.double(1e-6), "~0.000001", "0.000001"),
        (.double(1e-7), "~1e-7", "1e-7"),
        (.double(.leastNonzeroMagnitude), "~5e-324", "5e-324"),
        (.double(-.greatestFiniteMagnitude), "~-1.7976931348623157e+308", "-1.7976931348623157e+308"),
        (.double(-0.0), "~0", "0"),
        (.double(.nan), "~null", #"{"$InfNaN":0}"#),
        (.double(.infinity), "~null", #"{"$InfNaN":1}"#),
        (.int64(.max), "~9223372036854776000", "9223372036854776000"),
        (.int64(.min), "~-9223372036854776000", "-9223372036854776000"),
        (.int64(1 << 53 + 1), "~9007199254740992", "9007199254740992"),
        (.int32(.min), "~-2147483648", "-2147483648"),
        (.bool(false), "~false", "false"),
        (.null, "~null", "null"),
        (.string(""), "", #""""#),
        (.string("deadbeefdeadbeefdeadbeef"), "-deadbeefdeadbeefdeadbeef", #""deadbeefdeadbeefdeadbeef""#),
        (.string("DEADBEEFDEADBEEFDEADBEEF"), "DEADBEEFDEADBEEFDEADBEEF", #""DEADBEEFDEADBEEFDEADBEEF""#),
        (.string("~tilde"), "-~tilde", #""~tilde""#),
        (.decimal128(BSONDecimal128(string: "1.5")!), nil, #"{"$type":"Decimal","$value":"1.5"}"#),
        (.document(["a": 1, "b": "x"]), nil, #"{"a":1,"b":"x"}"#),
        (.array([1, "two"]), nil, #"[1,"two"]"#),
        (.binary(BSONBinary(subtype: 0, data: [1, 2, 3])), nil, #"{"$binary":"AQID"}"#),
        (.regex(BSONRegularExpression(pattern: "^a", options: "i")), nil, #"{"$regexp":"^a","$flags":"i"}"#),
        (.minKey, nil, #"{"$type":"minKey","$value":1}"#),
        (.maxKey, nil, #"{"$type":"maxKey","$value":1}"#),
        (.datetime(-1), nil, #"{"$date":-1}"#),
    ]

    /// Entries the mapper cannot express, with the reason they are counted under.
    static let malformed: [(BSONDocument, UnexpressedEntry.Reason)] = [
        (["op": "u", "ns": "tests.Odd", "o2": ["_id": "no-o"]], .malformed),
        (["op": "i", "ns": "tests.Odd", "o": "not a document"], .malformed),
        (["op": .int32(5), "ns": "tests.Odd", "o": ["_id": "op-not-a-string"]], .malformed),
        (["op": "c", "ns": "tests.$cmd", "o": [:]], .malformed),
        (["op": "c", "ns": "tests.$cmd", "o": ["drop": .int32(5)]], .malformed),
        (["op": "c", "ns": "tests.$cmd", "o": ["renameCollection": "tests.a"]], .malformed),
        (["op": "z", "ns": "tests.Odd", "o": ["_id": "future-op"]], .unknownOperation),
    ]

    @Test func oddIdsAndMalformedEntriesNeverStopTheBridge() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let (redis, subscriber) = try await redisWithSubscriber()
        let metrics = TestMetrics()
        let (bridge, publisher) = try await makeBridge(mongo, redis, metrics: BridgeMetrics(factory: metrics))
        let running = Task { try await bridge.run() }  // makeBridge seeded the checkpoint: nothing is missed

        for (id, _, _) in Self.oddIDs {
            mongo.appendOplogEntry(["op": "i", "ns": "tests.Odd", "o": ["_id": id]])
        }
        for (entry, _) in Self.malformed { mongo.appendOplogEntry(entry) }
        appendInsertEntries(mongo, 0..<20)

        let expectedOdd = Self.oddIDs.reduce(0) { $0 + ($1.1 == nil ? 1 : 2) }
        let messages = await subscriber.waitFor(expectedOdd + 40)
        #expect(messages.count == expectedOdd + 40)

        // Every odd id: the collection channel, and Meteor's dedicated channel when it has one, with d._id as
        // EJSON.parse must read it.
        for (id, suffix, ejson) in Self.oddIDs {
            let message = #"{"e":"i","d":{"_id":"# + ejson + #"},"f":["_id"]}"#
            let onCollection = messages.filter { $0.0 == "tests.Odd" && $0.1 == message }
            #expect(onCollection.count >= 1, "\(id) on tests.Odd: \(message)")
            if let suffix {
                #expect(messages.contains { $0.0 == "tests.Odd::" + suffix && $0.1 == message }, "\(id) on ::\(suffix)")
            }
        }
        // The normal entries after them, all of them, in order.
        let normal = messages.filter { $0.0 == "tests.Foo" }.map(\.1)
        #expect(normal == (0..<20).map { #"{"e":"i","d":{"_id":"id\#($0)"},"f":["_id","n"]}"# })

        // Counted by reason.
        let idsWithoutChannel = Self.oddIDs.filter { $0.1 == nil }.count
        func skipped(_ reason: UnexpressedEntry.Reason) throws -> Int64 {
            try metrics.expectCounter(BridgeMetrics.Name.oplogSkipped, [("reason", reason.rawValue)]).totalValue
        }
        #expect(try skipped(.idNotStringifiable) == Int64(idsWithoutChannel))
        #expect(try skipped(.malformed) == Int64(Self.malformed.filter { $0.1 == .malformed }.count))
        #expect(try skipped(.unknownOperation) == 1)

        // The checkpoint passed everything; a restart replays nothing before it.
        let newest = mongo.lastOplogTimestamp
        let deadline = ContinuousClock.now + .seconds(10)
        while try await checkpoint(redis) != newest, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try await checkpoint(redis) == newest)
        bridge.stop()
        try await running.value
        await publisher.close()

        let (restarted, restartedPublisher) = try await makeBridge(mongo, redis)
        let runningAgain = Task { try await restarted.run() }
        appendInsertEntries(mongo, 20..<21)
        let after = await subscriber.waitFor(expectedOdd + 42)
        await restarted.waitDelivered(through: mongo.lastOplogTimestamp)
        restarted.stop()
        try await runningAgain.value
        await restartedPublisher.close()
        try await subscriber.barrier()
        subscriber.stop()
        let final = subscriber.received
        #expect(final.count == expectedOdd + 42, "only the new entry after the restart")
        #expect(after.suffix(2).allSatisfy { $0.1 == #"{"e":"i","d":{"_id":"id20"},"f":["_id","n"]}"# })
    }

    /// In NDJSON mode the same entries appear as `skipped` lines, in oplog order among the events.
    @Test func ndjsonReportsUnexpressedEntries() async throws {
        let lines = Mutex<[String]>([])
        let publisher = NDJSONPublisher(channelPrefix: "") { text in
            lines.withLock { $0 += text.split(separator: "\n").map(String.init) }
        }
        var mapper = OplogEventMapper(configuration: .init(), startPosition: nil)
        var events: [ChangeEvent] = []
        let entries: [BSONDocument] = [
            ["ts": .timestamp(BSONTimestamp(seconds: 1, increment: 1)), "op": "x", "ns": "a.b", "o": ["_id": 1]],
            [
                "ts": .timestamp(BSONTimestamp(seconds: 1, increment: 2)), "op": "i", "ns": "a.b",
                "o": ["_id": ["k": 1]],
            ],
            ["ts": .timestamp(BSONTimestamp(seconds: 1, increment: 3)), "op": "i", "ns": "a.b", "o": ["_id": 2]],
        ]
        for entry in entries { _ = mapper.map(entry, into: &events) }
        let batch = OplogBatch(
            events: events,
            resumePosition: mapper.resumePosition,
            lastRead: mapper.lastRead,
            entriesRead: entries.count,
            unexpressed: mapper.takeUnexpressed()
        )
        try await publisher.publish(batch)
        let printed = lines.withLock { $0 }
        #expect(printed.count == 4)
        #expect(printed[0].contains(#""skipped":{"reason":"unknown_op","ns":"a.b""#))
        #expect(printed[0].hasPrefix(#"{"ts":{"t":1,"i":1}"#))
        #expect(printed[1].contains(#""channels":["a.b"]"#))
        #expect(printed[2].contains(#""reason":"id_not_stringifiable""#))
        #expect(printed[3].contains(#""channels":["a.b","a.b::~2"]"#))
        #expect(mapper.takeUnexpressed().isEmpty, "each entry is reported once")
    }

    /// A mapper-level check of every malformed shape, including an entry without `ts` (the double always adds one).
    @Test func malformedEntriesAreReportedWithTheirReason() {
        var mapper = OplogEventMapper(configuration: .init(), startPosition: nil)
        var events: [ChangeEvent] = []
        let noTS: BSONDocument = ["op": "i", "ns": "a.b", "o": ["_id": 1]]
        #expect(mapper.map(noTS, into: &events) == .skipped(.malformed))
        for (index, (entry, reason)) in Self.malformed.enumerated() {
            var document = entry
            document.append("ts", .timestamp(BSONTimestamp(seconds: 5, increment: UInt32(index + 1))))
            let disposition = mapper.map(document, into: &events)
            #expect(disposition == .skipped(reason == .unknownOperation ? .unknownOperation : .malformed))
        }
        let reported = mapper.takeUnexpressed()
        #expect(reported.map(\.reason) == [.malformed] + Self.malformed.map(\.1))
        #expect(reported.first?.timestamp == nil)
        #expect(reported.dropFirst().allSatisfy { $0.timestamp?.seconds == 5 })
        #expect(events.isEmpty)
        #expect(mapper.lastRead == BSONTimestamp(seconds: 5, increment: UInt32(Self.malformed.count)))
    }
}
