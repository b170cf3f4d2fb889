import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// The validator behind ``BSONDocument/init(bytes:)`` against a table of our own covering every class of the
/// BSON corpus's `decodeErrors`, against libbson's verdict (``LibBSONVerdict``) on the same bytes, against the
/// corpus itself when `RSINIT_BSON_CORPUS` names its `tests` directory, and in a differential fuzz.
@Suite struct BSONValidationTests {
    // MARK: - Building blocks

    static func le32(_ value: Int32) -> [UInt8] {
        let raw = UInt32(bitPattern: value)
        return (0..<4).map { UInt8(truncatingIfNeeded: raw >> (8 * UInt32($0))) }
    }

    /// A document around `body` (its elements) with a correct length prefix.
    static func doc(_ body: [UInt8]) -> [UInt8] { le32(Int32(body.count + 5)) + body + [0] }

    /// One element keyed "a".
    static func element(_ type: UInt8, _ value: [UInt8]) -> [UInt8] { [type, 0x61, 0] + value }

    static func string(_ text: [UInt8]) -> [UInt8] { le32(Int32(text.count + 1)) + text + [0] }

    static let oid: [UInt8] = Array(repeating: 0xAB, count: 12)
    static let scope = doc(element(0x10, le32(1)))

    static func codeWithScope(total: Int32? = nil, code: [UInt8] = string([0x78]), scope: [UInt8] = scope) -> [UInt8] {
        let body = code + scope
        return le32(total ?? Int32(body.count + 4)) + body
    }

    // MARK: - The table

    struct Fixture: CustomStringConvertible {
        var name: String
        var bytes: [UInt8]
        var valid: Bool
        /// libbson 1.23's verdict when it differs from ours (documented: its UTF-8 check misses invalid sequences
        /// in values, it does not look inside a nested document without its 0x00, it has no nesting limit).
        var libbson: Bool?
        var description: String { name }
    }

