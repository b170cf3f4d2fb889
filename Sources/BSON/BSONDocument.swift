#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An owned BSON document: the exact bytes, validated once on creation.
///
/// Lookups scan the top level and decode only the value asked for (the oplog tailer's hot path never converts a whole
/// entry). Equality is byte equality. The type is a value type; appending copies on write.
public struct BSONDocument: Sendable, Hashable {
    /// The document's bytes. Sub-documents read out of a document share its buffer (a slice), so decoding an
    /// oplog entry's `o` or a diff section copies nothing.
    package private(set) var storage: ArraySlice<UInt8>

    /// The complete document bytes (length prefix through the trailing zero), as a fresh array.
    public var bytes: [UInt8] { Array(storage) }

    /// Appends the document's bytes to `out` without an intermediate array.
    public func appendBytes(to out: inout [UInt8]) { out.append(contentsOf: storage) }

    /// The document's size in bytes.
    public var byteCount: Int { storage.count }

    /// An empty document.
    public init() {
        storage = [5, 0, 0, 0, 0]
    }

    /// Takes a copy of untrusted bytes after checking that they form one well-formed BSON document: lengths, types,
    /// terminators, UTF-8 of keys and strings, nesting (at most ``BSONDocument/maximumNestingDepth`` levels).
    ///
    /// - Throws: ``BSONError`` naming the first problem and its byte offset.
    public init(bytes: [UInt8]) throws(BSONError) {
        try BSONValidator.validateDocument(bytes)
        self.storage = bytes[...]
    }

    /// Takes untrusted bytes after the checks `options` asks for (the structure is always checked, so decoding
    /// never traps; strings that are not UTF-8 decode with U+FFFD replacements).
    package init(bytes: [UInt8], options: BSONValidationOptions) throws(BSONError) {
        try BSONValidator.validateDocument(bytes, options: options)
        self.storage = bytes[...]
    }

    /// Wraps a validated slice of a parent document.
    init(trustedSlice: ArraySlice<UInt8>) {
        self.storage = trustedSlice
    }

    /// The deepest nesting accepted from untrusted input (libbson's own limit for JSON is 100).
    public static let maximumNestingDepth = 200

    public var isEmpty: Bool { storage.count == 5 }

    /// The value of the first top-level field named `key`, decoding nothing else.
    public subscript(key: String) -> BSONValue? {
        guard let (type, offset) = locate(key) else { return nil }
        return storage.withUnsafeBytes {
            BSONReader(buffer: $0).decodeValue(type: type, at: offset, in: storage).value
        }
    }

    /// The value at a dotted path (`"o2._id"`, `"lastWrite.opTime.ts"`), descending through sub-documents only.
    public subscript(path path: String) -> BSONValue? {
        var current = self
        let parts = path.split(separator: ".", omittingEmptySubsequences: false)
        for (index, part) in parts.enumerated() {
            guard let value = current[String(part)] else { return nil }
            if index == parts.count - 1 { return value }
            guard case .document(let next) = value else { return nil }
            current = next
        }
        return nil
    }

    /// The values of several top-level fields in one pass, decoding only those (the oplog hot path).
    /// `keys` must be distinct; a missing field is nil.
    public func values(forKeys keys: [String]) -> [BSONValue?] {
        values(for: BSONKeySet(keys))
    }

    /// The values of a precomputed set of top-level keys in one pass (no per-call key encoding).
    public func values(for keySet: BSONKeySet) -> [BSONValue?] {
        var result = [BSONValue?](repeating: nil, count: keySet.count)
        forEachValue(for: keySet) { index, value in result[index] = value }
        return result
    }

    /// Calls `body` with the index in `keySet` and the value of each of its keys present at the top level, in
    /// document order, in one pass and without collecting them (the oplog hot path: no array per document).
    public func forEachValue(for keySet: BSONKeySet, _ body: (_ index: Int, _ value: BSONValue) -> Void) {
        forEachMatch(of: keySet) { index, reader, type, valueOffset in
            body(index, reader.decodeValue(type: type, at: valueOffset, in: storage).value)
        }
    }

