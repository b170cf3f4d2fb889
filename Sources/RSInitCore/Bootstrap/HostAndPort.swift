/// A `host:port` pair as used in replica-set member configs.
public struct HostAndPort: Sendable, Hashable, CustomStringConvertible {
    /// A host name or IP address, as the other members and clients must reach it.
    public var host: String
    /// The TCP port (27017 for a default mongod).
    public var port: Int

    /// A member address; no validation here (``BootstrapConfiguration`` validates members).
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to `defaultPort`.
    public init?(parsing text: String, defaultPort: Int = 27017) {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty, !trimmed.contains("/"), !trimmed.contains(" "), !trimmed.contains("@") else {
            return nil
        }
        var host = trimmed
        var port = defaultPort
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]") else { return nil }
            host = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
            let rest = trimmed[trimmed.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let parsed = Self.port(rest.dropFirst()) else { return nil }
                port = parsed
            }
        } else if let colon = trimmed.lastIndex(of: ":") {
            guard trimmed.firstIndex(of: ":") == colon, let parsed = Self.port(trimmed[trimmed.index(after: colon)...])
            else {
                return nil
            }
            host = String(trimmed[..<colon])
            port = parsed
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.host = host
        self.port = port
    }

    /// Decimal digits only (no sign, no spaces), at most 5 of them.
    private static func port(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)  // trap-checked: parsing text: nil, not a trap
    }

    /// Whether the host is a loopback reference (`localhost`, `127.x.x.x`, `::1`): only reachable from inside
    /// mongod's own network namespace.
    public var isLoopback: Bool {
        let lower = host.lowercased()
        return lower == "localhost" || lower.hasSuffix(".localhost") || lower.hasPrefix("127.") || lower == "::1"
            || lower == "0:0:0:0:0:0:0:1"
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
