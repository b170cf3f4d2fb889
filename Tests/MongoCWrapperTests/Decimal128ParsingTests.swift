import BSON
import MongoCWrapper
import Testing

/// Text → Decimal128 in pure Swift (``BSONDecimal128/init(string:)``, module BSON) against the BSON corpus's
/// decimal128-*.json vectors: valid strings (canonical and degenerate forms) give the canonical bits, parse errors
/// give nil. Embedded: a sample of the corpus (every row of the files, both ways, is
/// `BSONDecimal128TextTests.everyDecimal128FileOfTheCorpus` in BSONTests). Then libbson as a second opinion, and
/// inputs that must not trap.
@Suite struct Decimal128ParsingTests {
    /// (text, the 16 little-endian bytes of the canonical value in hex), from decimal128-1…7.json.
    static let validVectors: [(text: String, bits: String)] = [
        ("0E+9", "00000000000000000000000000005230"),
        ("29", "1D000000000000000000000000004030"),
        ("7E+4", "07000000000000000000000000004830"),
        ("7E4", "07000000000000000000000000004830"),
        ("0E-6176", "00000000000000000000000000000000"),
        ("0E-2147483647", "00000000000000000000000000000000"),
        ("-1", "010000000000000000000000000040B0"),
        ("-1E-6175", "01000000000000000000000000000280"),
        ("-0.00000000000000000000000000000001E-6143", "01000000000000000000000000000280"),
        ("-Infinity", "000000000000000000000000000000F8"),
        ("1.265", "F1040000000000000000000000003A30"),
        ("1.265E-0", "F1040000000000000000000000003A30"),
        ("1.0E+6112", "0A00000000000000000000000000FE5F"),
        ("1E+6112", "0A00000000000000000000000000FE5F"),
        ("-750", "EE0200000000000000000000000040B0"),
        ("0.0", "00000000000000000000000000003E30"),
        (".0", "00000000000000000000000000003E30"),
        ("Infinity", "00000000000000000000000000000078"),
        ("inf", "00000000000000000000000000000078"),
        ("-0.00", "00000000000000000000000000003CB0"),
        ("1.0E+91", "0A00000000000000000000000000F430"),
        ("10e+90", "0A00000000000000000000000000F430"),
        ("1.0E+2", "0A000000000000000000000000004230"),
        ("10e1", "0A000000000000000000000000004230"),
        ("-1.000000000000000000000000000000001E-6143", "010000000A5BC138938D44C64D310080"),
        ("-0.000000", "000000000000000000000000000034B0"),
        ("-0.000E-3", "000000000000000000000000000034B0"),
        ("-0E+6111", "0000000000000000000000000000FEDF"),
        ("1.000000000000000000000000000000000E+6144", "000000000A5BC138938D44C64D31FE5F"),
        ("1E+6144", "000000000A5BC138938D44C64D31FE5F"),
        ("1.0E+5", "0A000000000000000000000000004830"),
        ("10e4", "0A000000000000000000000000004830"),
        ("-123.45", "39300000000000000000000000003CB0"),
        ("1.000000000000000000E+6129", "000064A7B3B6E00D000000000000FE5F"),
        ("1E+6129", "000064A7B3B6E00D000000000000FE5F"),
        ("1.000000E+6117", "40420F0000000000000000000000FE5F"),
        ("0.00000", "00000000000000000000000000003630"),
        ("-12", "0C0000000000000000000000000040B0"),
        ("1.0000000E+6118", "8096980000000000000000000000FE5F"),
        ("1E+6118", "8096980000000000000000000000FE5F"),
        ("7E+5", "07000000000000000000000000004A30"),
        ("7E5", "07000000000000000000000000004A30"),
        ("-0E+2147483647", "0000000000000000000000000000FEDF"),
        ("0.000000", "00000000000000000000000000003430"),
        ("1.000000000000000000000000000000000E+999", "000000000a5bc138938d44c64d31cc37"),
        (
            "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "000000000a5bc138938d44c64d31cc37"
        ),
        ("1.000000000000000000000000000E+6138", "000000E83C80D09F3C2E3B030000FE5F"),
        ("1E+6138", "000000E83C80D09F3C2E3B030000FE5F"),
        ("1.000000000000000000000000000000001E-6143", "010000000A5BC138938D44C64D310000"),
        ("0E+4", "00000000000000000000000000004830"),
        ("0.0E+5", "00000000000000000000000000004830"),
        ("1.0", "0A000000000000000000000000003E30"),
        ("10e-1", "0A000000000000000000000000003E30"),
        ("8.81125000000001349436E-1548", "3C17258419D710C42F00000000000024"),
        ("-9.99999999999999999999999999999999E-6144", "FFFFFFFF095BC138938D44C64D310080"),
        ("-999999999999999999999999999999999e-6176", "FFFFFFFF095BC138938D44C64D310080"),
        ("1.000000000000E+6123", "0010A5D4E8000000000000000000FE5F"),
        ("1.0000000000000E+6124", "00A0724E18090000000000000000FE5F"),
        ("1E+6124", "00A0724E18090000000000000000FE5F"),
        ("-0", "000000000000000000000000000040B0"),
        ("-0.", "000000000000000000000000000040B0"),
        ("NaN", "0000000000000000000000000000007C"),
        ("1E-6176", "01000000000000000000000000000000"),
        ("9.999999999999999999999999999999999E+6144", "FFFFFFFF638E8D37C087ADBE09EDFF5F"),
        ("nan", "0000000000000000000000000000007C"),
        ("nAn", "0000000000000000000000000000007C"),
        ("+infinity", "00000000000000000000000000000078"),
        ("infinity", "00000000000000000000000000000078"),
        ("infiniTY", "00000000000000000000000000000078"),
        ("inF", "00000000000000000000000000000078"),
        ("-infinity", "000000000000000000000000000000F8"),
        ("-infiniTy", "000000000000000000000000000000F8"),
        ("-inf", "000000000000000000000000000000F8"),
        ("-inF", "000000000000000000000000000000F8"),
        ("10E-6177", "01000000000000000000000000000000"),
        ("0E+6111", "0000000000000000000000000000FE5F"),
        ("0E+2147483647", "0000000000000000000000000000FE5F"),
        ("-00000.", "000000000000000000000000000040B0"),
        ("0.000000000000000000000000000000001E-6143", "01000000000000000000000000000000"),
        ("1e-6176", "01000000000000000000000000000000"),
        ("0E-8000", "00000000000000000000000000000000"),
        ("0E-6177", "00000000000000000000000000000000"),
        ("0E+6112", "0000000000000000000000000000FE5F"),
        ("0E+6144", "0000000000000000000000000000FE5F"),
        ("0E+8000", "0000000000000000000000000000FE5F"),
    ]
    /// Strings the corpus lists under parseErrors (syntax, and values only inexact rounding could store).
    static let parseErrors: [String] = [
        "-.E+",
        "Na",
        "1.3.4",
        "1.23abc",
        "-Na",
        "-1.11111111111111111111111111111234549",
        "e+1",
        "xNaN",
        "-7e10000",
        "+.e+1",
        "NaNs",
        "-.E",
        "123,65",
        " +1",
        "ten",
        "",
        ".0000.",
        "1e1.",
        "1 ",
        "++1",
        ".E+1",
        "0sNaN",
        "7e12356789012x",
        " 1",
        "--32.4",
        "1E--1",
        "..3",
        "u0e5a",
        "01.35-",
        "1e-",
        "-1.11111111111111111111111111111234551",
        "E+1",
        "1E",
        "..",
        "12 ",
        "i",
        "1..2",
        "-0Inf",
        "32.4E+-21",
        "-.e",
    ]