    /// ``forEachValue(for:_:)``, with each string value first offered to `string` as its UTF-8 bytes (borrowed,
    /// without the NUL; possibly not valid UTF-8): when it returns true the value is taken and `body` is not called
    /// for it. The oplog hot path reuses a `String` it already holds instead of making one per entry.
    public func forEachValue(
        for keySet: BSONKeySet,
        strings string: (_ index: Int, _ utf8: UnsafeRawBufferPointer) -> Bool,
        _ body: (_ index: Int, _ value: BSONValue) -> Void
    ) {
        forEachMatch(of: keySet) { index, reader, type, valueOffset in
            if type == 0x02 {
                let length = reader.length(at: valueOffset)
                let start = valueOffset + 4
                let utf8 = UnsafeRawBufferPointer(rebasing: reader.buffer[start..<start + length - 1])
                if string(index, utf8) { return }
            }
            body(index, reader.decodeValue(type: type, at: valueOffset, in: storage).value)
        }
    }

    /// Calls `body` with the index in `keySet`, the reader, the type byte and the value's offset of each of its
    /// keys present at the top level, in document order, in one pass.
    private func forEachMatch(
        of keySet: BSONKeySet,
        _ body: (_ index: Int, _ reader: BSONReader, _ type: UInt8, _ valueOffset: Int) -> Void
    ) {
        var found: UInt64 = 0  // bit i: key i seen
        let all: UInt64 = keySet.count == 64 ? .max : (1 << UInt64(keySet.count)) - 1  // trap-checked: count is 0...64
        storage.withUnsafeBytes { buffer in
            let reader = BSONReader(buffer: buffer)
            keySet.flat.withUnsafeBufferPointer { flat in
                reader.forEachElement(documentAt: 0) { type, keyRange, valueOffset in
                    let length = keyRange.count
                    let firstByte = length > 0 ? buffer[keyRange.lowerBound] : 0
                    for index in 0..<keySet.count where found & (1 << UInt64(index)) == 0 {  // trap-checked: index < 64
                        let start = keySet.offsets[index]
                        let keyLength = keySet.offsets[index + 1] - start
                        guard keyLength == length, length == 0 || flat[start] == firstByte else { continue }
                        var position = 1
                        while position < length, flat[start + position] == buffer[keyRange.lowerBound + position] {
                            position += 1
                        }
                        guard position >= length else { continue }
                        body(index, reader, type, valueOffset)
                        found |= 1 << UInt64(index)  // trap-checked: index < 64
                        break
                    }
                    return found != all
                }
            }
        }
    }

    /// Whether a top-level field named `key` exists.
    public func contains(_ key: String) -> Bool { locate(key) != nil }

    /// The BSON type byte of the top-level field `key`, without decoding its value.
    public func typeByte(of key: String) -> UInt8? { locate(key)?.type }

    /// Visits the top-level fields in order: the key, the BSON type byte, and a decoder for the value that is
    /// only paid for when called (the oplog hot path inspects keys and types far more often than values).
    public func forEachField(_ body: (_ key: String, _ type: UInt8, _ value: () -> BSONValue) -> Void) {
        storage.withUnsafeBytes { buffer in
            let reader = BSONReader(buffer: buffer)
            reader.forEachElement(documentAt: 0) { type, keyRange, valueOffset in
                body(
                    reader.string(keyRange),
                    type,
                    { reader.decodeValue(type: type, at: valueOffset, in: storage).value }
                )
                return true
            }
        }
    }

    /// The top-level keys in order.
    public var keys: [String] {
        storage.withUnsafeBytes { buffer in
            let reader = BSONReader(buffer: buffer)
            var count = 0
            reader.forEachElement(documentAt: 0) { _, _, _ in
                count += 1
                return true
            }
            // Counted first: one allocation instead of one per doubling.
            var result: [String] = []
            result.reserveCapacity(count)
            reader.forEachElement(documentAt: 0) { type, keyRange, valueOffset in
                result.append(reader.string(keyRange))
                return true
            }
            return result
        }
    }

    /// ``keys``, or `cached` itself when the document's top-level keys are exactly those, in that order: a run of
    /// documents of one shape (the oplog's usual inserts) then shares one array, allocated once.
    public func keys(reusing cached: [String]) -> [String] {
        hasKeys(cached) ? cached : keys
    }

    /// Whether the top-level keys are exactly `expected`, in order (byte for byte), reading no value.
    public func hasKeys(_ expected: [String]) -> Bool {
        storage.withUnsafeBytes { buffer in
            let reader = BSONReader(buffer: buffer)
            var index = 0
            var equal = true
            reader.forEachElement(documentAt: 0) { _, keyRange, _ in
                guard index < expected.count else {
                    equal = false
                    return false
                }
                let key = UnsafeRawBufferPointer(rebasing: buffer[keyRange])
                let utf8 = expected[index].utf8
                equal =
                    utf8.count == key.count
                    && (utf8.withContiguousStorageIfAvailable { $0.elementsEqual(key) } ?? utf8.elementsEqual(key))
                index += 1
                return equal
            }
            return equal && index == expected.count
        }
    }

