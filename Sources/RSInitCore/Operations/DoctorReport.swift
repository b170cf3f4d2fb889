public import BSON
import FoundationEssentials

/// What `rsinit doctor` gathered about a deployment: plain values, no I/O. ``DoctorReport`` judges them.
public struct DoctorFacts: Sendable, Equatable {
    /// How the node `--host`/`--uri` names answered.
    public enum Node: Sendable, Equatable {
        case unreachable(String)
        case authenticationFailed(String)
        case answered(NodeFacts)
    }

    /// The seed node's own view.
    public struct NodeFacts: Sendable, Equatable {
        /// `buildInfo.version`, nil when refused.
        public var version: String?
        /// "standalone", "uninitialized", "removed", "member" or "mongos" (as `rsinit status`).
        public var kind: String
        /// The set name `hello` reports.
        public var setName: String?
        /// This node's state name (PRIMARY, SECONDARY, …).
        public var state: String?
        /// `hello.isWritablePrimary`.
        public var isWritablePrimary: Bool
        /// `hello.primary`: the member this node believes is primary.
        public var primary: String?
        /// `replSetGetStatus.members`.
        public var members: [MemberStatus]

        /// Facts about the seed node.
        public init(
            version: String?,
            kind: String,
            setName: String?,
            state: String?,
            isWritablePrimary: Bool,
            primary: String?,
            members: [MemberStatus]
        ) {
            self.version = version
            self.kind = kind
            self.setName = setName
            self.state = state
            self.isWritablePrimary = isWritablePrimary
            self.primary = primary
            self.members = members
        }
    }

    /// One stored member host, looked at from where doctor runs.
    public struct MemberHost: Sendable, Equatable {
        /// How the member answered a direct `hello` from here.
        public enum Answer: Sendable, Equatable {
            case unreachable(String)
            case answered(setName: String?, isWritablePrimary: Bool, state: String)
        }

        /// The config's `host:port`.
        public var host: String
        /// Resolved addresses (numeric), or the resolver's error.
        public var addresses: Result<[String], ResolutionError>
        /// Any address is loopback (127/8, ::1) or the name is `localhost`.
        public var isLoopback: Bool
        /// Any address belongs to one of this machine's own network interfaces.
        public var isThisMachine: Bool
        /// What the member answered (or why it did not).
        public var answer: Answer

        /// Facts about one member host.
        public init(
            host: String,
            addresses: Result<[String], ResolutionError>,
            isLoopback: Bool,
            isThisMachine: Bool,
            answer: Answer
        ) {
            self.host = host
            self.addresses = addresses
            self.isLoopback = isLoopback
            self.isThisMachine = isThisMachine
            self.answer = answer
        }
    }

    /// A name the resolver could not turn into addresses.
    public struct ResolutionError: Error, Sendable, Equatable {
        /// The resolver's message (`gai_strerror`).
        public var message: String
        /// A resolution error with the resolver's message.
        public init(_ message: String) { self.message = message }
    }

    /// `local.oplog.rs` now and over the sampling period.
    public struct Oplog: Sendable, Equatable {
        /// The oldest entry's `ts`.
        public var first: BSONTimestamp
        /// The newest entry's `ts`.
        public var last: BSONTimestamp
        /// `collStats`: used bytes, the capped size in bytes (`maxSize`) and/or in documents (`max`); nil when refused.
        public var sizeBytes: Int64?
        /// `collStats.maxSize`: the capped size in bytes (a real oplog).
        public var maxSizeBytes: Int64?
        /// `collStats.max`: the capped size in entries (the double's oplog).
        public var maxEntries: Int64?
        /// Entries and bytes written during the sample, and its length.
        public var sampleEntries: Int
        /// Bytes of those entries (their BSON size).
        public var sampleBytes: Int
        /// The sample's length in seconds.
        public var sampleSeconds: Double

        /// Oplog facts.
        public init(
            first: BSONTimestamp,
            last: BSONTimestamp,
            sizeBytes: Int64? = nil,
            maxSizeBytes: Int64? = nil,
            maxEntries: Int64? = nil,
            sampleEntries: Int,
            sampleBytes: Int,
            sampleSeconds: Double
        ) {
            self.first = first
            self.last = last
            self.sizeBytes = sizeBytes
            self.maxSizeBytes = maxSizeBytes
            self.maxEntries = maxEntries
            self.sampleEntries = sampleEntries
            self.sampleBytes = sampleBytes
            self.sampleSeconds = sampleSeconds
        }
    }

