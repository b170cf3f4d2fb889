public import BSON

/// Any failure of a MongoDB operation, mapped in one place from libmongoc's `(domain, code)` and the server's reply.
///
/// Switch on ``code``; ``description`` is safe to show to users (no credentials, no full URIs); ``debugDescription``
/// adds the driver's domain and code and the server's error labels.
public struct MongoError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure this is. Compare with the static members (`case .notYetInitialized:` in a switch).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidURI, invalidArgument, invalidBSON, serverSelection, network, timeout
            case authenticationFailed, unauthorized
            case notYetInitialized, alreadyInitialized, invalidReplicaSetConfig, noReplicationEnabled, nodeNotFound
            case notWritablePrimary, notPrimaryNoSecondaryOk, notPrimaryOrSecondary, stateChangeInterrupted
            case shutdownInProgress, cappedPositionLost, changeStreamHistoryLost, cursorNotFound, commandNotFound
            case maxTimeExpired, incompatibleServer, protocolError, serverError, cancelled, closed, internalError
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The URI could not be parsed by libmongoc.
        public static let invalidURI = Code(.invalidURI)
        /// A bad argument was passed to libmongoc (e.g. an invalid namespace or option).
        public static let invalidArgument = Code(.invalidArgument)
        /// A document from the server or the caller is not valid BSON.
        public static let invalidBSON = Code(.invalidBSON)
        /// No suitable server could be selected (nothing listening, wrong set name, no primary, …).
        public static let serverSelection = Code(.serverSelection)
        /// The connection failed or was closed (refused, reset, name resolution, hang-up).
        public static let network = Code(.network)
        /// A socket or connect timeout expired.
        public static let timeout = Code(.timeout)
        /// Bad credentials (server code 18, or the driver's authentication failure).
        public static let authenticationFailed = Code(.authenticationFailed)
        /// The command needs authentication or a privilege the user lacks (server code 13).
        public static let unauthorized = Code(.unauthorized)
        /// 94: no replica set config has been received yet.
        public static let notYetInitialized = Code(.notYetInitialized)
        /// 23: the replica set is already initialised (or an initiate is in progress).
        public static let alreadyInitialized = Code(.alreadyInitialized)
        /// 93 (and 103): the config is invalid, or this node is not a member of it.
        public static let invalidReplicaSetConfig = Code(.invalidReplicaSetConfig)
        /// 76: mongod was not started with `--replSet`.
        public static let noReplicationEnabled = Code(.noReplicationEnabled)
        /// 74: a proposed member could not be reached (initiate quorum check).
        public static let nodeNotFound = Code(.nodeNotFound)
        /// 10107: the node is not a writable primary.
        public static let notWritablePrimary = Code(.notWritablePrimary)
        /// 13435: a primary read on a non-primary.
        public static let notPrimaryNoSecondaryOk = Code(.notPrimaryNoSecondaryOk)
        /// 13436: the node is neither primary nor secondary (startup, recovering, drain).
        public static let notPrimaryOrSecondary = Code(.notPrimaryOrSecondary)
        /// 11602 / 189: the operation was interrupted by a stepdown or step-up.
        public static let stateChangeInterrupted = Code(.stateChangeInterrupted)
        /// 91 / 11600: the server is shutting down.
        public static let shutdownInProgress = Code(.shutdownInProgress)
        /// 136: a tailable cursor's position was deleted from the capped collection (oplog rolled over).
        public static let cappedPositionLost = Code(.cappedPositionLost)
        /// 286 / 280: a change stream cannot resume from its position.
        public static let changeStreamHistoryLost = Code(.changeStreamHistoryLost)
        /// 43: the cursor no longer exists on the server.
        public static let cursorNotFound = Code(.cursorNotFound)
        /// 59: the server does not know the command.
        public static let commandNotFound = Code(.commandNotFound)
        /// 50: `maxTimeMS` expired.
        public static let maxTimeExpired = Code(.maxTimeExpired)
        /// The server's wire version is outside what libmongoc 1.23 supports.
        public static let incompatibleServer = Code(.incompatibleServer)
        /// The server sent a reply libmongoc could not understand.
        public static let protocolError = Code(.protocolError)
        /// Any other server error; see ``MongoError/serverCode`` and ``MongoError/codeName``.
        public static let serverError = Code(.serverError)
        /// The calling task was cancelled before the call started.
        public static let cancelled = Code(.cancelled)
        /// The client or cursor was already closed.
        public static let closed = Code(.closed)
        /// A libmongoc failure that fits no other code.
        public static let internalError = Code(.internalError)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// A message safe to print: the server's `errmsg` or libmongoc's message, with credentials removed.
    public var message: String
    /// The server's numeric error code, when the server answered.
    public var serverCode: Int32?
    /// The server's `codeName`, when present.
    public var codeName: String?
    /// The server's `errorLabels`.
    public var errorLabels: [String]
    /// libmongoc's error domain and code (0 when the error did not come from libmongoc).
    public var driverDomain: UInt32
    public var driverCode: UInt32
    /// The server's whole error reply, when there is one (e.g. the REMOVED state's fields in a 93 reply).
    public var reply: BSONDocument?

    public init(
        code: Code,
        message: String,
        serverCode: Int32? = nil,
        codeName: String? = nil,
        errorLabels: [String] = [],
        driverDomain: UInt32 = 0,
        driverCode: UInt32 = 0,
        reply: BSONDocument? = nil
    ) {
        self.code = code
        self.message = message
        self.serverCode = serverCode
        self.codeName = codeName
        self.errorLabels = errorLabels
        self.driverDomain = driverDomain
        self.driverCode = driverCode
        self.reply = reply
    }

    public var description: String {
        if let serverCode {
            return "\(message) (code \(serverCode)\(codeName.map { " \($0)" } ?? ""))"
        }
        return message
    }

    public var debugDescription: String {
        var parts = ["MongoError(\(code)): \(description)"]
        if driverDomain != 0 { parts.append("libmongoc domain \(driverDomain) code \(driverCode)") }
        if !errorLabels.isEmpty { parts.append("labels \(errorLabels)") }
        return parts.joined(separator: "; ")
    }

    /// Whether retrying the same operation later can succeed (network trouble, state changes, labels).
    public var isTransient: Bool {
        if errorLabels.contains("RetryableWriteError") || errorLabels.contains("ResumableChangeStreamError") {
            return true
        }
        switch code {
        case .network, .timeout, .serverSelection, .notWritablePrimary, .notPrimaryNoSecondaryOk,
            .notPrimaryOrSecondary, .stateChangeInterrupted, .shutdownInProgress, .cursorNotFound:
            return true
        default:
            return false
        }
    }
}