    static let fixtures: [Fixture] = {
        var f: [Fixture] = []
        func valid(_ name: String, _ bytes: [UInt8]) { f.append(Fixture(name: name, bytes: bytes, valid: true)) }
        func invalid(_ name: String, _ bytes: [UInt8], libbson: Bool? = nil) {
            f.append(Fixture(name: name, bytes: bytes, valid: false, libbson: libbson))
        }

        // Valid: one of every element type, plus the corner cases the corpus lists as valid.
        valid("empty document", doc([]))
        valid("double", doc(element(0x01, [0, 0, 0, 0, 0, 0, 0xF0, 0x3F])))
        valid("empty string", doc(element(0x02, string([]))))
        valid("string with an embedded NUL", doc(element(0x02, string([0x61, 0, 0x62]))))
        valid("multi-byte UTF-8 string", doc(element(0x02, string(Array("é日🎉".utf8)))))
        valid("embedded document", doc(element(0x03, doc(element(0x0A, [])))))
        valid("array", doc(element(0x04, doc([0x10, 0x30, 0] + le32(7)))))
        valid("empty binary", doc(element(0x05, le32(0) + [0])))
        valid("binary subtype 0x80", doc(element(0x05, le32(2) + [0x80, 1, 2])))
        valid("binary subtype 2 (old) with inner length", doc(element(0x05, le32(6) + [2] + le32(2) + [1, 2])))
        valid("undefined", doc(element(0x06, [])))
        valid("ObjectId", doc(element(0x07, oid)))
        valid("false", doc(element(0x08, [0])))
        valid("true", doc(element(0x08, [1])))
        valid("datetime", doc(element(0x09, Array(repeating: 0xFF, count: 8))))
        valid("null", doc(element(0x0A, [])))
        valid("regex", doc(element(0x0B, [0x5E, 0x61, 0, 0x69, 0])))
        valid("empty regex", doc(element(0x0B, [0, 0])))
        valid("DBPointer", doc(element(0x0C, string([0x64, 0x2E, 0x63]) + oid)))
        valid("code", doc(element(0x0D, string([0x78]))))
        valid("symbol", doc(element(0x0E, string([0x78]))))
        valid("code with scope", doc(element(0x0F, codeWithScope())))
        valid(
            "code with scope, empty code and scope",
            doc(element(0x0F, codeWithScope(code: string([]), scope: doc([]))))
        )
        valid("int32", doc(element(0x10, le32(-1))))
        valid("timestamp", doc(element(0x11, Array(repeating: 0x01, count: 8))))
        valid("int64", doc(element(0x12, Array(repeating: 0x80, count: 8))))
        valid("decimal128", doc(element(0x13, Array(repeating: 0x00, count: 16))))
        valid("maxKey", doc(element(0x7F, [])))
        valid("minKey", doc(element(0xFF, [])))
        valid("UTF-8 key", doc([0x10] + Array("ü".utf8) + [0] + le32(1)))
        valid("empty key", doc([0x10, 0] + le32(1)))

        // Top level (corpus top.json).
        invalid("fewer than 5 bytes", [4, 0, 0, 0])
        invalid("size 4 with 5 bytes", [4, 0, 0, 0, 0])
        invalid("byte count zero, non-empty input", [0, 0, 0, 0, 0])
        invalid("stated length exceeds the bytes", le32(6) + [0])
        invalid("stated length below the bytes (trailing garbage)", le32(5) + [0, 0])
        invalid("negative stated length", le32(-5) + [0])
        invalid("EOO is 0x01", le32(5) + [1])
        invalid("EOO is 0xFF", le32(5) + [0xFF])
        invalid("missing EOO", le32(8) + element(0x0A, []))
        invalid("type 0x00 before the end", doc([0x00, 0x61, 0, 0x0A, 0x61, 0]))
        invalid("type 0x14 (low invalid range)", doc(element(0x14, [])))
        invalid("type 0x80 (high invalid range)", doc(element(0x80, [])))
        invalid("key not terminated (truncated mid-key)", le32(7) + [0x0A, 0x61, 0x62])
        invalid("key with invalid UTF-8", doc([0x0A, 0xC0, 0xAF, 0]))
        invalid("key with a lone continuation byte", doc([0x0A, 0x80, 0]))

        // Fixed-size values cut short (double, int32, int64, datetime, timestamp, ObjectId, decimal128, bool).
        for (type, size) in [(0x01, 8), (0x09, 8), (0x10, 4), (0x11, 8), (0x12, 8), (0x07, 12), (0x13, 16), (0x08, 1)]
            as [(UInt8, Int)]
        {
            invalid(
                "type 0x\(String(type, radix: 16)) truncated",
                doc(element(type, Array(repeating: 0, count: size - 1)))
            )
        }

        // Strings, code and symbols (string.json, code.json, symbol.json).
        for type: UInt8 in [0x02, 0x0D, 0x0E] {
            let t = "0x" + String(type, radix: 16)
            invalid("\(t) length 0 (no NUL either)", doc(element(type, le32(0))))
            invalid("\(t) length -1", doc(element(type, le32(-1) + [0])))
            invalid("\(t) length Int32.min", doc(element(type, le32(.min) + [0])))
            invalid("\(t) length eats the document's terminator", le32(12) + element(type, le32(2) + [0x61]) + [0])
            invalid("\(t) length longer than the document", doc(element(type, le32(100) + [0x61, 0])))
            invalid("\(t) not NUL-terminated", doc(element(type, le32(2) + [0x61, 0x62])))
            invalid("\(t) empty but an extra NUL", doc(element(type, le32(1) + [0, 0])))
            invalid("\(t) invalid UTF-8 (overlong)", doc(element(type, string([0xC0, 0xAF]))), libbson: true)
            invalid("\(t) invalid UTF-8 (truncated sequence)", doc(element(type, string([0xE2, 0x82]))), libbson: true)
            invalid(
                "\(t) invalid UTF-8 (beyond U+10FFFF)",
                doc(element(type, string([0xF4, 0x90, 0x80, 0x80]))),
                libbson: true
            )
            invalid("\(t) invalid UTF-8 (0xFF)", doc(element(type, string([0xFF]))), libbson: true)
        }

        // Binary (binary.json), the issue's trap: a negative length.
        invalid("binary length longer than the document", doc(element(0x05, le32(100) + [0, 1])))
        invalid("binary length -1", doc(element(0x05, le32(-1) + [0])))
        invalid("binary length -5", doc(element(0x05, le32(-5) + [0, 1, 2, 3, 4])))
        invalid("binary length Int32.min", doc(element(0x05, le32(.min) + [0])))
        invalid("binary without its subtype", doc(element(0x05, le32(0))))
        invalid("binary subtype 2, inner length too long", doc(element(0x05, le32(6) + [2] + le32(3) + [1, 2])))
        invalid("binary subtype 2, inner length too short", doc(element(0x05, le32(6) + [2] + le32(1) + [1, 2])))
        invalid("binary subtype 2, inner length -1", doc(element(0x05, le32(6) + [2] + le32(-1) + [1, 2])))
        invalid("binary subtype 2, shorter than its inner length", doc(element(0x05, le32(3) + [2, 0, 0, 0])))

        // Booleans (boolean.json).
        invalid("boolean 2", doc(element(0x08, [2])))
        invalid("boolean 0xFF (-1)", doc(element(0x08, [0xFF])))

        // Documents and arrays (document.json, array.json).
        for type: UInt8 in [0x03, 0x04] {
            let t = type == 0x03 ? "document" : "array"
            let inner = doc(element(0x0A, []))
            var long = inner
            long[0] += 1
            invalid("\(t) length too long (eats the outer terminator)", doc(element(type, long)))
            var short = inner
            short[0] -= 1
            invalid("\(t) length too short (leaks its terminator)", doc(element(type, short)))
            invalid("\(t) length -1", doc(element(type, le32(-1) + [0])))
            invalid("\(t) length 4", doc(element(type, le32(4) + [0])))
            invalid("\(t) with a bad string length inside", doc(element(type, doc(element(0x02, le32(-1) + [0])))))
            invalid("\(t) not terminated by 0x00", doc(element(type, le32(5) + [1])), libbson: true)
        }
        invalid("NUL inside a sub-document key", doc(element(0x03, le32(9) + [0x0A, 0x61, 0, 0x62, 0])))

        // Code with scope (code_w_scope.json).
        invalid("code-w-scope total length 0", doc(element(0x0F, codeWithScope(total: 0))))
        invalid("code-w-scope total length -1", doc(element(0x0F, codeWithScope(total: -1))))
        invalid("code-w-scope total below the minimum (13)", doc(element(0x0F, codeWithScope(total: 13))))
        invalid("code-w-scope total truncates the scope", doc(element(0x0F, codeWithScope(total: 20))))
        invalid("code-w-scope total clips the outer document", doc(element(0x0F, codeWithScope(total: 24))))
        invalid("code-w-scope total longer than the outer document", doc(element(0x0F, codeWithScope(total: 200))))
        invalid("code-w-scope string length too short", doc(element(0x0F, codeWithScope(code: le32(1) + [0x78, 0]))))
        invalid(
            "code-w-scope string length clips the scope",
            doc(element(0x0F, codeWithScope(code: le32(5) + [0x78, 0])))
        )
        invalid("code-w-scope string length negative", doc(element(0x0F, codeWithScope(code: le32(-1) + [0x78, 0]))))
        invalid(
            "code-w-scope string length beyond the field",
            doc(element(0x0F, codeWithScope(code: le32(50) + [0x78, 0])))
        )
        invalid(
            "code-w-scope scope with a bad string length",
            doc(element(0x0F, codeWithScope(scope: doc(element(0x02, le32(0))))))
        )
        invalid(
            "code-w-scope invalid UTF-8 in the code",
            doc(element(0x0F, codeWithScope(code: string([0xC0, 0xAF])))),
            libbson: true
        )

        // DBPointer (dbpointer.json).
        invalid("DBPointer string length -1", doc(element(0x0C, le32(-1) + [0] + oid)))
        invalid("DBPointer string length 0", doc(element(0x0C, le32(0) + oid)))
        invalid("DBPointer string not NUL-terminated", doc(element(0x0C, le32(2) + [0x61, 0x62] + oid)))
        invalid("DBPointer ObjectId below the minimum", doc(element(0x0C, string([0x61]) + [1, 2])))
        invalid("DBPointer ObjectId truncated", doc(element(0x0C, string([0x61]) + Array(oid.prefix(11)))))
        invalid("DBPointer invalid UTF-8", doc(element(0x0C, string([0xC3, 0x28]) + oid)), libbson: true)

        // Regular expressions (regex.json).
        invalid("regex pattern not terminated", le32(9) + element(0x0B, [0x61, 0x62]) + [0])
        invalid("regex options not terminated", le32(10) + element(0x0B, [0x61, 0, 0x69]) + [0])
        invalid("regex pattern with invalid UTF-8", doc(element(0x0B, [0xC0, 0xAF, 0, 0])), libbson: true)

        // Deeper than rsinit's limit: a defence against stack exhaustion that libbson does not have.
        var deep = doc([])
        for _ in 0...BSONDocument.maximumNestingDepth { deep = doc(element(0x03, deep)) }
        invalid("nesting deeper than \(BSONDocument.maximumNestingDepth)", deep, libbson: true)
        return f
    }()

