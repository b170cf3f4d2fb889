import BSON
import MongoCWrapper
import Testing

/// The pure-Swift Decimal128 text (module BSON) against libbson's `bson_decimal128_to_string`.
@Suite struct Decimal128LibBSONTests {
    /// Bit patterns at every boundary of the encoding (both combination forms, NaN/Infinity, the largest
    /// coefficient and one past it, extreme exponents, the plain/scientific switch), then random ones: the pure-Swift
    /// text equals libbson's.
    @Test func matchesLibBSONOnEdgeAndRandomBitPatterns() {
        var patterns: [BSONDecimal128] = []
        let highs: [UInt64] = [
            0, 0x3040_0000_0000_0000, 0xB040_0000_0000_0000, 0x7C00_0000_0000_0000, 0x7800_0000_0000_0000,
            0xF800_0000_0000_0000, 0x6000_0000_0000_0000, 0x6C10_0000_0000_0000, 0x5FFF_FFFF_FFFF_FFFF,
            0x0001_ED09_BEAD_87C0, 0x0001_ED09_BEAD_87C1, 0x302C_0000_0000_0000, 0x3032_0000_0000_0000,
            0x3034_0000_0000_0000, 0x0000_0000_0000_0001, 0xDFFF_FFFF_FFFF_FFFF, 0x7BFF_FFFF_FFFF_FFFF,
        ]
        let lows: [UInt64] = [0, 1, 9, 10, 100, 0x378D_8E63_FFFF_FFFF, 0x378D_8E64_0000_0000, .max, 123_456_789]
        for high in highs { for low in lows { patterns.append(BSONDecimal128(low: low, high: high)) } }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            patterns.append(BSONDecimal128(low: generator.next(), high: generator.next()))
            // Canonical-looking values: a small exponent range around the plain/scientific switch.
            let exponent = UInt64(6176 - 40 + Int.random(in: 0...50, using: &generator))
            patterns.append(
                BSONDecimal128(
                    low: generator.next(),
                    high: (generator.next() & 0x8000_0000_0000_0000) | exponent << 49
                        | (generator.next() & 0x0000_0FFF_FFFF_FFFF)
                )
            )
        }
        var mismatches: [String] = []
        for value in patterns where value.description != value.libbsonDescription {
            // libbson writes at most 36 characters of sign, digits and point, so it drops the last digit of a
            // non-canonical 35-digit coefficient ("-1.0384593717069636810316918948888576E+6145"); the pure-Swift
            // text keeps every digit. Only those differ.
            if value.description.prefix(while: { $0 != "E" }).filter(\.isNumber).count > 34 { continue }
            mismatches.append("\(value.high)/\(value.low): \(value.description) vs \(value.libbsonDescription)")
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
    }
}
