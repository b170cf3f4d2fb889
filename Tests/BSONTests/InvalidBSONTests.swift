import BSON
import RSInitTestUtils
import Testing

/// Malformed inputs (many from the BSON corpus "decodeErrors") must be rejected with an error, never a crash.
let invalidBSON: [(String, String)] = [
    ("empty input", ""),
    ("shorter than 5 bytes", "04000000"),
    ("length prefix too large", "0600000000"),
    ("length prefix too small", "0500000000 00"),
    ("no terminator", "0500000001"),
    ("element overruns document", "0B00000010610001000000"),
    ("unterminated key", "0A000000106161616100"),
    ("string length 0", "0C0000000261000000000000"),
    ("string length too long", "0D000000026100FFFFFF7F6100"),
    ("string without NUL", "0E00000002610002000000616200"),
    ("string invalid UTF-8", "0E00000002610002000000E90000"),
    ("key invalid UTF-8", "0C000000 10 FF00 01000000 00"),
    ("bool value 2", "090000000861000200"),
    ("unknown type 0x14", "0C0000001461000100000000"),
    ("nested document length too long", "1500000003610D00000010620001000000000000"),
    ("nested document not terminated", "1400000003610C0000001062000100000001 00"),
    ("binary length past end", "0F0000000578001000000000FFFF00"),
    ("binary subtype 2 bad inner length", "13000000057800060000000203000000FFFF00"),
    ("double truncated", "0B00000001640000000000"),
    ("ObjectId truncated", "0E000000076100010203040506070800"),
    ("code with scope length mismatch", "1C0000000F61001500000002000000780005000000000000000000"),
    ("regex unterminated options", "0C0000000B610061626300696D"),
]

@Suite struct InvalidBSONTests {
    @Test(arguments: invalidBSON.map(\.0))
    func rejectedWithAClearError(_ name: String) throws {
        let hex = invalidBSON.first { $0.0 == name }!.1
        let input = try #require(bytes(hex: hex))
        #expect(throws: BSONError.self) { try BSONDocument(bytes: input) }
    }

    /// The validator skips ASCII runs 8 bytes at a time; its verdict must still be Swift's own UTF-8 verdict
    /// wherever the first non-ASCII byte falls, in string values and in keys.
    @Test func utf8IsCheckedWhereverTheFirstNonASCIIByteFalls() {
        var generator = SystemRandomNumberGenerator()
        let tails: [[UInt8]] = [
            [0xE9], [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80], [0xF0, 0x9F, 0x98], [0xC0, 0x80],
            [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x80], [0xFF],
        ]
        for prefixLength in 0...20 {
            for tail in tails {
                for suffixLength in [0, 1, 9] {
                    let text =
                        [UInt8](repeating: UInt8(ascii: "a"), count: prefixLength) + tail
                        + [UInt8](repeating: UInt8(ascii: "b"), count: suffixLength)
                    let valid = String(validating: text, as: UTF8.self) != nil
                    // {"k": "<text>"}
                    var value: [UInt8] = [0, 0, 0, 0, 0x02, UInt8(ascii: "k"), 0]
                    value += withUnsafeBytes(of: Int32(text.count + 1).littleEndian, Array.init) + text + [0, 0]
                    value.replaceSubrange(0..<4, with: withUnsafeBytes(of: Int32(value.count).littleEndian, Array.init))
                    #expect(((try? BSONDocument(bytes: value)) != nil) == valid, "value \(text)")
                    // {"<text>": 1}
                    var key: [UInt8] = [0, 0, 0, 0, 0x10] + text + [0, 1, 0, 0, 0, 0]
                    key.replaceSubrange(0..<4, with: withUnsafeBytes(of: Int32(key.count).littleEndian, Array.init))
                    #expect(((try? BSONDocument(bytes: key)) != nil) == valid, "key \(text)")
                }
            }
        }
        for _ in 0..<2_000 {
            let text = (0..<Int.random(in: 0...40, using: &generator)).map { _ in
                Bool.random(using: &generator)
                    ? UInt8.random(in: 0x20...0x7E, using: &generator)
                    : UInt8.random(in: 0x80...0xFF, using: &generator)
            }
            var value: [UInt8] = [0, 0, 0, 0, 0x02, UInt8(ascii: "k"), 0]
            value += withUnsafeBytes(of: Int32(text.count + 1).littleEndian, Array.init) + text + [0, 0]
            value.replaceSubrange(0..<4, with: withUnsafeBytes(of: Int32(value.count).littleEndian, Array.init))
            #expect(((try? BSONDocument(bytes: value)) != nil) == (String(validating: text, as: UTF8.self) != nil))
        }
    }

    @Test func errorsNameTheOffset() {
        do {
            _ = try BSONDocument(bytes: bytes(hex: "090000000861000200") ?? [])
            Issue.record("accepted a boolean byte of 2")
        } catch {
            #expect(error.description.contains("boolean"))
            #expect(error.offset == 7)
        }
    }

    @Test func deepNestingIsCapped() {
        // 300 nested empty-ish documents: {"a":{"a":{...}}}
        var inner: [UInt8] = [5, 0, 0, 0, 0]
        for _ in 0..<300 {
            var doc: [UInt8] = [0, 0, 0, 0, 0x03, 0x61, 0]
            doc += inner
            doc.append(0)
            let n = UInt32(doc.count)
            doc[0] = UInt8(n & 0xFF)
            doc[1] = UInt8(n >> 8 & 0xFF)
            doc[2] = UInt8(n >> 16 & 0xFF)
            doc[3] = UInt8(n >> 24)
            inner = doc
        }
        #expect(throws: BSONError.self) { try BSONDocument(bytes: inner) }
    }
}
