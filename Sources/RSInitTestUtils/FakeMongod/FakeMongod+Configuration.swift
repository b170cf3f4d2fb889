/// How a ``FakeMongod`` starts and behaves.
public struct FakeMongodConfiguration: Sendable {
    /// The state mongod is in when it starts listening.
    public enum Scenario: Sendable, Equatable {
        /// mongod without `--replSet`.
        case standalone
        /// `--replSet <setName>`, no config yet (RSGhost).
        case uninitialized(setName: String)
        /// An initiated single-member set that is already a writable primary; the member host defaults to
        /// `127.0.0.1:<port>`.
        case primary(setName: String, memberHost: String? = nil)
        /// A config is stored but no member maps to this node any more (hostname changed): REMOVED.
        case removed(setName: String, storedHosts: [String])
    }

    /// Durations of the phases after a successful `replSetInitiate` (and after a restart or stepdown).
    public struct Timings: Sendable {
        /// STARTUP2 before SECONDARY.
        public var startup2: Duration
        /// SECONDARY before the (single-node, prompt) election.
        public var secondary: Duration
        /// PRIMARY in drain mode (`secondary: true`, `isWritablePrimary: false`).
        public var drain: Duration
        /// How long `replSetInitiate` itself takes (a concurrent initiate during it gets 23).
        public var initiate: Duration

        public init(
            startup2: Duration = .milliseconds(30),
            secondary: Duration = .milliseconds(30),
            drain: Duration = .milliseconds(30),
            initiate: Duration = .milliseconds(20)
        ) {
            self.startup2 = startup2
            self.secondary = secondary
            self.drain = drain
            self.initiate = initiate
        }

        /// Instant transitions (for tests that do not care about the window).
        public static let immediate = Timings(startup2: .zero, secondary: .zero, drain: .zero, initiate: .zero)
    }

    /// Authentication behaviour.
    public enum Auth: Sendable, Equatable {
        /// No authentication (mongod without `--auth`/keyFile).
        case disabled
        /// `--auth` and a client that is not on loopback, or users exist (no localhost exception): every command
        /// but the handshake, `ping` and the SASL commands gets 13 until the connection authenticated with SCRAM as
        /// one of ``FakeMongodConfiguration/users``; wrong credentials get 18.
        case required
    }

    public var scenario: Scenario
    /// 0 picks a free port.
    public var port: UInt16
    /// Host names that map to this node (with its port). The bound address 127.0.0.1 is always included.
    public var selfHostNames: [String]
    /// The host name mongod reports when it builds a default config (`--bind_ip_all` uses the machine hostname).
    /// nil: `127.0.0.1` (only loopback bound).
    public var hostName: String?
    public var timings: Timings
    /// Interval of the periodic no-op while primary and idle (mongod's `periodicNoopIntervalSecs`, default 10 s);
    /// nil disables it.
    public var periodicNoopInterval: Duration?
    /// The oplog's capacity in entries (the capped collection's size); older entries are removed.
    public var oplogCapacity: Int
    public var auth: Auth
    /// The users SCRAM authenticates (`db.createUser` with both mechanisms by default); more can be added at run
    /// time with ``FakeMongod/createUser(_:)``.
    public var users: [FakeMongodUser]
    /// Whether `appendOplogNote` is permitted (false: 13 Unauthorized, like a user without clusterManager).
    public var appendOplogNoteAllowed: Bool
    /// Delay before the first `listen` (mongod still starting).
    public var listenDelay: Duration
    /// Other members (`host:port`) that answer the initiate quorum check and heartbeats.
    public var reachablePeers: Set<String>
    /// How long `replSetInitiate` takes to answer 93 when no member maps to self (mongod's isSelf slow path, up to
    /// 30 s).
    public var selfNotFoundDelay: Duration
    /// Accept connections but never answer anything (a hung process).
    public var silent: Bool
    /// The `maxWireVersion` advertised (21 = MongoDB 7.0).
    public var maxWireVersion: Int32

