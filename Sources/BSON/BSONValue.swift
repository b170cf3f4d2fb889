/// One BSON value of any type libbson can produce, including the deprecated ones.
///
/// Doubles compare by bit pattern so that `-0.0`, NaN payloads and infinities survive round trips and can be tested
/// for exact equality.
public enum BSONValue: Sendable, Hashable {
    case double(Double)
    case string(String)
    case document(BSONDocument)
    /// An array; BSON stores it as a document keyed "0", "1", …, which the encoder regenerates.
    case array([BSONValue])
    case binary(BSONBinary)
    /// Deprecated type 0x06.
    case undefined
    case objectID(BSONObjectID)
    case bool(Bool)
    /// UTC datetime in milliseconds since the Unix epoch (may be negative or beyond year 9999).
    case datetime(Int64)
    case null
    case regex(BSONRegularExpression)
    /// Deprecated type 0x0C.
    case dbPointer(namespace: String, id: BSONObjectID)
    case javascript(String)
    /// Deprecated type 0x0E.
    case symbol(String)
    /// Deprecated type 0x0F.
    case javascriptWithScope(code: String, scope: BSONDocument)
    case int32(Int32)
    case timestamp(BSONTimestamp)
    case int64(Int64)
    case decimal128(BSONDecimal128)
    case minKey
    case maxKey

    public static func == (lhs: BSONValue, rhs: BSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.double(let a), .double(let b)): return a.bitPattern == b.bitPattern
        case (.string(let a), .string(let b)): return a == b
        case (.document(let a), .document(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.binary(let a), .binary(let b)): return a == b
        case (.undefined, .undefined), (.null, .null), (.minKey, .minKey), (.maxKey, .maxKey): return true
        case (.objectID(let a), .objectID(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.datetime(let a), .datetime(let b)): return a == b
        case (.regex(let a), .regex(let b)): return a == b
        case (.dbPointer(let n1, let i1), .dbPointer(let n2, let i2)): return n1 == n2 && i1 == i2
        case (.javascript(let a), .javascript(let b)): return a == b
        case (.symbol(let a), .symbol(let b)): return a == b
        case (.javascriptWithScope(let c1, let s1), .javascriptWithScope(let c2, let s2)): return c1 == c2 && s1 == s2
        case (.int32(let a), .int32(let b)): return a == b
        case (.timestamp(let a), .timestamp(let b)): return a == b
        case (.int64(let a), .int64(let b)): return a == b
        case (.decimal128(let a), .decimal128(let b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(typeByte)
        switch self {
        case .double(let v): hasher.combine(v.bitPattern)
        case .string(let v), .javascript(let v), .symbol(let v): hasher.combine(v)
        case .document(let v): hasher.combine(v)
        case .array(let v): hasher.combine(v)
        case .binary(let v): hasher.combine(v)
        case .undefined, .null, .minKey, .maxKey: break
        case .objectID(let v): hasher.combine(v)
        case .bool(let v): hasher.combine(v)
        case .datetime(let v), .int64(let v): hasher.combine(v)
        case .regex(let v): hasher.combine(v)
        case .dbPointer(let n, let i):
            hasher.combine(n)
            hasher.combine(i)
        case .javascriptWithScope(let c, let s):
            hasher.combine(c)
            hasher.combine(s)
        case .int32(let v): hasher.combine(v)
        case .timestamp(let v): hasher.combine(v)
        case .decimal128(let v): hasher.combine(v)
        }
    }

    /// The BSON element type byte of this value.
    public var typeByte: UInt8 {
        switch self {
        case .double: return 0x01
        case .string: return 0x02
        case .document: return 0x03
        case .array: return 0x04
        case .binary: return 0x05
        case .undefined: return 0x06
        case .objectID: return 0x07
        case .bool: return 0x08
        case .datetime: return 0x09
        case .null: return 0x0A
        case .regex: return 0x0B
        case .dbPointer: return 0x0C
        case .javascript: return 0x0D
        case .symbol: return 0x0E
        case .javascriptWithScope: return 0x0F
        case .int32: return 0x10
        case .timestamp: return 0x11
        case .int64: return 0x12
        case .decimal128: return 0x13
        case .minKey: return 0xFF
        case .maxKey: return 0x7F
        }
    }
}

extension BSONValue {
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var documentValue: BSONDocument? {
        if case .document(let d) = self { return d }
        return nil
    }
    public var arrayValue: [BSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    public var timestampValue: BSONTimestamp? {
        if case .timestamp(let t) = self { return t }
        return nil
    }
    public var objectIDValue: BSONObjectID? {
        if case .objectID(let o) = self { return o }
        return nil
    }
    /// Any numeric value (int32, int64, double) as Int64, if it is integral and in range.
    public var int64Value: Int64? {
        switch self {
        case .int32(let v): return Int64(v)  // trap-checked: widens
        case .int64(let v): return v
        case .double(let v): return Int64(exactly: v)
        default: return nil
        }
    }
    /// Any numeric value as Double.
    public var doubleValue: Double? {
        switch self {
        case .int32(let v): return Double(v)
        case .int64(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }
    /// MongoDB's truthiness for command flags such as `ok`: non-zero numbers and `true`.
    public var isTruthy: Bool {
        switch self {
        case .bool(let b): return b
        case .int32(let v): return v != 0
        case .int64(let v): return v != 0
        case .double(let v): return v != 0
        case .null, .undefined: return false
        default: return true
        }
    }
}

extension BSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    /// Integer literals become int32 when they fit, int64 otherwise (as the shell does).
    public init(integerLiteral value: Int) {
        // trap-checked: Int → Int64
        if let small = Int32(exactly: value) { self = .int32(small) } else { self = .int64(Int64(value)) }
    }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: BSONValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
}

extension BSONValue: ExpressibleByDictionaryLiteral {
    /// A nested document literal, keeping the literal's order.
    public init(dictionaryLiteral elements: (String, BSONValue)...) {
        self = .document(BSONDocument(elements.map { ($0.0, $0.1) }))
    }
}
