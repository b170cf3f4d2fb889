import BSON
public import MongoCWrapper

/// What to bootstrap (or wait for) and how long to try.
public struct BootstrapConfiguration: Sendable {
    /// The node to talk to. The bootstrapper connects directly (`directConnection=true`) with short timeouts;
    /// credentials, TLS and other options of the URI pass through to libmongoc.
    public var connectionString: MongoConnectionString
    /// The replica set name (`--replSet` of mongod, `_id` of the config).
    public var setName: String
    /// The member hosts to initiate with, as clients will reach them (never silently `localhost`).
    public var members: [HostAndPort]
    /// Accept loopback member hosts (only valid when every client shares mongod's network namespace).
    public var allowLocalhostMember: Bool
    /// Repair a REMOVED node with a forced reconfig to ``members``.
    public var forceReconfig: Bool
    /// The overall deadline.
    public var timeout: Duration
    /// Connect and server-selection timeout of each attempt (a listener that never answers costs this much).
    public var attemptTimeout: Duration
    /// The longest wait for the oplog proof by `lastWrite` (when `appendOplogNote` is not permitted).
    public var noopProofTimeout: Duration
    /// Backoff between attempts.
    public var backoff: Backoff

    /// A configuration for `members` of the set `setName`, reached through `connectionString`.
    public init(
        connectionString: MongoConnectionString,
        setName: String = "steedos",
        members: [HostAndPort],
        allowLocalhostMember: Bool = false,
        forceReconfig: Bool = false,
        timeout: Duration = .seconds(120),
        attemptTimeout: Duration = .seconds(1),
        noopProofTimeout: Duration = .seconds(25),
        backoff: Backoff = Backoff()
    ) {
        self.connectionString = connectionString
        self.setName = setName
        self.members = members
        self.allowLocalhostMember = allowLocalhostMember
        self.forceReconfig = forceReconfig
        self.timeout = timeout
        self.attemptTimeout = attemptTimeout
        self.noopProofTimeout = noopProofTimeout
        self.backoff = backoff
    }

    /// Checks the input before any I/O.
    ///
    /// - Throws: ``BootstrapFailure`` of kind ``BootstrapFailure/Kind/usage``.
    public func validate() throws(BootstrapFailure) {
        guard !setName.isEmpty, !setName.contains("/"), !setName.contains(" "), !setName.hasPrefix("$") else {
            throw BootstrapFailure(
                .usage,
                "invalid replica set name \"\(setName)\"",
                fix: "use a plain name such as steedos"
            )
        }
        guard !members.isEmpty else {
            throw BootstrapFailure(.usage, "no member host given", fix: "pass --member-host host:port or --members")
        }
        guard Set(members).count == members.count else {
            throw BootstrapFailure(
                .usage,
                "a member host is listed twice: \(members.map(\.description).joined(separator: ", "))"
            )
        }
        let loopback = members.filter(\.isLoopback)
        if !loopback.isEmpty && !allowLocalhostMember {
            throw BootstrapFailure(
                .usage,
                "refusing loopback member host \(loopback.map(\.description).joined(separator: ", ")): mongod would "
                    + "tell every client to connect to its own localhost, which fails from any other container or "
                    + "machine (drivers replace the seed with the member host unless they use directConnection=true)",
                fix: "pass --member-host with the name clients use (e.g. mongodb:27017), or --allow-localhost-member "
                    + "if every client runs in mongod's network namespace"
            )
        }
        guard timeout > .zero, attemptTimeout > .zero else {
            throw BootstrapFailure(.usage, "--timeout must be positive")
        }
    }
}

/// How the oplog was shown to move.
public enum OplogProof: String, Sendable, Codable {
    /// An `appendOplogNote` marker was written and read back through a tailable cursor.
    case note
    /// `appendOplogNote` was not permitted; `hello.lastWrite.opTime` advanced (the periodic no-op).
    case lastWrite
}

/// The outcome of a successful run.
public struct BootstrapReport: Sendable, Codable, Equatable {
    /// The replica set's name.
    public var setName: String
    /// The primary as `hello` reports it.
    public var primary: String?
    /// The member hosts of the set's config (`hello.hosts`).
    public var hosts: [String]
    /// Whether this run's `replSetInitiate` was accepted (false: the set existed or another bootstrapper won).
    public var initiated: Bool
    /// Whether a forced reconfig repaired a REMOVED node.
    public var repaired: Bool
    /// How the oplog was shown to accept writes.
    public var oplogProof: OplogProof
    /// Milliseconds from start until mongod answered, until the writable primary, until the oplog proof.
    public var reachableAfterMs: Int64
    public var primaryAfterMs: Int64
    public var totalMs: Int64
    /// Members that were not healthy at the end (multi-member sets).
    public var unhealthyMembers: [String]
    /// Warnings worth showing (e.g. a stored member host that differs from the requested one).
    public var warnings: [String]
}
