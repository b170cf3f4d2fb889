import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

@testable import RSInitCore

/// The change-stream source against the oplog source: the same inputs, the same redis-oplog messages.
@Suite struct ChangeStreamMappingTests {
    /// Updates whose `o` carries a `$v` that is not 2 next to other fields: the oplog source reads them as
    /// replacements, a 7.0 server's change stream fails on them (uassert 6741200, §4), so no event exists.
    static let notExpressible: Set<String> = ["F13", "F14", "F18"]

    /// The vector table of ``ChangedFieldsTests`` through both sources: the oplog mapper on the entry, and the
    /// change-stream mapper on the event the double derives from the same entry (§4's parser).
    @Test(arguments: ChangedFieldsVector.all)
    func sharedVector(_ vector: ChangedFieldsVector) throws {
        let modes: [ChangedFieldsMode] =
            vector.mode == "any" ? [.top, .deep] : [ChangedFieldsMode(rawValue: vector.mode)!]
        var entry: BSONDocument = [
            "op": .string(vector.op), "ns": "foo.bar", "ts": .timestamp(BSONTimestamp(seconds: 1234, increment: 1)),
        ]
        entry.append("o", .document(vector.object))
        if vector.op == "u" { entry.append("o2", ["_id": "someid"]) }
        let changeEvents = FakeMongod.changeStreamEvents(forOplogEntry: entry)
        let format = ChangedFields.format(of: vector.object)
        if vector.op == "u", case .classic = format {
            #expect(changeEvents.isEmpty, "\(vector.id): 7.0 has no $v:1 updates")
            return
        }
        if Self.notExpressible.contains(vector.id) {
            #expect(changeEvents.isEmpty, "\(vector.id)")
            return
        }
        for mode in modes {
            var oplog = OplogEventMapper(configuration: .init(fieldsMode: mode), startPosition: nil)
            var oplogEvents: [ChangeEvent] = []
            _ = oplog.map(entry, into: &oplogEvents)
            var stream = ChangeStreamEventMapper(configuration: .init(fieldsMode: mode))
            let streamEvents = changeEvents.compactMap { document -> ChangeEvent? in
                if case .emitted(let event) = stream.map(document) { return event }
                return nil
            }
            try #require(oplogEvents.count == 1 && streamEvents.count == 1, "\(vector.id) \(mode)")
            var expected = oplogEvents[0]
            var actual = streamEvents[0]
            if Self.malformed(vector.object) {
                // Still a well-formed event with the right kind and id; the fields are the server's reading.
                #expect(actual.kind == expected.kind && actual.documentID == expected.documentID, "\(vector.id)")
                continue
            }
            expected.changedFields.sort()
            actual.changedFields.sort()
            #expect(actual.changedFields == vector.expected, "\(vector.id) \(mode)")
            // The stream's event carries its resume token (HA dedupe key); the oplog's has none.
            #expect(actual.resumeToken?.isEmpty == false, "\(vector.id)")
            actual.resumeToken = nil
            #expect(actual == expected, "\(vector.id) \(mode)")
            #expect(
                RedisOplogFormat.message(for: actual) == RedisOplogFormat.message(for: expected),
                "\(vector.id) \(mode)"
            )
            #expect(
                RedisOplogFormat.channels(for: actual, prefix: "")
                    == RedisOplogFormat.channels(for: expected, prefix: "")
            )
        }
    }

    /// A diff a server would not write: a section that is not a document, or a key outside §4's grammar.
    static func malformed(_ object: BSONDocument) -> Bool {
        guard case .diff(let diff) = ChangedFields.format(of: object) else { return false }
        func bad(_ diff: BSONDocument, array: Bool) -> Bool {
            for (key, value) in diff.elements {
                if array {
                    if key == "a" || key == "l" { continue }
                    guard let first = key.first, first == "u" || first == "s", key.dropFirst().allSatisfy(\.isNumber),
                        key.count > 1
                    else { return true }
                    if first == "s" {
                        guard case .document(let sub) = value else { return true }
                        if bad(sub, array: sub["a"]?.isTruthy == true) { return true }
                    }
                    continue
                }
                switch key {
                case "i", "u", "d":
                    guard case .document = value else { return true }
                default:
                    guard key.hasPrefix("s"), key.count > 1, case .document(let sub) = value else { return true }
                    if bad(sub, array: sub["a"]?.isTruthy == true) { return true }
                }
            }
            return false
        }
        return bad(diff, array: false)
    }

    @Test func commandsTransactionsAndSkips() throws {
        let ts = BSONTimestamp(seconds: 1700, increment: 3)
        let uuid = BSONBinary(subtype: 4, data: Array(repeating: 9, count: 16))
        var mapper = ChangeStreamEventMapper(configuration: .init())
        func events(_ entry: BSONDocument) -> [ChangeEvent.Command?] {
            FakeMongod.changeStreamEvents(forOplogEntry: entry).compactMap {
                if case .emitted(let event) = mapper.map($0) { return event.command }
                return nil
            }
        }
        #expect(
            events(["op": "c", "ns": "app.$cmd", "ui": .binary(uuid), "o": ["drop": "tasks"], "ts": .timestamp(ts)])
                == [
                    ChangeEvent.Command(name: "drop")
                ]
        )
        #expect(
            events([
                "op": "c", "ns": "app.$cmd", "ui": .binary(uuid), "o": ["renameCollection": "app.a", "to": "app.b"],
                "ts": .timestamp(ts),
            ]) == [
                ChangeEvent.Command(name: "renameCollection", renamedTo: Namespace(database: "app", collection: "b"))
            ]
        )
        #expect(
            events(["op": "c", "ns": "app.$cmd", "o": ["dropDatabase": 1], "ts": .timestamp(ts)]) == [
                ChangeEvent.Command(name: "dropDatabase")
            ]
        )
        // A transaction: every event at the commit time, transactionIndex from the token, as the oplog source.
        let transaction: BSONDocument = [
            "lsid": ["id": .binary(uuid)], "txnNumber": .int64(1), "op": "c", "ns": "admin.$cmd", "ts": .timestamp(ts),
            "o": [
                "applyOps": [
                    ["op": "i", "ns": "app.a", "ui": .binary(uuid), "o": ["_id": 1, "x": 1]],
                    ["op": "d", "ns": "app.a", "ui": .binary(uuid), "o": ["_id": 2]],
                ]
            ],
        ]
        var oplog = OplogEventMapper(configuration: .init(), startPosition: nil)
        var oplogEvents: [ChangeEvent] = []
        _ = oplog.map(transaction, into: &oplogEvents)
        let streamEvents = FakeMongod.changeStreamEvents(forOplogEntry: transaction).compactMap {
            if case .emitted(let event) = mapper.map($0) { return event }
            return nil
        }
        #expect(
            streamEvents.map {
                var event = $0
                event.resumeToken = nil
                return event
            } == oplogEvents
        )
        #expect(streamEvents.map(\.transactionIndex) == [0, 1])
        #expect(Set(streamEvents.compactMap(\.resumeToken)).count == 2)
        // Invalidate, filters, internal namespaces, garbage.
        #expect(mapper.map(["operationType": "invalidate", "clusterTime": .timestamp(ts)]) == .invalidated)
        var filtered = ChangeStreamEventMapper(configuration: .init(filter: NamespaceFilter(include: ["other"])))
        let insert = FakeMongod.changeStreamEvents(forOplogEntry: [
            "op": "i", "ns": "app.a", "ui": .binary(uuid), "o": ["_id": 1], "ts": .timestamp(ts),
        ])
        #expect(filtered.map(try #require(insert.first)) == .skipped(.filtered))
        #expect(mapper.map([:]) == .skipped(.malformed))
        #expect(mapper.map(["operationType": "insert"]) == .skipped(.malformed))
        #expect(mapper.map(["operationType": 7]) == .skipped(.malformed))
        #expect(
            mapper.map(["operationType": "insert", "clusterTime": .timestamp(ts), "ns": ["db": "app", "coll": "a"]])
                == .skipped(.malformed)
        )
        #expect(
            mapper.map([
                "operationType": "createIndexes", "clusterTime": .timestamp(ts), "ns": ["db": "app", "coll": "a"],
            ])
                == .skipped(.otherCommand)
        )
        #expect(mapper.takeUnexpressed().count == 4)
    }

    @Test func updateDescriptionFields() {
        let description: BSONDocument = [
            "updatedFields": ["a.b": 1, "c": ["d": ["e": 1], "f": 2], "arr.2": ["x": 1], "empty": [:]],
            "removedFields": ["g.h"], "truncatedArrays": [["field": "arr", "newSize": 2]],
        ]
        #expect(
            ChangeStreamEventMapper.changedFields(description, mode: .deep)
                == ["a.b", "c.d.e", "c.f", "arr.2", "empty", "g.h", "arr"]
        )
        #expect(ChangeStreamEventMapper.changedFields(description, mode: .top) == ["a", "c", "arr", "empty", "g"])
        #expect(ChangeStreamEventMapper.changedFields([:], mode: .deep) == [])
    }

    @Test func ticks() {
        #expect(oneTickAfter(BSONTimestamp(seconds: 5, increment: 1)) == BSONTimestamp(seconds: 5, increment: 2))
        #expect(oneTickAfter(BSONTimestamp(seconds: 5, increment: .max)) == BSONTimestamp(seconds: 6, increment: 0))
        #expect(oneTickBefore(BSONTimestamp(seconds: 5, increment: 0)) == BSONTimestamp(seconds: 4, increment: .max))
        #expect(oneTickBefore(BSONTimestamp(seconds: 0, increment: 0)) == BSONTimestamp(seconds: 0, increment: 0))
        for sample in [BSONTimestamp(seconds: 9, increment: 3), BSONTimestamp(seconds: 9, increment: 0)] {
            #expect(oneTickAfter(oneTickBefore(sample)) == sample)
        }
    }
}
