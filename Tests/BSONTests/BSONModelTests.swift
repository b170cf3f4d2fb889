import BSON
import Testing

/// The pure-Swift BSON model (no libbson): timestamps, lookups and edits, cached keys, ObjectId text.
@Suite struct BSONModelTests {
    @Test func timestampsOrderAsTheOplogDoes() {
        let a = BSONTimestamp(seconds: 10, increment: 5)
        let b = BSONTimestamp(seconds: 10, increment: 6)
        let c = BSONTimestamp(seconds: 11, increment: 0)
        #expect(a < b && b < c)
        #expect(BSONTimestamp(rawValue: c.rawValue) == c)
        #expect(BSONTimestamp(seconds: 1234, increment: 5678).rawValue == 5_299_989_648_942)
    }

    @Test func setAndRemovingRebuildInOrder() {
        var document: BSONDocument = ["a": 1, "b": 2]
        document.set("a", "x")
        document.set("c", true)
        #expect(document.keys == ["a", "b", "c"])
        #expect(document["a"] == "x")
        #expect(document.removing(["b"]).keys == ["a", "c"])
    }

    /// `keys(reusing:)` hands back the cached array only for exactly the same keys in the same order.
    @Test func keysReusingACachedArray() throws {
        let cached = ["_id", "hello"]
        let same: BSONDocument = ["_id": "a", "hello": 1]
        #expect(same.hasKeys(cached))
        #expect(same.keys(reusing: cached) == cached)
        let shapes: [BSONDocument] = [
            ["_id": "a"], ["_id": "a", "hello": 1, "more": 2], ["hello": 1, "_id": "a"], ["_id": "a", "hellO": 1],
            ["_id": "a", "hell": 1], [:],
        ]
        for document in shapes {
            #expect(!document.hasKeys(cached))
            #expect(document.keys(reusing: cached) == document.keys)
        }
        #expect(BSONDocument().hasKeys([]))
        // Keys that are not UTF-8 come back repaired by `keys`, and never match a cached String.
        let raw = try BSONDocument(bytes: [12, 0, 0, 0, 0x0A, 0xFF, 0x61, 0, 0x0A, 0x62, 0, 0], options: .structural)
        #expect(!raw.hasKeys(raw.keys))
        #expect(raw.keys(reusing: raw.keys) == raw.keys)
    }

    @Test func objectIdHexParsing() {
        #expect(BSONObjectID(hex: "56E1FC72E0C917E9C4714161")?.hex == "56e1fc72e0c917e9c4714161")
        #expect(BSONObjectID(hex: "56e1fc72e0c917e9c471416") == nil)
        #expect(BSONObjectID(hex: "zze1fc72e0c917e9c4714161") == nil)
    }
}
