import FoundationEssentials
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The one redaction function: everything rsinit prints, logs, serves (`/healthz`, `/metrics`) or writes as
/// `--json` goes through ``redact(_:)`` first. It lives in the lowest module that prints (libmongoc's log lines are
/// forwarded from here).
///
/// What it removes, wherever it appears in the text:
/// - the password of a `user:password@host` user-info, with or without a scheme (`mongodb://`, `redis://`, the
///   scheme-less typo `root:PASSWORD@mongodb:27017`); for `redis[s]://secret@host` (a password alone) the whole
///   user-info;
/// - the value of `password=`, `passwd=`, `pwd=`, `secret=`, `token=` and `authMechanismProperties=` (which also
///   covers `tlsCertificateKeyFilePassword=`, `sslClientCertificateKeyPassword=`), up to `&` or white space (a
///   value in quotes: up to the closing quote);
/// - PEM private key blocks (`-----BEGIN … PRIVATE KEY----- … -----END … PRIVATE KEY-----`);
/// - every secret registered with ``registerSecret(_:)`` (passwords read from files, parsed from URIs and URLs),
///   as given and percent-encoded, when at least 4 characters long (shorter ones would blank out ordinary text;
///   the structural rules above still apply to them).
public enum Redaction {
    /// The replacement text.
    public static let mask = "***"

    /// A registered secret with its percent-encoded form, as bytes for a fast search.
    private struct Secret: Sendable {
        let forms: [(text: String, bytes: [UInt8])]

        init(_ secret: String) {
            var forms = [(secret, Array(secret.utf8))]
            if let encoded = secret.addingPercentEncodingForUserInfo(), encoded != secret {
                forms.append((encoded, Array(encoded.utf8)))
            }
            self.forms = forms
        }
    }

    private static let secrets = Mutex<[Secret]>([])

    /// Registers a secret that must never appear in anything printed, logged or served.
    public static func registerSecret(_ secret: String) {
        guard secret.count >= minimumRegisteredLength else { return }
        secrets.withLock { registered in
            if !registered.contains(where: { $0.forms[0].text == secret }) { registered.append(Secret(secret)) }
        }
    }

    static let minimumRegisteredLength = 4

    /// Registers the credentials found in `text` (a URI, URL or argument that may be malformed): the password of a
    /// user-info, the password alone of a `redis[s]://` user-info, and the values of secret `key=value` options;
    /// each as given and percent-decoded. Later output that repeats them in another shape is still scrubbed.
    public static func registerCredentials(in text: String) {
        var tokens: [Substring] = []
        var start = text.startIndex
        for index in text.indices where isTokenBoundary(text[index]) {
            tokens.append(text[start..<index])
            start = text.index(after: index)
        }
        tokens.append(text[start...])
        for token in tokens {
            for secret in credentialCandidates(in: String(token)) {
                registerSecret(secret)
                if let decoded = secret.removingPercentEncodingLeniently(), decoded != secret {
                    registerSecret(decoded)
                }
            }
        }
    }

    private static func credentialCandidates(in token: String) -> [String] {
        var found: [String] = []
        let redactedToken = redactToken(token)
        if redactedToken != token, let maskRange = redactedToken.firstRange(of: mask) {
            // The secret is what the mask replaced: same prefix, same suffix.
            let prefixCount = redactedToken.distance(from: redactedToken.startIndex, to: maskRange.lowerBound)
            let suffixCount = redactedToken.distance(from: maskRange.upperBound, to: redactedToken.endIndex)
            if prefixCount + suffixCount <= token.count {
                found.append(String(token.dropFirst(prefixCount).dropLast(suffixCount)))
            }
        }
        let characters = Array(token)
        for (i, character) in characters.enumerated() where character == "=" {
            guard secretKeys.contains(where: { isKey($0, endingAt: i, in: characters) }) else { continue }
            let value = characters[(i + 1)...].prefix { !isValueEnd($0) }
            if !value.isEmpty { found.append(String(value)) }
        }
        return found
    }

    /// `text` with every credential replaced by `***` (see the type's documentation). Never fails.
    public static func redact(_ text: String) -> String {
        var result = scrubRegistered(text)
        result = redactPrivateKeys(result)
        result = redactKeyValues(result)
        result = redactUserInfo(result)
        return result
    }

    /// Removes each of `secrets` (and its percent-encoded form) plus the registered secrets.
    public static func redact(_ text: String, secrets extra: [String]) -> String {
        var result = text
        for secret in extra where !secret.isEmpty { result = replacing(secret, in: result) }
        return redact(result)
    }

    private static func scrubRegistered(_ text: String) -> String {
        let registered = secrets.withLock { $0 }
        guard !registered.isEmpty else { return text }
        var result = text
        var bytes = Array(result.utf8)
        for secret in registered {
            for form in secret.forms where contains(bytes, form.bytes) {
                result = result.replacingAll(form.text, with: mask)
                bytes = Array(result.utf8)
            }
        }
        return result
    }

