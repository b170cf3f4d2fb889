import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// SCRAM against the RFC test vectors (pure), then through libmongoc and the raw wire (§7, §14 item 7).
@Suite struct SCRAMVectorTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let mechanism: SCRAMMechanism
        let password: [UInt8]
        let salt: String
        let iterations: Int
        let clientNonce: String
        let serverNonce: String
        let clientFinal: String
        let serverFinal: String
        var testDescription: String { "\(mechanism.rawValue) \(clientNonce)" }
    }

    static let vectors: [Vector] = [
        // RFC 5802 §5 (SCRAM-SHA-1, password "pencil" as is).
        Vector(
            mechanism: .sha1,
            password: Array("pencil".utf8),
            salt: "QSXCR+Q6sek8bf92",
            iterations: 4096,
            clientNonce: "fyko+d2lbbFgONRv9qkxdawL",
            serverNonce: "3rfcNHYJY1ZVvWVs7j",
            clientFinal: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
        ),
        // RFC 7677 §3 (SCRAM-SHA-256).
        Vector(
            mechanism: .sha256,
            password: Array("pencil".utf8),
            salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
            iterations: 4096,
            clientNonce: "rOprNGfwEbeRWgbNEkqO",
            serverNonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            clientFinal:
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        ),
        // MongoDB's auth spec, SCRAM-SHA-1: the password is the hex MD5 of "user:mongo:pencil".
        Vector(
            mechanism: .sha1,
            password: SCRAMMechanism.sha1.mongoPassword(user: "user", password: "pencil"),
            salt: "rQ9ZY3MntBeuP3E1TDVC4w==",
            iterations: 10_000,
            clientNonce: "fyko+d2lbbFgONRv9qkxdawL",
            serverNonce: "Ho+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE",
            clientFinal:
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,p=MC2T8BvbmWRckDw8oWl5IVghwCY=",
            serverFinal: "v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0="
        ),
    ]

    @Test(arguments: vectors)
    func serverAndClientReproduceTheVector(_ vector: Vector) throws {
        let salt = try #require(Data(base64Encoded: vector.salt))
        let credentials = SCRAMCredentials(
            mechanism: vector.mechanism,
            derivedPassword: vector.password,
            salt: Array(salt),
            iterations: vector.iterations
        )
        var client = SCRAMClientConversation(
            mechanism: vector.mechanism,
            user: "user",
            derivedPassword: vector.password,
            clientNonce: vector.clientNonce
        )
        var server = SCRAMServerConversation(mechanism: vector.mechanism, serverNonce: vector.serverNonce)
        let clientFirst = client.first()
        #expect(String(decoding: clientFirst, as: UTF8.self) == "n,,n=user,r=\(vector.clientNonce)")
        let serverFirst = try server.start(clientFirst) { $0 == "user" ? credentials : nil }.get()
        #expect(
            String(decoding: serverFirst, as: UTF8.self)
                == "r=\(vector.clientNonce)\(vector.serverNonce),s=\(vector.salt),i=\(vector.iterations)"
        )
        let maybeFinal = client.final(serverFirst)
        let clientFinal = try #require(maybeFinal)
        #expect(String(decoding: clientFinal, as: UTF8.self) == vector.clientFinal)
        let serverFinal = try server.finish(clientFinal).get()
        #expect(String(decoding: serverFinal, as: UTF8.self) == vector.serverFinal)
        #expect(client.verify(serverFinal))
    }

    @Test func wrongProofUnknownUserAndForeignNonceAreRejected() throws {
        let credentials = SCRAMCredentials(mechanism: .sha256, user: "user", password: "pencil")
        var server = SCRAMServerConversation(mechanism: .sha256)
        let unknown = server.start(Array("n,,n=nobody,r=abc".utf8)) { _ in nil }
        #expect(unknown == .failure(.unknownUser))
        let channelBound = server.start(Array("p=tls-unique,,n=user,r=abc".utf8)) { _ in credentials }
        #expect(channelBound.isFailure)

        var wrong = SCRAMClientConversation(
            mechanism: .sha256,
            user: "user",
            derivedPassword: SCRAMMechanism.sha256.mongoPassword(user: "user", password: "pencil!")
        )
        let serverFirst = try server.start(wrong.first()) { _ in credentials }.get()
        let maybeBad = wrong.final(serverFirst)
        let badFinal = try #require(maybeBad)
        #expect(server.finish(badFinal) == .failure(.wrongProof))
        let replayed = String(decoding: badFinal, as: UTF8.self).replacingOccurrences(of: "r=", with: "r=x")
        #expect(server.finish(Array(replayed.utf8)) == .failure(.nonceMismatch))
        #expect(server.finish(Array("c=biws,r=nonce".utf8)) == .failure(.malformed("missing proof")))
    }

    @Test func userNamesAreEscapedAndDecoded() throws {
        let credentials = SCRAMCredentials(mechanism: .sha1, user: "a,b=c", password: "pw")
        var client = SCRAMClientConversation(
            mechanism: .sha1,
            user: "a,b=c",
            derivedPassword: SCRAMMechanism.sha1.mongoPassword(user: "a,b=c", password: "pw")
        )
        let first = client.first()
        #expect(String(decoding: first, as: UTF8.self).hasPrefix("n,,n=a=2Cb=3Dc,r="))
        var server = SCRAMServerConversation(mechanism: .sha1)
        let serverFirst = try server.start(first) { $0 == "a,b=c" ? credentials : nil }.get()
        let maybeFinal = client.final(serverFirst)
        let final = try #require(maybeFinal)
        #expect(client.verify(try server.finish(final).get()))
        let badEscape = server.start(Array("n,,n=a=2Xb,r=abc".utf8)) { _ in credentials }
        #expect(badEscape.isFailure)
    }

    @Test func saslPrepMapsSpacesDropsInvisiblesAndNormalises() {
        #expect(SASLprep.prepare("pencil") == "pencil")
        #expect(SASLprep.prepare("I\u{00AD}X") == "IX")
        #expect(SASLprep.prepare("\u{2168}") == "IX")
        #expect(SASLprep.prepare("a\u{00A0}b") == "a b")
        #expect(SASLprep.prepare("\u{00AA}") == "a")
    }

    @Test func theMongoSHA1PasswordIsTheHexMD5Digest() {
        let digest = String(
            decoding: SCRAMMechanism.sha1.mongoPassword(user: "user", password: "pencil"),
            as: UTF8.self
        )
        #expect(digest == "1c33006ec1ffd90f9cadcbcc0e118200")
        #expect(
            String(decoding: SCRAMMechanism.sha256.mongoPassword(user: "user", password: "pencil"), as: UTF8.self)
                == "pencil"
        )
    }
}

