import BSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Decimal128 → text in pure Swift (module BSON): the BSON corpus's decimal128 vectors (their canonical BSON and
/// canonical `$numberDecimal` string), the corpus files themselves when `RSINIT_BSON_CORPUS` names its `tests`
/// directory. The differential test against libbson's `bson_decimal128_to_string` is in MongoCWrapperTests
/// (``Decimal128LibBSONTests``).
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

    /// Every `valid` case of the corpus's decimal128-*.json files, when the corpus is present (not committed).
    @Test func everyDecimal128FileOfTheCorpus() throws {
        guard let directory = getenv("RSINIT_BSON_CORPUS").map({ String(cString: $0) }) else { return }
        var checked = 0
        for file in (1...7).map({ "\(directory)/decimal128-\($0).json" }) {
            guard let handle = fopen(file, "r") else { continue }
            var text: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = fread(&buffer, 1, buffer.count, handle)
                if count <= 0 { break }
                text.append(contentsOf: buffer.prefix(count))
            }
            fclose(handle)
            // Each valid case: "canonical_bson": "<hex>", then its "canonical_extjson" with $numberDecimal.
            let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
            var pendingHex: String?
            for line in lines {
                if let range = line.firstRange(of: #""canonical_bson": ""#) {
                    pendingHex = String(line[range.upperBound...].prefix { $0 != "\"" })
                } else if let hex = pendingHex,
                    let range = line.firstRange(of: #"$numberDecimal\" : \""#)
                        ?? line.firstRange(of: #"$numberDecimal\": \""#)
                {
                    let expected = String(line[range.upperBound...].prefix { $0 != "\\" })
                    let value = try Self.decimal(fromCanonicalBSON: hex)
                    #expect(value.description == expected, "\(file): \(hex)")
                    checked += 1
                    pendingHex = nil
                }
            }
        }
        #expect(checked > 0, "RSINIT_BSON_CORPUS is set but no decimal128 case was read")
    }
}