    /// A byte search: most text holds no secret, and this is the common path of every log line.
    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard let first = needle.first, haystack.count >= needle.count else { return false }
        let last = haystack.count - needle.count
        var index = 0
        while index <= last {
            guard let found = haystack[index...last].firstIndex(of: first) else { return false }
            if haystack[found..<(found + needle.count)].elementsEqual(needle) { return true }
            index = found + 1
        }
        return false
    }

    private static func replacing(_ secret: String, in text: String) -> String {
        var result = text
        for form in Secret(secret).forms where contains(Array(result.utf8), form.bytes) {
            result = result.replacingAll(form.text, with: mask)
        }
        return result
    }

    private static func redactPrivateKeys(_ text: String) -> String {
        guard text.contains("PRIVATE KEY") else { return text }
        var result = ""
        var remaining = text[...]
        while let begin = remaining.firstRange(of: "-----BEGIN") {
            guard let header = remaining[begin.upperBound...].firstRange(of: "-----"),
                remaining[begin.upperBound..<header.lowerBound].contains("PRIVATE KEY")
            else {
                result += remaining[..<begin.upperBound]
                remaining = remaining[begin.upperBound...]
                continue
            }
            result += remaining[..<begin.lowerBound]
            result += "-----BEGIN PRIVATE KEY----- \(mask) -----END PRIVATE KEY-----"
            if let end = remaining[header.upperBound...].firstRange(of: "-----END"),
                let endClose = remaining[end.upperBound...].firstRange(of: "-----")
            {
                remaining = remaining[endClose.upperBound...]
            } else {
                remaining = remaining[remaining.endIndex...]
            }
        }
        return result + remaining
    }

    /// Keys whose value is a secret; matched case-insensitively as a suffix of the key, so
    /// `tlsCertificateKeyFilePassword=` is covered by `password=`.
    private static let secretKeys = ["password", "passwd", "pwd", "secret", "token", "authmechanismproperties"]

    /// Whether `characters[..<end]` ends with `key` (lower-case ASCII), ignoring case.
    private static func isKey(_ key: String, endingAt end: Int, in characters: [Character]) -> Bool {
        let keyCharacters = Array(key)
        guard end >= keyCharacters.count else { return false }
        for (offset, expected) in keyCharacters.enumerated() {
            let actual = characters[end - keyCharacters.count + offset]
            guard actual == expected || (actual.isASCII && actual.lowercased() == String(expected)) else {
                return false
            }
        }
        return true
    }

    /// A secret option's value ends at the next option or white space (a quote may be part of a password).
    private static func isValueEnd(_ c: Character) -> Bool {
        c == "&" || c.isWhitespace
    }

    private static func redactKeyValues(_ text: String) -> String {
        guard text.contains("=") else { return text }
        let characters = Array(text)
        var out = ""
        var i = 0
        while i < characters.count {
            out.append(characters[i])
            guard characters[i] == "=" else {
                i += 1
                continue
            }
            let isSecret = secretKeys.contains { isKey($0, endingAt: i, in: characters) }
            i += 1
            guard isSecret, i < characters.count else { continue }
            var j = i
            if characters[i] == "\"" || characters[i] == "'" {
                // A quoted value (`password="…"`): up to the closing quote, if the value ends there.
                let quote = characters[i]
                var close = i + 1
                while close < characters.count, characters[close] != quote { close += 1 }
                if close < characters.count,
                    close + 1 == characters.count || isValueEnd(characters[close + 1])
                        || characters[close + 1] == "," || characters[close + 1] == "}"
                {
                    out.append(quote)
                    out += mask
                    out.append(quote)
                    i = close + 1
                    continue
                }
            }
            while j < characters.count, !isValueEnd(characters[j]) { j += 1 }
            if j > i { out += mask }
            i = j
        }
        return out
    }

    /// RFC 3986: a letter, then letters, digits, `+`, `-`, `.`.
    private static func isScheme(_ text: Substring) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
    }

    /// Tokens are separated by white space only: quotes, brackets and parentheses may be part of a password, and
    /// around a user-info they only widen what is masked.
    private static func isTokenBoundary(_ c: Character) -> Bool { c.isWhitespace }

    /// In each white-space delimited token holding an `@`: the part between the scheme (or the token's
    /// start) and the user-info's `@` is `user:password` (the password is masked) or, for a `redis[s]://` URL, the
    /// password alone.
    private static func redactUserInfo(_ text: String) -> String {
        guard text.contains("@") else { return text }
        var out = ""
        var token = ""
        for c in text {
            if isTokenBoundary(c) {
                out += redactToken(token)
                token = ""
                out.append(c)
            } else {
                token.append(c)
            }
        }
        return out + redactToken(token)
    }

    private static func redactToken(_ token: String) -> String {
        guard token.contains("@") else { return token }
        var start = token.startIndex
        var scheme = ""
        if let separator = token.firstRange(of: "://"), isScheme(token[..<separator.lowerBound]) {
            scheme = token[..<separator.lowerBound].lowercased()
            start = separator.upperBound
        }
        // The user-info ends at the token's last '@' (a password may hold a raw '@', '/' or '?'; an '@' in the
        // query only masks more).
        guard let at = token[start...].lastIndex(of: "@") else { return token }
        let userInfo = token[start..<at]
        if let colon = userInfo.firstIndex(of: ":") {
            guard token.index(after: colon) < at else { return token }
            return String(token[...colon]) + mask + String(token[at...])
        }
        if !userInfo.isEmpty, scheme.hasSuffix("redis") || scheme.hasSuffix("rediss") {
            return String(token[..<start]) + mask + String(token[at...])
        }
        return token
    }
}
