import FoundationEssentials
import NIOCore
import RSInitSupport

#if canImport(Glibc)
import Glibc
#endif

/// A `redis://` / `rediss://` URL: `redis://[[user]:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    /// `rediss://`: TLS.
    public var useTLS: Bool
    /// TLS settings from the query of a `rediss://` URL.
    public var tls: TLSOptions
    /// One server (`redis://`), a Sentinel-managed master (`redis+sentinel://`) or a Cluster (`redis+cluster://`);
    /// see RedisTopology.swift. `host`/`port` are the first seed address when it is not `.direct`.
    public var topology: Topology = .direct

    /// `rediss://host:6380/0?ca=/ca.pem&verify=full|ca|none&cert=/client.pem&key=/client.key` (redis-py's
    /// `ssl_ca_certs`, `ssl_cert_reqs=required|none`, `ssl_certfile`, `ssl_keyfile` are accepted too).
    public struct TLSOptions: Sendable, Equatable {
        public enum Verify: String, Sendable {
            /// The chain against the CA and the certificate against the host name (or IP) (the default).
            case full
            /// The chain only (certificates issued for another name).
            case ca
            /// Nothing: encryption without authentication of the server. For tests only.
            case none
        }

        /// PEM file of the CA(s) to trust; the system trust store when nil.
        public var caFile: String?
        public var verify: Verify = .full
        /// Client certificate and key (PEM) for servers with `tls-auth-clients yes`.
        public var certificateFile: String?
        public var keyFile: String?

        public init() {}
    }

    /// - Throws: ``RedisError`` (``RedisError/Kind/invalidURL``) naming what is wrong; never echoes the password.
    public init(_ text: String) throws(RedisError) {
        if let parsed = try Self.parseTopologyURL(text) {
            self = parsed
            return
        }
        let (useTLS, rest) = try Self.parseScheme(text)
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        let path = rest.dropFirst(authority.count)
        let (username, password, hostPart) = try Self.parseUserInfo(authority)
        let (host, port) = try Self.parseHostAndPort(hostPart)
        var tls = TLSOptions()
        if let question = path.firstIndex(of: "?") {
            tls = try Self.parseTLSOptions(path[path.index(after: question)...], useTLS: useTLS)
        }
        let database = try Self.parseDatabase(path)
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.useTLS = useTLS
        self.tls = tls
    }

    /// `redis://` or `rediss://` (TLS), and what follows it.
    static func parseScheme(_ text: String) throws(RedisError) -> (useTLS: Bool, rest: Substring) {
        if text.hasPrefix("redis://") { return (false, text.dropFirst("redis://".count)) }
        if text.hasPrefix("rediss://") { return (true, text.dropFirst("rediss://".count)) }
        throw RedisError(.invalidURL, "the Redis URL must start with redis:// or rediss://")
    }

    /// `[user:password@]host…` or `[password@]host…`: the percent-decoded credentials (the password registered as a
    /// secret, so no log shows it) and the host part.
    static func parseUserInfo(
        _ authority: Substring
    ) throws(RedisError) -> (username: String?, password: String?, host: Substring) {
        guard let at = authority.lastIndex(of: "@") else { return (nil, nil, authority) }
        let userInfo = authority[..<at]
        var username: String?
        var password: String?
        if let colon = userInfo.firstIndex(of: ":") {
            let user = try Self.percentDecoded(userInfo[..<colon], "user name")
            username = user.isEmpty ? nil : user
            password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], "password")
        } else if !userInfo.isEmpty {
            // redis://secret@host: a password alone (the common older form).
            password = try Self.percentDecoded(userInfo, "password")
        }
        if let password { Redaction.registerSecret(password) }
        return (username, password, authority[authority.index(after: at)...])
    }

    /// The query's TLS options (`ca`, `verify`, `cert`, `key` and their redis-py names); they need `rediss://`, and a
    /// client certificate needs both its files.
    static func parseTLSOptions(_ query: Substring, useTLS: Bool) throws(RedisError) -> TLSOptions {
        var tls = TLSOptions()
        for (_, key, value) in try Self.queryOptions(query) {
            switch key {
            case "ca", "ssl_ca_certs", "cert", "ssl_certfile", "key", "ssl_keyfile":
                guard !value.isEmpty else {
                    throw RedisError(.invalidURL, "\(key)= needs a file path in the Redis URL")
                }
                switch key {
                case "ca", "ssl_ca_certs": tls.caFile = value
                case "cert", "ssl_certfile": tls.certificateFile = value
                default: tls.keyFile = value
                }
            case "verify", "ssl_cert_reqs":
                switch value {
                case "full", "required": tls.verify = .full
                case "ca": tls.verify = .ca
                case "none": tls.verify = .none
                default:
                    throw RedisError(
                        .invalidURL,
                        "bad \(key)=\(Self.shown(value)) in the Redis URL: use full, ca or none"
                    )
                }
            default:
                throw RedisError(
                    .invalidURL,
                    "unknown option \(Self.shown(key)) in the Redis URL (known: ca, verify, cert, key)"
                )
            }
        }
        if !useTLS && tls != TLSOptions() {
            throw RedisError(.invalidURL, "TLS options (ca=, verify=, cert=, key=) need a rediss:// Redis URL")
        }
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw RedisError(.invalidURL, "a client certificate needs both cert= and key= in the Redis URL")
        }
        return tls
    }

    /// The largest database index Redis accepts (its `databases` setting is at most INT_MAX; a server with fewer
    /// databases answers SELECT with "DB index is out of range", a configuration error too).
    public static let maximumDatabase = Int(Int32.max)  // trap-checked: Int32 to Int widens

    // MARK: Validation helpers (each part of the URL is checked on its own; a bad part is a usage error).

    /// The options of a Redis URL's query, each as written (`pair`) and percent-decoded (`key`, `value`; no `=` is
    /// an empty value). A pair without a name is an error: "=" alone splits into no part at all, and reading its
    /// first part trapped (`--redis 'redis://h?='`).
    static func queryOptions(
        _ query: Substring
    ) throws(RedisError) -> [(pair: Substring, key: String, value: String)] {
        var options: [(pair: Substring, key: String, value: String)] = []
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).percentDecoded ?? String($0) }
            guard let key = parts.first, !pair.hasPrefix("=") else {
                throw RedisError(.invalidURL, "an option without a name in the Redis URL")
            }
            options.append((pair, key, parts.count > 1 ? parts[1] : ""))
        }
        return options
    }

    /// `host`, `host:port`, `[v6]`, `[v6]:port`: a host name (letters, digits, `-`, `_`, `.`), an IPv4 address or a
    /// bracketed IPv6 address; the port 1-65535 (default 6379).
    static func parseHostAndPort(_ authority: Substring) throws(RedisError) -> (host: String, port: Int) {
        var host = String(authority)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else {
                throw RedisError(.invalidURL, "malformed IPv6 host in the Redis URL: no closing ]")
            }
            let after = host[host.index(after: close)...]
            let inner = String(host[host.index(after: host.startIndex)..<close])
            guard isIPv6Address(inner) else {
                throw RedisError(.invalidURL, "malformed IPv6 host [\(shown(inner))] in the Redis URL")
            }
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    throw RedisError(.invalidURL, "unexpected text after the IPv6 host in the Redis URL")
                }
                portText = after.dropFirst()
            }
            host = inner
        } else {
            if let colon = host.lastIndex(of: ":") {
                guard host.firstIndex(of: ":") == colon else {
                    throw RedisError(
                        .invalidURL,
                        "an IPv6 host in the Redis URL needs brackets: redis://[::1]:6379"
                    )
                }
                portText = host[host.index(after: colon)...]
                host = String(host[..<colon])
            }
            guard !host.isEmpty else { throw RedisError(.invalidURL, "no host in the Redis URL") }
            guard host.utf8.count <= 253,
                host.unicodeScalars.allSatisfy({
                    ($0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil))
                        || $0 == "-" || $0 == "." || $0 == "_"
                })
            else {
                throw RedisError(.invalidURL, "invalid host \"\(shown(host))\" in the Redis URL")
            }
        }
        var port = 6379
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let parsed = Int(portText), (1...65535).contains(parsed)  // trap-checked: parsing text: nil, not a trap
            else {
                throw RedisError(.invalidURL, "bad port \"\(shown(String(portText)))\" in the Redis URL (1-65535)")
            }
            port = parsed
        }
        return (host, port)
    }

    /// `/<db>` (optional): digits only, 0 to ``maximumDatabase``.
    static func parseDatabase(_ path: Substring) throws(RedisError) -> Int {
        let dbText = path.hasPrefix("/") ? path.dropFirst().prefix { $0 != "?" } : ""
        guard !dbText.isEmpty else { return 0 }
        // trap-checked: parsing text: nil, not a trap
        guard dbText.count <= 10, dbText.allSatisfy({ $0.isASCII && $0.isNumber }), let parsed = Int(dbText),
            (0...maximumDatabase).contains(parsed)
        else {
            throw RedisError(
                .invalidURL,
                "bad database number \"\(shown(String(dbText)))\" in the Redis URL (0-\(maximumDatabase); most "
                    + "servers have 16: 0-15)"
            )
        }
        return parsed
    }

    /// Whether `text` is an IPv6 address (optionally with a `%zone`), by the system's own parser.
    public static func isIPv6Address(_ text: String) -> Bool {
        let address = text.prefix { $0 != "%" }
        guard !address.isEmpty, address.contains(":") else { return false }
        guard case .v6 = try? SocketAddress(ipAddress: String(address), port: 0) else { return false }
        return true
    }

    /// The TLS files of a `rediss://` URL exist and are readable files, so a typo is a usage error at start rather
    /// than a handshake failure on every retry.
    public func checkTLSFiles() throws(RedisError) {
        for (option, path) in [("ca", tls.caFile), ("cert", tls.certificateFile), ("key", tls.keyFile)] {
            guard let path else { continue }
            guard LocalFile.isReadableRegularFile(path) else {
                throw RedisError(
                    .invalidURL,
                    "the \(option)= file \"\(Self.shown(path))\" of the Redis URL is missing or not a readable file"
                )
            }
        }
    }

    private static func shown(_ text: String) -> String { Redaction.shown(text) }

    /// A user-info part, percent-decoded; malformed escapes are an error (never a silently dropped password).
    static func percentDecoded(_ text: Substring, _ what: String) throws(RedisError) -> String {
        guard let decoded = String(text).percentDecoded else {
            Redaction.registerSecret(String(text))
            throw RedisError(
                .invalidURL,
                "the \(what) in the Redis URL has a malformed %-escape: percent-encode % as %25"
            )
        }
        return decoded
    }

    /// The URL with the password replaced by `***`.
    public var description: String {
        if let text = topologyDescription { return text }
        var user = ""
        if let username { user = username }
        if password != nil { user += ":***" }
        if !user.isEmpty { user += "@" }
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(useTLS ? "rediss" : "redis")://\(user)\(hostText):\(port)/\(database)"
    }
}