    /// What Redis says, with `--redis`.
    public struct Redis: Sendable, Equatable {
        /// How Redis persists its data set.
        public enum Persistence: Sendable, Equatable {
            /// From `CONFIG GET appendonly` / `save` (`save` "" is RDB off).
            case configured(appendOnly: Bool, rdbSave: String)
            /// `CONFIG` refused (managed Redis, renamed command): `INFO persistence`'s `aof_enabled`, when readable.
            case fromInfo(appendOnly: Bool?, reason: String)
        }

        /// Whether doctor could connect and authenticate.
        public enum Connection: Sendable, Equatable {
            case unreachable(String)
            case authenticationFailed(String)
            case connected
        }

        /// The URL without its password.
        public var url: String
        /// Connecting and authenticating.
        public var connection: Connection
        /// How Redis persists data; nil when not read.
        public var persistence: Persistence?
        /// `<metadata-prefix>checkpoint`.
        public var checkpointKey: String
        /// The checkpoint key's value (nil: absent); ``DoctorReport`` decodes it.
        public var checkpointValue: String?
        /// Dedupe keys (`<metadata-prefix>processed::*`) found by a bounded SCAN; `dedupeScanComplete` false when the
        /// bound stopped it.
        public var dedupeKeys: Int
        /// False when the SCAN bound stopped before the end.
        public var dedupeScanComplete: Bool

        /// Redis facts.
        public init(
            url: String,
            connection: Connection,
            persistence: Persistence? = nil,
            checkpointKey: String = "rsinit::checkpoint",
            checkpointValue: String? = nil,
            dedupeKeys: Int = 0,
            dedupeScanComplete: Bool = true
        ) {
            self.url = url
            self.connection = connection
            self.persistence = persistence
            self.checkpointKey = checkpointKey
            self.checkpointValue = checkpointValue
            self.dedupeKeys = dedupeKeys
            self.dedupeScanComplete = dedupeScanComplete
        }
    }

    /// `--probe`: a marker write and the bridge's message about it.
    public enum Probe: Sendable, Equatable {
        case delivered(channel: String, milliseconds: Double)
        case noMessage(channel: String, waitedSeconds: Double)
        case failed(String)
    }

    /// The `host:port` doctor connected to.
    public var seed: String
    /// The seed resolves to this machine (loopback or an own address): a member host pointing here is then expected.
    public var seedIsThisMachine: Bool
    /// `--set-name`.
    public var expectedSetName: String
    /// How the seed answered.
    public var node: Node
    /// The config's member hosts, each looked at from here (empty when there is no config).
    public var memberHosts: [MemberHost]
    /// Nil when the oplog could not be read (`oplogError` says why, when there was an error).
    public var oplog: Oplog?
    /// Why the oplog could not be read.
    public var oplogError: String?
    /// Redis facts, with `--redis`.
    public var redis: Redis?
    /// The probe's outcome, with `--probe`.
    public var probe: Probe?
    /// When the facts were gathered (seconds since 1970), for ages.
    public var now: Double

    /// All the facts of one doctor run.
    public init(
        seed: String,
        seedIsThisMachine: Bool,
        expectedSetName: String,
        node: Node,
        memberHosts: [MemberHost] = [],
        oplog: Oplog? = nil,
        oplogError: String? = nil,
        redis: Redis? = nil,
        probe: Probe? = nil,
        now: Double
    ) {
        self.seed = seed
        self.seedIsThisMachine = seedIsThisMachine
        self.expectedSetName = expectedSetName
        self.node = node
        self.memberHosts = memberHosts
        self.oplog = oplog
        self.oplogError = oplogError
        self.redis = redis
        self.probe = probe
        self.now = now
    }
}

/// One check's verdict, with a one-line fix when it is not ok.
public struct DoctorFinding: Sendable, Equatable, Codable {
    /// How bad a finding is.
    public enum Severity: String, Sendable, Codable, Comparable {
        case ok, warning, failure

        private var rank: Int {
            switch self {
            case .ok: return 0
            case .warning: return 1
            case .failure: return 2
            }
        }

        /// ok < warning < failure.
        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    /// The check's name: `mongod`, `replica set`, `member <host>`, `primary`, `majority`, `oplog`, `redis`,
    /// `redis persistence`, `checkpoint`, `ha bridges`, `probe`.
    public var check: String
    /// How bad it is.
    public var severity: Severity
    /// What was found (one line, no credentials).
    public var message: String
    /// What to change (for warnings and failures).
    public var fix: String?

