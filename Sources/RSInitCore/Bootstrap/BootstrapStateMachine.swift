public import BSON
public import MongoCWrapper
import RSInitSupport

/// The protocol decisions of a bootstrap (or a readiness wait), without I/O: each event (a server reply or
/// failure) returns the next ``Action``. ``ReplicaSetBootstrapper`` executes the actions.
public struct BootstrapStateMachine: Sendable {
    /// Bootstrap (initiate when needed) or only wait for readiness (the health check; never initiates).
    public enum Mode: Sendable, Equatable {
        /// Initiate the set when it is not initiated yet, then wait for a writable primary and the oplog proof.
        case bootstrap
        /// Wait for a writable primary and the oplog proof; never initiate or reconfigure.
        case waitOnly
    }

    /// Where the run is; the shell reports each change as one progress line.
    public enum Phase: Sendable, Equatable, CustomStringConvertible {
        /// Probing until mongod answers `hello`.
        case waitingForMongod
        /// Reading the node's replica-set state (`replSetGetStatus`).
        case checkingState
        /// Sending `replSetInitiate`.
        case initiating
        /// The set already existed (or another bootstrapper initiated it): check the name and membership.
        case verifying
        /// `--force-reconfig` on a REMOVED node.
        case repairing
        /// Waiting for a writable primary; the associated text is the node's state (e.g. "SECONDARY").
        case waitingForPrimary(String)
        /// Showing that the oplog accepts writes.
        case provingOplog
        /// Done: the set has a writable primary and a working oplog.
        case ready
        /// Given up; the run throws a ``BootstrapFailure``.
        case failed

        public var description: String {
            switch self {
            case .waitingForMongod: return "waiting for mongod"
            case .checkingState: return "checking replica set state"
            case .initiating: return "initiating the replica set"
            case .verifying: return "verifying the existing replica set"
            case .repairing: return "repairing the member host (forced reconfig)"
            case .waitingForPrimary(let state): return "waiting for a writable primary (\(state))"
            case .provingOplog: return "proving the oplog advances"
            case .ready: return "ready"
            case .failed: return "failed"
            }
        }
    }

    /// What the shell must do next.
    public enum Action: Sendable, Equatable {
        /// Connect (direct, short connect timeout) and run `hello`; `attempt` selects the backoff delay (0 = now).
        case probe(attempt: Int)
        /// Run `replSetGetStatus`.
        case fetchStatus
        /// Run `replSetInitiate` with ``BootstrapStateMachine/initiateConfig``; `attempt` > 0 waits first (74).
        case initiate(attempt: Int)
        /// Run `replSetGetConfig` to show the stored member hosts of a REMOVED node.
        case fetchStoredConfig
        /// Run a forced `replSetReconfig` putting the configured members in the stored config.
        case forceReconfig(storedConfig: BSONDocument)
        /// Poll `hello` (and `replSetGetStatus` for multi-member sets) after the backoff for `attempt`.
        case pollPrimary(attempt: Int)
        /// Write a note into the oplog and read it back (or watch `lastWrite` advance).
        case proveOplog
        /// Done: the set has a writable primary and a moving oplog.
        case finish
        /// Stop with this failure.
        case fail(BootstrapFailure)
    }

    public let mode: Mode
    public let setName: String
    public let members: [HostAndPort]
    public let forceReconfig: Bool
    public private(set) var phase: Phase = .waitingForMongod
    /// Whether this run's `replSetInitiate` was accepted.
    public private(set) var initiatedByUs = false
    /// Whether the set already existed (23, or a config found on the first check).
    public private(set) var foundExistingSet = false
    private var probeAttempts = 0
    private var pollAttempts = 0
    private var initiateAttempts = 0
    private var lastProbeError: MongoError?
    private var lastInitiateError: MongoError?

    public init(mode: Mode, setName: String, members: [HostAndPort], forceReconfig: Bool = false) {
        self.mode = mode
        self.setName = setName
        self.members = members
        self.forceReconfig = forceReconfig
    }

    /// The config sent with `replSetInitiate`: `_id` = set name; members with `_id` and host; for multi-member sets
    /// the first member gets priority 2 so the node being bootstrapped is preferred as primary.
    public var initiateConfig: BSONDocument {
        let memberDocuments = members.enumerated().map { index, member -> BSONValue in
            var document: BSONDocument = ["_id": .int32(Int32(clamping: index)), "host": .string(member.description)]
            if members.count > 1 { document.append("priority", .double(index == 0 ? 2 : 1)) }
            return .document(document)
        }
        return ["_id": .string(setName), "version": 1, "members": .array(memberDocuments)]
    }

    // MARK: Events

    public mutating func start() -> Action {
        phase = .waitingForMongod
        return .probe(attempt: 0)
    }

    public mutating func probeSucceeded(_ hello: HelloSummary) -> Action {
        probeAttempts = 0
        if hello.isMongos {
            return fail(
                .usage,
                "this is a mongos, not a mongod",
                fix: "point --host/--uri at a mongod started with --replSet"
            )
        }
        if hello.isStandalone { return notReplicaSet() }
        if let actual = hello.setName, actual != setName { return setNameMismatch(actual) }
        if hello.isWritablePrimary && hello.setName == setName && mode == .waitOnly {
            phase = .provingOplog
            return .proveOplog
        }
        phase = .checkingState
        return .fetchStatus
    }

