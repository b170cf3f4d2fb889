import BSON
import Foundation
import MongoCWrapper
import RSInitCore
import Testing

/// One vector of `Fixtures/changed-fields.json` (event-format.md §9c, §9d, §8 G7/G8).
struct ChangedFieldsVector: Sendable, CustomTestStringConvertible {
    let id: String
    let op: String
    let object: BSONDocument
    let mode: String
    let expected: [String]
    var testDescription: String { id }

    static let all: [ChangedFieldsVector] = {
        let url = Bundle.module.url(forResource: "changed-fields", withExtension: "json", subdirectory: "Fixtures")!
        let array = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [[String: Any]]
        return array.map { item in
            let objectJSON = try! JSONSerialization.data(withJSONObject: item["o"]!, options: [])
            return ChangedFieldsVector(
                id: item["id"] as! String,
                op: item["op"] as! String,
                object: try! BSONDocument(extendedJSON: String(decoding: objectJSON, as: UTF8.self)),
                mode: item["mode"] as! String,
                expected: item["expected"] as! [String]
            )
        }
    }()
}

@Suite struct ChangedFieldsTests {
    @Test(arguments: ChangedFieldsVector.all)
    func vector(_ vector: ChangedFieldsVector) throws {
        let modes: [ChangedFieldsMode] =
            vector.mode == "any" ? [.top, .deep] : [ChangedFieldsMode(rawValue: vector.mode)!]
        for mode in modes {
            var mapper = OplogEventMapper(configuration: .init(fieldsMode: mode), startPosition: nil)
            var entry: BSONDocument = [
                "op": .string(vector.op), "ns": "foo.bar", "ts": .timestamp(BSONTimestamp(seconds: 1234, increment: 0)),
            ]
            entry.append("o", .document(vector.object))
            if vector.op == "u" { entry.append("o2", ["_id": "someid"]) }
            var events: [ChangeEvent] = []
            #expect(mapper.map(entry, into: &events) == .emitted(1))
            #expect(events.first?.changedFields.sorted() == vector.expected, "\(vector.id) \(mode)")
        }
    }

    @Test func detection() {
        #expect(ChangedFields.format(of: ["$v": 2, "diff": ["sa": "123"]]) == .diff(["sa": "123"]))
        #expect(ChangedFields.format(of: ["$v": .int64(2), "diff": [:]]) == .diff([:]))
        #expect(ChangedFields.format(of: ["$v": .double(2), "diff": [:]]) == .diff([:]))
        #expect(ChangedFields.format(of: ["$v": "2", "diff": [:]]) == .replacement)
        #expect(ChangedFields.format(of: ["$v": 2, "$set": ["a": "1"]]) == .classic)
        #expect(ChangedFields.format(of: ["$unset": ["a": true]]) == .classic)
        #expect(ChangedFields.format(of: ["diff": ["sa": "123"]]) == .replacement)
    }

    @Test func malformedPartsAreCountedNotFatal() {
        let result = ChangedFields.update(["$v": "1.0", "weird": "thing", "$set": ["foo": "a"]], mode: .deep)
        #expect(result.fields == ["foo"])
        #expect(result.unprocessable == 1)
    }
}
