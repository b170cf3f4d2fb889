import Crypto
import Foundation
import _CryptoExtras

/// The two SCRAM mechanisms mongod offers (RFC 5802 / RFC 7677 and MongoDB's auth spec).
public enum SCRAMMechanism: String, Sendable, CaseIterable, Hashable {
    case sha1 = "SCRAM-SHA-1"
    case sha256 = "SCRAM-SHA-256"

    /// mongod's defaults: 10,000 iterations and a 16-byte salt for SHA-1, 15,000 and 28 bytes for SHA-256.
    var defaultIterations: Int { self == .sha1 ? 10_000 : 15_000 }
    var saltLength: Int { self == .sha1 ? 16 : 28 }

    func hash(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .sha1: return Array(Insecure.SHA1.hash(data: bytes))
        case .sha256: return Array(SHA256.hash(data: bytes))
        }
    }

    func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: key)
        switch self {
        case .sha1: return Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: key))
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
        }
    }

    /// `Hi(password, salt, i)` of RFC 5802: PBKDF2 with this mechanism's HMAC.
    func saltedPassword(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let function: KDF.Insecure.PBKDF2.HashFunction = self == .sha1 ? .insecureSHA1 : .sha256
        let length = self == .sha1 ? Insecure.SHA1.byteCount : SHA256.byteCount
        // swift-crypto's PBKDF2 throws only for parameters we never pass (empty output); fall back to no key.
        let key = try? KDF.Insecure.PBKDF2.deriveKey(
            from: password,
            salt: salt,
            using: function,
            outputByteCount: length,
            unsafeUncheckedRounds: iterations
        )
        return key.map { $0.withUnsafeBytes { Array($0) } } ?? []
    }

    /// The bytes fed to PBKDF2 for MongoDB: SCRAM-SHA-1 uses the hex MD5 of `user:mongo:password` (the legacy
    /// MONGODB-CR digest), SCRAM-SHA-256 the SASLprep'd password.
    public func mongoPassword(user: String, password: String) -> [UInt8] {
        switch self {
        case .sha1:
            let digest = Insecure.MD5.hash(data: Array("\(user):mongo:\(password)".utf8))
            return Array(digest.map { String(format: "%02x", $0) }.joined().utf8)
        case .sha256:
            return Array(SASLprep.prepare(password).utf8)
        }
    }
}

/// What mongod stores per user and mechanism (`SCRAM-SHA-256: {iterationCount, salt, storedKey, serverKey}`).
public struct SCRAMCredentials: Sendable, Hashable {
    public let mechanism: SCRAMMechanism
    public let salt: [UInt8]
    public let iterations: Int
    public let storedKey: [UInt8]
    public let serverKey: [UInt8]

    /// Derives the stored and server keys from the bytes fed to PBKDF2 (see ``SCRAMMechanism/mongoPassword``).
    public init(mechanism: SCRAMMechanism, derivedPassword: [UInt8], salt: [UInt8], iterations: Int) {
        self.mechanism = mechanism
        self.salt = salt
        self.iterations = iterations
        let salted = mechanism.saltedPassword(derivedPassword, salt: salt, iterations: iterations)
        let clientKey = mechanism.hmac(key: salted, Array("Client Key".utf8))
        storedKey = mechanism.hash(clientKey)
        serverKey = mechanism.hmac(key: salted, Array("Server Key".utf8))
    }

    /// MongoDB credentials for `user`/`password` with a random salt and mongod's default iteration count.
    public init(mechanism: SCRAMMechanism, user: String, password: String) {
        self.init(
            mechanism: mechanism,
            derivedPassword: mechanism.mongoPassword(user: user, password: password),
            salt: (0..<mechanism.saltLength).map { _ in UInt8.random(in: 0...255) },
            iterations: mechanism.defaultIterations
        )
    }
}

/// Why a SCRAM exchange failed (mongod answers every one of these with 18 `Authentication failed.`).
public enum SCRAMFailure: Error, Equatable, Sendable {
    case malformed(String)
    case unknownUser
    case nonceMismatch
    case wrongProof
}

