#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads values out of bytes that have been validated (or produced by us). Never traps on validated input.
struct BSONReader {
    /// Borrowed bytes only, no owner: a reader is made for every lookup and handed to a closure per field, and an
    /// owner held here was retained and released each time (4 of ~170 reference-count calls per bridged event).
    /// What decodes sub-documents is lent the storage `buffer` points into (`source`).
    let buffer: UnsafeRawBufferPointer

    init(buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    /// A validated sub-document at `offset`: a slice of `source`, the storage `buffer` points into (no copy).
    func subDocument(_ offset: Int, _ size: Int, in source: ArraySlice<UInt8>) -> BSONDocument {
        let start = source.startIndex + offset
        return BSONDocument(trustedSlice: source[start..<start + size])
    }

    func int32(at offset: Int) -> Int32 {
        Int32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self))
    }
    /// A length prefix as `Int` (Int32 → Int always widens).
    func length(at offset: Int) -> Int { Int(int32(at: offset)) }  // trap-checked: Int32 → Int widens
    func uint32(at offset: Int) -> UInt32 {
        UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    func int64(at offset: Int) -> Int64 {
        Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: Int64.self))
    }
    func uint64(at offset: Int) -> UInt64 {
        UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    func string(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buffer[range]), as: UTF8.self)
    }

    func bytes(_ range: Range<Int>) -> [UInt8] { Array(buffer[range]) }

    /// End (exclusive) of the cstring starting at `offset` (the index of its NUL).
    func cstringEnd(from offset: Int) -> Int {
        var i = offset
        while buffer[i] != 0 { i += 1 }
        return i
    }

    /// Calls `body(type, keyRange, valueOffset)` for each element of the document at `start`; stop by returning false.
    func forEachElement(documentAt start: Int, _ body: (UInt8, Range<Int>, Int) -> Bool) {
        let end = start + length(at: start) - 1
        var offset = start + 4
        while offset < end {
            let type = buffer[offset]
            let keyStart = offset + 1
            let keyEnd = cstringEnd(from: keyStart)
            let valueOffset = keyEnd + 1
            if !body(type, keyStart..<keyEnd, valueOffset) { return }
            offset = valueOffset + valueSize(type: type, at: valueOffset)
        }
    }

    /// Byte size of a value of `type` at `offset`.
    func valueSize(type: UInt8, at offset: Int) -> Int {
        switch type {
        case 0x01, 0x09, 0x11, 0x12: return 8
        case 0x02, 0x0D, 0x0E: return 4 + length(at: offset)
        case 0x03, 0x04, 0x0F: return length(at: offset)
        case 0x05: return 5 + length(at: offset)
        case 0x06, 0x0A, 0x7F, 0xFF: return 0
        case 0x07: return 12
        case 0x08: return 1
        case 0x0B:
            let patternEnd = cstringEnd(from: offset)
            let optionsEnd = cstringEnd(from: patternEnd + 1)
            return optionsEnd + 1 - offset
        case 0x0C: return 4 + length(at: offset) + 12
        case 0x10: return 4
        case 0x13: return 16
        default: return 0
        }
    }

    /// Decodes the value of `type` at `offset`; sub-documents are slices of `source`, the storage `buffer` points
    /// into.
    func decodeValue(type: UInt8, at offset: Int, in source: ArraySlice<UInt8>) -> (value: BSONValue, size: Int) {
        let size = valueSize(type: type, at: offset)
        switch type {
        case 0x01: return (.double(Double(bitPattern: uint64(at: offset))), size)
        case 0x02: return (.string(lengthPrefixedString(at: offset)), size)
        case 0x03: return (.document(subDocument(offset, size, in: source)), size)
        case 0x04: return (.array(decodeArray(at: offset, in: source)), size)
        case 0x05:
            let length = self.length(at: offset)
            let subtype = buffer[offset + 4]
            return (.binary(BSONBinary(subtype: subtype, data: bytes(offset + 5..<offset + 5 + length))), size)
        case 0x06: return (.undefined, 0)
        // trap-checked: always 12 bytes
        case 0x07: return (.objectID(BSONObjectID(bytes: bytes(offset..<offset + 12))!), size)
        case 0x08: return (.bool(buffer[offset] != 0), size)
        case 0x09: return (.datetime(int64(at: offset)), size)
        case 0x0A: return (.null, 0)
        case 0x0B:
            let patternEnd = cstringEnd(from: offset)
            let optionsEnd = cstringEnd(from: patternEnd + 1)
            let regex = BSONRegularExpression(
                pattern: string(offset..<patternEnd),
                options: string(patternEnd + 1..<optionsEnd)
            )
            return (.regex(regex), size)
        case 0x0C:
            let stringSize = 4 + length(at: offset)
            // trap-checked: 12 bytes
            let id = BSONObjectID(bytes: bytes(offset + stringSize..<offset + stringSize + 12))!
            return (.dbPointer(namespace: lengthPrefixedString(at: offset), id: id), size)
        case 0x0D: return (.javascript(lengthPrefixedString(at: offset)), size)
        case 0x0E: return (.symbol(lengthPrefixedString(at: offset)), size)
        case 0x0F:
            let code = lengthPrefixedString(at: offset + 4)
            let scopeOffset = offset + 4 + 4 + length(at: offset + 4)
            let scopeSize = length(at: scopeOffset)
            let scope = subDocument(scopeOffset, scopeSize, in: source)
            return (.javascriptWithScope(code: code, scope: scope), size)
        case 0x10: return (.int32(int32(at: offset)), size)
        case 0x11: return (.timestamp(BSONTimestamp(rawValue: uint64(at: offset))), size)
        case 0x12: return (.int64(int64(at: offset)), size)
        case 0x13: return (.decimal128(BSONDecimal128(low: uint64(at: offset), high: uint64(at: offset + 8))), size)
        case 0x7F: return (.maxKey, 0)
        case 0xFF: return (.minKey, 0)
        default: return (.undefined, 0)  // unreachable for validated input
        }
    }

    func lengthPrefixedString(at offset: Int) -> String {
        let length = self.length(at: offset)
        return string(offset + 4..<offset + 4 + length - 1)
    }

    func decodeArray(at offset: Int, in source: ArraySlice<UInt8>) -> [BSONValue] {
        var values: [BSONValue] = []
        let reader = self
        reader.forEachElement(documentAt: offset) { type, _, valueOffset in
            values.append(decodeValue(type: type, at: valueOffset, in: source).value)
            return true
        }
        return values
    }
}

