/// A BSON Timestamp: seconds since the epoch (`t`) and an ordinal within that second (`i`); ordered as the oplog is.
public struct BSONTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var seconds: UInt32
    public var increment: UInt32

    public init(seconds: UInt32, increment: UInt32) {
        self.seconds = seconds
        self.increment = increment
    }

    /// The 64-bit value BSON stores: `(t << 32) | i`.
    public init(rawValue: UInt64) {
        self.seconds = UInt32(truncatingIfNeeded: rawValue >> 32)
        self.increment = UInt32(truncatingIfNeeded: rawValue)
    }

    public var rawValue: UInt64 { UInt64(seconds) << 32 | UInt64(increment) }  // trap-checked: UInt32 → UInt64 widens

    public static func < (lhs: BSONTimestamp, rhs: BSONTimestamp) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "Timestamp(\(seconds), \(increment))" }
}

/// A 12-byte ObjectId.
public struct BSONObjectID: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Fails unless exactly 12 bytes are given.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        self.bytes = bytes
    }

    /// Parses 24 hexadecimal digits (either case).
    public init?(hex: String) {
        guard hex.utf8.count == 24, let bytes = HexCoding.decode(hex) else { return nil }
        self.bytes = bytes
    }

    /// The 24 lowercase hex digits.
    public var hex: String { HexCoding.encode(bytes) }
    public var description: String { "ObjectId(\"\(hex)\")" }
}

/// Binary data with its BSON subtype (0 generic, 4 UUID, 0x80–0xFF user defined, …).
public struct BSONBinary: Sendable, Hashable {
    public var subtype: UInt8
    public var data: [UInt8]

    public init(subtype: UInt8, data: [UInt8]) {
        self.subtype = subtype
        self.data = data
    }

    public static let generic: UInt8 = 0x00
    public static let function: UInt8 = 0x01
    public static let binaryOld: UInt8 = 0x02
    public static let uuidOld: UInt8 = 0x03
    public static let uuid: UInt8 = 0x04
    public static let md5: UInt8 = 0x05
    public static let encrypted: UInt8 = 0x06
    public static let column: UInt8 = 0x07
    public static let sensitive: UInt8 = 0x08
}

/// A BSON regular expression: pattern and option letters.
public struct BSONRegularExpression: Sendable, Hashable {
    public var pattern: String
    public var options: String

    public init(pattern: String, options: String) {
        self.pattern = pattern
        self.options = options
    }
}

/// IEEE 754-2008 decimal128, kept as its two 64-bit halves (BSON's little-endian layout). `description` writes it as
/// text (`BSONDecimal128+Text.swift`), `BSONDecimal128(string:)` parses text (`BSONDecimal128+Parsing.swift`), both in
/// pure Swift.
public struct BSONDecimal128: Sendable, Hashable {
    public var low: UInt64
    public var high: UInt64

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }
}

enum HexCoding {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])  // trap-checked: index < 16
            out.append(digits[Int(b & 0x0F)])  // trap-checked: index < 16
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ hex: String) -> [UInt8]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
