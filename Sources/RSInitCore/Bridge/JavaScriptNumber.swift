/// ECMAScript `Number::toString(10)` (ECMA-262 §6.1.6.1.20), as `JSON.stringify` writes a number: the text
/// Meteor's `MongoID.idStringify` puts after `~` and `EJSON.stringify` puts in `d._id` (event-format.md §1.3).
///
/// The digits are the shortest that round-trip, the closest to the value when several are as short (Swift's
/// `Double.description` computes exactly those, so they are taken from it); the layout is the specification's:
/// plain decimal for a decimal exponent `n` with `-6 < n <= 21`, else `d.ddde±x`; never a trailing `.0`; `-0` is
/// `0`; NaN and ±Infinity have no JSON number and are written `null`.
public enum JavaScriptNumber {
    /// 2^53: every integer of smaller magnitude is exact in a double and prints as its decimal digits.
    private static let exactIntegerLimit: Double = 9_007_199_254_740_992

    /// Appends the JSON text of `value` (`null` for NaN and ±Infinity).
    static func append(_ value: Double, to out: inout [UInt8]) {
        guard value.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        if value == 0 {
            out.append(UInt8(ascii: "0"))  // +0 and -0 alike
            return
        }
        // Fast path (nearly every numeric id): an integral value below 2^53 is its decimal digits.
        if value.magnitude < exactIntegerLimit, value == value.rounded(.towardZero),
            let integer = Int64(exactly: value)
        {
            RedisOplogFormat.appendDecimal(integer, to: &out)
            return
        }
        var digits: [UInt8] = []
        digits.reserveCapacity(17)
        let exponent = shortestDigits(of: value.magnitude, into: &digits)
        if value < 0 { out.append(UInt8(ascii: "-")) }
        layOut(digits: digits, exponent: exponent, to: &out)
    }

    /// The JSON text of `value`.
    public static func string(_ value: Double) -> String {
        var out: [UInt8] = []
        append(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes the shortest round-trip decimal digits of a finite, positive `value` (no leading or trailing zeros)
    /// into `digits` and returns `n` such that `value = 0.d1d2…dk × 10^n`.
    ///
    /// Swift's description is `ddd.ddd` or `d.ddde±x`, with the shortest round-trip digits in either form.
    static func shortestDigits(of value: Double, into digits: inout [UInt8]) -> Int {
        let text = value.description.utf8
        var pointPosition: Int?  // digits (leading zeros included) before the '.'
        var written = 0  // digits seen, leading zeros included
        var leadingZeros = 0
        var exponent = 0
        var exponentSign = 1
        var inExponent = false
        for byte in text {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = byte &- UInt8(ascii: "0")
                if inExponent {
                    // At most 3 exponent digits (|exponent| <= 324): no overflow.
                    exponent = exponent &* 10 &+ Int(digit)  // trap-checked: UInt8 widens
                } else {
                    if digits.isEmpty && digit == 0 {
                        leadingZeros += 1
                    } else {
                        digits.append(byte)
                    }
                    written += 1
                }
            case UInt8(ascii: "."): pointPosition = written
            case UInt8(ascii: "e"), UInt8(ascii: "E"): inExponent = true
            case UInt8(ascii: "-"): if inExponent { exponentSign = -1 }
            default: break  // "+"
            }
        }
        while digits.last == UInt8(ascii: "0") { digits.removeLast() }
        // value = 0.<digits> × 10^n, where the point sat after `pointPosition` written digits.
        let point = pointPosition ?? written
        return point - leadingZeros + exponentSign * exponent
    }

    /// ECMA-262 §6.1.6.1.20 steps 6–10 for digits `d1…dk` (k ≥ 1) and exponent `n`.
    static func layOut(digits: [UInt8], exponent n: Int, to out: inout [UInt8]) {
        let k = digits.count
        if k <= n && n <= 21 {
            out.append(contentsOf: digits)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n - k))
        } else if 0 < n && n <= 21 {
            out.append(contentsOf: digits[..<n])
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: digits[n...])
        } else if -6 < n && n <= 0 {
            out.append(UInt8(ascii: "0"))
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -n))
            out.append(contentsOf: digits)
        } else {
            out.append(digits.first ?? UInt8(ascii: "0"))
            if k > 1 {
                out.append(UInt8(ascii: "."))
                out.append(contentsOf: digits[1...])
            }
            out.append(UInt8(ascii: "e"))
            let e = n - 1
            out.append(e < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
            RedisOplogFormat.appendDecimal(UInt64(e.magnitude), to: &out)  // trap-checked: UInt → UInt64
        }
    }
}
