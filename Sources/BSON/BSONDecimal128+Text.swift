/// Decimal128 as text, in pure Swift: the algorithm of the BSON Decimal128 specification (IEEE 754-2008 decimal128,
/// binary integer decimal encoding), the same output as libbson's `bson_decimal128_to_string`.
extension BSONDecimal128: CustomStringConvertible {
    /// The exponent bias: the stored exponent minus 6176 is the power of ten.
    static let exponentBias = 6176

    /// The canonical string: "NaN", "Infinity", "-Infinity", plain notation ("1.50", "-0", "0.001234") when the
    /// exponent is at most 0 and the adjusted exponent at least -6, scientific notation ("1E+3", "1.050E+4",
    /// "1E-6176") otherwise.
    public var description: String {
        let negative = high >> 63 == 1
        let combination = (high >> 58) & 0x1F
        let biasedExponent: UInt64
        let coefficient: UInt128
        if combination >> 3 == 0b11 {
            if combination == 0x1F { return "NaN" }
            if combination == 0x1E { return negative ? "-Infinity" : "Infinity" }
            // The "11" form: the implied coefficient exceeds 10^34 - 1, so the value is a (non-canonical) zero.
            biasedExponent = (high >> 47) & 0x3FFF
            coefficient = 0
        } else {
            biasedExponent = (high >> 49) & 0x3FFF
            // 113 bits; a coefficient above 10^34 - 1 is written as it is, as libbson and the BSON corpus do
            // ("Scientific - Full": 5192296858534827628530496329220095).
            coefficient = UInt128(high & 0x1_FFFF_FFFF_FFFF) << 64 | UInt128(low)
        }
        let exponent = Int(biasedExponent) - Self.exponentBias  // trap-checked: 14 bits
        let digits = Self.decimalDigits(coefficient)
        let adjustedExponent = exponent + (digits.count - 1)

        var out = negative ? "-" : ""
        if exponent > 0 || adjustedExponent < -6 {
            out.unicodeScalars.append(Unicode.Scalar(digits[0]))
            if digits.count > 1 {
                out += "."
                out += String(decoding: digits.dropFirst(), as: UTF8.self)
            }
            out += "E" + (adjustedExponent >= 0 ? "+" : "") + String(adjustedExponent)
        } else if exponent == 0 {
            out += String(decoding: digits, as: UTF8.self)
        } else {
            let pointPosition = digits.count + exponent  // digits before the decimal point
            if pointPosition > 0 {
                out += String(decoding: digits.prefix(pointPosition), as: UTF8.self)
                out += "."
                out += String(decoding: digits.dropFirst(pointPosition), as: UTF8.self)
            } else {
                out += "0."
                out += String(repeating: "0", count: -pointPosition)
                out += String(decoding: digits, as: UTF8.self)
            }
        }
        return out
    }

    /// The ASCII digits of `value`, most significant first ("0" for zero).
    static func decimalDigits(_ value: UInt128) -> [UInt8] {
        if value == 0 { return [UInt8(ascii: "0")] }
        var digits: [UInt8] = []
        digits.reserveCapacity(34)
        var rest = value
        while rest > 0 {
            let (quotient, remainder) = rest.quotientAndRemainder(dividingBy: 10)
            digits.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: remainder))
            rest = quotient
        }
        digits.reverse()
        return digits
    }
}