    /// A finding.
    public init(_ check: String, _ severity: Severity, _ message: String, fix: String? = nil) {
        self.check = check
        self.severity = severity
        self.message = message
        self.fix = fix
    }
}

/// The verdict on ``DoctorFacts``: one finding per check and the exit code. Pure: the same facts give the same report.
public struct DoctorReport: Sendable, Equatable {
    /// Thresholds.
    public struct Policy: Sendable, Equatable {
        /// A bridge outage the oplog must survive; below it the oplog finding is a failure.
        public var minimumOutage: Double
        /// Below this the oplog finding is a warning.
        public var comfortableOutage: Double
        /// A checkpoint older than this while the oplog moves means no bridge is running (it checkpoints at least at
        /// every periodic no-op, 10 s).
        public var checkpointAgeWarning: Double
        /// Loopback member hosts are intended (every client runs in mongod's network namespace).
        public var allowLoopbackMembers: Bool

        /// Thresholds (defaults: 1 h, 24 h, 60 s, loopback members refused).
        public init(
            minimumOutage: Double = 3600,
            comfortableOutage: Double = 86_400,
            checkpointAgeWarning: Double = 60,
            allowLoopbackMembers: Bool = false
        ) {
            self.minimumOutage = minimumOutage
            self.comfortableOutage = comfortableOutage
            self.checkpointAgeWarning = checkpointAgeWarning
            self.allowLoopbackMembers = allowLoopbackMembers
        }
    }

    /// Exit codes of `rsinit doctor`.
    public enum ExitCode {
        /// No failures (warnings may be printed).
        public static let healthy: Int32 = 0
        /// mongod did not answer.
        public static let unreachable: Int32 = 3
        /// MongoDB or Redis refused the credentials.
        public static let authentication: Int32 = 6
        /// At least one failure.
        public static let failuresFound: Int32 = 10
    }

    /// One finding per check, in check order.
    public var findings: [DoctorFinding]
    /// The process exit code (``ExitCode``).
    public var exitCode: Int32
    /// The measured figures behind the findings, for monitoring (`--json`): `oplogWindowSeconds`,
    /// `oplogEntriesPerSecond`, `oplogToleranceSeconds`, `checkpointLagSeconds`, `dedupeKeys`, `probeMilliseconds`;
    /// a figure that was not measured is absent.
    public var figures: [String: Double]

    /// How many findings are failures.
    public var failures: Int { findings.filter { $0.severity == .failure }.count }
    /// How many findings are warnings.
    public var warnings: Int { findings.filter { $0.severity == .warning }.count }

    /// Judges `facts` under `policy`.
    public init(facts: DoctorFacts, policy: Policy = Policy()) {
        var findings: [DoctorFinding] = []
        var exitCode = ExitCode.healthy
        switch facts.node {
        case .unreachable(let message):
            findings.append(
                DoctorFinding(
                    "mongod",
                    .failure,
                    "mongod at \(facts.seed) did not answer: \(message)",
                    fix: "check that mongod runs and that --host/--port (or --uri) reach it from here"
                )
            )
            exitCode = ExitCode.unreachable
        case .authenticationFailed(let message):
            findings.append(
                DoctorFinding(
                    "mongod",
                    .failure,
                    "authentication failed: \(message)",
                    fix: "check --username/--password-file (or the credentials in --uri); the user needs clusterMonitor"
                )
            )
            exitCode = ExitCode.authentication
        case .answered(let node):
            findings += Self.nodeFindings(node, facts: facts, policy: policy)
        }
        if let redis = facts.redis {
            let redisFindings = Self.redisFindings(redis, facts: facts, policy: policy)
            findings += redisFindings
            if case .authenticationFailed = redis.connection, exitCode == ExitCode.healthy {
                exitCode = ExitCode.authentication
            }
        }
        if let probe = facts.probe { findings.append(Self.probeFinding(probe)) }
        if exitCode == ExitCode.healthy && findings.contains(where: { $0.severity == .failure }) {
            exitCode = ExitCode.failuresFound
        }
        self.findings = findings
        self.exitCode = exitCode
        self.figures = Self.figures(facts)
    }

    static func figures(_ facts: DoctorFacts) -> [String: Double] {
        var figures: [String: Double] = [:]
        if let oplog = facts.oplog {
            figures["oplogWindowSeconds"] = Double(oplog.last.seconds) - Double(oplog.first.seconds)
            if oplog.sampleSeconds > 0 {
                figures["oplogEntriesPerSecond"] = Double(oplog.sampleEntries) / oplog.sampleSeconds
            }
            figures["oplogToleranceSeconds"] = outageTolerance(oplog)
            if let position = facts.redis?.checkpointValue.flatMap(CheckpointEncoding.decode) {
                figures["checkpointLagSeconds"] = Double(oplog.last.seconds) - Double(position.seconds)
            }
        }
        if let redis = facts.redis, case .connected = redis.connection {
            figures["dedupeKeys"] = Double(redis.dedupeKeys)
        }
        if case .delivered(_, let milliseconds)? = facts.probe { figures["probeMilliseconds"] = milliseconds }
        return figures
    }