/// The server side of one SCRAM conversation (pure: no I/O, no clock). Step 1 takes the client-first message and
/// returns the server-first; step 2 takes the client-final, checks the proof and returns the server-final
/// (`v=<signature>`).
public struct SCRAMServerConversation: Sendable {
    public let mechanism: SCRAMMechanism
    /// The SCRAM user name as sent (`=2C`/`=3D` decoded).
    public private(set) var user: String = ""
    private var credentials: SCRAMCredentials?
    private var clientFirstBare = ""
    private var serverFirst = ""
    private var combinedNonce = ""
    private let serverNonce: String

    /// `serverNonce`: nil draws 24 random bytes, base64 (as mongod does); tests pass the RFC's.
    public init(mechanism: SCRAMMechanism, serverNonce: String? = nil) {
        self.mechanism = mechanism
        self.serverNonce =
            serverNonce ?? Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    /// Step 1: `n,,n=<user>,r=<nonce>` → `r=<nonce+server>,s=<salt>,i=<iterations>`. `lookup` maps the user name
    /// to its credentials for this mechanism.
    public mutating func start(
        _ clientFirst: [UInt8],
        lookup: (String) -> SCRAMCredentials?
    ) -> Result<[UInt8], SCRAMFailure> {
        let text = String(decoding: clientFirst, as: UTF8.self)
        // gs2-header: "n,," or "y,," (no channel binding); an authzid ("a=") is not supported by mongod either.
        guard text.hasPrefix("n,,") || text.hasPrefix("y,,") else {
            return .failure(.malformed("unsupported gs2 header"))
        }
        let bare = String(text.dropFirst(3))
        let attributes = Self.attributes(bare)
        guard let name = attributes["n"], let nonce = attributes["r"], !nonce.isEmpty else {
            return .failure(.malformed("missing n or r"))
        }
        guard let decoded = Self.decodeSaslName(name) else { return .failure(.malformed("bad user name")) }
        user = decoded
        guard let found = lookup(decoded) else { return .failure(.unknownUser) }
        credentials = found
        clientFirstBare = bare
        combinedNonce = nonce + serverNonce
        serverFirst = "r=\(combinedNonce),s=\(Data(found.salt).base64EncodedString()),i=\(found.iterations)"
        return .success(Array(serverFirst.utf8))
    }

    /// Step 2: `c=biws,r=<nonce>,p=<proof>` → `v=<server signature>`.
    public func finish(_ clientFinal: [UInt8]) -> Result<[UInt8], SCRAMFailure> {
        guard let credentials else { return .failure(.malformed("no conversation")) }
        let text = String(decoding: clientFinal, as: UTF8.self)
        guard let proofRange = text.range(of: ",p=") else { return .failure(.malformed("missing proof")) }
        let withoutProof = String(text[..<proofRange.lowerBound])
        let attributes = Self.attributes(text)
        guard attributes["r"] == combinedNonce else { return .failure(.nonceMismatch) }
        guard let channel = attributes["c"], channel == "biws" || channel == "eSws" else {
            return .failure(.malformed("bad channel binding"))
        }
        guard let proofText = attributes["p"], let proof = Data(base64Encoded: proofText).map(Array.init),
            proof.count == credentials.storedKey.count
        else { return .failure(.malformed("bad proof")) }
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let clientSignature = mechanism.hmac(key: credentials.storedKey, authMessage)
        let clientKey = zip(proof, clientSignature).map { $0 ^ $1 }
        guard mechanism.hash(clientKey) == credentials.storedKey else { return .failure(.wrongProof) }
        let serverSignature = mechanism.hmac(key: credentials.serverKey, authMessage)
        return .success(Array("v=\(Data(serverSignature).base64EncodedString())".utf8))
    }

    /// `a=1,b=2` → ["a": "1", "b": "2"] (values may contain `=`; the first one separates).
    static func attributes(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let equals = part.firstIndex(of: "="), part.distance(from: part.startIndex, to: equals) == 1 else {
                continue
            }
            let key = String(part[..<equals])
            if result[key] == nil { result[key] = String(part[part.index(after: equals)...]) }
        }
        return result
    }

    /// RFC 5802 saslname: `=2C` → `,`, `=3D` → `=`; any other `=` is an error.
    static func decodeSaslName(_ name: String) -> String? {
        var result = ""
        var index = name.startIndex
        while index < name.endIndex {
            let character = name[index]
            if character == "=" {
                let code = name[index...].prefix(3)
                if code == "=2C" {
                    result.append(",")
                } else if code == "=3D" {
                    result.append("=")
                } else {
                    return nil
                }
                index = name.index(index, offsetBy: 3)
            } else {
                result.append(character)
                index = name.index(after: index)
            }
        }
        return result
    }
}

