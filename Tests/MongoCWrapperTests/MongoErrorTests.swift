import BSON
import Testing

@testable import MongoCWrapper

struct MappingCase: Sendable, CustomTestStringConvertible {
    let name: String
    let domain: UInt32
    let code: UInt32
    let message: String
    let reply: BSONDocument?
    let expected: MongoError.Code
    var testDescription: String { name }
}

func serverReply(_ code: Int32, _ codeName: String, _ message: String, labels: [String] = []) -> BSONDocument {
    var reply: BSONDocument = [
        "ok": 0.0, "errmsg": .string(message), "code": .int32(code), "codeName": .string(codeName),
    ]
    if !labels.isEmpty { reply.append("errorLabels", .array(labels.map { .string($0) })) }
    return reply
}

let mappingCases: [MappingCase] = [
    .init(
        name: "94 NotYetInitialized",
        domain: 17,
        code: 94,
        message: "no replset config has been received",
        reply: serverReply(94, "NotYetInitialized", "no replset config has been received"),
        expected: .notYetInitialized
    ),
    .init(
        name: "23 AlreadyInitialized",
        domain: 17,
        code: 23,
        message: "already initialized",
        reply: serverReply(23, "AlreadyInitialized", "already initialized"),
        expected: .alreadyInitialized
    ),
    .init(
        name: "93 InvalidReplicaSetConfig",
        domain: 17,
        code: 93,
        message: "x",
        reply: serverReply(93, "InvalidReplicaSetConfig", "No host described in new configuration"),
        expected: .invalidReplicaSetConfig
    ),
    .init(
        name: "76 NoReplicationEnabled",
        domain: 17,
        code: 76,
        message: "x",
        reply: serverReply(76, "NoReplicationEnabled", "This node was not started with replication enabled."),
        expected: .noReplicationEnabled
    ),
    .init(
        name: "13 Unauthorized",
        domain: 17,
        code: 13,
        message: "x",
        reply: serverReply(13, "Unauthorized", "command replSetInitiate requires authentication"),
        expected: .unauthorized
    ),
    .init(
        name: "18 AuthenticationFailed (server)",
        domain: 17,
        code: 18,
        message: "x",
        reply: serverReply(18, "AuthenticationFailed", "Authentication failed."),
        expected: .authenticationFailed
    ),
    .init(
        name: "driver authentication failure",
        domain: 1,
        code: 11,
        message: "Authentication failed.",
        reply: nil,
        expected: .authenticationFailed
    ),
    .init(
        name: "10107 NotWritablePrimary",
        domain: 17,
        code: 10107,
        message: "x",
        reply: serverReply(10107, "NotWritablePrimary", "not primary"),
        expected: .notWritablePrimary
    ),
    .init(
        name: "13435",
        domain: 17,
        code: 13435,
        message: "x",
        reply: serverReply(13435, "NotPrimaryNoSecondaryOk", "not primary and secondaryOk=false"),
        expected: .notPrimaryNoSecondaryOk
    ),
    .init(
        name: "13436",
        domain: 17,
        code: 13436,
        message: "x",
        reply: serverReply(13436, "NotPrimaryOrSecondary", "node is not in primary or recovering state"),
        expected: .notPrimaryOrSecondary
    ),
    .init(
        name: "136 CappedPositionLost",
        domain: 17,
        code: 136,
        message: "x",
        reply: serverReply(136, "CappedPositionLost", "CollectionScan died"),
        expected: .cappedPositionLost
    ),
    .init(
        name: "136 via legacy query domain",
        domain: 5,
        code: 136,
        message: "CollectionScan died",
        reply: nil,
        expected: .cappedPositionLost
    ),
    .init(
        name: "286 ChangeStreamHistoryLost",
        domain: 17,
        code: 286,
        message: "x",
        reply: serverReply(286, "ChangeStreamHistoryLost", "lost"),
        expected: .changeStreamHistoryLost
    ),
    .init(
        name: "43 CursorNotFound",
        domain: 17,
        code: 43,
        message: "x",
        reply: serverReply(43, "CursorNotFound", "cursor id 1 not found"),
        expected: .cursorNotFound
    ),
    .init(
        name: "59 CommandNotFound",
        domain: 17,
        code: 59,
        message: "x",
        reply: serverReply(59, "CommandNotFound", "no such command: 'x'"),
        expected: .commandNotFound
    ),
    .init(
        name: "74 NodeNotFound",
        domain: 17,
        code: 74,
        message: "x",
        reply: serverReply(74, "NodeNotFound", "quorum check failed"),
        expected: .nodeNotFound
    ),
    .init(
        name: "11602 state change",
        domain: 17,
        code: 11602,
        message: "x",
        reply: serverReply(11602, "InterruptedDueToReplStateChange", "interrupted"),
        expected: .stateChangeInterrupted
    ),
    .init(
        name: "91 shutdown",
        domain: 17,
        code: 91,
        message: "x",
        reply: serverReply(91, "ShutdownInProgress", "shutting down"),
        expected: .shutdownInProgress
    ),
    .init(
        name: "other server code",
        domain: 17,
        code: 2,
        message: "x",
        reply: serverReply(2, "BadValue", "bad"),
        expected: .serverError
    ),
    .init(
        name: "server selection refused",
        domain: 15,
        code: 13053,
        message:
            "No suitable servers found (`serverSelectionTryOnce` set): [connection refused calling hello on '127.0.0.1:1']",
        reply: nil,
        expected: .serverSelection
    ),
    .init(
        name: "stream hang-up",
        domain: 2,
        code: 4,
        message:
            "Failed to send \"getMore\" command with database \"local\": Failed to read 4 bytes: socket error or timeout",
        reply: nil,
        expected: .network
    ),
    .init(
        name: "stream timeout",
        domain: 2,
        code: 4,
        message: "socket timeout calling hello",
        reply: nil,
        expected: .timeout
    ),
    .init(
        name: "name resolution",
        domain: 2,
        code: 3,
        message: "Failed to resolve 'nohost'",
        reply: nil,
        expected: .network
    ),
    .init(
        name: "bad wire version",
        domain: 3,
        code: 15,
        message: "reports wire version 0, but this version of libmongoc requires at least 6 (MongoDB 3.6)",
        reply: nil,
        expected: .incompatibleServer
    ),
    .init(name: "invalid reply", domain: 3, code: 14, message: "bad reply", reply: nil, expected: .protocolError),
    .init(
        name: "invalid argument",
        domain: 11,
        code: 22,
        message: "Invalid URI",
        reply: nil,
        expected: .invalidArgument
    ),
    .init(
        name: "hello ok:0 in handshake",
        domain: 1,
        code: 11,
        message: "nope",
        reply: nil,
        expected: .authenticationFailed
    ),
]

