import BSON
import Foundation

/// SCRAM-SHA-1 / SCRAM-SHA-256 as mongod speaks it: `saslStart` / `saslContinue` (with `skipEmptyExchange`),
/// speculative authentication in the handshake's hello, and `saslSupportedMechs`.
extension FakeMongodCore {
    static let authenticationFailed = CommandFailure(code: 18, message: "Authentication failed.")

    /// The mechanisms `saslSupportedMechs: "db.user"` lists for a known user (registry order, as mongod); nil for
    /// an unknown user or a malformed name (mongod then leaves the field out).
    func supportedMechanisms(_ qualifiedName: String) -> [SCRAMMechanism]? {
        guard let stored = credentials[qualifiedName] else { return nil }
        return SCRAMMechanism.allCases.filter { stored[$0] != nil }
    }

    /// `saslStart`: `{saslStart: 1, mechanism, payload, options: {skipEmptyExchange}}` on the user's database.
    func saslStart(
        _ command: BSONDocument,
        database: String,
        session: FakeConnectionSession
    ) -> Result<BSONDocument, CommandFailure> {
        session.conversation = nil
        session.proofAccepted = false
        guard let mechanismName = command["mechanism"]?.stringValue else {
            return .failure(
                CommandFailure(code: 40414, message: "BSON field 'saslStart.mechanism' is missing but a required field")
            )
        }
        guard let mechanism = SCRAMMechanism(rawValue: mechanismName) else {
            return .failure(
                CommandFailure(
                    code: 334,
                    message: "Received authentication for mechanism \(mechanismName) which is not enabled"
                )
            )
        }
        guard let (payload, asString) = Self.saslPayload(command["payload"]) else {
            return .failure(CommandFailure(code: 14, message: "saslStart payload must be binary or a string"))
        }
        var conversation = SCRAMServerConversation(mechanism: mechanism)
        let step = conversation.start(payload) { [credentials] user in credentials["\(database).\(user)"]?[mechanism] }
        switch step {
        case .failure:
            return .failure(Self.authenticationFailed)
        case .success(let serverFirst):
            session.conversation = conversation
            session.conversationUser = "\(database).\(conversation.user)"
            let skip = command["options"]?.documentValue?["skipEmptyExchange"]?.isTruthy ?? false
            session.awaitingEmptyStep = !skip
            return .success([
                "conversationId": .int32(1), "done": false, "payload": Self.saslPayloadValue(serverFirst, asString),
            ])
        }
    }

    /// `saslContinue`: the client-final (→ server-final, done unless the empty step is still due) or the empty
    /// step that ends an exchange without `skipEmptyExchange`.
    func saslContinue(_ command: BSONDocument, session: FakeConnectionSession) -> Result<BSONDocument, CommandFailure> {
        guard let conversation = session.conversation else {
            return .failure(CommandFailure(code: 17, message: "No SASL session state found"))
        }
        guard command["conversationId"]?.int64Value == 1 else {
            session.conversation = nil
            return .failure(CommandFailure(code: 17, message: "sasl: Mismatched conversation id"))
        }
        guard let (payload, asString) = Self.saslPayload(command["payload"]) else {
            session.conversation = nil
            return .failure(CommandFailure(code: 14, message: "saslContinue payload must be binary or a string"))
        }
        if session.proofAccepted {
            // The empty exchange after the server-final (RFC 5802 clients without skipEmptyExchange).
            session.conversation = nil
            session.proofAccepted = false
            guard payload.isEmpty else { return .failure(Self.authenticationFailed) }
            session.authenticatedUser = session.conversationUser
            return .success([
                "conversationId": .int32(1), "done": true, "payload": Self.saslPayloadValue([], asString),
            ])
        }
        switch conversation.finish(payload) {
        case .failure:
            session.conversation = nil
            return .failure(Self.authenticationFailed)
        case .success(let serverFinal):
            if session.awaitingEmptyStep {
                session.proofAccepted = true
            } else {
                session.conversation = nil
                session.authenticatedUser = session.conversationUser
            }
            return .success([
                "conversationId": .int32(1), "done": .bool(!session.awaitingEmptyStep),
                "payload": Self.saslPayloadValue(serverFinal, asString),
            ])
        }
    }

    /// The hello/isMaster additions for authentication: `saslSupportedMechs` and `speculativeAuthenticate`.
    func appendAuthenticationFields(
        _ command: BSONDocument,
        to reply: inout BSONDocument,
        session: FakeConnectionSession
    ) {
        if let name = command["saslSupportedMechs"]?.stringValue, let mechanisms = supportedMechanisms(name) {
            reply.append("saslSupportedMechs", .array(mechanisms.map { .string($0.rawValue) }))
        }
        guard let speculative = command["speculativeAuthenticate"]?.documentValue,
            speculative.firstKey == "saslStart"
        else { return }
        let database = speculative["db"]?.stringValue ?? "admin"
        // A failed speculative attempt is not reported: the field is left out and the client authenticates anew.
        if case .success(let body) = saslStart(speculative, database: database, session: session) {
            reply.append("speculativeAuthenticate", .document(body))
        }
    }

    /// A SASL payload: BinData (libmongoc) or a base64 string (other drivers); the flag says which.
    static func saslPayload(_ value: BSONValue?) -> ([UInt8], Bool)? {
        switch value {
        case .binary(let binary): return (binary.data, false)
        case .string(let text): return Data(base64Encoded: text).map { (Array($0), true) }
        default: return nil
        }
    }

    static func saslPayloadValue(_ bytes: [UInt8], _ asString: Bool) -> BSONValue {
        asString ? .string(Data(bytes).base64EncodedString()) : .binary(BSONBinary(subtype: 0, data: bytes))
    }
}
