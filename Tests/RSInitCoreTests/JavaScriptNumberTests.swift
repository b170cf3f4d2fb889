import BSON
import Foundation
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// event-format.md §1.3: numeric ids are written as ECMAScript `Number::toString` (what `JSON.stringify` writes),
/// in the channel suffix and in `d._id`.
@Suite struct JavaScriptNumberTests {
    // The spec's examples, then the layout's edges (exponent -6/-7, 21/22), subnormals, extremes.
    static let table: [(BSONValue, String)] = [
        (.int32(42), "42"), (.double(7.0), "7"), (.double(2.5), "2.5"), (.double(0.1), "0.1"),
        (.double(1e-6), "0.000001"), (.double(1e-7), "1e-7"), (.double(1e21), "1e+21"),
        (.double(0x1p60), "1152921504606847000"), (.double(1.2345678901234568e20), "123456789012345680000"),
        (.int64(1 << 53 + 1), "9007199254740992"), (.int64(.min), "-9223372036854776000"),
        (.double(-0.0), "0"), (.double(.nan), "null"), (.double(.infinity), "null"), (.double(-.infinity), "null"),
        (.int32(.min), "-2147483648"), (.int32(.max), "2147483647"), (.int64(.max), "9223372036854776000"),
        (.int64(1 << 53), "9007199254740992"), (.int64(-(1 << 53)), "-9007199254740992"),
        (.int64(1 << 53 - 1), "9007199254740991"), (.int64(0), "0"),
        (.double(0x1p63), "9223372036854776000"), (.double(0x1p64), "18446744073709552000"),
        (.double(9.999999999999999e20), "999999999999999900000"), (.double(1e20), "100000000000000000000"),
        (.double(1.5e21), "1.5e+21"), (.double(1e22), "1e+22"), (.double(123e-20), "1.23e-18"),
        (.double(0.000001234), "0.000001234"), (.double(0.0000001234), "1.234e-7"), (.double(-1e-7), "-1e-7"),
        (.double(.leastNonzeroMagnitude), "5e-324"), (.double(-.leastNonzeroMagnitude), "-5e-324"),
        (.double(2.2250738585072014e-308), "2.2250738585072014e-308"),
        (.double(.greatestFiniteMagnitude), "1.7976931348623157e+308"),
        (.double(0.30000000000000004), "0.30000000000000004"),
        (.double(123.456), "123.456"), (.double(-1.5), "-1.5"), (.double(1e100), "1e+100"),
        (.double(Double(bitPattern: 0x4340_0000_0000_0001)), "9007199254740994"), (.double(4.35), "4.35"),
        (.double(0.5), "0.5"),
        (.double(100), "100"), (.double(1e-5), "0.00001"), (.double(123456789.125), "123456789.125"),
    ]

    @Test func specExamplesAndEdges() {
        for (value, expected) in Self.table {
            #expect(RedisOplogFormat.idStringify(value) == "~" + expected, "idStringify(\(value))")
            if case .double(let d) = value, !d.isFinite {
                continue  // d._id of NaN/±Infinity is EJSON {"$InfNaN": …}
            }
            #expect(RedisOplogFormat.meteorEJSON(value) == expected, "EJSON(\(value))")
        }
    }

    @Test func decimal128IdsGoToTheCollectionChannelOnly() {
        let id = BSONValue.decimal128(BSONDecimal128(string: "1.5")!)
        #expect(RedisOplogFormat.idStringify(id) == nil)
        #expect(RedisOplogFormat.channels(for: event(.insert, id, ["_id"]), prefix: "") == ["foo.bar"])
    }

    /// A million random bit patterns (every exponent, subnormals, NaN payloads) and 100,000 random int64s against
    /// JavaScript itself when `node` exists, else against ``ReferenceFormatter`` (a second, independent
    /// implementation). The reference that ran is printed; a mismatch fails either way.
    @Test func millionRandomBitPatternsAgainstAReference() async throws {
        // CPU-heavy and waiting on node: off the cooperative pool, which other tests' awaits need.
        let outcome = try await onDedicatedThread { try Self.compareWithReference() }
        print("JavaScriptNumberTests: reference = \(outcome.reference), \(outcome.count) values")
        #expect(outcome.fallbackMismatches.isEmpty, "fallback differs from node: \(outcome.fallbackMismatches)")
        for line in outcome.mismatches { Issue.record(Comment(rawValue: line)) }
        #expect(outcome.mismatchCount == 0)
        #expect(outcome.count == 1_100_000)
    }

    struct Outcome: Sendable {
        var count: Int
        var reference: String
        var mismatchCount: Int
        /// The first ten mismatches.
        var mismatches: [String]
        /// Where the fallback reference disagreed with node (checked on every 50th value when node ran).
        var fallbackMismatches: [String]
    }