/// The client side of SCRAM (for tests that speak the exchange themselves, e.g. without `skipEmptyExchange`).
public struct SCRAMClientConversation: Sendable {
    public let mechanism: SCRAMMechanism
    private let user: String
    private let derivedPassword: [UInt8]
    private let clientNonce: String
    private var clientFirstBare = ""
    private var expectedServerSignature: [UInt8] = []

    /// `derivedPassword`: the bytes PBKDF2 takes (``SCRAMMechanism/mongoPassword(user:password:)`` for MongoDB).
    public init(mechanism: SCRAMMechanism, user: String, derivedPassword: [UInt8], clientNonce: String? = nil) {
        self.mechanism = mechanism
        self.user = user
        self.derivedPassword = derivedPassword
        self.clientNonce =
            clientNonce ?? Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    public mutating func first() -> [UInt8] {
        let name = user.replacingOccurrences(of: "=", with: "=3D").replacingOccurrences(of: ",", with: "=2C")
        clientFirstBare = "n=\(name),r=\(clientNonce)"
        return Array("n,,\(clientFirstBare)".utf8)
    }

    /// The client-final for a server-first; nil when the server-first is malformed or drops our nonce.
    public mutating func final(_ serverFirst: [UInt8]) -> [UInt8]? {
        let text = String(decoding: serverFirst, as: UTF8.self)
        let attributes = SCRAMServerConversation.attributes(text)
        guard let nonce = attributes["r"], nonce.hasPrefix(clientNonce),
            let salt = attributes["s"].flatMap({ Data(base64Encoded: $0) }),
            let iterations = attributes["i"].flatMap({ Int($0) }), iterations > 0
        else { return nil }
        let withoutProof = "c=biws,r=\(nonce)"
        let salted = mechanism.saltedPassword(derivedPassword, salt: Array(salt), iterations: iterations)
        let clientKey = mechanism.hmac(key: salted, Array("Client Key".utf8))
        let storedKey = mechanism.hash(clientKey)
        let authMessage = Array("\(clientFirstBare),\(text),\(withoutProof)".utf8)
        let signature = mechanism.hmac(key: storedKey, authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        let serverKey = mechanism.hmac(key: salted, Array("Server Key".utf8))
        expectedServerSignature = mechanism.hmac(key: serverKey, authMessage)
        return Array("\(withoutProof),p=\(Data(proof).base64EncodedString())".utf8)
    }

    /// Whether the server-final carries the signature only the holder of the server key can compute.
    public func verify(_ serverFinal: [UInt8]) -> Bool {
        let text = String(decoding: serverFinal, as: UTF8.self)
        return text == "v=\(Data(expectedServerSignature).base64EncodedString())"
    }
}

/// SASLprep (RFC 4013) as far as passwords need it: non-ASCII spaces map to U+0020, "commonly mapped to nothing"
/// characters are removed, then NFKC. ASCII passwords are returned unchanged (the common case, and what libmongoc
/// does without ICU). Prohibited-output and bidi checks are not applied.
public enum SASLprep {
    public static func prepare(_ text: String) -> String {
        if text.unicodeScalars.allSatisfy({ $0.isASCII }) { return text }
        var mapped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if mappedToNothing.contains(scalar.value) { continue }
            if nonASCIISpaces.contains(scalar.value) {
                mapped.append(" ")
            } else {
                mapped.append(scalar)
            }
        }
        return String(mapped).precomposedStringWithCompatibilityMapping
    }

    /// RFC 3454 table C.1.2.
    static let nonASCIISpaces: Set<UInt32> = [
        0x00A0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
        0x200B, 0x202F, 0x205F, 0x3000,
    ]
    /// RFC 3454 table B.1.
    static let mappedToNothing: Set<UInt32> = [
        0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C, 0x200D, 0x2060, 0xFE00, 0xFE01, 0xFE02,
        0xFE03, 0xFE04, 0xFE05, 0xFE06, 0xFE07, 0xFE08, 0xFE09, 0xFE0A, 0xFE0B, 0xFE0C, 0xFE0D, 0xFE0E, 0xFE0F,
        0xFEFF,
    ]
}
