/// A change-stream resume token (`{_data: <uppercase hex>}`) in MongoDB's v2 KeyString layout (change-stream fact
/// sheet §5): clusterTime, version, tokenType (event 128 / high-water mark 0), txnOpIndex, fromInvalidate,
/// collection UUID (null when none), eventIdentifier, end byte `04`.
///
/// ``encode(_:)`` builds tokens (the double issues them); ``decode(_:)`` reads the fixed prefix back (the bridge
/// reads clusterTime and txnOpIndex; the double checks fromInvalidate and the type). `_data` strings of one
/// version compare like the events they name (uppercase hex keeps the byte order).
public struct ChangeStreamResumeToken: Sendable, Hashable {
    public enum TokenType: Int, Sendable {
        case highWaterMark = 0
        case event = 128
    }

    public var clusterTime: BSONTimestamp
    public var version: Int
    public var tokenType: TokenType
    public var txnOpIndex: Int
    public var fromInvalidate: Bool
    /// The collection UUID (16 bytes), absent for HWM tokens and database-level events.
    public var collectionUUID: [UInt8]?
    /// `{operationType, documentKey}` (CRUD) or `{operationType[, operationDescription]}` (commands); nil for HWM.
    public var eventIdentifier: BSONDocument?

    public init(
        clusterTime: BSONTimestamp,
        version: Int = 2,
        tokenType: TokenType,
        txnOpIndex: Int = 0,
        fromInvalidate: Bool = false,
        collectionUUID: [UInt8]? = nil,
        eventIdentifier: BSONDocument? = nil
    ) {
        self.clusterTime = clusterTime
        self.version = version
        self.tokenType = tokenType
        self.txnOpIndex = txnOpIndex
        self.fromInvalidate = fromInvalidate
        self.collectionUUID = collectionUUID
        self.eventIdentifier = eventIdentifier
    }

    /// A v2 high-water-mark token at `clusterTime`.
    public static func highWaterMark(_ clusterTime: BSONTimestamp) -> ChangeStreamResumeToken {
        ChangeStreamResumeToken(clusterTime: clusterTime, tokenType: .highWaterMark)
    }

    /// The `_data` hex string (uppercase).
    public var data: String {
        var out: [UInt8] = [0x82]
        KeyString.appendBigEndian(clusterTime.seconds, to: &out)
        KeyString.appendBigEndian(clusterTime.increment, to: &out)
        KeyString.appendInteger(UInt64(clamping: version), to: &out)
        if version >= 1 {
            KeyString.appendInteger(UInt64(clamping: tokenType.rawValue), to: &out)
        }
        KeyString.appendInteger(UInt64(clamping: txnOpIndex), to: &out)
        if version >= 1 { out.append(fromInvalidate ? 0x6F : 0x6E) }
        if let collectionUUID {
            KeyString.appendValue(.binary(BSONBinary(subtype: 4, data: collectionUUID)), to: &out)
        } else if version >= 2 {
            out.append(0x14)
        }
        if let eventIdentifier { KeyString.appendValue(.document(eventIdentifier), to: &out) }
        out.append(0x04)
        return HexCoding.encode(out).uppercased()
    }

    /// `{_data: …}`, as the server sends it.
    public var document: BSONDocument { ["_data": .string(data)] }

    /// Reads the prefix of a token document (`_data` up to fromInvalidate, and the UUID when present); nil when
    /// `_data` is missing, not hex, or not in the v0–v2 layout.
    public static func decode(_ token: BSONDocument) -> ChangeStreamResumeToken? {
        guard let hex = token["_data"]?.stringValue else { return nil }
        return decode(data: hex)
    }