extension Result {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}

/// Authentication through libmongoc 1.23 against the double.
@Suite struct AuthenticationThroughLibmongocTests {
    static func authURI(
        _ server: FakeMongod,
        user: String = "root",
        password: String = "s3cret",
        extra: String = ""
    )
        -> String
    {
        let unreserved = CharacterSet(
            charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
        )
        let pw = password.addingPercentEncoding(withAllowedCharacters: unreserved) ?? password
        return "mongodb://\(user):\(pw)@127.0.0.1:\(server.port)/?directConnection=true&serverSelectionTimeoutMS=2000"
            + "&connectTimeoutMS=2000\(extra)"
    }

    static func authDouble(
        _ scenario: FakeMongodConfiguration.Scenario = .primary(setName: "rs0"),
        users: [FakeMongodUser] = [FakeMongodUser(name: "root", password: "s3cret")]
    ) throws -> FakeMongod {
        try startDouble(scenario) {
            $0.auth = .required
            $0.users = users
        }
    }

    // §14.7: the success path, SCRAM-SHA-256 negotiated and done speculatively in the handshake.
    @Test func scramSHA256SpeculativeInTheHandshake() async throws {
        let server = try Self.authDouble()
        defer { server.stop() }
        try await withClient(server, uri: Self.authURI(server)) { client in
            let status = try await client.runCommand(["replSetGetStatus": 1])
            #expect(status["myState"] == .int32(1))
            _ = try await client.runCommand(["insert": "c", "documents": [["_id": 1]]], database: "app")
        }
        let names = server.receivedCommandNames
        #expect(names.contains("saslcontinue"))
        #expect(!names.contains("saslstart"), "speculative authentication replaces saslStart: \(names)")
    }

    // A user with SCRAM-SHA-1 credentials only: saslSupportedMechs says so, the speculative SHA-256 attempt is left
    // unanswered, and libmongoc falls back to saslStart with SCRAM-SHA-1.
    @Test func scramSHA1NegotiatedThroughSaslSupportedMechs() async throws {
        let server = try Self.authDouble(users: [FakeMongodUser(name: "root", password: "s3cret", mechanisms: [.sha1])])
        defer { server.stop() }
        try await withClient(server, uri: Self.authURI(server)) { client in
            _ = try await client.runCommand(["replSetGetConfig": 1])
        }
        #expect(server.receivedCommandNames.contains("saslstart"))
    }

