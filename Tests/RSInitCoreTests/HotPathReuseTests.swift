import BSON
import RESP
import Testing

@testable import RSInitCore

/// The hot path's reuse of what it already holds (issue 23) gives exactly the bytes and values made from scratch:
/// the changed-fields JSON kept per shared array, and the namespace and `op` strings kept across oplog entries.
@Suite struct HotPathReuseTests {
    /// Events whose changed-fields arrays are shared (one storage), distinct with equal contents, distinct with the
    /// same count but other contents, empty, and needing escapes, in an order that switches between them.
    static func events() -> [ChangeEvent] {
        let shared = ["_id", "hello", "q\"uote"]
        let other = ["_id", "x", "ü\n"]
        let shorter = ["_id"]
        let fieldArrays: [[String]] = [
            shared, shared, other, shared, ["_id", "hello", "q\"uote"], other, [], shared, shorter, shorter,
            Array(shared), ["_id", "hello", "q\"uotf"], shared, [], [], other,
        ]
        return fieldArrays.enumerated().map { index, fields in
            ChangeEvent(
                kind: [.insert, .update, .replace, .delete][index % 4],
                namespace: Namespace(index % 5 == 4 ? "app.users" : "app.tasks"),
                documentID: .string("id\(index)"),
                changedFields: fields,
                timestamp: BSONTimestamp(seconds: 1_700_000_000, increment: UInt32(index))  // trap-checked: < 16
            )
        }
    }

    @Test func publishesWithSharedFieldArraysMatchTheFormat() {
        var expected: [UInt8] = []
        for event in Self.events() {
            let message = RedisOplogFormat.message(for: event)
            for channel in RedisOplogFormat.channels(for: event, prefix: "") {
                RESPCodec.encodeCommand(["PUBLISH", channel, message].map { Array($0.utf8) }, into: &expected)
            }
        }
        var encoder = EventCommandEncoder(channelPrefix: "", controlChannel: "control", fanOut: [])
        var encoded: [UInt8] = []
        // Twice through one encoder: its kept JSON from the first pass must not leak into the second.
        for _ in 0..<2 {
            encoded.removeAll()
            _ = encoder.appendPublishes(Self.events(), checkpoint: nil, to: &encoded)
            #expect(String(decoding: encoded, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
        }
    }

    @Test func messagesWithAKeptFieldsJSONMatchTheFormat() {
        var kept = RedisOplogFormat.ChangedFieldsJSON()
        for event in Self.events() + Self.events().reversed() {
            var message: [UInt8] = []
            RedisOplogFormat.appendMessage(for: event, to: &message, fields: &kept)
            #expect(String(decoding: message, as: UTF8.self) == RedisOplogFormat.message(for: event))
        }
    }

    /// An entry read with any hint equals the entry read without one.
    @Test func oplogEntryWithANamespaceHintEqualsTheEntryWithout() throws {
        let namespaces = [
            "app.tasks", "app.task", "app.tasks2", "app.taskS", "", "a-long-database-name.and-a-long-collection",
            "a-long-database-name.and-a-long-collectioN", "ünïcödé.cøll", "admin.$cmd",
        ]
        let ops = ["i", "u", "d", "c", "n", "", "ii", "ü", "x", "\u{7F}"]
        let hints: [String?] = [nil] + namespaces
        for namespace in namespaces {
            for op in ops {
                let document: BSONDocument = [
                    "ts": .timestamp(BSONTimestamp(seconds: 5, increment: 1)), "op": .string(op),
                    "ns": .string(namespace), "o": ["_id": "a", "x": 1], "o2": ["_id": "a"],
                ]
                let plain = OplogEntry(document)
                #expect(plain.op == op && plain.namespace == namespace)
                for hint in hints {
                    #expect(
                        OplogEntry(document, namespaceHint: hint) == plain,
                        "ns \(namespace), op \(op), hint \(hint ?? "nil")"
                    )
                }
            }
        }
        // `ns` and `op` that are not strings, and a document without them.
        let odd: [BSONDocument] = [
            ["ts": .timestamp(BSONTimestamp(seconds: 5, increment: 1)), "op": 1, "ns": 2, "o": ["_id": "a"]],
            ["ts": .timestamp(BSONTimestamp(seconds: 5, increment: 1)), "o": ["_id": "a"]],
        ]
        for document in odd {
            for hint in hints { #expect(OplogEntry(document, namespaceHint: hint) == OplogEntry(document)) }
        }
    }

    /// A `ns` whose bytes are not UTF-8 never matches a hint (its decoding repairs them), and reads as without one.
    @Test func oplogEntryWithANonUTF8NamespaceIgnoresTheHint() throws {
        let valid: BSONDocument = [
            "ts": .timestamp(BSONTimestamp(seconds: 5, increment: 1)), "op": "i", "ns": "ab.cd", "o": ["_id": "a"],
        ]
        var bytes = valid.bytes
        let at = try #require(bytes.indices.first { bytes[$0...].starts(with: Array("ab.cd".utf8)) })
        bytes[at + 1] = 0xFF  // "a\u{FF}.cd": not UTF-8
        let document = try BSONDocument(bytes: bytes, options: .structural)
        let plain = OplogEntry(document)
        #expect(plain.namespace == "a\u{FFFD}.cd")
        for hint in [nil, "ab.cd", "a\u{FFFD}.cd", "a\u{FF}.cd"] as [String?] {
            #expect(OplogEntry(document, namespaceHint: hint) == plain)
        }
    }
}