// MARK: - The single mapping point

/// libmongoc's error domains (`mongoc_error_domain_t`), mirrored so the mapping is pure and testable. A test checks
/// these against the C enum.
package enum LibMongoCDomain: UInt32, CaseIterable, Sendable {
    case client = 1
    case stream, `protocol`, cursor, query, insert, sasl, bson, matcher, namespace, command, collection
    case gridfs, scram, serverSelection, writeConcern, server, transaction, clientSideEncryption, pool
}

/// libmongoc error codes (`mongoc_error_code_t`) that the mapping distinguishes.
package enum LibMongoCCode: UInt32, CaseIterable, Sendable {
    case streamNameResolution = 3
    case streamSocket = 4
    case streamConnect = 5
    case clientAuthenticate = 11
    case protocolInvalidReply = 14
    case protocolBadWireVersion = 15
    case commandInvalidArg = 22
    case serverSelectionFailure = 13053
}

extension MongoError {
    /// Maps libmongoc's `(domain, code, message)` plus the server reply (if any) to a ``MongoError``.
    ///
    /// A reply with `ok: 0` and a numeric `code` wins: the server's code decides. `redact` scrubs credentials
    /// from the message.
    package static func map(
        domain: UInt32,
        code: UInt32,
        message: String,
        reply: BSONDocument?,
        redact: (String) -> String = { $0 }
    ) -> MongoError {
        let safeMessage = redact(message)
        let labels = reply?["errorLabels"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let replyFailed = reply.map { !($0["ok"]?.isTruthy ?? true) } ?? false
        let replyCode = replyFailed ? reply?["code"]?.int64Value.flatMap { Int32(exactly: $0) } : nil
        let serverDomains: Set<UInt32> = [
            LibMongoCDomain.server.rawValue, LibMongoCDomain.query.rawValue, LibMongoCDomain.writeConcern.rawValue,
            LibMongoCDomain.command.rawValue,
        ]
        let serverCode: Int32?
        if let replyCode {
            serverCode = replyCode
        } else if domain == LibMongoCDomain.server.rawValue || domain == LibMongoCDomain.writeConcern.rawValue {
            serverCode = Int32(truncatingIfNeeded: code)
        } else if domain == LibMongoCDomain.query.rawValue && code != 17 {
            serverCode = Int32(truncatingIfNeeded: code)
        } else {
            serverCode = nil
        }
        if let serverCode, serverDomains.contains(domain) || replyCode != nil {
            let serverMessage = reply?["errmsg"]?.stringValue.map(redact) ?? safeMessage
            return MongoError(
                code: classify(serverCode: serverCode),
                message: serverMessage,
                serverCode: serverCode,
                codeName: reply?["codeName"]?.stringValue,
                errorLabels: labels,
                driverDomain: domain,
                driverCode: code,
                reply: reply
            )
        }
        let mapped: Code
        switch LibMongoCDomain(rawValue: domain) {
        case .serverSelection:
            mapped = .serverSelection
        case .stream:
            let lower = safeMessage.lowercased()
            // "socket error or timeout" is ambiguous (a hang-up reads the same); only explicit timeouts map here.
            mapped = lower.contains("timed out") || lower.contains("socket timeout") ? .timeout : .network
        case .client:
            switch LibMongoCCode(rawValue: code) {
            case .clientAuthenticate: mapped = .authenticationFailed
            case .streamNameResolution, .streamSocket, .streamConnect: mapped = .network
            default: mapped = .internalError
            }
        case .sasl, .scram:
            mapped = .authenticationFailed
        case .protocol:
            mapped = code == LibMongoCCode.protocolBadWireVersion.rawValue ? .incompatibleServer : .protocolError
        case .command, .namespace, .cursor, .collection:
            mapped = .invalidArgument
        case .bson:
            mapped = .invalidBSON
        case .query, .insert, .matcher, .gridfs, .writeConcern, .server, .transaction, .clientSideEncryption, .pool,
            .none:
            mapped = .internalError
        }
        return MongoError(
            code: mapped,
            message: safeMessage,
            errorLabels: labels,
            driverDomain: domain,
            driverCode: code,
            reply: reply
        )
    }

    /// The server error codes rsinit acts on (numbers from mongod's `error_codes.yml`).
    package static func classify(serverCode: Int32) -> Code {
        switch serverCode {
        case 94: return .notYetInitialized
        case 23: return .alreadyInitialized
        case 93, 103: return .invalidReplicaSetConfig
        case 76: return .noReplicationEnabled
        case 74: return .nodeNotFound
        case 13: return .unauthorized
        case 18: return .authenticationFailed
        case 10107, 10058: return .notWritablePrimary
        case 13435: return .notPrimaryNoSecondaryOk
        case 13436: return .notPrimaryOrSecondary
        case 11602, 189: return .stateChangeInterrupted
        case 91, 11600: return .shutdownInProgress
        case 136: return .cappedPositionLost
        case 286, 280: return .changeStreamHistoryLost
        case 43: return .cursorNotFound
        case 59: return .commandNotFound
        case 50: return .maxTimeExpired
        case 6, 7, 89, 9001: return .network
        default: return .serverError
        }
    }
}
