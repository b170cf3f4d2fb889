import RSInitSupport
import RSInitTestUtils
import Testing

@Suite struct RedactionTests {
    /// Printable ASCII without white space: what a password in a URI, URL or option can hold raw.
    static let secretAlphabet = Array(
        (33...126).map { Character(Unicode.Scalar(UInt8($0))) }
    )
    static let textAlphabet = secretAlphabet + [" ", " ", "\t", "\n", "é", "→"]
    static let alphanumerics = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    static func string<G: RandomNumberGenerator>(
        _ alphabet: [Character],
        _ lengths: ClosedRange<Int>,
        _ rng: inout G
    ) -> String {
        String((0..<Int.random(in: lengths, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
    }

    /// One secret in one of the shapes the README promises to redact, in `context`.
    static func embed<G: RandomNumberGenerator>(_ secret: String, shape: Int, _ rng: inout G) -> String {
        let user = string(alphanumerics, 1...8, &rng)
        let host =
            string(alphanumerics, 1...10, &rng) + [".example", "", ":27017", ":6379"].randomElement(using: &rng)!
        let encoded = secret.unicodeScalars.map { scalar -> String in
            scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                ? String(scalar) : "%" + String(scalar.value, radix: 16, uppercase: true)
        }.joined()
        switch shape {
        case 0: return "mongodb://\(user):\(secret)@\(host)/db?replicaSet=rs0"
        case 1: return "mongodb+srv://\(user):\(encoded)@\(host)/"
        case 2: return "\(user):\(secret)@\(host)"  // the URI without its scheme
        case 3: return "redis://:\(secret)@\(host)/0"
        case 4: return "rediss://\(user):\(secret)@\(host)?verify=full"
        case 5: return "redis://\(secret)@\(host)"  // a password alone
        case 6: return "mongodb://\(host)/?authSource=admin&password=\(secret)&appname=x"
        case 7: return "mongodb://\(host)/?tls=true&tlsCertificateKeyFilePassword=\(secret)"
        case 8:
            return "mongodb://\(host)/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:\(secret)"
        case 9: return "sslClientCertificateKeyPassword=\(secret)"
        case 10: return "-----BEGIN PRIVATE KEY-----\n\(secret)\n\(secret)\n-----END PRIVATE KEY-----"
        case 11: return "-----BEGIN RSA PRIVATE KEY-----\n\(secret)\n-----END RSA PRIVATE KEY-----"
        case 12: return "--uri=\(user):\(secret)@\(host)"
        case 13: return "\"mongodb://\(user):\(secret)@\(host)\""
        default: return "\(user):\(encoded)@\(host)"
        }
    }

    static let shapes = 15

    /// For random secrets in every shape, surrounded by random text: the secret (and its percent-encoded form)
    /// never survives ``Redaction/redact(_:)``.
    @Test(arguments: [1 as UInt64, 2, 3, 4])
    func secretsNeverSurviveRedaction(seed: UInt64) async {
        var rng = SeededGenerator(seed: seed)
        for iteration in 0..<1_000 {
            // CPU-bound: let the other tests of the process run (timing-sensitive ones share the pool).
            if iteration % 25 == 0 { await Task.yield() }
            var secret = Self.string(Self.secretAlphabet.filter { $0 != "&" }, 6...24, &rng)
            secret.append(Self.alphanumerics.randomElement(using: &rng)!)
            let shape = iteration % Self.shapes
            let before = Self.string(Self.textAlphabet, 0...30, &rng)
            let after = Self.string(Self.textAlphabet, 0...30, &rng)
            let text = "\(before) \(Self.embed(secret, shape: shape, &rng)) \(after)"
            // Random context may contain the secret by chance only if it is very short; it is not.
            guard !before.contains(secret), !after.contains(secret) else { continue }
            let output = Redaction.redact(text)
            #expect(!output.contains(secret), "seed \(seed) iteration \(iteration) shape \(shape): \(text) → \(output)")
        }
    }

    @Test func registeredSecretsAreScrubbedInAnyShape() async {
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<20 {
            await Task.yield()
            let secret = Self.string(Self.textAlphabet, 8...20, &rng) + "Z9"
            Redaction.registerSecret(secret)
            let text =
                Self.string(Self.textAlphabet, 0...20, &rng) + secret + Self.string(Self.textAlphabet, 0...20, &rng)
            #expect(!Redaction.redact(text).contains(secret))
        }
    }

    @Test func credentialsInMalformedInputAreRegistered() {
        // A password holding white space cannot be found by shape once split; the argument registers it first.
        Redaction.registerCredentials(in: "mongodb://root:Pa55-with-Space@mongo:27017")
        // The registry is process-wide and other tests register their own secrets (e.g. "wrong"): only the shape of
        // the part before the secret's neighbourhood is asserted.
        let redacted = Redaction.redact("the server said: Pa55-with-Space is wrong")
        #expect(redacted.hasPrefix("the server said: *** is "))
        #expect(!redacted.contains("Pa55"))
        Redaction.registerCredentials(in: "root:T0k%40en-x@mongo")
        #expect(!Redaction.redact("decoded T0k@en-x").contains("T0k@en-x"))
    }

    @Test(arguments: [
        (
            "rsinit: error: invalid MongoDB URI root:PASSWORD@mongodb:27017: Invalid URI Schema",
            "rsinit: error: invalid MongoDB URI root:***@mongodb:27017: Invalid URI Schema"
        ),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://s3cret@cache", "redis://***@cache"),
        ("mongodb://user@mongo/", "mongodb://user@mongo/"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
        ("x password=\"a b\" y", "x password=\"***\" y"),
        ("a=1&pwd=hunter2&b=2", "a=1&pwd=***&b=2"),
        ("no secrets here: 12:00 at host:27017", "no secrets here: 12:00 at host:27017"),
        ("", ""),
    ])
    func examples(_ input: String, _ expected: String) {
        #expect(Redaction.redact(input) == expected)
    }
}