/// What the validator checks beyond the structure (lengths, terminators, types, booleans, nesting), which it always
/// checks: a document that passes can be decoded without a trap, whatever the options.
package struct BSONValidationOptions: Sendable {
    /// UTF-8 of keys.
    package var keyUTF8: Bool
    /// UTF-8 of string values (strings, code, symbols, DBPointer namespaces, regex pattern and options).
    package var valueUTF8: Bool
    /// Emulates libbson 1.23's `bson_validate`, for the differential fuzz only: its UTF-8 check misses invalid
    /// sequences in values, and it does not look inside a nested document whose last byte is not 0x00.
    package var libbson123Quirks: Bool

    package init(keyUTF8: Bool, valueUTF8: Bool, libbson123Quirks: Bool = false) {
        self.keyUTF8 = keyUTF8
        self.valueUTF8 = valueUTF8
        self.libbson123Quirks = libbson123Quirks
    }

    /// Everything (the BSON specification and its corpus): ``BSONDocument/init(bytes:)``.
    package static let strict = BSONValidationOptions(keyUTF8: true, valueUTF8: true)
    /// Structure only: server replies whose strings are not UTF-8 (mongod stores such strings) are still read,
    /// their strings decoded with U+FFFD replacements, instead of stopping the tail.
    package static let structural = BSONValidationOptions(keyUTF8: false, valueUTF8: false)
    /// libbson 1.23's verdict with `BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL` (see ``LibBSONVerdict``).
    package static let libbson123 = BSONValidationOptions(keyUTF8: true, valueUTF8: false, libbson123Quirks: true)
}