    static func decimal(littleEndianHex hex: String) throws -> BSONDecimal128 {
        let bytes = try (0..<16).map { index in
            let start = hex.index(hex.startIndex, offsetBy: index * 2)
            return try #require(UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16))
        }
        let low = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let high = bytes[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return BSONDecimal128(low: low, high: high)
    }

    @Test func corpusStringsParseToTheirCanonicalBits() throws {
        for vector in Self.validVectors {
            let expected = try Self.decimal(littleEndianHex: vector.bits)
            let parsed = BSONDecimal128(string: vector.text)
            #expect(parsed == expected, "\(vector.text)")
        }
    }

    @Test func corpusParseErrorsAreRefused() {
        for text in Self.parseErrors {
            #expect(BSONDecimal128(string: text) == nil, "\(text)")
        }
    }

    /// Where both accept a string, libbson gives the same bits. They differ, by design, where the specification
    /// and libbson 1.23 differ: libbson rounds inexact strings (the specification refuses them), refuses more than
    /// 34 digits even when the extra ones are trailing zeros (exact), and misreads exponents of more than 4
    /// digits; so the exponents here have at most 4 digits, and only the strings both accept are compared.
    @Test func agreesWithLibBSONWhereBothAccept() {
        var generator = SystemRandomNumberGenerator()
        let pieces = ["0", "1", "9", "00", "1234567890123", ".", "+", "-"]
        let exponents = ["", "", "E", "e5", "E+6144", "E-6176", "E6111", "E-6143", "e+0", "E-35", "E+6112", "E-6200"]
        var compared = 0
        var onlyOurs = 0
        for _ in 0..<20_000 {
            let count = Int.random(in: 1...5, using: &generator)
            let text =
                (0..<count).map { _ in pieces.randomElement(using: &generator) ?? "" }.joined()
                + (exponents.randomElement(using: &generator) ?? "")
            let ours = BSONDecimal128(string: text)
            let theirs = BSONDecimal128.libbsonParsed(text)
            if let ours, let theirs {
                #expect(ours == theirs, "\(text)")
                compared += 1
            } else if ours != nil {
                onlyOurs += 1
            }
        }
        #expect(compared > 1000, "compared \(compared), accepted by us only \(onlyOurs)")
    }

    @Test func hugeAndHostileInputsAreNilOrExactNeverATrap() {
        #expect(BSONDecimal128(string: "1E+99999999999999999999999999") == nil)
        #expect(BSONDecimal128(string: "0E+99999999999999999999999999")?.description == "0E+6111")
        #expect(BSONDecimal128(string: "1E-99999999999999999999999999") == nil)
        #expect(BSONDecimal128(string: "1" + String(repeating: "0", count: 100_000)) == nil)
        #expect(BSONDecimal128(string: "1" + String(repeating: "0", count: 6200)) == nil)
        #expect(
            BSONDecimal128(string: "1" + String(repeating: "0", count: 6144))?.description
                == "1.000000000000000000000000000000000E+6144"
        )
        #expect(BSONDecimal128(string: "") == nil)
        #expect(BSONDecimal128(string: "-") == nil)
        #expect(BSONDecimal128(string: "1\u{0}") == nil)
        #expect(BSONDecimal128(string: "１") == nil)  // a full-width digit is not a digit here
    }
}
