/// One RESP2 value. Null and empty stay distinct (`$-1` vs `$0`, `*-1` vs `*0`).
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    /// `nil` is the null bulk string (`$-1`).
    case bulkString([UInt8]?)
    /// `nil` is the null array (`*-1`).
    case array([RESPValue]?)

    /// A bulk string from text.
    public static func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }

    /// The value as text (simple or bulk string), if it is one.
    public var string: String? {
        switch self {
        case .simpleString(let s): return s
        case .bulkString(let b?): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }

    public var integer: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }
}

/// Malformed RESP input; the connection must be dropped.
public struct RESPError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
