import Testing

@testable import BSON

/// Resume tokens compare like the events they name only if their KeyString integers keep the numbers' order, byte
/// for byte. Every length boundary (each power of two, ±1), zero, both signs and both large-magnitude forms
/// (`UInt64` beyond `Int64.max`, `Int64.min`) are encoded and must come out strictly increasing.
@Suite struct KeyStringOrderTests {
    /// Non-negative values through `appendInteger`, negative ones through `appendNegative(|v|)`.
    static func encoded(_ value: Int64) -> [UInt8] {
        var out: [UInt8] = []
        if value >= 0 {
            KeyString.appendInteger(value.magnitude, to: &out)
        } else {
            KeyString.appendNegative(value.magnitude, to: &out)
        }
        return out
    }

    static func encoded(unsigned value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        KeyString.appendInteger(value, to: &out)
        return out
    }

    @Test func signedIntegersKeepTheirOrder() {
        var values: Set<Int64> = [0, 1, -1, Int64.max, Int64.min, Int64.min + 1, Int64.max - 1]
        for bit in 0..<63 {
            let power = Int64(1) << bit
            for value in [power - 1, power, power + 1] where value >= 0 {
                values.insert(value)
                values.insert(-value)
            }
        }
        let sorted = values.sorted()
        let encodings = sorted.map { Self.encoded($0) }
        for (index, pair) in zip(encodings, encodings.dropFirst()).enumerated() {
            #expect(
                pair.0.lexicographicallyPrecedes(pair.1),
                "\(sorted[index]) must encode before \(sorted[index + 1])"
            )
        }
    }

    @Test func unsignedIntegersBeyondInt64MaxKeepTheirOrder() {
        var values: [UInt64] = [0, 1, UInt64(Int64.max) - 1, UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max]
        for bit in 0..<64 {
            let power = UInt64(1) << bit
            values += [power - 1, power, power &+ 1]
        }
        let sorted = Array(Set(values)).sorted()
        let encodings = sorted.map { Self.encoded(unsigned: $0) }
        for (index, pair) in zip(encodings, encodings.dropFirst()).enumerated() {
            #expect(
                pair.0.lexicographicallyPrecedes(pair.1),
                "\(sorted[index]) must encode before \(sorted[index + 1])"
            )
        }
    }
}
