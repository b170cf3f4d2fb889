import MongoCWrapper
import Testing

/// What libmongoc accepts with only a log warning, or not at all until it retries, is an error at parse time.
@Suite struct URIValidationTests {
    @Test(arguments: [
        ("mongodb://h/?foo=bar", "Unsupported URI option"),
        ("mongodb://h/?compressors=bogus", "compressor"),
        ("mongodb://u:long-password-1@h/?authMechanism=BOGUS", "unknown authMechanism"),
        ("mongodb://h/?tls=true&tlsCAFile=/does/not/exist", "tlscafile"),
        ("mongodb://h/?tls=true&tlsCertificateKeyFile=/does/not/exist", "tlscertificatekeyfile"),
        ("mongodb://h/?tls=true&tlsCAFile=/tmp", "tlscafile"),
        ("mongodb://[zz::1]:27017/", "malformed IPv6"),
    ])
    func rejected(_ uri: String, _ mentions: String) {
        do {
            _ = try MongoConnectionString(uri)
            Issue.record("accepted \(uri)")
        } catch {
            #expect(error.code == .invalidURI)
            #expect(error.message.contains(mentions), "\(error.message)")
        }
    }

    @Test(arguments: [
        // Passwords of one character would be scrubbed from every libmongoc log line of the test process.
        "mongodb://h/?retryWrites=true&w=majority",
        "mongodb://u:long-password-2@h1:1,h2:2/db?replicaSet=rs0&authSource=admin",
        "mongodb://[::1]:27017/", "mongodb://u:long-password-3@h/?authMechanism=scram-sha-256",
        "mongodb://h/?compressors=zlib",
        "mongodb://h/?tls=true&tlsCAFile=/etc/hostname",
    ])
    func accepted(_ uri: String) throws {
        _ = try MongoConnectionString(uri)
    }
}