    static func compareWithReference() throws -> Outcome {
        var generator = SplitMix64(seed: 0x5EED_1E13)
        var inputs: [JavaScriptReference.Input] = []
        inputs.reserveCapacity(1_100_000)
        for index in 0..<1_000_000 {
            var bits = generator.next()
            // A quarter of the draws target the interesting ranges: integral values, 2^53…1e21, near exponents -7/21.
            switch index % 8 {
            case 0: bits = Double(Int64(bitPattern: bits) >> Int(bits % 60)).bitPattern
            case 1: bits = (bits & 0x800F_FFFF_FFFF_FFFF) | (UInt64(1075 + Int(bits >> 52 & 31)) << 52)
            default: break
            }
            inputs.append(.double(bits))
        }
        for _ in 0..<100_000 {
            let bits = generator.next()
            inputs.append(.int64(Int64(bitPattern: bits) >> Int(bits & 63)))
        }
        let ours = inputs.map { input -> String in
            switch input {
            case .double(let bits): return JavaScriptNumber.string(Double(bitPattern: bits))
            case .int64(let value): return String(RedisOplogFormat.meteorEJSON(.int64(value)))
            }
        }
        var fallbackMismatches: [String] = []
        let reference: [String]
        let referenceName: String
        if let node = JavaScriptReference.nodePath(),
            let fromNode = try JavaScriptReference.stringify(inputs, node: node)
        {
            reference = fromNode
            referenceName = "\(node) (JSON.stringify)"
            // The fallback must agree with JavaScript too, so that it is a reference worth having.
            for index in stride(from: 0, to: min(inputs.count, fromNode.count), by: 50)
            where ReferenceFormatter.format(inputs[index]) != fromNode[index] {
                fallbackMismatches.append("\(inputs[index])")
            }
        } else {
            reference = inputs.map(ReferenceFormatter.format)
            referenceName = "node not found: the second Swift implementation"
        }
        var outcome = Outcome(
            count: inputs.count,
            reference: referenceName,
            mismatchCount: 0,
            mismatches: [],
            fallbackMismatches: fallbackMismatches
        )
        guard reference.count == inputs.count else {
            outcome.mismatchCount = inputs.count
            outcome.mismatches = ["the reference returned \(reference.count) results for \(inputs.count) inputs"]
            return outcome
        }
        for index in inputs.indices where ours[index] != reference[index] {
            outcome.mismatchCount += 1
            if outcome.mismatches.count < 10 {
                outcome.mismatches.append("\(inputs[index]): rsinit \(ours[index]), reference \(reference[index])")
            }
        }
        return outcome
    }
}

/// A deterministic 64-bit generator (SplitMix64), so that a failure can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The second implementation of `Number::toString`, independent of Swift's `description`: the shortest
/// correctly rounded `%.*e` (glibc's exact printf) that `strtod` reads back as the same double, checking the
/// neighbouring digit strings too (at a power of two the closest decimal can fall outside the rounding interval
/// while a neighbour falls inside), then ECMA-262's layout written out again here.
enum ReferenceFormatter {
    static func format(_ input: JavaScriptReference.Input) -> String {
        switch input {
        case .double(let bits): return format(Double(bitPattern: bits))
        case .int64(let value): return format(Double(value))
        }
    }

    static func format(_ value: Double) -> String {
        if value.isNaN || value.isInfinite { return "null" }
        if value == 0 { return "0" }
        let sign = value < 0 ? "-" : ""
        let magnitude = value.magnitude
        var low = 1
        var high = 17
        var best: (digits: String, exponent: Int)?
        while low <= high {
            let precision = (low + high) / 2
            if let found = roundTripping(magnitude, precision: precision) {
                best = found
                high = precision - 1
            } else {
                low = precision + 1
            }
        }
        guard let (found, exponent) = best else { return "?" }
        var digits = found
        while digits.count > 1 && digits.hasSuffix("0") { digits.removeLast() }
        // value = d1.d2…dk × 10^exponent, i.e. 0.d1…dk × 10^(exponent + 1).
        let k = digits.count
        let n = exponent + 1
        let text: String
        if k <= n && n <= 21 {
            text = digits + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            text = String(digits.prefix(n)) + "." + String(digits.dropFirst(n))
        } else if -6 < n && n <= 0 {
            text = "0." + String(repeating: "0", count: -n) + digits
        } else {
            let mantissa = k == 1 ? digits : String(digits.prefix(1)) + "." + String(digits.dropFirst())
            text = mantissa + "e" + (n - 1 < 0 ? "-" : "+") + String((n - 1).magnitude)
        }
        return sign + text
    }

    /// `precision` significant digits that read back as `value`: the correctly rounded ones, else a neighbour.
    private static func roundTripping(_ value: Double, precision: Int) -> (String, Int)? {
        let printed = String(format: "%.\(precision - 1)e", value)
        guard let e = printed.firstIndex(of: "e"), let exponent = Int(printed[printed.index(after: e)...]) else {
            return nil
        }
        let digits = printed[..<e].filter { $0 != "." }
        guard let mantissa = UInt64(digits) else { return nil }
        var candidates = [mantissa]
        if mantissa > 0 { candidates.append(mantissa - 1) }
        candidates.append(mantissa + 1)
        for candidate in candidates {
            var text = String(candidate)
            var candidateExponent = exponent
            if text.count > precision {  // 99…9 + 1
                text.removeLast()
                candidateExponent += 1
            }
            guard text.count == precision, text.first != "0" else { continue }
            let parsed = strtod(text + "e" + String(candidateExponent - precision + 1), nil)
            if parsed == value { return (text, candidateExponent) }
        }
        return nil
    }
}
