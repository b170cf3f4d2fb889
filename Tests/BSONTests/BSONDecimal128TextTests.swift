import BSON
import Foundation
import Testing

/// Decimal128 ⇄ text in pure Swift (module BSON): the BSON corpus's decimal128 vectors (their canonical BSON and
/// canonical `$numberDecimal` string), and every row of the corpus files themselves, both ways, when
/// `RSINIT_BSON_CORPUS` names its `tests` directory. The differential tests against libbson are in
/// MongoCWrapperTests (``Decimal128LibBSONTests``, ``Decimal128ParsingTests``).
@Suite struct BSONDecimal128TextTests {
    /// (canonical_bson hex, canonical `$numberDecimal`) from the corpus's decimal128-1.json, valid cases.
    static let corpusVectors: [(String, String)] = [
        ("180000001364000000000000000000000000000000007C00", "NaN"),
        ("18000000136400000000000000000000000000000000FC00", "NaN"),
        ("180000001364000000000000000000000000000000007E00", "NaN"),
        ("18000000136400000000000000000000000000000000FE00", "NaN"),
        ("180000001364001200000000000000000000000000007E00", "NaN"),
        ("180000001364000000000000000000000000000000007800", "Infinity"),
        ("18000000136400000000000000000000000000000000F800", "-Infinity"),
        ("180000001364000000000000000000000000000000106C00", "0"),
        ("18000000136400DCBA9876543210DEADBEEF00000010EC00", "-0"),
        ("18000000136400FFFFFFFFFFFFFFFFFFFFFFFFFFFF116C00", "0E+3"),
        ("18000000136400F2AF967ED05C82DE3297FF6FDE3CF22F00", "0.000001234567890123456789012345678901234"),
        ("18000000136400D204000000000000000000000000343000", "0.001234"),
        ("1800000013640040EF5A07000000000000000000002A3000", "0.00123400000"),
        ("1800000013640001000000000000000000000000003E3000", "0.1"),
        ("18000000136400F2AF967ED05C82DE3297FF6FDE3CFC2F00", "0.1234567890123456789012345678901234"),
        ("180000001364000000000000000000000000000000403000", "0"),
        ("18000000136400000000000000000000000000000040B000", "-0"),
        ("1800000013640000000000000000000000000000003EB000", "-0.0"),
        ("180000001364000200000000000000000000000000403000", "2"),
        ("18000000136400D0070000000000000000000000003A3000", "2.000"),
        ("18000000136400F2AF967ED05C82DE3297FF6FDE3C403000", "1234567890123456789012345678901234"),
        ("18000000136400FFFFFFFF638E8D37C087ADBE09ED010000", "9.999999999999999999999999999999999E-6143"),
        ("180000001364000100000000000000000000000000000000", "1E-6176"),
        ("180000001364000100000000000000000000000000008000", "-1E-6176"),
        ("18000000136400F2AF967ED05C82DE3297FF6FDE3CF02F00", "1.234567890123456789012345678901234E-7"),
        ("1800000013640064000000000000000000000000002CB000", "-1.00E-8"),
        ("180000001364000000000000000000000000000000205F00", "0E+6000"),
        ("1800000013640000000000000000000000000000007A2B00", "0E-611"),
        ("180000001364000100000000000000000000000000463000", "1E+3"),
        ("180000001364001A04000000000000000000000000423000", "1.050E+4"),
        ("180000001364006900000000000000000000000000423000", "1.05E+3"),
        ("18000000136400FFFFFFFFFFFFFFFFFFFFFFFFFFFF403000", "5192296858534827628530496329220095"),
        ("18000000136400000000000A5BC138938D44C64D31FE5F00", "1.000000000000000000000000000000000E+6144"),
        ("18000000136400FFFFFFFF638E8D37C087ADBE09EDFF5F00", "9.999999999999999999999999999999999E+6144"),
        ("1800000013640079D9E0F9763ADA429D0200000000583000", "1.2345689012345789012345E+34"),
        ("180000001364000100000000000000000000000000722800", "1E-999"),
    ]

