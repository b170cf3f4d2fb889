import FoundationEssentials

/// Helpers for MongoDB connection strings. Parsing is libmongoc's job; this only makes URIs safe to print.
public enum MongoURI {
    /// Query options whose values are secrets.
    private static let secretOptions: Set<String> = [
        "password", "tlscertificatekeyfilepassword", "sslclientcertificatekeypassword", "authmechanismproperties",
    ]

    /// The URI with the password (and secret options) replaced by `***`. Never fails; text that is not a URI is
    /// returned with anything between `//` and the last `@` before the host list treated as credentials.
    public static func redacted(_ uri: String) -> String {
        guard let schemeEnd = uri.firstRange(of: "://") else { return uri }
        let scheme = uri[..<schemeEnd.upperBound]
        let rest = uri[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = String(rest[..<authorityEnd])
        var tail = String(rest[authorityEnd...])
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            let hosts = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                authority = "\(userInfo[..<colon]):***@\(hosts)"
            } else {
                authority = "\(userInfo)@\(hosts)"
            }
        }
        if let question = tail.firstIndex(of: "?") {
            let path = tail[..<question]
            let query = tail[tail.index(after: question)...]
            let options = query.split(separator: "&", omittingEmptySubsequences: false).map { option -> String in
                guard let equals = option.firstIndex(of: "=") else { return String(option) }
                let key = option[..<equals]
                return secretOptions.contains(key.lowercased()) ? "\(key)=***" : String(option)
            }
            tail = "\(path)?\(options.joined(separator: "&"))"
        }
        return "\(scheme)\(authority)\(tail)"
    }

    /// Removes every occurrence of each secret (and its percent-encoded form) from `text`.
    public static func scrub(_ text: String, secrets: [String]) -> String {
        var result = text
        for secret in secrets where secret.count >= 1 {
            result = result.replacingAll(secret, with: "***")
            if let encoded = secret.addingPercentEncodingForUserInfo(), encoded != secret {
                result = result.replacingAll(encoded, with: "***")
            }
        }
        return result
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var remaining = self[...]
        while let range = remaining.firstRange(of: target) {
            result += remaining[..<range.lowerBound]
            result += replacement
            remaining = remaining[range.upperBound...]
        }
        result += remaining
        return result
    }

    func addingPercentEncodingForUserInfo() -> String? {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        var out = ""
        for byte in utf8 {
            if unreserved.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