    // MARK: - MongoDB

    static func nodeFindings(
        _ node: DoctorFacts.NodeFacts,
        facts: DoctorFacts,
        policy: Policy
    ) -> [DoctorFinding] {
        let answers = DoctorFinding(
            "mongod",
            .ok,
            "MongoDB \(node.version ?? "(version not readable)") answers at \(facts.seed)"
        )
        if let noSetToCheck = noSetToCheckFinding(node, facts: facts) { return [answers, noSetToCheck] }
        var findings = [answers, setNameFinding(node, facts: facts)]
        for member in facts.memberHosts {
            findings.append(memberFinding(member, facts: facts, policy: policy))
        }
        findings.append(primaryFinding(node, facts: facts))
        if let majority = majorityFinding(node) { findings.append(majority) }
        findings.append(oplogFinding(facts, policy: policy))
        return findings
    }

    /// The one finding for a node without a replica set to check (standalone, mongos, not initiated, removed);
    /// nil for a set member.
    static func noSetToCheckFinding(_ node: DoctorFacts.NodeFacts, facts: DoctorFacts) -> DoctorFinding? {
        switch node.kind {
        case "standalone":
            return DoctorFinding(
                "replica set",
                .failure,
                "mongod runs standalone (not started with --replSet): it has no oplog to tail",
                fix: "start mongod with --replSet \(facts.expectedSetName), then run rsinit --host <host>"
            )
        case "mongos":
            // A sharded cluster has no oplog here, but `rsinit tail` serves it through a change stream
            // (`--source auto` picks it); the replica-set and oplog checks do not apply.
            return DoctorFinding(
                "replica set",
                .warning,
                "\(facts.seed) is a mongos router: no oplog here, so rsinit tail reads a change stream "
                    + "(majority-committed, cluster-wide); the replica-set and oplog checks are skipped",
                fix: "run rsinit tail with --source auto or --source change-stream; to check a shard's "
                    + "replica set, point doctor at one of its members"
            )
        case "uninitialized":
            return DoctorFinding(
                "replica set",
                .failure,
                "the replica set is not initiated (no config)",
                fix: "run rsinit --host <host> --set-name \(facts.expectedSetName) to initiate it"
            )
        case "removed":
            return DoctorFinding(
                "replica set",
                .failure,
                "this node is REMOVED: no member host of the stored config maps to it (its host name changed?)",
                fix: "run rsinit --host <host> --member-host <host:port> --force-reconfig to repair the config"
            )
        default:
            return nil
        }
    }

    /// The set's name against the expected one, with its size and this node's state.
    static func setNameFinding(_ node: DoctorFacts.NodeFacts, facts: DoctorFacts) -> DoctorFinding {
        if let setName = node.setName, setName != facts.expectedSetName {
            return DoctorFinding(
                "replica set",
                .failure,
                "the set is named \(setName), not \(facts.expectedSetName)",
                fix: "pass --set-name \(setName), or fix the apps' replicaSet option if \(setName) is wrong"
            )
        }
        return DoctorFinding(
            "replica set",
            .ok,
            "set \(node.setName ?? facts.expectedSetName), \(node.members.count) member(s); this node is "
                + "\(node.state ?? "?")"
        )
    }

    static func memberFinding(_ member: DoctorFacts.MemberHost, facts: DoctorFacts, policy: Policy) -> DoctorFinding {
        let addresses: [String]
        switch member.addresses {
        case .failure(let error):
            return DoctorFinding(
                "member \(member.host)",
                .failure,
                "does not resolve from here: \(error.message)",
                fix: memberReconfigFix
            )
        case .success(let resolved):
            addresses = resolved
        }
        let shown = addresses.prefix(3).joined(separator: ", ")
        if let wrongAddress = memberAddressFinding(member, shown: shown, facts: facts, policy: policy) {
            return wrongAddress
        }
        return memberAnswerFinding(member, shown: shown, facts: facts)
    }

    static let memberReconfigFix =
        "reconfigure the member host to a name every client resolves to this node, e.g. rs.reconfig with "
        + "mongodb:27017 (the compose service name)"

    static func loopbackMessage(_ shown: String) -> String {
        "a loopback host (\(shown)): every client that is not inside mongod's own network namespace dials itself "
            + "(the localhost:27017 trap)"
    }