    /// The name of the first field (a command's name).
    public var firstKey: String? {
        storage.withUnsafeBytes { buffer in
            let reader = BSONReader(buffer: buffer)
            var result: String?
            reader.forEachElement(documentAt: 0) { _, keyRange, _ in
                result = reader.string(keyRange)
                return false
            }
            return result
        }
    }

    /// All top-level fields, decoded, in order.
    public var elements: [(key: String, value: BSONValue)] {
        storage.withUnsafeBytes { buffer in
            let reader = BSONReader(buffer: buffer)
            var result: [(String, BSONValue)] = []
            reader.forEachElement(documentAt: 0) { type, keyRange, valueOffset in
                result.append(
                    (reader.string(keyRange), reader.decodeValue(type: type, at: valueOffset, in: storage).value)
                )
                return true
            }
            return result
        }
    }

    /// Appends a field (duplicates are allowed, as in BSON itself).
    public mutating func append(_ key: String, _ value: BSONValue) {
        var element: [UInt8] = []
        BSONWriter.appendElement(key: key, value: value, to: &element)
        storage.removeLast()
        storage.append(contentsOf: element)
        storage.append(0)
        let length = UInt32(truncatingIfNeeded: storage.count)  // BSON documents are < 2 GiB
        let start = storage.startIndex
        for i in 0..<4 { storage[start + i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(truncatingIfNeeded: i))) }
    }

    /// Sets the first field named `key` to `value`, or appends it when absent. Rebuilds the document.
    public mutating func set(_ key: String, _ value: BSONValue) {
        guard contains(key) else {
            append(key, value)
            return
        }
        var rebuilt = BSONDocument()
        var replaced = false
        for (k, v) in elements {
            if k == key && !replaced {
                rebuilt.append(k, value)
                replaced = true
            } else {
                rebuilt.append(k, v)
            }
        }
        self = rebuilt
    }

    /// A copy without the top-level fields named in `keys`.
    public func removing(_ keys: Set<String>) -> BSONDocument {
        var rebuilt = BSONDocument()
        for (k, v) in elements where !keys.contains(k) { rebuilt.append(k, v) }
        return rebuilt
    }

    private func locate(_ key: String) -> (type: UInt8, offset: Int)? {
        var key = key
        return key.withUTF8 { keyBytes in
            storage.withUnsafeBytes { buffer in
                let reader = BSONReader(buffer: buffer)
                var found: (UInt8, Int)?
                reader.forEachElement(documentAt: 0) { type, keyRange, valueOffset in
                    if keyRange.count == keyBytes.count,
                        keyBytes.isEmpty
                            || buffer.baseAddress.flatMap({ base in
                                keyBytes.baseAddress.map { memcmp(base + keyRange.lowerBound, $0, keyBytes.count) }
                            }) == 0
                    {
                        found = (type, valueOffset)
                        return false
                    }
                    return true
                }
                return found
            }
        }
    }
}

/// Top-level keys encoded once, for repeated ``BSONDocument/values(for:)`` lookups on a hot path.
public struct BSONKeySet: Sendable {
    /// The keys' UTF-8 bytes back to back; key `i` is `flat[offsets[i]..<offsets[i + 1]]`.
    let flat: [UInt8]
    let offsets: [Int]
    var count: Int { offsets.count - 1 }

    /// At most 64 distinct keys.
    public init(_ keys: [String]) {
        // trap-checked: keys are the program's constants
        precondition(keys.count <= 64, "BSONKeySet holds at most 64 keys")
        var flat: [UInt8] = []
        var offsets = [0]
        for key in keys {
            flat += Array(key.utf8)
            offsets.append(flat.count)
        }
        self.flat = flat
        self.offsets = offsets
    }
}

extension BSONDocument: ExpressibleByDictionaryLiteral {
    /// Builds a document keeping the literal's order.
    public init(dictionaryLiteral elements: (String, BSONValue)...) {
        self.init()
        for (k, v) in elements { append(k, v) }
    }

    /// Builds a document from ordered pairs.
    public init(_ pairs: [(String, BSONValue)]) {
        self.init()
        for (k, v) in pairs { append(k, v) }
    }
}

/// Malformed BSON input: what was wrong and where.
public struct BSONError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    public let offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "invalid BSON at byte \(offset): \(message)" }
}
