public import BSON
internal import CLibMongoC

extension BSONDocument {
    /// Lends this document to C as a freshly allocated `bson_t` (a copy), destroyed when `body` returns.
    func withBSONPointer<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        // trap-checked: a validated document (>= 5 bytes, its length prefix)
        let pointer = storage.withUnsafeBufferPointer { bson_new_from_data($0.baseAddress!, $0.count)! }
        defer { bson_destroy(pointer) }
        return try body(pointer)
    }

    /// Copies a borrowed `bson_t` (valid only until the C call's next step) into an owned, validated document.
    ///
    /// Strings that are not UTF-8 do not make the document unreadable: mongod stores them (it does not check), and
    /// one such string in an oplog entry must not stop the tail. The structure is checked strictly either way.
    init(copying pointer: OpaquePointer) throws(BSONError) {
        let length = Int(rsinit_bson_length(pointer))  // trap-checked: UInt32 → Int widens
        guard let data = bson_get_data(pointer) else { throw BSONError("libbson returned no data", offset: 0) }
        // Structure only: a strict pass first checked every string's UTF-8 (on the bridge's hot path: every oplog
        // batch) and then made the very same document either way.
        try self.init(bytes: Array(UnsafeBufferPointer(start: data, count: length)), options: .structural)
    }

    /// Canonical Extended JSON v2 (type-preserving), produced by libbson: the reference the pure-Swift
    /// ``BSONDocument/extendedJSON(_:)`` (module BSON) is tested against.
    package var canonicalExtendedJSON: String {
        withBSONPointer { pointer in
            var length = 0
            // NULL for what JSON cannot carry (strings that are not UTF-8, read from a server reply).
            guard let json = bson_as_canonical_extended_json(pointer, &length) else { return Self.unrepresentable }
            defer { bson_free(json) }
            return String(cString: json)
        }
    }

    /// Relaxed Extended JSON v2 (numbers and dates as plain JSON where lossless), produced by libbson (the test
    /// reference; the product writes ``BSONDocument/extendedJSON(_:)``).
    package var relaxedExtendedJSON: String {
        withBSONPointer { pointer in
            var length = 0
            guard let json = bson_as_relaxed_extended_json(pointer, &length) else { return Self.unrepresentable }
            defer { bson_free(json) }
            return String(cString: json)
        }
    }

    static let unrepresentable = #"{"$rsinit":"not representable as Extended JSON"}"#

    /// Parses canonical or relaxed Extended JSON (or plain JSON) with libbson.
    ///
    /// - Throws: ``BSONError`` with libbson's message.
    public init(extendedJSON json: String) throws(BSONError) {
        var error = bson_error_t()
        let utf8 = Array(json.utf8)
        let parsed = utf8.withUnsafeBufferPointer { buffer in
            // trap-checked: a constant
            bson_new_from_json(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!, buffer.count, &error)
        }
        guard let parsed else {
            throw BSONError("Extended JSON: \(String(cString: rsinit_bson_error_message(&error)))", offset: 0)
        }
        defer { bson_destroy(parsed) }
        try self.init(copying: parsed)
    }
}

extension BSONDecimal128 {
    /// libbson's parse of a decimal string (nil when libbson refuses it): the reference the pure-Swift
    /// ``BSONDecimal128/init(string:)`` (module BSON) is tested against.
    package static func libbsonParsed(_ string: String) -> BSONDecimal128? {
        var value = bson_decimal128_t()
        guard bson_decimal128_from_string(string, &value) else { return nil }
        return BSONDecimal128(low: value.low, high: value.high)
    }

    /// libbson's string form: the reference the pure-Swift ``description`` (module BSON) is tested against.
    package var libbsonDescription: String {
        var value = bson_decimal128_t(low: low, high: high)
        var buffer = [CChar](repeating: 0, count: Int(BSON_DECIMAL128_STRING))  // trap-checked: a C constant
        bson_decimal128_to_string(&value, &buffer)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }  // trap-checked: 43 bytes
    }
}