    static func decimal(fromCanonicalBSON hex: String) throws -> BSONDecimal128 {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(try #require(UInt8(hex[index..<next], radix: 16)))
            index = next
        }
        let document = try BSONDocument(bytes: bytes)
        guard case .decimal128(let value) = try #require(document["d"]) else {
            Issue.record("\(hex): d is not a decimal128")
            return BSONDecimal128(low: 0, high: 0)
        }
        return value
    }

    @Test(arguments: corpusVectors)
    func corpusVectorIsWrittenAsItsCanonicalString(hex: String, expected: String) throws {
        let value = try Self.decimal(fromCanonicalBSON: hex)
        #expect(value.description == expected)
    }

    // MARK: - The corpus files (not committed: read from RSINIT_BSON_CORPUS)

    static let corpusDirectory = ProcessInfo.processInfo.environment["RSINIT_BSON_CORPUS"]

    /// A corpus file's rows (source/bson-corpus/bson-corpus.md, "Test File Format").
    struct CorpusFile: Decodable {
        struct Valid: Decodable {
            var description: String
            var canonicalBson: String
            var canonicalExtjson: String
            var degenerateBson: String?
            var degenerateExtjson: String?
            /// The canonical bits have no exact Extended JSON form (a NaN's sign or payload).
            var lossy: Bool?
        }
        struct DecodeError: Decodable {
            var description: String
            var bson: String
        }
        struct ParseError: Decodable {
            var description: String
            var string: String
        }
        var testKey: String?
        var valid: [Valid]?
        var decodeErrors: [DecodeError]?
        var parseErrors: [ParseError]?
    }

    static func bytes(hex: String) throws -> [UInt8] {
        let digits = Array(hex.utf8)
        try #require(digits.count % 2 == 0, "odd-length hex \(hex)")
        return try stride(from: 0, to: digits.count, by: 2).map { index in
            try #require(UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16))
        }
    }

    /// The `$numberDecimal` string of a corpus row's `{"d": {"$numberDecimal": "…"}}`.
    static func numberDecimal(_ extendedJSON: String, key: String) throws -> String {
        let object = try JSONDecoder().decode([String: [String: String]].self, from: Data(extendedJSON.utf8))
        return try #require(object[key]?["$numberDecimal"], "no $numberDecimal in \(extendedJSON)")
    }

    /// Every row of the corpus's decimal128-*.json files, both ways. `valid`: the canonical BSON decodes to a value
    /// written as the canonical string, and that value encodes back to the same bytes; the canonical and degenerate
    /// strings parse to those bits (a `lossy` row's strings parse to a value written as the canonical string: no
    /// string gives a NaN's sign or payload); a degenerate BSON decodes to a value written as the canonical string.
    /// `decodeErrors`: the bytes are refused. `parseErrors`: the string is refused.
    @Test(
        .enabled(
            if: corpusDirectory != nil,
            "set RSINIT_BSON_CORPUS to mongodb/specifications' source/bson-corpus/tests directory"
        )
    )
    func everyDecimal128FileOfTheCorpus() throws {
        let directory = URL(fileURLWithPath: try #require(Self.corpusDirectory))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var rows = (valid: 0, decodeErrors: 0, parseErrors: 0)
        for index in 1...7 {
            let name = "decimal128-\(index).json"
            let file = try decoder.decode(
                CorpusFile.self,
                from: try Data(contentsOf: directory.appendingPathComponent(name))
            )
            let key = file.testKey ?? "d"
            for row in file.valid ?? [] {
                try Self.checkValidRow(row, key: key, in: name)
                rows.valid += 1
            }
            for row in file.decodeErrors ?? [] {
                let bytes = try Self.bytes(hex: row.bson)
                #expect((try? BSONDocument(bytes: bytes)) == nil, "\(name): \(row.description): decoded")
                rows.decodeErrors += 1
            }
            for row in file.parseErrors ?? [] {
                #expect(
                    BSONDecimal128(string: row.string) == nil,
                    "\(name): \(row.description): \(row.string) must be refused"
                )
                rows.parseErrors += 1
            }
        }
        print(
            "BSON corpus decimal128: \(rows.valid) valid, \(rows.decodeErrors) decodeErrors, \(rows.parseErrors) parseErrors"
        )
        #expect(rows.valid >= 600 && rows.parseErrors >= 130, "read \(rows)")
    }

    static func checkValidRow(_ row: CorpusFile.Valid, key: String, in file: String) throws {
        let context = "\(file): \(row.description)"
        let canonicalBytes = try bytes(hex: row.canonicalBson)
        let document = try BSONDocument(bytes: canonicalBytes)
        guard case .decimal128(let value) = try #require(document[key], "\(context): no \(key)") else {
            Issue.record("\(context): \(key) is not a decimal128")
            return
        }
        let canonicalText = try numberDecimal(row.canonicalExtjson, key: key)
        // BSON → text, and the value → BSON.
        #expect(value.description == canonicalText, "\(context)")
        #expect(BSONDocument([(key, .decimal128(value))]).bytes == canonicalBytes, "\(context): encoded")
        if let degenerate = row.degenerateBson {
            let other = try BSONDocument(bytes: try bytes(hex: degenerate))
            guard case .decimal128(let degenerateValue) = try #require(other[key], "\(context): no \(key)") else {
                Issue.record("\(context): degenerate \(key) is not a decimal128")
                return
            }
            #expect(degenerateValue.description == canonicalText, "\(context): degenerate BSON")
        }
        // Text → BSON.
        let texts = [canonicalText] + (try row.degenerateExtjson.map { [try numberDecimal($0, key: key)] } ?? [])
        for text in texts {
            let parsed = BSONDecimal128(string: text)
            if row.lossy == true {
                #expect(parsed?.description == canonicalText, "\(context): \(text)")
            } else {
                #expect(parsed == value, "\(context): \(text)")
            }
        }
    }
}