    /// A member host that resolves where clients would dial themselves: loopback (unless allowed), or this machine
    /// while mongod runs elsewhere. Nil when the addresses are fine.
    static func memberAddressFinding(
        _ member: DoctorFacts.MemberHost,
        shown: String,
        facts: DoctorFacts,
        policy: Policy
    ) -> DoctorFinding? {
        let check = "member \(member.host)"
        if member.isLoopback && !policy.allowLoopbackMembers {
            return DoctorFinding(check, .failure, loopbackMessage(shown), fix: memberReconfigFix)
        }
        if member.isThisMachine && !member.isLoopback && !facts.seedIsThisMachine {
            return DoctorFinding(
                check,
                .failure,
                "resolves to this machine (\(shown)) while mongod at \(facts.seed) runs elsewhere: clients here dial "
                    + "themselves",
                fix: memberReconfigFix
            )
        }
        return nil
    }

    /// What the member host answered from here: nothing, another set's member, or this set's.
    static func memberAnswerFinding(
        _ member: DoctorFacts.MemberHost,
        shown: String,
        facts: DoctorFacts
    ) -> DoctorFinding {
        let check = "member \(member.host)"
        switch member.answer {
        case .unreachable(let message):
            return DoctorFinding(
                check,
                .failure,
                "resolves to \(shown) but does not answer from here: \(message)",
                fix: "open the network path (firewall, published port) or use a host clients can reach; drivers "
                    + "connect to every member host"
            )
        case .answered(let setName, _, let state):
            guard setName == facts.expectedSetName else {
                return DoctorFinding(
                    check,
                    .failure,
                    "answers, but as \(setName.map { "a member of set \($0)" } ?? "no replica set member") "
                        + "(\(state)): the name reaches a different mongod",
                    fix: memberReconfigFix
                )
            }
            if member.isLoopback {
                return DoctorFinding(
                    check,
                    .warning,
                    loopbackMessage(shown) + "; answers as \(state); accepted by --allow-localhost-member",
                    fix: memberReconfigFix
                )
            }
            return DoctorFinding(
                check,
                .ok,
                "resolves to \(shown)\(member.isThisMachine ? " (this machine)" : "") and answers as \(state)"
            )
        }
    }

    static func primaryFinding(_ node: DoctorFacts.NodeFacts, facts: DoctorFacts) -> DoctorFinding {
        if node.isWritablePrimary {
            return DoctorFinding("primary", .ok, "\(facts.seed) is the writable primary")
        }
        let fromHere = facts.memberHosts.first {
            if case .answered(let setName, true, _) = $0.answer { return setName == facts.expectedSetName }
            return false
        }
        if let fromHere {
            return DoctorFinding("primary", .ok, "writable primary \(fromHere.host) (reached from here)")
        }
        if let primary = node.primary {
            return DoctorFinding(
                "primary",
                .failure,
                "the set names \(primary) as primary, but it does not answer as a writable primary from here",
                fix: "make \(primary) reachable from the apps and the bridge (see the member findings)"
            )
        }
        return DoctorFinding(
            "primary",
            .failure,
            "no writable primary (this node is \(node.state ?? "?"))",
            fix: "wait for the election (rsinit wait); if it never comes, bring a majority of members up"
        )
    }

    static func majorityFinding(_ node: DoctorFacts.NodeFacts) -> DoctorFinding? {
        guard node.members.count > 1 else { return nil }
        let healthy = node.members.filter { $0.isSelf ? [1, 2, 7].contains($0.state) : $0.isHealthy }
        let unhealthy = node.members.filter { member in !healthy.contains(where: { $0.name == member.name }) }
        let majority = node.members.count / 2 + 1
        let names = unhealthy.map { "\($0.name) (\($0.stateStr))" }.joined(separator: ", ")
        if healthy.count < majority {
            return DoctorFinding(
                "majority",
                .failure,
                "\(healthy.count) of \(node.members.count) members healthy, \(majority) needed: \(names)",
                fix: "bring the unhealthy members back; without a majority there is no primary and no write"
            )
        }
        // Arbiters vote but hold no data: majority writes (and so the bridge's majority gate) need a majority of the
        // data-bearing members (replication-ha §3.1, PSA: the secondary). A down arbiter shows as DOWN and is
        // counted as data-bearing here, which only makes the check stricter where it cannot matter.
        let arbiters = node.members.filter { $0.state == 7 }.count
        let dataBearing = node.members.count - arbiters
        let healthyData = healthy.filter { [1, 2].contains($0.state) }.count
        if arbiters > 0, healthyData < min(majority, dataBearing) {
            return DoctorFinding(
                "majority",
                .failure,
                "\(healthyData) of \(dataBearing) data-bearing members healthy, \(min(majority, dataBearing)) needed "
                    + "for majority writes (an arbiter votes but holds no data): \(names)",
                fix: "bring the data-bearing members back: until then nothing new is majority-committed, the bridge "
                    + "publishes nothing and w:\"majority\" writes time out"
            )
        }
        if !unhealthy.isEmpty {
            return DoctorFinding(
                "majority",
                .warning,
                "\(healthy.count) of \(node.members.count) members healthy (majority \(majority) holds); unhealthy: "
                    + names,
                fix: "bring the unhealthy members back before another one fails"
            )
        }
        return DoctorFinding("majority", .ok, "all \(node.members.count) members healthy")
    }