/// libbson's own verdict on untrusted bytes: the reference the Swift validator (``BSONDocument/init(bytes:)``) is
/// tested against (fixtures, the BSON corpus, the differential fuzz in the tests and in `rsinit-bench fuzz`).
package enum LibBSONVerdict {
    /// `bson_init_static` (length prefix, trailing zero) then `bson_validate` with `BSON_VALIDATE_UTF8 |
    /// BSON_VALIDATE_UTF8_ALLOW_NULL`: the structure of every element, UTF-8 in keys and string values, embedded
    /// NULs allowed inside strings (valid BSON; the corpus has them). No key-name rules (`$`, `.`, empty): the oplog
    /// holds such keys legitimately.
    package static func isValid(_ bytes: [UInt8]) -> Bool {
        let flags = bson_validate_flags_t(
            rawValue: BSON_VALIDATE_UTF8.rawValue | BSON_VALIDATE_UTF8_ALLOW_NULL.rawValue
        )
        // bson_t is 128 bytes with 128-byte alignment (BSON_EXTRA_ALIGN) and imports as an opaque pointer.
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
        defer { storage.deallocate() }
        let document = OpaquePointer(storage)
        return bytes.withUnsafeBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress, bson_init_static(document, base, buffer.count) else { return false }
            var offset = 0
            return bson_validate(document, flags, &offset)
        }
    }
}

/// Checks that the wrapper's mirrored constants match the C headers (used by a test; the mapping itself is pure).
package enum LibMongoCConstantsCheck {
    package static var mismatches: [String] {
        var result: [String] = []
        let domains: [(LibMongoCDomain, UInt32)] = [
            (.client, MONGOC_ERROR_CLIENT.rawValue), (.stream, MONGOC_ERROR_STREAM.rawValue),
            (.protocol, MONGOC_ERROR_PROTOCOL.rawValue), (.cursor, MONGOC_ERROR_CURSOR.rawValue),
            (.query, MONGOC_ERROR_QUERY.rawValue), (.sasl, MONGOC_ERROR_SASL.rawValue),
            (.bson, MONGOC_ERROR_BSON.rawValue), (.command, MONGOC_ERROR_COMMAND.rawValue),
            (.scram, MONGOC_ERROR_SCRAM.rawValue), (.serverSelection, MONGOC_ERROR_SERVER_SELECTION.rawValue),
            (.writeConcern, MONGOC_ERROR_WRITE_CONCERN.rawValue), (.server, MONGOC_ERROR_SERVER.rawValue),
            (.pool, MONGOC_ERROR_POOL.rawValue),
        ]
        for (mirror, actual) in domains where mirror.rawValue != actual { result.append("domain \(mirror)") }
        let codes: [(LibMongoCCode, UInt32)] = [
            (.streamNameResolution, MONGOC_ERROR_STREAM_NAME_RESOLUTION.rawValue),
            (.streamSocket, MONGOC_ERROR_STREAM_SOCKET.rawValue),
            (.streamConnect, MONGOC_ERROR_STREAM_CONNECT.rawValue),
            (.clientAuthenticate, MONGOC_ERROR_CLIENT_AUTHENTICATE.rawValue),
            (.protocolInvalidReply, MONGOC_ERROR_PROTOCOL_INVALID_REPLY.rawValue),
            (.protocolBadWireVersion, MONGOC_ERROR_PROTOCOL_BAD_WIRE_VERSION.rawValue),
            (.commandInvalidArg, MONGOC_ERROR_COMMAND_INVALID_ARG.rawValue),
            (.serverSelectionFailure, MONGOC_ERROR_SERVER_SELECTION_FAILURE.rawValue),
        ]
        for (mirror, actual) in codes where mirror.rawValue != actual { result.append("code \(mirror)") }
        return result
    }
}
