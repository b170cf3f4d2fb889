/// Limits for untrusted input (a server we do not control, or a fuzzer).
public struct RESPLimits: Sendable {
    public var maximumBulkLength: Int
    public var maximumArrayCount: Int
    public var maximumDepth: Int
    /// Longest simple-string / error / integer line.
    public var maximumLineLength: Int
    /// Largest whole frame, nested values included: a complete frame over it is an error, and so is an incomplete
    /// one once the buffered bytes pass it (so a peer cannot make a client buffer — and re-scan — without bound).
    public var maximumBufferSize: Int

    public init(
        maximumBulkLength: Int = 64 << 20,
        maximumArrayCount: Int = 1 << 20,
        maximumDepth: Int = 32,
        maximumLineLength: Int = 64 << 10,
        maximumBufferSize: Int = 128 << 20
    ) {
        self.maximumBulkLength = maximumBulkLength
        self.maximumArrayCount = maximumArrayCount
        self.maximumDepth = maximumDepth
        self.maximumLineLength = maximumLineLength
        self.maximumBufferSize = maximumBufferSize
    }
}

/// RESP2 encoder and incremental decoder. Pure: bytes in, values out.
public enum RESPCodec {
    /// Appends a command as an array of bulk strings (the only form clients send).
    public static func encodeCommand(_ arguments: [[UInt8]], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        appendDecimal(arguments.count, to: &out)
        for argument in arguments {
            out.append(UInt8(ascii: "$"))
            appendDecimal(argument.count, to: &out)
            out.append(contentsOf: argument)
            out.append(13)
            out.append(10)
        }
    }

    /// Appends `*<count>\r\n`: the start of a command of `count` arguments, each to follow as a bulk string.
    /// With ``appendBulkString(_:into:)`` this builds commands straight into one buffer, without an array per
    /// argument (the bridge's hot path).
    public static func appendArrayHeader(_ count: Int, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        appendDecimal(count, to: &out)
    }

    /// Appends `$<length>\r\n<bytes>\r\n`.
    public static func appendBulkString(_ bytes: ArraySlice<UInt8>, into out: inout [UInt8]) {
        bytes.withUnsafeBufferPointer { appendBulkString($0, into: &out) }
    }

    /// Appends `$<length>\r\n<bytes>\r\n`.
    public static func appendBulkString(_ bytes: [UInt8], into out: inout [UInt8]) {
        bytes.withUnsafeBufferPointer { appendBulkString($0, into: &out) }
    }

    /// Appends `$<length>\r\n<bytes>\r\n` from borrowed memory (the publisher's hot path: no slice of a scratch
    /// buffer is made, so no retain and release per argument).
    public static func appendBulkString(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        appendDecimal(bytes.count, to: &out)
        out.append(contentsOf: bytes)
        out.append(13)
        out.append(10)
    }