    @Test(arguments: fixtures)
    func fixture(_ fixture: Fixture) throws {
        let ours = (try? BSONDocument(bytes: fixture.bytes)) != nil
        #expect(ours == fixture.valid, "rsinit's validator")
        let libbson = LibBSONVerdict.isValid(fixture.bytes)
        #expect(libbson == (fixture.libbson ?? fixture.valid), "libbson's verdict")
        if fixture.name.hasPrefix("nesting") { return }  // libbson has no nesting limit; rsinit keeps its own
        let emulated = (try? BSONDocument(bytes: fixture.bytes, options: .libbson123)) != nil
        #expect(emulated == libbson, "rsinit's libbson 1.23 emulation")
        // Deliberately conditional: only what the structural check accepts can be decoded (never a trap).
        if let document = try? BSONDocument(bytes: fixture.bytes, options: .structural) {
            _ = decodeEverything(document)
        }
    }

    // MARK: - The MongoDB BSON corpus (not committed: read from RSINIT_BSON_CORPUS)

    static let corpusDirectory = ProcessInfo.processInfo.environment["RSINIT_BSON_CORPUS"]

    @Test(
        .enabled(
            if: corpusDirectory != nil,
            "set RSINIT_BSON_CORPUS to mongodb/specifications' source/bson-corpus/tests directory"
        )
    )
    func bsonCorpus() throws {
        let directory = URL(fileURLWithPath: try #require(Self.corpusDirectory))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }
        try #require(!files.isEmpty, "no *.json in \(directory.path)")
        var validCount = 0
        var errorCount = 0
        var libbsonDisagreements: [String] = []
        for file in files.sorted() {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            for case let test as [String: Any] in json["valid"] as? [Any] ?? [] {
                for key in ["canonical_bson", "degenerate_bson"] {
                    guard let hex = test[key] as? String else { continue }
                    let input = try #require(bytes(hex: hex))
                    let description = "\(file): \(test["description"] ?? "?") (\(key))"
                    let document = try? BSONDocument(bytes: input)
                    #expect(document != nil, "valid case rejected: \(description)")
                    if let document { _ = decodeEverything(document) }
                    if !LibBSONVerdict.isValid(input) { libbsonDisagreements.append("libbson rejects \(description)") }
                    validCount += 1
                }
            }
            for case let test as [String: Any] in json["decodeErrors"] as? [Any] ?? [] {
                let hex = try #require(test["bson"] as? String)
                let input = try #require(bytes(hex: hex))
                let description = "\(file): \(test["description"] ?? "?")"
                #expect((try? BSONDocument(bytes: input)) == nil, "decode error accepted: \(description)")
                if LibBSONVerdict.isValid(input) { libbsonDisagreements.append("libbson accepts \(description)") }
                errorCount += 1
            }
        }
        print("BSON corpus: \(validCount) valid and \(errorCount) decodeErrors cases, all as expected by rsinit")
        for line in libbsonDisagreements { print("BSON corpus: \(line)") }
        #expect(validCount > 0 && errorCount > 0)
    }

    // MARK: - Differential fuzz

    /// A million random and mutated documents: whatever rsinit accepts libbson accepts too (rsinit is never the
    /// more lenient), every document accepted even by the structural check decodes completely, and where libbson
    /// alone accepts, the cases are reported by cause (its known 1.23 leniencies, emulated, or other).
    @Test func differentialFuzzAgainstLibBSON() async throws {
        // CPU-heavy: off the cooperative pool, which other tests' awaits need.
        let result = try await onDedicatedThread {
            BSONDifferentialFuzz.run(cases: 1_000_000, seed: 0xB50_F022, libbson: LibBSONVerdict.isValid)
        }
        print("BSON differential fuzz: \(result)")
        for line in result.examples { print("BSON differential fuzz: \(line)") }
        #expect(result.strictAcceptedLibBSONRejected == 0)
        #expect(result.strictValid > 50_000, "the fuzz must reach valid documents too")
        #expect(result.strictValid < result.cases - 200_000, "and invalid ones")
        #expect(result.valuesDecoded > result.strictValid)
    }
}
