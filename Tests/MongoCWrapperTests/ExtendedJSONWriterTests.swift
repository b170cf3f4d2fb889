import BSON
import Foundation
import MongoCWrapper
import Testing

/// Extended JSON v2 output in pure Swift (``BSONDocument/extendedJSON(_:)``, module BSON): exact strings for every
/// BSON type in both formats, the BSON corpus's canonical and relaxed forms (every file when `RSINIT_BSON_CORPUS`
/// names the corpus's `tests` directory, compared as parsed JSON), and libbson's output as a second opinion.
@Suite struct ExtendedJSONWriterTests {
    static let id = BSONObjectID(hex: "56e1fc72e0c917e9c4714161")!

    /// (value, canonical, relaxed) for the value under key "a".
    static let vectors: [(BSONValue, String, String)] = [
        (.int32(-2_147_483_648), #"{"a":{"$numberInt":"-2147483648"}}"#, #"{"a":-2147483648}"#),
        (.int64(.max), #"{"a":{"$numberLong":"9223372036854775807"}}"#, #"{"a":9223372036854775807}"#),
        (.double(1), #"{"a":{"$numberDouble":"1.0"}}"#, #"{"a":1.0}"#),
        (.double(-0.0), #"{"a":{"$numberDouble":"-0.0"}}"#, #"{"a":-0.0}"#),
        (.double(1e-5), #"{"a":{"$numberDouble":"1.0E-5"}}"#, #"{"a":1.0E-5}"#),
        (
            .double(.greatestFiniteMagnitude), #"{"a":{"$numberDouble":"1.7976931348623157E+308"}}"#,
            #"{"a":1.7976931348623157E+308}"#
        ),
        (.double(.nan), #"{"a":{"$numberDouble":"NaN"}}"#, #"{"a":{"$numberDouble":"NaN"}}"#),
        (.double(-.infinity), #"{"a":{"$numberDouble":"-Infinity"}}"#, #"{"a":{"$numberDouble":"-Infinity"}}"#),
        (
            .decimal128(BSONDecimal128(string: "1.050E+4")!), #"{"a":{"$numberDecimal":"1.050E+4"}}"#,
            #"{"a":{"$numberDecimal":"1.050E+4"}}"#
        ),
        (.string("q\"b\\s\n\t\u{1}é"), #"{"a":"q\"b\\s\n\t\u0001é"}"#, #"{"a":"q\"b\\s\n\t\u0001é"}"#),
        (.bool(true), #"{"a":true}"#, #"{"a":true}"#),
        (.null, #"{"a":null}"#, #"{"a":null}"#),
        (.undefined, #"{"a":{"$undefined":true}}"#, #"{"a":{"$undefined":true}}"#),
        (.minKey, #"{"a":{"$minKey":1}}"#, #"{"a":{"$minKey":1}}"#),
        (.maxKey, #"{"a":{"$maxKey":1}}"#, #"{"a":{"$maxKey":1}}"#),
        (.objectID(id), #"{"a":{"$oid":"56e1fc72e0c917e9c4714161"}}"#, #"{"a":{"$oid":"56e1fc72e0c917e9c4714161"}}"#),
        (
            .binary(BSONBinary(subtype: 0x80, data: [0, 1, 2, 0xFF])),
            #"{"a":{"$binary":{"base64":"AAEC/w==","subType":"80"}}}"#,
            #"{"a":{"$binary":{"base64":"AAEC/w==","subType":"80"}}}"#
        ),
        (
            .datetime(1_356_351_330_501), #"{"a":{"$date":{"$numberLong":"1356351330501"}}}"#,
            #"{"a":{"$date":"2012-12-24T12:15:30.501Z"}}"#
        ),
        (.datetime(0), #"{"a":{"$date":{"$numberLong":"0"}}}"#, #"{"a":{"$date":"1970-01-01T00:00:00Z"}}"#),
        (
            .datetime(951_782_400_000), #"{"a":{"$date":{"$numberLong":"951782400000"}}}"#,
            #"{"a":{"$date":"2000-02-29T00:00:00Z"}}"#
        ),
        (
            .datetime(253_402_300_799_999), #"{"a":{"$date":{"$numberLong":"253402300799999"}}}"#,
            #"{"a":{"$date":"9999-12-31T23:59:59.999Z"}}"#
        ),
        // Past 9999 and before 1970 the relaxed form is the canonical one (the specification; libbson 1.23 prints
        // a 5-digit year instead).
        (
            .datetime(253_402_300_800_000), #"{"a":{"$date":{"$numberLong":"253402300800000"}}}"#,
            #"{"a":{"$date":{"$numberLong":"253402300800000"}}}"#
        ),
        (
            .datetime(-1), #"{"a":{"$date":{"$numberLong":"-1"}}}"#, #"{"a":{"$date":{"$numberLong":"-1"}}}"#
        ),
        (
            .timestamp(BSONTimestamp(seconds: .max, increment: 42)),
            #"{"a":{"$timestamp":{"t":4294967295,"i":42}}}"#, #"{"a":{"$timestamp":{"t":4294967295,"i":42}}}"#
        ),
        (
            .regex(BSONRegularExpression(pattern: "a\\.b", options: "xim")),
            #"{"a":{"$regularExpression":{"pattern":"a\\.b","options":"imx"}}}"#,
            #"{"a":{"$regularExpression":{"pattern":"a\\.b","options":"imx"}}}"#
        ),
        (
            .dbPointer(namespace: "db.c", id: id),
            #"{"a":{"$dbPointer":{"$ref":"db.c","$id":{"$oid":"56e1fc72e0c917e9c4714161"}}}}"#,
            #"{"a":{"$dbPointer":{"$ref":"db.c","$id":{"$oid":"56e1fc72e0c917e9c4714161"}}}}"#
        ),
        (.javascript("f()"), #"{"a":{"$code":"f()"}}"#, #"{"a":{"$code":"f()"}}"#),
        (.symbol("s"), #"{"a":{"$symbol":"s"}}"#, #"{"a":{"$symbol":"s"}}"#),
        (
            .javascriptWithScope(code: "x", scope: ["x": .int32(1)]),
            #"{"a":{"$code":"x","$scope":{"x":{"$numberInt":"1"}}}}"#, #"{"a":{"$code":"x","$scope":{"x":1}}}"#
        ),
        (
            .array([.int32(1), .document(["b": .int64(2)]), .array([])]),
            #"{"a":[{"$numberInt":"1"},{"b":{"$numberLong":"2"}},[]]}"#, #"{"a":[1,{"b":2},[]]}"#
        ),
    ]

    @Test func everyTypeIsWrittenExactly() {
        for (value, canonical, relaxed) in Self.vectors {
            let document: BSONDocument = ["a": value]
            #expect(document.extendedJSON(.canonical) == canonical)
            #expect(document.extendedJSON(.relaxed) == relaxed)
            #expect(value.extendedJSON(.canonical) == String(canonical.dropFirst(5).dropLast()))
        }
    }

    /// libbson's output, compared as parsed JSON (its spacing differs), must say the same for every vector but the
    /// date past 9999 (libbson's known deviation); and it reads our canonical output back to the same document.
    @Test func libbsonReadsAndWritesTheSameDocuments() throws {
        for (value, canonical, relaxed) in Self.vectors {
            let document: BSONDocument = ["a": value]
            if case .double(let number) = value, number.isNaN { continue }  // NaN != NaN as parsed JSON
            // Options are written sorted (the specification), so an unsorted set reads back sorted.
            if case .regex(let regex) = value, String(regex.options.sorted()) != regex.options {
                #expect(try BSONDocument(extendedJSON: document.extendedJSON(.canonical))["a"] != value)
            } else {
                #expect(try BSONDocument(extendedJSON: document.extendedJSON(.canonical)) == document, "\(canonical)")
            }
            #expect(try Self.parsed(document.canonicalExtendedJSON) == Self.parsed(canonical), "\(canonical)")
            if case .datetime(let ms) = value, ms >= 253_402_300_800_000 { continue }
            #expect(try Self.parsed(document.relaxedExtendedJSON) == Self.parsed(relaxed), "\(relaxed)")
        }
    }

    @Test func theBootstrapsInitiateConfigIsValidJSON() throws {
        let config: BSONDocument = [
            "_id": "rs0",
            "members": [["_id": .int32(0), "host": "mongodb:27017", "priority": .double(1)]],
        ]
        let text = config.extendedJSON(.relaxed)
        #expect(text == #"{"_id":"rs0","members":[{"_id":0,"host":"mongodb:27017","priority":1.0}]}"#)
        #expect(try BSONDocument(extendedJSON: text)["members"] != nil)
    }

    @Test func everyFileOfTheCorpus() throws {
        guard let directory = ProcessInfo.processInfo.environment["RSINIT_BSON_CORPUS"] else { return }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }
        var checked = 0
        for name in names.sorted() {
            let url = URL(fileURLWithPath: directory).appendingPathComponent(name)
            let file = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            for case let vector as [String: Any] in file["valid"] as? [Any] ?? [] {
                guard vector["lossy"] as? Bool != true, let hex = vector["canonical_bson"] as? String,
                    let bytes = Self.bytes(hex), let document = try? BSONDocument(bytes: bytes)
                else { continue }
                let description = "\(name): \(vector["description"] ?? "")"
                if let canonical = vector["canonical_extjson"] as? String {
                    #expect(
                        try Self.parsed(document.extendedJSON(.canonical)) == Self.parsed(canonical),
                        "\(description)"
                    )
                }
                if let relaxed = vector["relaxed_extjson"] as? String {
                    #expect(try Self.parsed(document.extendedJSON(.relaxed)) == Self.parsed(relaxed), "\(description)")
                }
                checked += 1
            }
        }
        #expect(checked > 300, "checked \(checked) corpus documents")
    }

    /// JSON parsed into Foundation values; numbers compare by value ("1.0E+3" == "1000.0"), and so do the finite
    /// `$numberDouble` strings (libbson and the corpus print 17 digits, "1.0000000000000001e-05"; we print the
    /// shortest that reads back the same, "1.0E-5").
    static func parsed(_ json: String) throws -> NSObject {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])
        return try #require(normalized(object) as? NSObject)
    }

    static func normalized(_ object: Any) -> Any {
        if let dictionary = object as? [String: Any] {
            if dictionary.count == 1, let text = dictionary["$numberDouble"] as? String, let number = Double(text),
                number.isFinite
            {
                return ["$numberDouble": NSNumber(value: number)]
            }
            return dictionary.mapValues(normalized)
        }
        if let array = object as? [Any] { return array.map(normalized) }
        return object
    }

    static func bytes(_ hex: String) -> [UInt8]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count.isMultiple(of: 2) else { return nil }
        return stride(from: 0, to: utf8.count, by: 2).compactMap {
            UInt8(String(decoding: utf8[$0..<$0 + 2], as: UTF8.self), radix: 16)
        }
    }
}