    /// Appends `text` in UTF-8 as a bulk string.
    public static func appendBulkString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        appendDecimal(text.utf8.count, to: &out)
        out.append(contentsOf: text.utf8)
        out.append(13)
        out.append(10)
    }

    /// Encodes any value (used by tests and the fuzzer to build frames).
    public static func encode(_ value: RESPValue, into out: inout [UInt8]) {
        switch value {
        case .simpleString(let s):
            out.append(UInt8(ascii: "+"))
            out.append(contentsOf: s.utf8)
            out.append(contentsOf: [13, 10])
        case .error(let s):
            out.append(UInt8(ascii: "-"))
            out.append(contentsOf: s.utf8)
            out.append(contentsOf: [13, 10])
        case .integer(let i):
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(i).utf8)
            out.append(contentsOf: [13, 10])
        case .bulkString(nil):
            out.append(contentsOf: Array("$-1\r\n".utf8))
        case .bulkString(let bytes?):
            out.append(UInt8(ascii: "$"))
            appendDecimal(bytes.count, to: &out)
            out.append(contentsOf: bytes)
            out.append(contentsOf: [13, 10])
        case .array(nil):
            out.append(contentsOf: Array("*-1\r\n".utf8))
        case .array(let values?):
            out.append(UInt8(ascii: "*"))
            appendDecimal(values.count, to: &out)
            for value in values { encode(value, into: &out) }
        }
    }

    /// `value` in decimal, then CRLF.
    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        appendDigits(UInt64(value.magnitude), to: &out)  // trap-checked: UInt to UInt64 on a 64-bit platform
        out.append(13)
        out.append(10)
    }

    /// The decimal digits of `value`, written in place (no String per number: lengths and counts are on the
    /// publisher's hot path, and so are the numbers in its JSON messages).
    public static func appendDigits(_ value: UInt64, to out: inout [UInt8]) {
        // Lengths and counts are mostly one to three digits: no division loop for them.
        if value < 10 {
            out.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        if value < 100 {
            out.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value / 10))
            out.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10))
            return
        }
        // At most 20 digits, written backwards into a fixed buffer, then appended at once.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buffer in
            var remaining = value
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
                remaining /= 10
            } while remaining > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// Decodes one value starting at `index`. Returns nil — leaving `index` unchanged — when the frame is not
    /// complete yet; advances `index` past the frame otherwise.
    ///
    /// - Throws: ``RESPError`` for input that can never become valid (unknown type byte, bad length, over a limit).
    public static func decode(
        _ buffer: [UInt8],
        at index: inout Int,
        limits: RESPLimits = RESPLimits()
    ) throws(RESPError)
        -> RESPValue?
    {
        var cursor = index
        let result = buffer.withUnsafeBytes { bytes in
            Result { () throws(RESPError) in try decode(bytes, at: &cursor, limits: limits) }
        }
        index = cursor
        return try result.get()
    }

    /// ``decode(_:at:limits:)`` over borrowed bytes (a network buffer, without copying it into an array).
    public static func decode(
        _ buffer: UnsafeRawBufferPointer,
        at index: inout Int,
        limits: RESPLimits = RESPLimits()
    ) throws(RESPError)
        -> RESPValue?
    {
        var cursor = index
        guard let value = try decodeValue(buffer, &cursor, depth: 0, limits: limits) else {
            if buffer.count - index > limits.maximumBufferSize {
                throw RESPError("a frame longer than \(limits.maximumBufferSize) bytes")
            }
            return nil
        }
        guard cursor - index <= limits.maximumBufferSize else {
            throw RESPError("a frame longer than \(limits.maximumBufferSize) bytes")
        }
        index = cursor
        return value
    }

    private static func line(
        _ buffer: UnsafeRawBufferPointer,
        _ cursor: inout Int,
        limits: RESPLimits
    ) throws(RESPError) -> Slice<UnsafeRawBufferPointer>? {
        var i = cursor
        while i + 1 < buffer.count {
            if buffer[i] == 13 {
                guard buffer[i + 1] == 10 else { throw RESPError("CR without LF") }
                let text = buffer[cursor..<i]
                cursor = i + 2
                return text
            }
            if i - cursor > limits.maximumLineLength {
                throw RESPError("line longer than \(limits.maximumLineLength) bytes")
            }
            i += 1
        }
        if buffer.count - cursor > limits.maximumLineLength {
            throw RESPError("line longer than \(limits.maximumLineLength) bytes")
        }
        return nil
    }

    private static func integer(_ text: Slice<UnsafeRawBufferPointer>) throws(RESPError) -> Int64 {
        guard !text.isEmpty, text.count <= 20 else { throw RESPError("bad integer") }
        var negative = false
        var value: Int64 = 0
        var first = true
        for byte in text {
            if first && byte == UInt8(ascii: "-") {
                negative = true
                first = false
                continue
            }
            first = false
            guard byte >= 48 && byte <= 57 else { throw RESPError("bad integer") }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            // trap-checked: a digit, 0-9 (checked above)
            let (s, o2) = m.subtractingReportingOverflow(Int64(byte - 48))  // accumulate negatively: covers Int64.min
            guard !o1 && !o2 else { throw RESPError("integer overflow") }
            value = s
        }
        if text.count == 1 && negative { throw RESPError("bad integer") }
        if negative { return value }
        guard value != .min else { throw RESPError("integer overflow") }
        return -value
    }

    private static func decodeValue(
        _ buffer: UnsafeRawBufferPointer,
        _ cursor: inout Int,
        depth: Int,
        limits: RESPLimits
    ) throws(RESPError)
        -> RESPValue?
    {
        guard cursor < buffer.count else { return nil }
        guard depth <= limits.maximumDepth else { throw RESPError("nesting deeper than \(limits.maximumDepth)") }
        let type = buffer[cursor]
        var position = cursor + 1
        switch type {
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let text = try line(buffer, &position, limits: limits) else { return nil }
            let string = String(decoding: text, as: UTF8.self)
            cursor = position
            return type == UInt8(ascii: "+") ? .simpleString(string) : .error(string)
        case UInt8(ascii: ":"):
            guard let text = try line(buffer, &position, limits: limits) else { return nil }
            let value = try integer(text)
            cursor = position
            return .integer(value)
        case UInt8(ascii: "$"):
            return try decodeBulkString(buffer, &cursor, limits: limits)
        case UInt8(ascii: "*"):
            return try decodeArray(buffer, &cursor, depth: depth, limits: limits)
        default:
            throw RESPError("unknown RESP type byte 0x\(String(type, radix: 16))")
        }
    }

    /// `$<length>\r\n<bytes>\r\n` or the null bulk string `$-1\r\n`, the type byte at `cursor`; nil: incomplete.
    private static func decodeBulkString(
        _ buffer: UnsafeRawBufferPointer,
        _ cursor: inout Int,
        limits: RESPLimits
    ) throws(RESPError) -> RESPValue? {
        var position = cursor + 1
        guard let text = try line(buffer, &position, limits: limits) else { return nil }
        let length = try integer(text)
        if length == -1 {
            cursor = position
            return .bulkString(nil)
        }
        guard length >= 0, length <= Int64(limits.maximumBulkLength) else {  // trap-checked: Int to Int64 widens
            throw RESPError("bad bulk length \(length)")
        }
        let end = position + Int(length)  // trap-checked: 0...maximumBulkLength (checked above)
        guard end + 2 <= buffer.count else { return nil }
        guard buffer[end] == 13, buffer[end + 1] == 10 else {
            throw RESPError("bulk string not terminated by CRLF")
        }
        cursor = end + 2
        return .bulkString(Array(buffer[position..<end]))
    }

    /// `*<count>\r\n` and that many values, or the null array `*-1\r\n`, the type byte at `cursor`; nil:
    /// incomplete (the cursor stays, so a partial frame is never consumed).
    private static func decodeArray(
        _ buffer: UnsafeRawBufferPointer,
        _ cursor: inout Int,
        depth: Int,
        limits: RESPLimits
    ) throws(RESPError) -> RESPValue? {
        var position = cursor + 1
        guard let text = try line(buffer, &position, limits: limits) else { return nil }
        let count = try integer(text)
        if count == -1 {
            cursor = position
            return .array(nil)
        }
        guard count >= 0, count <= Int64(limits.maximumArrayCount) else {  // trap-checked: Int to Int64 widens
            throw RESPError("bad array count \(count)")
        }
        // Never reserve from an untrusted count: a frame can claim a million elements and send three.
        var values: [RESPValue] = []
        for _ in 0..<count {
            guard let value = try decodeValue(buffer, &position, depth: depth + 1, limits: limits) else {
                return nil
            }
            values.append(value)
        }
        cursor = position
        return .array(values)
    }
}