    // MARK: - Oplog

    /// How long a bridge may be down before an entry written now leaves the oplog, at the sampled write rate; nil
    /// when the configured size is unknown or nothing was written during the sample.
    public static func outageTolerance(_ oplog: DoctorFacts.Oplog) -> Double? {
        guard oplog.sampleSeconds > 0 else { return nil }
        var candidates: [Double] = []
        if let maxSize = oplog.maxSizeBytes, maxSize > 0, oplog.sampleBytes > 0 {
            candidates.append(Double(maxSize) / (Double(oplog.sampleBytes) / oplog.sampleSeconds))
        }
        if let maxEntries = oplog.maxEntries, maxEntries > 0, oplog.sampleEntries > 0 {
            candidates.append(Double(maxEntries) / (Double(oplog.sampleEntries) / oplog.sampleSeconds))
        }
        return candidates.min()
    }

    static func oplogFinding(_ facts: DoctorFacts, policy: Policy) -> DoctorFinding {
        guard let oplog = facts.oplog else {
            return DoctorFinding(
                "oplog",
                .failure,
                "local.oplog.rs could not be read\(facts.oplogError.map { ": \($0)" } ?? "")",
                fix: "grant the user read on local (clusterMonitor + read@local), as the bridge needs it"
            )
        }
        let window = Double(oplog.last.seconds) - Double(oplog.first.seconds)
        var size: String
        if let maxSize = oplog.maxSizeBytes {
            size = "size \(formatBytes(maxSize))"
            if let used = oplog.sizeBytes { size += " (\(formatBytes(used)) used)" }
        } else if let maxEntries = oplog.maxEntries {
            size = "capped at \(maxEntries) entries"
        } else {
            size = "configured size unknown (collStats refused)"
        }
        let rate = Double(oplog.sampleEntries) / max(oplog.sampleSeconds, 0.001)
        let sampled =
            // trap-checked: Int to Int64 widens
            "\(oplog.sampleEntries) entries (\(formatBytes(Int64(oplog.sampleBytes)))) in "
            + "\(formatDuration(oplog.sampleSeconds)) (\(formatRate(rate))/s)"
        let head = "\(size); window \(formatDuration(window)) now; \(sampled)"
        let fix =
            "grow the oplog (replSetResizeOplog, or --oplogSizeMB; storage.oplogMinRetentionHours) so it holds "
            + "the longest bridge outage you must survive"
        guard let tolerance = outageTolerance(oplog) else {
            if oplog.maxSizeBytes == nil && oplog.maxEntries == nil {
                let severity: DoctorFinding.Severity =
                    window < policy.minimumOutage
                    ? .failure : (window < policy.comfortableOutage ? .warning : .ok)
                return DoctorFinding(
                    "oplog",
                    severity == .ok ? .warning : severity,
                    "\(head); a bridge outage longer than about the window may lose its checkpoint",
                    fix: "let the user run collStats on local.oplog.rs (clusterMonitor) for an estimate; " + fix
                )
            }
            return DoctorFinding(
                "oplog",
                .ok,
                "\(head); no writes during the sample, so a checkpoint written now stays in the oplog until writes "
                    + "resume"
            )
        }
        let message = "\(head): a bridge can be down about \(formatDuration(tolerance)) before its checkpoint falls off"
        if tolerance < policy.minimumOutage { return DoctorFinding("oplog", .failure, message, fix: fix) }
        if tolerance < policy.comfortableOutage { return DoctorFinding("oplog", .warning, message, fix: fix) }
        return DoctorFinding("oplog", .ok, message)
    }

    // MARK: - Redis

    static func redisFindings(_ redis: DoctorFacts.Redis, facts: DoctorFacts, policy: Policy) -> [DoctorFinding] {
        switch redis.connection {
        case .unreachable(let message):
            return [
                DoctorFinding(
                    "redis",
                    .failure,
                    "\(redis.url) is not reachable: \(message)",
                    fix: "check that Redis runs and that --redis reaches it from here"
                )
            ]
        case .authenticationFailed(let message):
            return [
                DoctorFinding(
                    "redis",
                    .failure,
                    "\(redis.url): \(message)",
                    fix: "put the right user and password in --redis (redis://user:password@host)"
                )
            ]
        case .connected:
            break
        }
        var findings = [DoctorFinding("redis", .ok, "\(redis.url) answers and accepted the credentials")]
        findings.append(persistenceFinding(redis.persistence))
        findings.append(checkpointFinding(redis, facts: facts, policy: policy))
        findings.append(dedupeFinding(redis))
        return findings
    }