/// A Redis failure a user can act on. ``description`` never contains the password.
///
/// Every failure has a typed ``Kind``, and every kind one ``Category``: what the bridge does with it (retry with
/// backoff, or end the run with exit 2 or 6) is decided from the category alone, never from message text. Error
/// replies from the server are classified once, when they arrive (``RedisError/reply(_:command:)``), by Redis's
/// own error code (the reply's first word: `LOADING`, `NOAUTH`, …).
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// The `--redis` URL (or its TLS files) is wrong.
        case invalidURL
        case connectionRefused, hostNotFound, timeout, connectionLost
        /// Wrong password or user (`WRONGPASS`, `invalid password`).
        case authenticationFailed
        /// The server needs AUTH and none (or not enough) was given (`NOAUTH`).
        case authenticationRequired
        /// The user lacks a permission (`NOPERM`).
        case permissionDenied
        /// The TLS handshake failed (untrusted or mismatched certificate, unreadable CA file, not a TLS port).
        case tlsFailed
        /// The byte stream is not RESP, or a frame exceeds a limit: the connection is closed and opened again.
        case protocolError
        /// A well-formed reply that makes no sense for the command (the dedupe script returning a non-integer, a
        /// checkpoint that does not parse): the connection is closed and the command retried.
        case unexpectedReply
        /// The server refuses the set-up for good: a database index it does not have, a command it does not know
        /// or has disabled (`ERR DB index is out of range`, `ERR unknown command`).
        case serverConfiguration
        /// The server is starting, busy, failing over or full (`LOADING`, `BUSY`, `TRYAGAIN`, `READONLY`,
        /// `MASTERDOWN`, `OOM`, `CLUSTERDOWN`, `NOREPLICAS`, `MOVED`/`ASK` during resharding).
        case serverBusy
        /// Any other error reply to a command that must succeed.
        case server
        /// Part of a pipelined batch did not run and stopped the rest (see the HA script's fence): send it again.
        case batchInterrupted
    }

    /// What to do about a failure.
    public enum Category: String, Sendable {
        /// Fix the input or the server's configuration: exit 2 at start, never a retry loop.
        case usage
        /// Fix the credentials or the user's permissions: exit 6.
        case authentication
        /// Retry with backoff; the oplog waits.
        case transient
        /// An error reply nobody classified: not retried, exit 2 with the server's words.
        case server
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public var category: Category { Self.category(of: kind) }

    public static func category(of kind: Kind) -> Category {
        switch kind {
        case .invalidURL, .tlsFailed, .serverConfiguration: return .usage
        case .authenticationFailed, .authenticationRequired, .permissionDenied: return .authentication
        case .connectionRefused, .hostNotFound, .timeout, .connectionLost, .protocolError, .unexpectedReply,
            .serverBusy, .batchInterrupted:
            return .transient
        case .server: return .server
        }
    }

    /// Worth retrying with backoff (the server may come back): the ``Category/transient`` category.
    public var isTransient: Bool { category == .transient }

    /// The kind of an error reply, from Redis's error code (the reply's first word).
    public static func kind(ofReply reply: String) -> Kind {
        let code = reply.prefix { $0 != " " }
        switch code {
        case "NOAUTH": return .authenticationRequired
        case "WRONGPASS": return .authenticationFailed
        case "NOPERM": return .permissionDenied
        case "LOADING", "BUSY", "TRYAGAIN", "READONLY", "MASTERDOWN", "OOM", "CLUSTERDOWN", "NOREPLICAS", "MOVED",
            "ASK", "MISCONF":
            return .serverBusy
        case "ERR":
            let rest = reply.dropFirst(code.count).drop { $0 == " " }.lowercased()
            if rest.hasPrefix("db index is out of range") || rest.hasPrefix("invalid db index")
                || rest.hasPrefix("unknown command") || rest.hasPrefix("select is not allowed")
            {
                return .serverConfiguration
            }
            if rest.hasPrefix("invalid password") || rest.hasPrefix("client sent auth, but no password is set")
                || rest.hasPrefix("auth <password> called without any password configured")
            {
                return .authenticationFailed
            }
            return .server
        default: return .server
        }
    }

    /// The failure for an error reply to `command`; the reply text is shown redacted (a server may echo input).
    public static func reply(_ reply: String, command: String) -> RedisError {
        let kind = kind(ofReply: reply)
        let text = Redaction.redact(String(reply.prefix(300)))
        switch kind {
        case .authenticationRequired:
            return RedisError(kind, "Redis requires authentication: put the password (and user) in --redis")
        case .permissionDenied:
            return RedisError(kind, "the Redis user lacks a permission for \(command): \(text)")
        default:
            return RedisError(kind, "\(command) failed: \(text)")
        }
    }
}

extension String {
    /// The text with `%XX` escapes decoded, or nil if an escape is malformed or the bytes are not UTF-8 (as
    /// Foundation's `removingPercentEncoding`, which FoundationEssentials does not have).
    var percentDecoded: String? {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(\.hexDigitValue),
                let low = iterator.next().flatMap(\.hexDigitValue)
            else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

extension UInt8 {
    /// The value of an ASCII hex digit, nil for any other byte.
    fileprivate var hexDigitValue: UInt8? {
        switch self {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): self - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): self - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): self - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