/// Checks untrusted bytes without decoding them.
enum BSONValidator {
    static func validateDocument(_ bytes: [UInt8], options: BSONValidationOptions = .strict) throws(BSONError) {
        let failure: BSONError? = bytes.withUnsafeBytes { buffer in
            guard buffer.count >= 5 else { return BSONError("document shorter than 5 bytes", offset: 0) }
            let declared = BSONReader(buffer: buffer).length(at: 0)
            guard declared == buffer.count else {
                return BSONError("length prefix \(declared) does not match \(buffer.count) bytes", offset: 0)
            }
            do throws(BSONError) {
                try validate(buffer, documentAt: 0, limit: buffer.count, depth: 0, options: options)
            } catch {
                return error
            }
            return nil
        }
        if let failure { throw failure }
    }

    private static func validate(
        _ buffer: UnsafeRawBufferPointer,
        documentAt start: Int,
        limit: Int,
        depth: Int,
        options: BSONValidationOptions
    ) throws(BSONError) {
        let reader = BSONReader(buffer: buffer)
        guard depth <= BSONDocument.maximumNestingDepth else {
            throw BSONError("nesting deeper than \(BSONDocument.maximumNestingDepth)", offset: start)
        }
        guard start + 5 <= limit else { throw BSONError("truncated document", offset: start) }
        let length = reader.length(at: start)
        guard length >= 5, start + length <= limit else {
            throw BSONError("bad document length \(length)", offset: start)
        }
        let end = start + length - 1
        guard buffer[end] == 0 else {
            // libbson 1.23 skips (does not visit) a nested document it cannot open; emulated for the reference only.
            if options.libbson123Quirks && depth > 0 { return }
            throw BSONError("document not terminated by 0x00", offset: end)
        }
        var offset = start + 4
        while offset < end {
            let type = buffer[offset]
            let keyStart = offset + 1
            let keyEnd = try cstringEnd(buffer, from: keyStart, limit: end)
            if options.keyUTF8 { try checkUTF8(buffer, keyStart..<keyEnd) }
            let valueOffset = keyEnd + 1
            let size = try valueSize(buffer, type: type, at: valueOffset, end: end, depth: depth, options: options)
            offset = valueOffset + size
            guard offset <= end else { throw BSONError("element overruns its document", offset: valueOffset) }
            if options.libbson123Quirks && libbson123StopsAt(buffer, type: type, valueOffset: valueOffset) { return }
        }
    }

    /// libbson 1.23's `bson_iter_visit_all` stops, and `bson_validate` then reports success, at a string, code,
    /// symbol, DBPointer namespace or regex pattern that is not UTF-8, and after every code with scope: the rest
    /// of that document (not of its parents) is never looked at. Only for the libbson emulation; the element is
    /// structurally valid here.
    private static func libbson123StopsAt(_ buffer: UnsafeRawBufferPointer, type: UInt8, valueOffset: Int) -> Bool {
        let reader = BSONReader(buffer: buffer)
        let range: Range<Int>
        switch type {
        case 0x02, 0x0C, 0x0D, 0x0E:
            range = valueOffset + 4..<valueOffset + 4 + reader.length(at: valueOffset) - 1
        case 0x0F:
            return true  // after any code with scope, valid or not
        case 0x0B:
            range = valueOffset..<reader.cstringEnd(from: valueOffset)
        default:
            return false
        }
        do throws(BSONError) { try checkUTF8(buffer, range) } catch { return true }
        return false
    }

    private static func cstringEnd(_ buffer: UnsafeRawBufferPointer, from: Int, limit: Int) throws(BSONError) -> Int {
        var i = from
        while i < limit {
            if buffer[i] == 0 { return i }
            i += 1
        }
        throw BSONError("unterminated C string", offset: from)
    }

