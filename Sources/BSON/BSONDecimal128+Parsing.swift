/// Text → Decimal128 in pure Swift, per the BSON Decimal128 specification ("From String"): IEEE 754-2008 decimal128
/// in the binary integer decimal encoding, exact or not at all.
extension BSONDecimal128 {
    /// The largest coefficient: 34 decimal digits.
    static let maximumDigits = 34
    /// The exponent range of a coefficient written without a decimal point (`q` in IEEE 754).
    static let exponentRange = -6176...6111

    /// Parses a decimal string: an optional sign, then `Infinity`/`Inf` or `NaN` (any case), or digits with an
    /// optional decimal point and an optional exponent (`E`/`e`, optional sign, digits). Nil when the text is not
    /// such a number, or when it cannot be stored exactly: more than 34 significant digits, or an exponent out of
    /// range, that only dropping non-zero digits could fit (the specification forbids inexact rounding; zeros and
    /// out-of-range zeros are clamped, as the specification and the BSON corpus require).
    public init?(string text: String) {
        let bytes = Array(text.utf8)
        var index = 0
        var negative = false
        if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            negative = first == UInt8(ascii: "-")
            index = 1
        }
        let rest = String(decoding: bytes[index...], as: UTF8.self).lowercased()
        if rest == "infinity" || rest == "inf" {
            self.init(low: 0, high: (negative ? 1 << 63 : 0) | 0x7800_0000_0000_0000)
            return
        }
        if rest == "nan" {
            self.init(low: 0, high: 0x7C00_0000_0000_0000)
            return
        }
        guard let parts = Self.scan(bytes[index...]) else { return nil }
        guard let (coefficient, exponent) = Self.fit(digits: parts.digits, exponent: parts.exponent) else {
            return nil
        }
        // trap-checked: fit returns an exponent in exponentRange, so the biased exponent is 0...12287
        let biased = UInt64(exponent + Self.exponentBias)
        // A coefficient below 10^34 < 2^113 fits the first form: 49 bits in `high`, 64 in `low`.
        let high = (negative ? 1 << 63 : 0) | biased << 49 | UInt64(truncatingIfNeeded: coefficient >> 64)
        self.init(low: UInt64(truncatingIfNeeded: coefficient), high: high)
    }

    /// The significant digits (no leading zeros; empty for zero) and the exponent of the last one. Nil when the
    /// text is not a decimal number.
    private static func scan(_ bytes: ArraySlice<UInt8>) -> (digits: [UInt8], exponent: Int)? {
        var digits: [UInt8] = []
        var sawDigit = false
        var sawPoint = false
        var digitsAfterPoint = 0
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: ".") {
                guard !sawPoint else { return nil }
                sawPoint = true
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                sawDigit = true
                if sawPoint { digitsAfterPoint += 1 }
                if !digits.isEmpty || byte != UInt8(ascii: "0") { digits.append(byte - UInt8(ascii: "0")) }
            } else {
                break
            }
            index += 1
        }
        guard sawDigit else { return nil }
        var exponent = 0
        if index < bytes.endIndex {
            guard bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") else { return nil }
            guard let value = exponentValue(bytes[(index + 1)...]) else { return nil }
            exponent = value
        }
        return (digits, exponent - digitsAfterPoint)
    }

    /// An exponent: an optional sign and at least one digit. Saturates far beyond any representable value (a
    /// thousand-digit exponent is out of range, not an overflow).
    private static func exponentValue(_ bytes: ArraySlice<UInt8>) -> Int? {
        var index = bytes.startIndex
        var negative = false
        if index < bytes.endIndex, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        guard index < bytes.endIndex else { return nil }
        var value = 0
        for byte in bytes[index...] {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            // trap-checked: a digit, 0-9
            value = min(value * 10 + Int(byte - UInt8(ascii: "0")), 1_000_000_000)
        }
        return negative ? -value : value
    }

    /// The coefficient and exponent that store `digits × 10^exponent` exactly, or nil. Trailing zeros move into
    /// the exponent (too many digits, exponent too small); zeros are appended when the exponent is too large
    /// (clamping); a zero takes the nearest exponent in range.
    private static func fit(digits: [UInt8], exponent: Int) -> (UInt128, Int)? {
        guard !digits.isEmpty else {
            return (0, min(max(exponent, exponentRange.lowerBound), exponentRange.upperBound))
        }
        var digits = digits[...]
        var exponent = exponent
        // Too many digits, or an exponent below the range: drop trailing zeros (exact), never others.
        while digits.count > maximumDigits || exponent < exponentRange.lowerBound {
            guard digits.last == 0 else { return nil }
            digits.removeLast()
            exponent += 1
        }
        var coefficient: UInt128 = 0
        for digit in digits { coefficient = coefficient * 10 + UInt128(digit) }  // trap-checked: < 10^34
        var count = digits.count
        // An exponent above the range: append zeros while the coefficient has room (clamping), else overflow.
        while exponent > exponentRange.upperBound {
            guard count < maximumDigits else { return nil }
            coefficient *= 10
            count += 1
            exponent -= 1
        }
        return (coefficient, exponent)
    }
}