    static func persistenceFinding(_ persistence: DoctorFacts.Redis.Persistence?) -> DoctorFinding {
        let fix =
            "turn persistence on (redis-server --appendonly yes, or CONFIG SET appendonly yes and CONFIG REWRITE) so "
            + "a Redis restart keeps the checkpoint"
        switch persistence {
        case .configured(let appendOnly, let rdbSave):
            let rdb = String(rdbSave.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
            if appendOnly {
                return DoctorFinding(
                    "redis persistence",
                    .ok,
                    "append-only file on\(rdb.isEmpty ? "" : ", RDB \(rdb)")"
                )
            }
            if !rdb.isEmpty {
                return DoctorFinding(
                    "redis persistence",
                    .ok,
                    "RDB snapshots (save \(rdb)); a crash loses the checkpoint writes since the last snapshot (the "
                        + "bridge then repeats those events)"
                )
            }
            return DoctorFinding(
                "redis persistence",
                .failure,
                "none (appendonly no, save \"\"): a Redis restart loses the checkpoint and the bridge restarts at the "
                    + "end of the oplog, skipping what happened while it was down",
                fix: fix
            )
        case .fromInfo(let appendOnly, let reason):
            if appendOnly == true {
                return DoctorFinding("redis persistence", .ok, "append-only file on (INFO persistence; \(reason))")
            }
            return DoctorFinding(
                "redis persistence",
                .warning,
                "unknown: \(reason); INFO persistence shows \(appendOnly == false ? "no append-only file" : "nothing")",
                fix: "check the provider's persistence setting (AOF or RDB snapshots) for the checkpoint key"
            )
        case nil:
            return DoctorFinding("redis persistence", .warning, "not read", fix: fix)
        }
    }

    /// The checkpoint as the report shows it: its position and format (v1: the timestamp alone, upgraded by the
    /// bridge's next write; v2: the oplog `(ts, t)` or the change stream's token and clusterTime).
    static func describe(_ checkpoint: StoredCheckpoint) -> String {
        let ts = checkpoint.timestamp
        switch checkpoint {
        case .legacyTimestamp:
            return "\(ts.seconds).\(ts.increment) (format v1, no term: the bridge rewrites it as v2 on its next write)"
        case .oplog(_, let t):
            return "\(ts.seconds).\(ts.increment) t=\(t) (oplog source, format v2)"
        case .changeStream(let token, _):
            let shortToken = token.count > 24 ? "\(token.prefix(24))…" : token
            return "\(ts.seconds).\(ts.increment) (change-stream source, format v2, token \(shortToken))"
        }
    }

    static func checkpointFinding(_ redis: DoctorFacts.Redis, facts: DoctorFacts, policy: Policy) -> DoctorFinding {
        guard let value = redis.checkpointValue else {
            return DoctorFinding(
                "checkpoint",
                .warning,
                "\(redis.checkpointKey) is absent: no bridge has delivered a batch to this Redis (a bridge started "
                    + "now begins at the end of the oplog)",
                fix: "start rsinit tail --redis <url>; if it runs, pass doctor the same --metadata-prefix"
            )
        }
        let checkpoint: StoredCheckpoint
        do { checkpoint = try StoredCheckpoint.decode(value) } catch {
            return DoctorFinding(
                "checkpoint",
                .failure,
                "\(redis.checkpointKey) holds \(value.prefix(40).debugDescription), not a checkpoint (\(error.message))",
                fix: "delete the key (the bridge then starts at the end of the oplog) or fix --metadata-prefix"
            )
        }
        return checkpointPositionFinding(checkpoint, facts: facts, policy: policy)
    }

    /// Where a readable checkpoint stands in the oplog: before it (history lost), past it (another cluster's),
    /// far behind its end (no bridge running), or resumable.
    static func checkpointPositionFinding(
        _ checkpoint: StoredCheckpoint,
        facts: DoctorFacts,
        policy: Policy
    ) -> DoctorFinding {
        let position = checkpoint.timestamp
        let age = facts.now - Double(position.seconds)
        let shown = Self.describe(checkpoint)
        guard let oplog = facts.oplog else {
            return DoctorFinding(
                "checkpoint",
                .warning,
                "\(shown), \(formatDuration(age)) old; the oplog could not be read to tell whether it is resumable",
                fix: "see the oplog finding"
            )
        }
        if position < oplog.first {
            return DoctorFinding(
                "checkpoint",
                .failure,
                "\(shown) (\(formatDuration(age)) old) is older than the oldest oplog entry "
                    + "\(oplog.first.seconds).\(oplog.first.increment): history lost, a bridge resuming from it "
                    + "exits 9",
                fix: "restart the bridge with --from end after the apps reload (their observers re-fetch), and grow "
                    + "the oplog"
            )
        }
        if position > oplog.last {
            return DoctorFinding(
                "checkpoint",
                .failure,
                "\(shown) is newer than the newest oplog entry: the checkpoint belongs to another cluster or a "
                    + "restored backup",
                fix: "check --redis and --metadata-prefix; delete the key if it is stale"
            )
        }
        let lag = Double(oplog.last.seconds) - Double(position.seconds)
        if lag > policy.checkpointAgeWarning {
            return DoctorFinding(
                "checkpoint",
                .warning,
                "\(shown), \(formatDuration(lag)) behind the newest oplog entry (resumable): no bridge seems to be "
                    + "running or it is stuck",
                fix: "check rsinit tail (its /healthz and logs)"
            )
        }
        return DoctorFinding(
            "checkpoint",
            .ok,
            "\(shown), \(formatDuration(max(lag, 0))) behind the newest oplog entry, inside the oplog (resumable)"
        )
    }

    static func dedupeFinding(_ redis: DoctorFacts.Redis) -> DoctorFinding {
        let count = "\(redis.dedupeKeys)\(redis.dedupeScanComplete ? "" : "+")"
        if redis.dedupeKeys == 0 {
            return DoctorFinding(
                "ha bridges",
                .ok,
                "no dedupe keys: no HA bridge (--ha) published in the last 150 s (expected without --ha or on a "
                    + "quiet set)"
            )
        }
        return DoctorFinding(
            "ha bridges",
            .ok,
            "\(count) dedupe keys: HA bridges (--ha) published in the last 150 s"
        )
    }

    // MARK: - Probe

    static func probeFinding(_ probe: DoctorFacts.Probe) -> DoctorFinding {
        switch probe {
        case .delivered(let channel, let milliseconds):
            return DoctorFinding(
                "probe",
                .ok,
                "marker write → message on \(channel) in \(Self.fixed(milliseconds, 1)) ms (marker removed)"
            )
        case .noMessage(let channel, let waited):
            return DoctorFinding(
                "probe",
                .failure,
                "no message on \(channel) within \(formatDuration(waited)) of the marker write: no bridge is "
                    + "publishing to this Redis",
                fix: "start rsinit tail --redis <url> (same --prefix), and check its --include/--exclude admit "
                    + "rsinit_doctor.probe"
            )
        case .failed(let message):
            return DoctorFinding(
                "probe",
                .failure,
                "the probe could not run: \(message)",
                fix: "the probe needs insert/remove on rsinit_doctor.probe and a writable primary"
            )
        }
    }

    // MARK: - Formatting

    static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = max(seconds, 0)
        if s < 1 { return "\(Int((s * 1000).rounded())) ms" }  // trap-checked: 0 <= s < 1 (checked above)
        if s < 120 { return "\(Self.fixed(s, 1)) s" }
        if s < 7200 { return "\(Self.fixed(s / 60, 0)) min" }
        if s < 172_800 { return "\(Self.fixed(s / 3600, 1)) h" }
        return "\(Self.fixed(s / 86400, 1)) days"
    }