    public mutating func probeFailed(_ error: MongoError) -> Action {
        switch error.code {
        case .authenticationFailed, .unauthorized:
            return authFailure(error)
        case .incompatibleServer:
            return fail(
                .unreachable,
                "mongod speaks an unsupported wire version: \(error.message)",
                fix: "use MongoDB 3.6 or newer"
            )
        default:
            lastProbeError = error
            probeAttempts += 1
            phase = .waitingForMongod
            return .probe(attempt: probeAttempts)
        }
    }

    public mutating func statusReplied(_ status: StatusSummary) -> Action {
        guard status.setName == setName else { return setNameMismatch(status.setName) }
        if phase == .checkingState { foundExistingSet = true }
        guard status.selfMember != nil else {
            return fail(
                .invalidConfig,
                "replSetGetStatus lists no member with self: true; this node is not in set \(setName)",
                fix: "check the member hosts with `rsinit status`"
            )
        }
        pollAttempts = 0
        phase = .waitingForPrimary(MemberStateName.name(status.myState))
        return .pollPrimary(attempt: 0)
    }

    public mutating func statusFailed(_ error: MongoError) -> Action {
        switch error.code {
        case .notYetInitialized:
            if foundExistingSet {
                // 23 said a config exists or is being installed (a concurrent initiate): wait for it.
                return pollAgain(state: "initiation in progress")
            }
            guard mode == .bootstrap else {
                return pollAgain(state: "no replica set config yet: run `rsinit --host …` to initiate it")
            }
            phase = .initiating
            return .initiate(attempt: 0)
        case .invalidReplicaSetConfig:
            phase = .verifying
            return .fetchStoredConfig
        case .noReplicationEnabled:
            return notReplicaSet()
        case .unauthorized, .authenticationFailed:
            return authFailure(error)
        default:
            return transient(error)
        }
    }

    public mutating func initiateSucceeded() -> Action {
        initiatedByUs = true
        pollAttempts = 0
        phase = .waitingForPrimary("STARTUP2")
        return .pollPrimary(attempt: 0)
    }

    public mutating func initiateFailed(_ error: MongoError) -> Action {
        lastInitiateError = error
        switch error.code {
        case .alreadyInitialized:
            // A restart, or a concurrent bootstrapper won: verify instead of failing.
            foundExistingSet = true
            phase = .verifying
            return .fetchStatus
        case .invalidReplicaSetConfig:
            return fail(
                .invalidConfig,
                "mongod rejected the replica set config: \(error.message)",
                fix: invalidConfigHint(error.message)
            )
        case .nodeNotFound:
            // Other members not answering yet (still starting): retry until the deadline.
            initiateAttempts += 1
            phase = .initiating
            return .initiate(attempt: initiateAttempts)
        case .noReplicationEnabled:
            return notReplicaSet()
        case .unauthorized, .authenticationFailed:
            return authFailure(error)
        default:
            return transient(error)
        }
    }

    public mutating func storedConfigFetched(_ reply: BSONDocument?) -> Action {
        let config = reply?["config"]?.documentValue
        let stored = (config?["members"]?.arrayValue ?? []).compactMap { $0.documentValue?["host"]?.stringValue }
        let storedText = stored.isEmpty ? "(unknown)" : stored.joined(separator: ", ")
        let wanted = members.map(\.description).joined(separator: ", ")
        if forceReconfig, let config, mode == .bootstrap {
            phase = .repairing
            return .forceReconfig(storedConfig: config)
        }
        return fail(
            .invalidConfig,
            "this node is REMOVED: replica set \(setName) is configured with member host(s) [\(storedText)], none of "
                + "which maps to this mongod any more (it answers to [\(wanted)])",
            fix: "give the container a stable hostname (compose `hostname:`) matching the stored host, or repair the "
                + "config with --force-reconfig (a forced reconfig to [\(wanted)])"
        )
    }

    public mutating func forceReconfigSucceeded() -> Action {
        pollAttempts = 0
        phase = .waitingForPrimary("reconfigured")
        return .pollPrimary(attempt: 0)
    }

    public mutating func forceReconfigFailed(_ error: MongoError) -> Action {
        switch error.code {
        case .unauthorized, .authenticationFailed: return authFailure(error)
        default:
            return fail(
                .invalidConfig,
                "the forced reconfig was rejected: \(error.message)",
                fix: "check that --member-host names this node as mongod sees itself"
            )
        }
    }