    private static func checkUTF8(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) throws(BSONError) {
        // ASCII (nearly every key and most strings) needs no decoding: 8 bytes at a time, looking for a high bit.
        var asciiEnd = range.lowerBound
        while asciiEnd + 8 <= range.upperBound,
            buffer.loadUnaligned(fromByteOffset: asciiEnd, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
        {
            asciiEnd += 8
        }
        while asciiEnd < range.upperBound, buffer[asciiEnd] < 0x80 { asciiEnd += 1 }
        guard asciiEnd < range.upperBound else { return }
        // Everything before asciiEnd is ASCII, so a scalar starts there.
        var iterator = UnsafeRawBufferPointer(rebasing: buffer[asciiEnd..<range.upperBound]).makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return
            case .error: throw BSONError("invalid UTF-8", offset: range.lowerBound)
            }
        }
    }

    private static func need(_ count: Int, at offset: Int, end: Int) throws(BSONError) {
        guard count >= 0, offset + count <= end else { throw BSONError("value truncated", offset: offset) }
    }

    private static func lengthPrefixedString(
        _ buffer: UnsafeRawBufferPointer,
        at offset: Int,
        end: Int,
        utf8: Bool
    ) throws(BSONError) -> Int {
        try need(4, at: offset, end: end)
        let length = BSONReader(buffer: buffer).length(at: offset)
        guard length >= 1 else { throw BSONError("bad string length \(length)", offset: offset) }
        try need(4 + length, at: offset, end: end)
        guard buffer[offset + 4 + length - 1] == 0 else {
            throw BSONError("string not terminated by 0x00", offset: offset)
        }
        if utf8 { try checkUTF8(buffer, offset + 4..<offset + 4 + length - 1) }
        return 4 + length
    }

    private static func valueSize(
        _ buffer: UnsafeRawBufferPointer,
        type: UInt8,
        at offset: Int,
        end: Int,
        depth: Int,
        options: BSONValidationOptions
    ) throws(BSONError) -> Int {
        let utf8 = options.valueUTF8
        let reader = BSONReader(buffer: buffer)
        switch type {
        case 0x01, 0x09, 0x11, 0x12:
            try need(8, at: offset, end: end)
            return 8
        case 0x02, 0x0D, 0x0E:
            return try lengthPrefixedString(buffer, at: offset, end: end, utf8: utf8)
        case 0x03, 0x04:
            try validate(buffer, documentAt: offset, limit: end, depth: depth + 1, options: options)
            return reader.length(at: offset)
        case 0x05:
            try need(5, at: offset, end: end)
            let length = reader.length(at: offset)
            guard length >= 0 else { throw BSONError("negative binary length \(length)", offset: offset) }
            try need(5 + length, at: offset, end: end)
            if buffer[offset + 4] == BSONBinary.binaryOld {
                guard length >= 4, reader.length(at: offset + 5) == length - 4 else {
                    throw BSONError("binary subtype 2 with a bad inner length", offset: offset)
                }
            }
            return 5 + length
        case 0x06, 0x0A, 0x7F, 0xFF:
            return 0
        case 0x07:
            try need(12, at: offset, end: end)
            return 12
        case 0x08:
            try need(1, at: offset, end: end)
            guard buffer[offset] <= 1 else { throw BSONError("boolean byte \(buffer[offset])", offset: offset) }
            return 1
        case 0x0B:
            let patternEnd = try cstringEnd(buffer, from: offset, limit: end)
            if utf8 { try checkUTF8(buffer, offset..<patternEnd) }
            let optionsEnd = try cstringEnd(buffer, from: patternEnd + 1, limit: end)
            if utf8 { try checkUTF8(buffer, patternEnd + 1..<optionsEnd) }
            return optionsEnd + 1 - offset
        case 0x0C:
            let stringSize = try lengthPrefixedString(buffer, at: offset, end: end, utf8: utf8)
            try need(stringSize + 12, at: offset, end: end)
            return stringSize + 12
        case 0x0F:
            try need(4, at: offset, end: end)
            let total = reader.length(at: offset)
            try need(total, at: offset, end: end)
            let stringSize = try lengthPrefixedString(buffer, at: offset + 4, end: offset + total, utf8: utf8)
            let scopeOffset = offset + 4 + stringSize
            if options.libbson123Quirks && libbson123StopsAt(buffer, type: 0x02, valueOffset: offset + 4) {
                // libbson 1.23 stops at the code before looking into the scope: only its length is checked.
                try need(5, at: scopeOffset, end: offset + total)
                guard reader.length(at: scopeOffset) >= 5 else {
                    throw BSONError("code-with-scope scope too short", offset: scopeOffset)
                }
            } else {
                try validate(
                    buffer,
                    documentAt: scopeOffset,
                    limit: offset + total,
                    depth: depth + 1,
                    options: options
                )
            }
            guard scopeOffset + reader.length(at: scopeOffset) == offset + total else {
                throw BSONError("code-with-scope length mismatch", offset: offset)
            }
            return total
        case 0x10:
            try need(4, at: offset, end: end)
            return 4
        case 0x13:
            try need(16, at: offset, end: end)
            return 16
        default:
            throw BSONError("unknown element type 0x\(String(type, radix: 16))", offset: offset - 1)
        }
    }
}