    /// Reads the prefix of a `_data` hex string (either case).
    public static func decode(data hex: String) -> ChangeStreamResumeToken? {
        // The prefix and the UUID fit in the first 43 bytes (86 hex digits, an 8-byte txnOpIndex included): only
        // those are decoded.
        let prefix = hex.utf8.count > 86 ? String(hex.utf8.prefix(86)) ?? hex : hex
        guard let bytes = HexCoding.decode(prefix), bytes.count >= 9, bytes[0] == 0x82 else { return nil }
        var reader = KeyString.Reader(bytes: bytes, offset: 1)
        guard let seconds = reader.uint32(), let increment = reader.uint32(), let version = reader.integer(),
            version <= 2
        else { return nil }
        var type = TokenType.event
        if version >= 1 {
            guard let raw = reader.integer().flatMap({ Int(exactly: $0) }), let parsed = TokenType(rawValue: raw)
            else { return nil }
            type = parsed
        }
        guard let index = reader.integer().flatMap({ Int(exactly: $0) }) else { return nil }
        var fromInvalidate = false
        if version >= 1 {
            guard let flag = reader.byte(), flag == 0x6E || flag == 0x6F else { return nil }
            fromInvalidate = flag == 0x6F
        }
        var uuid: [UInt8]?
        if reader.peek() == 0x5A, let bytes = reader.binData() { uuid = bytes }
        return ChangeStreamResumeToken(
            clusterTime: BSONTimestamp(seconds: seconds, increment: increment),
            version: Int(truncatingIfNeeded: version),  // ≤ 2 (checked above)
            tokenType: type,
            txnOpIndex: index,
            fromInvalidate: fromInvalidate,
            collectionUUID: uuid
        )
    }
}

