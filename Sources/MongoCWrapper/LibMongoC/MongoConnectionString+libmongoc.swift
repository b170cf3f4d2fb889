internal import CLibMongoC
import RSInitSupport

#if canImport(Glibc)
import Glibc
#endif

/// A MongoDB URI as libmongoc parses it. rsinit adds nothing to the URI syntax; it only reads what libmongoc parsed
/// and sets standard options.
public struct MongoConnectionString: Sendable, CustomStringConvertible {
    /// The URI exactly as given (may contain a password: never print it; use ``redacted``).
    public let uri: String
    /// The seed list as `host:port` strings, in order.
    public let hosts: [String]
    /// The `replicaSet` option, if any.
    public let replicaSet: String?
    /// The user name, if any.
    public let username: String?
    /// Whether the URI carries a password.
    public let hasPassword: Bool
    let password: String?
    /// Standard options applied on top of `uri` when a client is created (libmongoc cannot re-serialise a URI).
    let int32Options: [String: Int32]
    let boolOptions: [String: Bool]

    /// Parses with libmongoc.
    ///
    /// - Throws: ``MongoError`` with code ``MongoError/Code/invalidURI`` and libmongoc's reason (credentials removed).
    public init(_ uri: String) throws(MongoError) {
        MongoRuntime.ensureInitialized()
        Redaction.registerCredentials(in: uri)
        var error = bson_error_t()
        let warnings = MongoRuntime.WarningCollector()
        let result = MongoRuntime.$uriWarnings.withValue(warnings) { mongoc_uri_new_with_error(uri, &error) }
        guard let parsed = result else {
            let reason = String(cString: rsinit_bson_error_message(&error))
            throw MongoError(
                code: .invalidURI,
                message: "invalid MongoDB URI \(MongoURI.redacted(uri)): \(MongoURI.redacted(reason))",
                driverDomain: error.domain,
                driverCode: error.code
            )
        }
        defer { mongoc_uri_destroy(parsed) }
        try Self.validate(parsed, uri: uri, warnings: warnings.messages)
        self.uri = uri
        var hosts: [String] = []
        var node = mongoc_uri_get_hosts(parsed)
        while let current = node {
            hosts.append(Self.hostAndPort(current.pointee))
            node = UnsafePointer(current.pointee.next)
        }
        self.hosts = hosts
        self.replicaSet = mongoc_uri_get_replica_set(parsed).map { String(cString: $0) }
        self.username = mongoc_uri_get_username(parsed).map { String(cString: $0) }
        self.password = mongoc_uri_get_password(parsed).map { String(cString: $0) }
        self.hasPassword = password.map { !$0.isEmpty } ?? false
        if let password { MongoRuntime.registerSecret(password) }
        self.int32Options = [:]
        self.boolOptions = [:]
    }

    private init(copying other: MongoConnectionString, int32Options: [String: Int32], boolOptions: [String: Bool]) {
        self.uri = other.uri
        self.hosts = other.hosts
        self.replicaSet = other.replicaSet
        self.username = other.username
        self.password = other.password
        self.hasPassword = other.hasPassword
        self.int32Options = int32Options
        self.boolOptions = boolOptions
    }

    /// The URI with the password and secret options replaced by `***`.
    public var redacted: String { MongoURI.redacted(uri) }
    public var description: String { redacted }

    /// A copy with standard URI options (e.g. `directConnection`, `connectTimeoutMS`) that libmongoc sets on the
    /// parsed URI when a client is created; they override the same options in the string.
    ///
    /// - Throws: ``MongoError`` (``MongoError/Code/invalidArgument``) when libmongoc rejects an option.
    public func settingOptions(
        int32 intOptions: [String: Int32] = [:],
        bool boolOptions: [String: Bool] = [:]
    )
        throws(MongoError) -> MongoConnectionString
    {
        let merged = MongoConnectionString(
            copying: self,
            int32Options: int32Options.merging(intOptions) { $1 },
            boolOptions: self.boolOptions.merging(boolOptions) { $1 }
        )
        let check = try merged.makeURI()
        mongoc_uri_destroy(check)
        return merged
    }