@Suite struct MongoErrorTests {
    @Test(arguments: mappingCases)
    func mapsDomainCodeAndReply(_ c: MappingCase) {
        let error = MongoError.map(domain: c.domain, code: c.code, message: c.message, reply: c.reply)
        #expect(error.code == c.expected)
        if let reply = c.reply {
            #expect(error.serverCode == reply["code"]?.int64Value.map { Int32($0) })
            #expect(error.codeName == reply["codeName"]?.stringValue)
            #expect(error.message == reply["errmsg"]?.stringValue)
        }
    }

    @Test func keepsErrorLabelsAndTransience() {
        let error = MongoError.map(
            domain: 17,
            code: 91,
            message: "x",
            reply: serverReply(91, "ShutdownInProgress", "shutting down", labels: ["RetryableWriteError"])
        )
        #expect(error.errorLabels == ["RetryableWriteError"])
        #expect(error.isTransient)
        #expect(!MongoError(code: .invalidReplicaSetConfig, message: "x").isTransient)
    }

    @Test func switchable() {
        let error = MongoError.map(domain: 17, code: 94, message: "m", reply: nil)
        switch error.code {
        case .notYetInitialized: break
        default: Issue.record("expected notYetInitialized, got \(error.code)")
        }
    }

    @Test func redactsCredentialsInMessages() {
        let error = MongoError.map(domain: 15, code: 13053, message: "failed for user:hunter2@host", reply: nil) {
            MongoURI.scrub($0, secrets: ["hunter2"])
        }
        #expect(!error.description.contains("hunter2"))
        #expect(!error.debugDescription.contains("hunter2"))
    }

    @Test func mirroredConstantsMatchTheHeaders() {
        #expect(LibMongoCConstantsCheck.mismatches == [])
    }
}

@Suite struct URIRedactionTests {
    @Test(arguments: [
        (
            "mongodb://root:s3cret@mongo:27017/admin?replicaSet=rs0",
            "mongodb://root:***@mongo:27017/admin?replicaSet=rs0"
        ),
        ("mongodb://root:p%40ss@a:1,b:2/?authSource=admin", "mongodb://root:***@a:1,b:2/?authSource=admin"),
        ("mongodb://user@mongo/", "mongodb://user@mongo/"),
        ("mongodb://mongo:27017", "mongodb://mongo:27017"),
        ("mongodb+srv://u:pw@cluster.example.net/db", "mongodb+srv://u:***@cluster.example.net/db"),
        (
            "mongodb://h/?tlsCertificateKeyFilePassword=abc&appname=x",
            "mongodb://h/?tlsCertificateKeyFilePassword=***&appname=x"
        ),
        (
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok",
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***"
        ),
        ("mongodb://a:b:c@h?x=1", "mongodb://a:***@h?x=1"),
        ("not a uri", "not a uri"),
    ])
    func redacts(_ input: String, _ expected: String) {
        #expect(MongoURI.redacted(input) == expected)
    }

    @Test func scrubRemovesRawAndEncodedSecrets() {
        #expect(MongoURI.scrub("x p@ss y p%40ss z", secrets: ["p@ss"]) == "x *** y *** z")
    }
}
