internal import CLibMongoC

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

    /// Parses with libmongoc.
    ///
    /// - Throws: ``MongoError`` with code ``MongoError/Code/invalidURI`` and libmongoc's reason (credentials removed).
    public init(_ uri: String) throws(MongoError) {
        MongoRuntime.ensureInitialized()
        var error = bson_error_t()
        guard let parsed = mongoc_uri_new_with_error(uri, &error) else {
            let reason = String(cString: rsinit_bson_error_message(&error))
            throw MongoError(
                code: .invalidURI,
                message: "invalid MongoDB URI \(MongoURI.redacted(uri)): \(MongoURI.redacted(reason))",
                driverDomain: error.domain,
                driverCode: error.code
            )
        }
        defer { mongoc_uri_destroy(parsed) }
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
    }

    /// The URI with the password and secret options replaced by `***`.
    public var redacted: String { MongoURI.redacted(uri) }
    public var description: String { redacted }

    /// A copy with standard URI options set through libmongoc (e.g. `directConnection`, `connectTimeoutMS`).
    public func settingOptions(int32 intOptions: [String: Int32] = [:], bool boolOptions: [String: Bool] = [:])
        throws(MongoError) -> MongoConnectionString
    {
        var error = bson_error_t()
        guard let parsed = mongoc_uri_new_with_error(uri, &error) else {
            throw MongoError(code: .invalidURI, message: "invalid MongoDB URI \(redacted)")
        }
        defer { mongoc_uri_destroy(parsed) }
        for (name, value) in intOptions.sorted(by: { $0.key < $1.key }) {
            guard mongoc_uri_set_option_as_int32(parsed, name, value) else {
                throw MongoError(code: .invalidArgument, message: "cannot set URI option \(name)=\(value)")
            }
        }
        for (name, value) in boolOptions.sorted(by: { $0.key < $1.key }) {
            guard mongoc_uri_set_option_as_bool(parsed, name, value) else {
                throw MongoError(code: .invalidArgument, message: "cannot set URI option \(name)=\(value)")
            }
        }
        return try MongoConnectionString(String(cString: mongoc_uri_get_string(parsed)))
    }

    private static func hostAndPort(_ host: mongoc_host_list_t) -> String {
        var name = host.host
        let text = withUnsafeBytes(of: &name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if host.family == AF_INET6 { return "[\(text)]:\(host.port)" }
        return "\(text):\(host.port)"
    }
}