/// The subset of MongoDB's KeyString V1 (ascending) that resume tokens use. Non-negative integers, strings,
/// ObjectIds, BinData, booleans, null, timestamps, dates, objects and arrays are encoded as mongod does; negative
/// and fractional numbers use an approximation that keeps their order among themselves but is not mongod's
/// byte-for-byte (and no `_typeBits` are produced).
enum KeyString {
    static func appendBigEndian(_ value: UInt32, to out: inout [UInt8]) {
        out.append(contentsOf: [
            UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
            UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value),
        ])
    }

    /// `29` for zero, else `2B + n − 1` and the n big-endian bytes of `value << 1`.
    static func appendInteger(_ value: UInt64, to out: inout [UInt8]) {
        guard value > 0 else {
            out.append(0x29)
            return
        }
        let shifted = value.multipliedReportingOverflow(by: 2)
        guard !shifted.overflow else {
            // Beyond the 8-byte form: mongod switches to its large-magnitude encoding; keep the order.
            out.append(0x33)
            appendBigEndian(UInt32(truncatingIfNeeded: value >> 32), to: &out)
            appendBigEndian(UInt32(truncatingIfNeeded: value), to: &out)
            return
        }
        var bytes: [UInt8] = []
        var rest = shifted.partialValue
        while rest > 0 {
            bytes.insert(UInt8(truncatingIfNeeded: rest), at: 0)
            rest >>= 8
        }
        out.append(0x2B + UInt8(truncatingIfNeeded: bytes.count - 1))  // 1 to 8 bytes
        out.append(contentsOf: bytes)
    }

    /// Negative integers: `27 − (n − 1)` and the complemented bytes of `|value| << 1` (so larger magnitudes sort
    /// first).
    static func appendNegative(_ magnitude: UInt64, to out: inout [UInt8]) {
        let shifted = magnitude.multipliedReportingOverflow(by: 2)
        guard !shifted.overflow else {
            // Int64.min: mongod's large-magnitude form; keep it first.
            out.append(0x1F)
            appendBigEndian(~UInt32(truncatingIfNeeded: magnitude >> 32), to: &out)
            appendBigEndian(~UInt32(truncatingIfNeeded: magnitude), to: &out)
            return
        }
        var bytes: [UInt8] = []
        var rest = shifted.partialValue
        while rest > 0 {
            bytes.insert(UInt8(truncatingIfNeeded: rest), at: 0)
            rest >>= 8
        }
        out.append(0x27 - UInt8(truncatingIfNeeded: bytes.count - 1))  // 1 to 8 bytes
        out.append(contentsOf: bytes.map { ~$0 })
    }

    /// The type byte written before a field name inside an object.
    static func genericType(_ value: BSONValue) -> UInt8 {
        switch value {
        case .int32, .int64, .double, .decimal128: return 0x1E
        case .string, .symbol: return 0x3C
        case .document: return 0x46
        case .array: return 0x50
        case .binary: return 0x5A
        case .objectID: return 0x64
        case .bool: return 0x6E
        case .datetime: return 0x78
        case .timestamp: return 0x82
        case .null, .undefined: return 0x14
        case .minKey: return 0x0A
        case .maxKey: return 0xF0
        default: return 0x3C
        }
    }

    static func appendString(_ text: String, to out: inout [UInt8]) {
        for byte in text.utf8 {
            out.append(byte)
            if byte == 0 { out.append(0xFF) }
        }
        out.append(0x00)
    }

    static func appendValue(_ value: BSONValue, to out: inout [UInt8]) {
        switch value {
        case .null, .undefined: out.append(0x14)
        case .minKey: out.append(0x0A)
        case .maxKey: out.append(0xF0)
        case .bool(let flag): out.append(flag ? 0x6F : 0x6E)
        case .int32(let number): appendNumber(Int64(number), to: &out)  // trap-checked: Int32 to Int64 widens
        case .int64(let number): appendNumber(number, to: &out)
        case .double(let number):
            if number.isFinite, number == number.rounded(), abs(number) < 9.0e18 {
                appendNumber(Int64(exactly: number) ?? 0, to: &out)  // exact: integral and in range
            } else {
                out.append(0x3C)
                appendString("\(number)", to: &out)
            }
        case .string(let text), .symbol(let text):
            out.append(0x3C)
            appendString(text, to: &out)
        case .objectID(let id):
            out.append(0x64)
            out.append(contentsOf: id.bytes)
        case .binary(let binary):
            out.append(0x5A)
            if binary.data.count < 0xFF {
                out.append(UInt8(truncatingIfNeeded: binary.data.count))  // < 0xFF
            } else {
                out.append(0xFF)
                appendBigEndian(UInt32(clamping: binary.data.count), to: &out)
            }
            out.append(binary.subtype)
            out.append(contentsOf: binary.data)
        case .timestamp(let ts):
            out.append(0x82)
            appendBigEndian(ts.seconds, to: &out)
            appendBigEndian(ts.increment, to: &out)
        case .datetime(let millis):
            out.append(0x78)
            let flipped = UInt64(bitPattern: millis) ^ 0x8000_0000_0000_0000
            appendBigEndian(UInt32(truncatingIfNeeded: flipped >> 32), to: &out)
            appendBigEndian(UInt32(truncatingIfNeeded: flipped), to: &out)
        case .document(let document):
            out.append(0x46)
            for (key, element) in document.elements {
                out.append(genericType(element))
                appendString(key, to: &out)
                appendValue(element, to: &out)
            }
            out.append(0x00)
        case .array(let elements):
            out.append(0x50)
            for element in elements { appendValue(element, to: &out) }
            out.append(0x00)
        default:
            out.append(0x3C)
            appendString("\(value)", to: &out)
        }
    }

    static func appendNumber(_ number: Int64, to out: inout [UInt8]) {
        if number >= 0 {
            appendInteger(number.magnitude, to: &out)
        } else {
            appendNegative(number.magnitude, to: &out)
        }
    }

    /// Reads the token prefix; every accessor returns nil instead of reading past the end.
    struct Reader {
        let bytes: [UInt8]
        var offset: Int

        func peek() -> UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func uint32() -> UInt32? {
            guard bytes.count - offset >= 4 else { return nil }
            var value: UInt32 = 0
            // trap-checked: UInt8 to UInt32 widens
            for byte in bytes[offset..<offset + 4] { value = value << 8 | UInt32(byte) }
            offset += 4
            return value
        }

        /// A non-negative KeyString integer (`29`, or `2B`…`32` and 1–8 bytes).
        mutating func integer() -> UInt64? {
            guard let type = byte() else { return nil }
            if type == 0x29 { return 0 }
            guard type >= 0x2B, type <= 0x32 else { return nil }
            let count = Int(type - 0x2A)  // trap-checked: type is 0x2B...0x32 (checked above)
            guard bytes.count - offset >= count else { return nil }
            var value: UInt64 = 0
            // trap-checked: UInt8 to UInt64 widens
            for byte in bytes[offset..<offset + count] { value = value << 8 | UInt64(byte) }
            offset += count
            return value >> 1
        }

        /// BinData: `5A`, a length byte (or `FF` and 4 bytes), the subtype and the bytes.
        mutating func binData() -> [UInt8]? {
            guard byte() == 0x5A, let small = byte() else { return nil }
            var count = Int(small)  // trap-checked: UInt8 to Int widens
            if small == 0xFF {
                guard let long = uint32() else { return nil }
                count = Int(long)  // trap-checked: UInt32 to a 64-bit Int widens
            }
            guard byte() != nil, bytes.count - offset >= count else { return nil }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }
    }
}