    static func formatBytes(_ bytes: Int64) -> String {
        let value = Double(bytes)
        if value < 1024 { return "\(bytes) B" }
        if value < 1_048_576 { return "\(Self.fixed(value / 1024, 1)) KB" }
        if value < 1_073_741_824 { return "\(Self.fixed(value / 1_048_576, 1)) MB" }
        return "\(Self.fixed(value / 1_073_741_824, 1)) GB"
    }

    /// `value` with `digits` (0-3) decimals, as `String(format: "%.Nf")` writes it (FoundationEssentials has no
    /// formatter); "?" for values that are not finite or too large to count in units.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        let digits = min(max(digits, 0), 3)
        let scale: Int64 = [1, 10, 100, 1000][digits]
        let scaled = (value.magnitude * Double(scale)).rounded()
        guard scaled.isFinite, scaled < 9e15 else { return value.isFinite ? "\(value)" : "?" }
        let units = Int64(scaled)  // trap-checked: finite and below 9e15
        var text = (value < 0 && units != 0 ? "-" : "") + String(units / scale)
        if digits > 0 {
            let fraction = String(units % scale)
            text += "." + String(repeating: "0", count: digits - fraction.count) + fraction
        }
        return text
    }

    static func formatRate(_ rate: Double) -> String {
        rate < 10 ? Self.fixed(rate, 2) : Self.fixed(rate, 0)
    }
}