    @Test(arguments: ["SCRAM-SHA-1", "SCRAM-SHA-256"])
    func explicitMechanism(_ mechanism: String) async throws {
        let server = try Self.authDouble(users: [FakeMongodUser(name: "app user", password: "pä ss:w@rd")])
        defer { server.stop() }
        let uri = Self.authURI(
            server,
            user: "app%20user",
            password: "pä ss:w@rd",
            extra: "&authMechanism=\(mechanism)&authSource=admin"
        )
        try await withClient(server, uri: uri) { client in
            _ = try await client.runCommand(["replSetGetStatus": 1])
        }
        // The named mechanism goes into the handshake's speculativeAuthenticate: no saslStart at all.
        #expect(!server.receivedCommandNames.contains("saslstart"))
        #expect(server.receivedCommandNames.contains("saslcontinue"))
    }

    @Test func usersOnAnotherDatabaseUseAuthSource() async throws {
        let server = try Self.authDouble(users: [FakeMongodUser(name: "app", password: "pw", database: "steedos")])
        defer { server.stop() }
        try await withClient(
            server,
            uri: Self.authURI(server, user: "app", password: "pw", extra: "&authSource=steedos")
        ) { client in
            _ = try await client.runCommand(["find": "c"], database: "steedos")
        }
        try await withClient(server, uri: Self.authURI(server, user: "app", password: "pw")) { client in
            #expect(await commandError(client, ["ping": 1])?.code == .authenticationFailed)
        }
    }

    // §7 / §14.7: bad credentials → 18 AuthenticationFailed, "Authentication failed.", for a wrong password, an
    // unknown user, and a mechanism the user has no credentials for.
    @Test(arguments: [
        ("root", "wrong", ""), ("nobody", "s3cret", ""), ("sha256only", "pw", "&authMechanism=SCRAM-SHA-1"),
    ])
    func badCredentialsGet18(_ user: String, _ password: String, _ extra: String) async throws {
        let server = try Self.authDouble(users: [
            FakeMongodUser(name: "root", password: "s3cret"),
            FakeMongodUser(name: "sha256only", password: "pw", mechanisms: [.sha256]),
        ])
        defer { server.stop() }
        try await withClient(server, uri: Self.authURI(server, user: user, password: password, extra: extra)) {
            client in
            let error = await commandError(client, ["ping": 1])
            #expect(error?.code == .authenticationFailed)
            #expect(error?.message.contains("Authentication failed.") == true, "\(String(describing: error))")
            #expect(error?.description.contains(password) == false)
        }
    }

    // §7 / §14.7: without credentials only the handshake, ping and the SASL commands run; everything else is 13.
    @Test func unauthenticatedCommandsGet13() async throws {
        let server = try Self.authDouble(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(["ping": 1])
            _ = try await client.runCommand(["hello": 1])
            for (name, value) in [("replSetInitiate", BSONValue.document([:])), ("replSetGetStatus", 1), ("find", "c")]
            {
                let error = await commandError(client, [name: value])
                #expect(error?.serverCode == 13)
                #expect(error?.code == .unauthorized)
                #expect(error?.codeName == "Unauthorized")
                #expect(error?.message == "command \(name) requires authentication")
            }
        }
    }

    @Test func usersCreatedAtRunTimeCanLogIn() async throws {
        let server = try Self.authDouble(users: [])
        defer { server.stop() }
        try await withClient(server, uri: Self.authURI(server)) { client in
            #expect(await commandError(client, ["ping": 1])?.code == .authenticationFailed)
        }
        server.createUser(FakeMongodUser(name: "root", password: "s3cret"))
        try await withClient(server, uri: Self.authURI(server)) { client in
            _ = try await client.runCommand(["replSetGetStatus": 1])
        }
    }

    @Test func pooledClientsAuthenticateEveryConnection() async throws {
        let server = try Self.authDouble()
        defer { server.stop() }
        let client = try MongoClient(
            uri: "mongodb://root:s3cret@127.0.0.1:\(server.port)/?replicaSet=rs0&serverSelectionTimeoutMS=3000",
            logger: logger
        )
        _ = try await client.runCommand(["replSetGetStatus": 1])
        await client.close()
    }
}

/// The exchange on the wire: saslSupportedMechs, the empty step without skipEmptyExchange, string payloads,
/// per-connection state.
@Suite struct SASLWireTests {
    static func double() throws -> FakeMongod {
        try startDouble(.primary(setName: "rs0")) {
            $0.auth = .required
            $0.users = [FakeMongodUser(name: "root", password: "s3cret")]
        }
    }

    @Test func saslSupportedMechsListsTheUsersMechanismsOrNothing() async throws {
        let server = try Self.double()
        defer { server.stop() }
        let port = server.port
        try await onDedicatedThread {
            let raw = try RawWireClient(port: port)
            raw.sendQuery(["isMaster": 1, "saslSupportedMechs": "admin.root"], flags: 4)
            let known = try #require(raw.receive()).document
            #expect(known["saslSupportedMechs"] == ["SCRAM-SHA-1", "SCRAM-SHA-256"])
            raw.sendQuery(["isMaster": 1, "saslSupportedMechs": "admin.nobody"], flags: 4)
            #expect(try #require(raw.receive()).document["saslSupportedMechs"] == nil)
        }
    }