    /// The option values that will be in effect, e.g. for display: `["directConnection": "true"]`.
    public var overriddenOptions: [String: String] {
        var result: [String: String] = [:]
        for (k, v) in int32Options { result[k] = String(v) }
        for (k, v) in boolOptions { result[k] = String(v) }
        return result
    }

    /// A libmongoc URI with the overriding options applied; the caller destroys it.
    func makeURI() throws(MongoError) -> OpaquePointer {
        var error = bson_error_t()
        guard let parsed = mongoc_uri_new_with_error(uri, &error) else {
            throw MongoError(code: .invalidURI, message: "invalid MongoDB URI \(redacted)")
        }
        for (name, value) in int32Options.sorted(by: { $0.key < $1.key }) {
            guard mongoc_uri_set_option_as_int32(parsed, name, value) else {
                mongoc_uri_destroy(parsed)
                throw MongoError(code: .invalidArgument, message: "cannot set URI option \(name)=\(value)")
            }
        }
        for (name, value) in boolOptions.sorted(by: { $0.key < $1.key }) {
            guard mongoc_uri_set_option_as_bool(parsed, name, value) else {
                mongoc_uri_destroy(parsed)
                throw MongoError(code: .invalidArgument, message: "cannot set URI option \(name)=\(value)")
            }
        }
        return parsed
    }

    /// Authentication mechanisms libmongoc 1.23 knows (`authMechanism`).
    static let knownAuthMechanisms: Set<String> = [
        "SCRAM-SHA-1", "SCRAM-SHA-256", "MONGODB-X509", "MONGODB-AWS", "GSSAPI", "PLAIN", "MONGODB-CR",
    ]

    /// What libmongoc accepts with only a log warning (and then retries forever on) is an error here: an
    /// unsupported option or value, an unknown `authMechanism`, a TLS file that is not there, a malformed IPv6
    /// host.
    private static func validate(_ parsed: OpaquePointer, uri: String, warnings: [String]) throws(MongoError) {
        func invalid(_ reason: String) -> MongoError {
            MongoError(
                code: .invalidURI,
                message: "invalid MongoDB URI \(MongoURI.redacted(uri)): \(MongoURI.redacted(reason))"
            )
        }
        if let warning = warnings.first { throw invalid(warning) }
        if let mechanism = mongoc_uri_get_auth_mechanism(parsed).map({ String(cString: $0) }),
            !knownAuthMechanisms.contains(mechanism.uppercased())
        {
            throw invalid(
                "unknown authMechanism \"\(mechanism)\" (known: \(knownAuthMechanisms.sorted().joined(separator: ", ")))"
            )
        }
        for option in [MONGOC_URI_TLSCAFILE, MONGOC_URI_TLSCERTIFICATEKEYFILE] {
            guard let value = mongoc_uri_get_option_as_utf8(parsed, option, nil).map({ String(cString: $0) }) else {
                continue
            }
            guard access(value, R_OK) == 0, !isDirectory(value) else {
                throw invalid("the \(option) file \"\(value)\" is missing or not readable")
            }
        }
        var node = mongoc_uri_get_hosts(parsed)
        while let current = node {
            if current.pointee.family == AF_INET6 {
                var name = current.pointee.host
                let text = withUnsafeBytes(of: &name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                var address = in6_addr()
                guard inet_pton(AF_INET6, String(text.prefix { $0 != "%" }), &address) == 1 else {
                    throw invalid("malformed IPv6 host [\(text)]")
                }
            }
            node = UnsafePointer(current.pointee.next)
        }
    }

    private static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    private static func hostAndPort(_ host: mongoc_host_list_t) -> String {
        var name = host.host
        let text = withUnsafeBytes(of: &name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if host.family == AF_INET6 { return "[\(text)]:\(host.port)" }
        return "\(text):\(host.port)"
    }
}
