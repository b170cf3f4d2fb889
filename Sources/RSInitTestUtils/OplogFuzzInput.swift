public import BSON

/// Random oplog-like entries and update specs for the mapping fuzz (the test suite and `rsinit-bench fuzz`).
public enum OplogFuzzInput {
    static let names = ["a", "b", "c", "s", "i", "u", "d", "l", "a0", "u1", "s2", "$v", "diff", "_id", "x.y", ""]

    static func value(depth: Int, using g: inout SystemRandomNumberGenerator) -> BSONValue {
        switch Int.random(in: 0..<(depth > 3 ? 6 : 12), using: &g) {
        case 9: return .double(Double(bitPattern: UInt64.random(in: .min ... .max, using: &g)))
        case 10: return .int64(Int64.random(in: .min ... .max, using: &g))
        case 11:
            return [.minKey, .maxKey, .datetime(-1), .binary(BSONBinary(subtype: 4, data: [1])), .undefined]
                .randomElement(using: &g) ?? .null
        case 0: return .int32(Int32.random(in: -3...30, using: &g))
        case 1: return .string(names.randomElement(using: &g)!)
        case 2: return .bool(Bool.random(using: &g))
        case 3: return .null
        case 4: return .double(Double.random(in: -1...1, using: &g))
        case 5: return .int64(Int64.random(in: 0...3, using: &g))
        case 6, 7: return .document(document(depth: depth + 1, using: &g))
        default: return .array((0..<Int.random(in: 0...3, using: &g)).map { _ in value(depth: depth + 1, using: &g) })
        }
    }

    static func document(depth: Int, using g: inout SystemRandomNumberGenerator) -> BSONDocument {
        var result = BSONDocument()
        for _ in 0..<Int.random(in: 0...4, using: &g) {
            var key = names.randomElement(using: &g)!
            if Bool.random(using: &g) { key = ["s", "u", ""].randomElement(using: &g)! + key }
            result.append(key, value(depth: depth, using: &g))
        }
        if Int.random(in: 0..<4, using: &g) == 0 { result.append("a", true) }
        return result
    }

    public static func random(index: Int, using g: inout SystemRandomNumberGenerator) -> BSONDocument {
        let op = ["i", "u", "d", "c", "n", "x"].randomElement(using: &g)!
        var o = document(depth: 0, using: &g)
        if op == "u" && Bool.random(using: &g) {
            o = ["$v": .int32(Int32.random(in: 1...2, using: &g)), "diff": .document(document(depth: 0, using: &g))]
        }
        if op == "c" && Bool.random(using: &g) {
            o = [
                "applyOps": .array(
                    (0..<3).map { _ in
                        .document(["op": "i", "ns": "a.b", "o": .document(document(depth: 1, using: &g))])
                    }
                )
            ]
        }
        var entry: BSONDocument = [
            "ts": .timestamp(BSONTimestamp(seconds: UInt32(index / 1000 + 1), increment: UInt32(index % 1000))),
            "op": .string(op),
            "ns": .string(
                ["app.c", "admin.$cmd", "app.$cmd", "config.x", "a.system.y", "x"].randomElement(using: &g)!
            ),
            "o": .document(o),
        ]
        if Bool.random(using: &g) { entry.append("o2", ["_id": value(depth: 2, using: &g)]) }
        return entry
    }
}