    public init(
        scenario: Scenario = .uninitialized(setName: "steedos"),
        port: UInt16 = 0,
        selfHostNames: [String] = ["localhost", "127.0.0.1"],
        hostName: String? = nil,
        timings: Timings = Timings(),
        periodicNoopInterval: Duration? = .seconds(10),
        oplogCapacity: Int = 1_000_000,
        auth: Auth = .disabled,
        users: [FakeMongodUser] = [],
        appendOplogNoteAllowed: Bool = true,
        listenDelay: Duration = .zero,
        reachablePeers: Set<String> = [],
        selfNotFoundDelay: Duration = .zero,
        silent: Bool = false,
        maxWireVersion: Int32 = 21
    ) {
        self.scenario = scenario
        self.port = port
        self.selfHostNames = selfHostNames
        self.hostName = hostName
        self.timings = timings
        self.periodicNoopInterval = periodicNoopInterval
        self.oplogCapacity = oplogCapacity
        self.auth = auth
        self.users = users
        self.appendOplogNoteAllowed = appendOplogNoteAllowed
        self.listenDelay = listenDelay
        self.reachablePeers = reachablePeers
        self.selfNotFoundDelay = selfNotFoundDelay
        self.silent = silent
        self.maxWireVersion = maxWireVersion
    }
}

/// A user the double authenticates with SCRAM (`db.getSiblingDB(database).createUser(...)`).
public struct FakeMongodUser: Sendable, Equatable {
    public var name: String
    public var password: String
    /// The authentication database (the user's `db`; libmongoc's authSource, `admin` by default).
    public var database: String
    /// The mechanisms with stored credentials (mongod's default: both).
    public var mechanisms: [SCRAMMechanism]

    public init(
        name: String,
        password: String,
        database: String = "admin",
        mechanisms: [SCRAMMechanism] = SCRAMMechanism.allCases
    ) {
        self.name = name
        self.password = password
        self.database = database
        self.mechanisms = mechanisms
    }

    /// `user:password` (the first colon separates, so the password may contain colons); nil without a colon or
    /// with an empty name.
    public init?(argument: String) {
        guard let colon = argument.firstIndex(of: ":"), colon != argument.startIndex else { return nil }
        self.init(name: String(argument[..<colon]), password: String(argument[argument.index(after: colon)...]))
    }
}

/// The member state the double is in (mongod's `MemberState` plus the two "no config" situations).
public enum FakeMongodPhase: Sendable, Equatable {
    case standalone
    /// `--replSet` without a config (STARTUP).
    case uninitialized
    /// Config present, self not in it.
    case removed
    case startup2
    case secondary
    /// Won the election, draining: PRIMARY in replSetGetStatus, not writable.
    case drain
    case primary
    /// ROLLBACK (9): a member of a ``FakeReplicaSet`` truncating its divergent oplog (spec replication-ha §5.2).
    case rollback
    /// RECOVERING (3): a restarted ``FakeReplicaSet`` member on its way to SECONDARY, or one too stale to sync
    /// (`tooStale`, spec replication-ha §4.3, §5.1).
    case recovering
    /// ARBITER (7): a ``FakeReplicaSet`` member configured `arbiterOnly: true`: votes, holds no data and no oplog
    /// (spec replication-ha §1.2, §2.2, §3.1).
    case arbiter

    /// replSetGetStatus `myState`.
    var memberStateCode: Int32 {
        switch self {
        case .standalone, .uninitialized: return 0
        case .removed: return 10
        case .startup2: return 5
        case .secondary: return 2
        case .drain, .primary: return 1
        case .rollback: return 9
        case .recovering: return 3
        case .arbiter: return 7
        }
    }

    var stateString: String {
        switch self {
        case .standalone, .uninitialized: return "STARTUP"
        case .removed: return "REMOVED"
        case .startup2: return "STARTUP2"
        case .secondary: return "SECONDARY"
        case .drain, .primary: return "PRIMARY"
        case .rollback: return "ROLLBACK"
        case .recovering: return "RECOVERING"
        case .arbiter: return "ARBITER"
        }
    }
}
