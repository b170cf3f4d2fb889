import FoundationEssentials

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
        let useTLS: Bool
        let rest: Substring
        if text.hasPrefix("redis://") {
            useTLS = false
            rest = text.dropFirst("redis://".count)
        } else if text.hasPrefix("rediss://") {
            useTLS = true
            rest = text.dropFirst("rediss://".count)
        } else {
            throw RedisError(.invalidURL, "the Redis URL must start with redis:// or rediss://")
        }
        var authority = rest.prefix { $0 != "/" && $0 != "?" }
        let path = rest.dropFirst(authority.count)
        var username: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = String(userInfo[..<colon]).percentDecoded ?? String(userInfo[..<colon])
                username = user.isEmpty ? nil : user
                password = String(userInfo[userInfo.index(after: colon)...]).percentDecoded
            } else if !userInfo.isEmpty {
                // redis://secret@host: a password alone (the common older form).
                password = String(userInfo).percentDecoded
            }
        }
        var host = String(authority)
        var port = 6379
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let after = host[host.index(after: close)...]
            let inner = String(host[host.index(after: host.startIndex)..<close])
            if after.hasPrefix(":") {
                guard let parsed = Int(after.dropFirst()) else {
                    throw RedisError(.invalidURL, "bad port in the Redis URL")
                }
                port = parsed
            }
            host = inner
        } else if let colon = host.lastIndex(of: ":") {
            guard let parsed = Int(host[host.index(after: colon)...]) else {
                throw RedisError(.invalidURL, "bad port in the Redis URL")
            }
            port = parsed
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw RedisError(.invalidURL, "no host in the Redis URL") }
        guard (1...65535).contains(port) else { throw RedisError(.invalidURL, "bad port \(port) in the Redis URL") }
        var tls = TLSOptions()
        if let query = path.firstIndex(of: "?").map({ path[path.index(after: $0)...] }) {
            for pair in query.split(separator: "&") where !pair.isEmpty {
                let parts = pair.split(separator: "=", maxSplits: 1).map {
                    String($0).percentDecoded ?? String($0)
                }
                let (key, value) = (parts[0], parts.count > 1 ? parts[1] : "")
                switch key {
                case "ca", "ssl_ca_certs": tls.caFile = value
                case "cert", "ssl_certfile": tls.certificateFile = value
                case "key", "ssl_keyfile": tls.keyFile = value
                case "verify", "ssl_cert_reqs":
                    switch value {
                    case "full", "required": tls.verify = .full
                    case "ca": tls.verify = .ca
                    case "none": tls.verify = .none
                    default:
                        throw RedisError(.invalidURL, "bad \(key)=\(value) in the Redis URL: use full, ca or none")
                    }
                default:
                    throw RedisError(
                        .invalidURL,
                        "unknown option \(key) in the Redis URL (known: ca, verify, cert, key)"
                    )
                }
            }
            if !useTLS && tls != TLSOptions() {
                throw RedisError(.invalidURL, "TLS options need a rediss:// URL")
            }
            if (tls.certificateFile == nil) != (tls.keyFile == nil) {
                throw RedisError(.invalidURL, "a client certificate needs both cert= and key=")
            }
        }
        var database = 0
        let dbText = path.hasPrefix("/") ? path.dropFirst().prefix { $0 != "?" } : ""
        if !dbText.isEmpty {
            guard let parsed = Int(dbText), parsed >= 0 else {
                throw RedisError(.invalidURL, "bad database number \"\(dbText)\" in the Redis URL")
            }
            database = parsed
        }
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.useTLS = useTLS
        self.tls = tls
    }

    /// The URL with the password replaced by `***`.
    public var description: String {
        var user = ""
        if let username { user = username }
        if password != nil { user += ":***" }
        if !user.isEmpty { user += "@" }
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(useTLS ? "rediss" : "redis")://\(user)\(hostText):\(port)/\(database)"
    }
}

/// A Redis failure a user can act on. ``description`` never contains the password.
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case invalidURL, connectionRefused, hostNotFound, timeout, connectionLost
        /// Wrong password or user (`WRONGPASS`, `invalid password`).
        case authenticationFailed
        /// The server needs AUTH and none (or not enough) was given (`NOAUTH`).
        case authenticationRequired
        /// The TLS handshake failed (untrusted or mismatched certificate, unreadable CA file, not a TLS port).
        case tlsFailed
        case protocolError
        /// An error reply to a command that must succeed.
        case server
        /// Part of a pipelined batch did not run and stopped the rest (see the HA script's fence): send it again.
        case batchInterrupted
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// Worth retrying with backoff (the server may come back).
    public var isTransient: Bool {
        switch kind {
        case .connectionRefused, .hostNotFound, .timeout, .connectionLost, .protocolError, .batchInterrupted:
            return true
        case .server:
            // The server is starting, busy, failing over or full: hold the oplog and retry rather than exit.
            // The message is "<COMMAND> failed: <Redis error reply>" (RedisConnection.check).
            let reply = message.firstRange(of: " failed: ").map { String(message[$0.upperBound...]) } ?? message
            return ["LOADING", "BUSY", "TRYAGAIN", "READONLY", "MASTERDOWN", "OOM"].contains { reply.hasPrefix($0) }
        default: return false
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