/// Serialises values into BSON bytes.
enum BSONWriter {
    static func appendInt32(_ v: Int32, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
    static func appendInt64(_ v: Int64, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
    static func appendUInt64(_ v: UInt64, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
    static func appendCString(_ s: String, to out: inout [UInt8]) {
        // A NUL inside a key would end it early; BSON cannot represent it, so it is dropped.
        let utf8 = s.utf8
        if utf8.contains(0) {
            out.append(contentsOf: utf8.lazy.filter { $0 != 0 })
        } else {
            out.append(contentsOf: utf8)
        }
        out.append(0)
    }
    /// `index` in decimal as a C string (an array element's key).
    static func appendDecimalKey(_ index: Int, to out: inout [UInt8]) {
        var divisor = 1
        while divisor <= index / 10 { divisor *= 10 }
        var rest = index
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(rest / divisor))  // trap-checked: a digit, 0...9
            rest %= divisor
            divisor /= 10
        }
        out.append(0)
    }
    static func appendString(_ s: String, to out: inout [UInt8]) {
        let utf8 = s.utf8
        appendInt32(Int32(clamping: utf8.count + 1), to: &out)
        out.append(contentsOf: utf8)
        out.append(0)
    }

    static func patchLength(of out: inout [UInt8], documentStart: Int) {
        let length = Int32(clamping: out.count - documentStart)
        withUnsafeBytes(of: length.littleEndian) { raw in
            for i in 0..<4 { out[documentStart + i] = raw[i] }
        }
    }

    static func appendElement(key: String, value: BSONValue, to out: inout [UInt8]) {
        out.append(value.typeByte)
        appendCString(key, to: &out)
        appendValue(value, to: &out)
    }

    static func appendValue(_ value: BSONValue, to out: inout [UInt8]) {
        switch value {
        case .double(let v): appendUInt64(v.bitPattern, to: &out)
        case .string(let s), .javascript(let s), .symbol(let s): appendString(s, to: &out)
        case .document(let d): out.append(contentsOf: d.storage)
        case .array(let values):
            let start = out.count
            appendInt32(0, to: &out)
            for (index, element) in values.enumerated() {
                // The key is the index in decimal, written without a String (replies carry thousands).
                out.append(element.typeByte)
                appendDecimalKey(index, to: &out)
                appendValue(element, to: &out)
            }
            out.append(0)
            patchLength(of: &out, documentStart: start)
        case .binary(let b):
            appendInt32(Int32(clamping: b.data.count), to: &out)
            out.append(b.subtype)
            out.append(contentsOf: b.data)
        case .undefined, .null, .minKey, .maxKey: break
        case .objectID(let o): out.append(contentsOf: o.bytes)
        case .bool(let b): out.append(b ? 1 : 0)
        case .datetime(let v), .int64(let v): appendInt64(v, to: &out)
        case .regex(let r):
            appendCString(r.pattern, to: &out)
            appendCString(r.options, to: &out)
        case .dbPointer(let namespace, let id):
            appendString(namespace, to: &out)
            out.append(contentsOf: id.bytes)
        case .javascriptWithScope(let code, let scope):
            let start = out.count
            appendInt32(0, to: &out)
            appendString(code, to: &out)
            out.append(contentsOf: scope.storage)
            patchLength(of: &out, documentStart: start)
        case .int32(let v): appendInt32(v, to: &out)
        case .timestamp(let t): appendUInt64(t.rawValue, to: &out)
        case .decimal128(let d):
            appendUInt64(d.low, to: &out)
            appendUInt64(d.high, to: &out)
        }
    }
}
