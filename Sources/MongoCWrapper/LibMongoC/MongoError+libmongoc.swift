import BSON
internal import CLibMongoC

extension MongoError {
    /// Builds a ``MongoError`` from libmongoc's `bson_error_t` and the server reply (if any), via ``map(domain:code:message:reply:redact:)``.
    static func from(_ error: inout bson_error_t, reply: BSONDocument?, secrets: [String]) -> MongoError {
        let message = String(cString: rsinit_bson_error_message(&error))
        return map(domain: error.domain, code: error.code, message: message, reply: reply) {
            MongoURI.scrub($0, secrets: secrets)
        }
    }
}

/// Reply storage for libmongoc out-parameters: 128-byte aligned (Debian's libbson uses BSON_EXTRA_ALIGN), always
/// destroyed because libmongoc `bson_init`s it even on failure.
func withReplyBSON<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 128)
    let reply = OpaquePointer(raw)
    defer {
        bson_destroy(reply)
        raw.deallocate()
    }
    return try body(reply)
}