    /// A `hello` poll while waiting for the primary; `status` only for multi-member sets.
    public mutating func primaryPolled(_ hello: HelloSummary, status: StatusSummary?) -> Action {
        if hello.isWritablePrimary && hello.setName == setName {
            phase = .provingOplog
            return .proveOplog
        }
        if let actual = hello.setName, actual != setName { return setNameMismatch(actual) }
        if hello.isStandalone { return notReplicaSet() }
        if hello.isReplicaSetGhost {
            // The config went away (REMOVED after a restart?) or is not there yet: decide again from the status.
            if mode == .waitOnly { return pollAgain(state: "no valid replica set config") }
            phase = .checkingState
            return .fetchStatus
        }
        var state: String
        if let status {
            state = MemberStateName.name(status.myState)
            if status.myState == 1 { state = "PRIMARY, draining" }
            let unhealthy = status.unhealthyMembers
            if !unhealthy.isEmpty { state += "; not yet healthy: " + unhealthy.joined(separator: ", ") }
        } else if hello.isSecondary {
            state = "SECONDARY or draining"
        } else {
            state = hello.setName == nil ? "starting" : "STARTUP2/RECOVERING"
        }
        return pollAgain(state: state)
    }

    public mutating func primaryPollFailed(_ error: MongoError) -> Action {
        switch error.code {
        case .unauthorized, .authenticationFailed: return authFailure(error)
        default: return pollAgain(state: "connection lost: \(error.message)")
        }
    }

    public mutating func oplogProved() -> Action {
        phase = .ready
        return .finish
    }

    public mutating func oplogProofFailed(_ detail: String) -> Action {
        fail(
            .oplogNotAdvancing,
            "the oplog is not advancing: \(detail)",
            fix: "check mongod's log; a primary writes a no-op at least every 10 s"
        )
    }

    /// The overall deadline passed while in the current phase.
    public mutating func deadlinePassed(after timeout: Duration) -> Action {
        let seconds = timeout.formattedSeconds
        switch phase {
        case .waitingForMongod, .checkingState:
            let reason = lastProbeError.map { ": \($0.message)" } ?? ""
            return fail(
                .unreachable,
                "mongod did not answer within \(seconds)\(reason)",
                fix: "check that mongod runs and that --host/--port (or --uri) reach it from here"
            )
        case .initiating where lastInitiateError?.code == .nodeNotFound:
            return fail(
                .invalidConfig,
                "not all members answered within \(seconds): \(lastInitiateError?.message ?? "")",
                fix:
                    "start every member with --replSet \(setName) and check that each --members host resolves from the others"
            )
        case .initiating, .verifying, .repairing, .waitingForPrimary:
            return fail(
                .noWritablePrimary,
                "no writable primary within \(seconds) (last state: \(phaseState))",
                fix: "check mongod's log; raise --timeout for slow starts"
            )
        case .provingOplog:
            return fail(
                .oplogNotAdvancing,
                "the oplog did not advance within \(seconds)",
                fix: "check mongod's log; a primary writes a no-op at least every 10 s"
            )
        case .ready, .failed:
            return .finish
        }
    }

    // MARK: Helpers

    private var phaseState: String {
        if case .waitingForPrimary(let state) = phase { return state }
        return phase.description
    }

    private mutating func pollAgain(state: String) -> Action {
        pollAttempts += 1
        phase = .waitingForPrimary(state)
        return .pollPrimary(attempt: pollAttempts)
    }

    private mutating func transient(_ error: MongoError) -> Action {
        // Network trouble mid-run (mongod restarting, stepping down): go back to probing.
        lastProbeError = error
        probeAttempts += 1
        phase = .waitingForMongod
        return .probe(attempt: probeAttempts)
    }

    private mutating func fail(_ kind: BootstrapFailure.Kind, _ message: String, fix: String? = nil) -> Action {
        phase = .failed
        return .fail(BootstrapFailure(kind, message, fix: fix))
    }

    private mutating func notReplicaSet() -> Action {
        fail(
            .notReplicaSet,
            "mongod is running without --replSet (a standalone server)",
            fix: "start mongod with --replSet \(setName) (and --bind_ip_all in a container)"
        )
    }

    private mutating func setNameMismatch(_ actual: String) -> Action {
        fail(
            .invalidConfig,
            "mongod belongs to replica set \"\(actual)\", not \"\(setName)\"",
            fix: "pass --set-name \(actual), or start mongod with --replSet \(setName)"
        )
    }

    private mutating func authFailure(_ error: MongoError) -> Action {
        if error.code == .authenticationFailed {
            return fail(
                .auth,
                "authentication failed: \(error.message)",
                fix: "check the user name and password (--username and --password-file, or --uri with authSource)"
            )
        }
        return fail(
            .auth,
            "mongod requires authentication: \(error.message)",
            fix: "pass credentials of a user with the clusterManager (or root) role in --uri; mongod's localhost "
                + "exception only applies to connections from its own loopback interface"
        )
    }

    private func invalidConfigHint(_ message: String) -> String {
        if message.contains("maps to this node") && message.hasPrefix("No host") {
            return "the member host [\(members.map(\.description).joined(separator: ", "))] does not resolve to "
                + "this mongod from inside its own container: use the name mongod is reachable by (the compose "
                + "service name or `hostname:`), and the port it listens on"
        }
        if message.contains("set name") {
            return "pass the name mongod was started with (--replSet) as --set-name"
        }
        if message.contains("localhost references") {
            return "use real host names for every member (or loopback for all, with --allow-localhost-member)"
        }
        return "fix the member list (--member-host/--members) and try again"
    }
}