    /// The RFC 5802 exchange with the final empty step (no skipEmptyExchange), payloads as BinData or base64.
    @Test(arguments: [false, true])
    func fullExchangeWithTheEmptyStep(_ stringPayloads: Bool) async throws {
        let server = try Self.double()
        defer { server.stop() }
        let port = server.port
        try await onDedicatedThread {
            let raw = try RawWireClient(port: port)
            #expect(raw.command(["replSetGetStatus": 1, "$db": "admin"])?["code"] == .int32(13))
            func payload(_ bytes: [UInt8]) -> BSONValue {
                stringPayloads
                    ? .string(Data(bytes).base64EncodedString()) : .binary(BSONBinary(subtype: 0, data: bytes))
            }
            func bytes(_ value: BSONValue?) -> [UInt8]? {
                switch value {
                case .binary(let binary): return stringPayloads ? nil : binary.data
                case .string(let text): return stringPayloads ? Data(base64Encoded: text).map(Array.init) : nil
                default: return nil
                }
            }
            var client = SCRAMClientConversation(
                mechanism: .sha256,
                user: "root",
                derivedPassword: SCRAMMechanism.sha256.mongoPassword(user: "root", password: "s3cret")
            )
            let clientFirst = client.first()
            let start = try #require(
                raw.command([
                    "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": payload(clientFirst), "$db": "admin",
                ])
            )
            #expect(start["conversationId"] == .int32(1))
            #expect(start["done"] == false)
            let serverFirst = try #require(bytes(start["payload"]))
            let maybeFinal = client.final(serverFirst)
            let final = try #require(maybeFinal)
            let proof = try #require(
                raw.command(["saslContinue": 1, "conversationId": 1, "payload": payload(final), "$db": "admin"])
            )
            #expect(proof["done"] == false)
            #expect(client.verify(try #require(bytes(proof["payload"]))))
            // Not authenticated before the empty step.
            #expect(raw.command(["replSetGetStatus": 1, "$db": "admin"])?["code"] == .int32(13))
            let empty = try #require(
                raw.command(["saslContinue": 1, "conversationId": 1, "payload": payload([]), "$db": "admin"])
            )
            #expect(empty["done"] == true)
            #expect(empty["ok"] == .double(1))
            #expect(raw.command(["replSetGetStatus": 1, "$db": "admin"])?["ok"] == .double(1))
            // Another connection is not authenticated by this one.
            let other = try RawWireClient(port: port)
            #expect(other.command(["replSetGetStatus": 1, "$db": "admin"])?["code"] == .int32(13))
        }
    }

    @Test func exactFailureReplies() async throws {
        let server = try Self.double()
        defer { server.stop() }
        let port = server.port
        try await onDedicatedThread {
            let raw = try RawWireClient(port: port)
            var client = SCRAMClientConversation(
                mechanism: .sha1,
                user: "root",
                derivedPassword: SCRAMMechanism.sha1.mongoPassword(user: "root", password: "wrong")
            )
            let clientFirst = client.first()
            let start = try #require(
                raw.command([
                    "saslStart": 1, "mechanism": "SCRAM-SHA-1",
                    "payload": .binary(BSONBinary(subtype: 0, data: clientFirst)),
                    "options": ["skipEmptyExchange": true], "$db": "admin",
                ])
            )
            guard case .binary(let first) = start["payload"] else {
                Issue.record("payload: \(start)")
                return
            }
            let maybeFinal = client.final(first.data)
            let final = try #require(maybeFinal)
            let failed = try #require(
                raw.command([
                    "saslContinue": 1, "conversationId": 1, "payload": .binary(BSONBinary(subtype: 0, data: final)),
                    "$db": "admin",
                ])
            )
            #expect(failed["ok"] == .double(0))
            #expect(failed["code"] == .int32(18))
            #expect(failed["codeName"] == "AuthenticationFailed")
            #expect(failed["errmsg"] == "Authentication failed.")
            let plain = try #require(
                raw.command([
                    "saslStart": 1, "mechanism": "PLAIN", "payload": .binary(BSONBinary(subtype: 0, data: [0])),
                    "$db": "$external",
                ])
            )
            #expect(plain["code"] == .int32(334))
            #expect(plain["codeName"] == "MechanismUnavailable")
            let orphan = try #require(
                raw.command([
                    "saslContinue": 1, "conversationId": 1, "payload": .binary(BSONBinary(subtype: 0, data: [])),
                    "$db": "admin",
                ])
            )
            #expect(orphan["code"] == .int32(17))
        }
    }
}
