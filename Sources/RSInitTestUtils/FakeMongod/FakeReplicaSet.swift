public import BSON
import Foundation

/// The timers of a ``FakeReplicaSet``, shrunk from mongod's seconds to milliseconds (replication-ha §4.1).
public struct FakeReplicaSetTimings: Sendable {
    /// `electionTimeoutMillis`; each member adds its own random 0–15 % (§4.1).
    public var electionTimeout: Duration
    /// How long a winner stays leader-elect (catch-up + drain: `isWritablePrimary:false, secondary:true` with
    /// `electionId`) before the "new primary" no-op (§4.2).
    public var leaderElectWindow: Duration
    /// How long an entry waits on the primary before the secondaries copy it.
    public var replicationLag: Duration
    /// How long a primary that cannot see a majority keeps accepting `w:1` writes before it steps down (§3.3).
    public var livenessTimeout: Duration
    /// How long a diverged member stays in ROLLBACK (§5.2).
    public var rollbackDuration: Duration
    /// How often the set's heartbeat/replication loop runs.
    public var tick: Duration
    /// How long a restarted member stays in STARTUP2, then in RECOVERING, before SECONDARY (§4.3).
    public var restartStartup2: Duration = .milliseconds(100)
    public var restartRecovering: Duration = .milliseconds(50)
    /// `priorityTakeoverFreshnessWindowSeconds` (§4.2; default UNCONFIRMED in the spec, 2 s as in mongod's source).
    public var priorityTakeoverFreshnessWindow: Duration = .seconds(2)
    /// `settings.catchUpTakeoverDelayMillis` (§4.1: 30000 by default): how long a secondary that is ahead of a
    /// primary stuck in catch-up waits before it calls an election (§4.2).
    public var catchUpTakeoverDelay: Duration = .seconds(30)

    public init(
        electionTimeout: Duration = .milliseconds(600),
        leaderElectWindow: Duration = .milliseconds(100),
        replicationLag: Duration = .milliseconds(5),
        livenessTimeout: Duration = .milliseconds(600),
        rollbackDuration: Duration = .milliseconds(100),
        tick: Duration = .milliseconds(5)
    ) {
        self.electionTimeout = electionTimeout
        self.leaderElectWindow = leaderElectWindow
        self.replicationLag = replicationLag
        self.livenessTimeout = livenessTimeout
        self.rollbackDuration = rollbackDuration
        self.tick = tick
    }
}

/// A MongoDB 7.0 replica set of several ``FakeMongod`` members, each on its own loopback port, as a client sees
/// it (shared/spec/replication-ha.md §9.1): per-member `hello` and `replSetGetStatus`, elections with a leader-elect
/// window, secondaries copying the primary's oplog with a lag, the majority commit point of §3.1 (in
/// `lastWrite.majorityOpTime`), `replSetStepDown` with election handoff, and test controls to kill, restart and
/// partition a member, with rollback on heal (§5).
///
/// Locking: the set's loop holds the set lock and takes one member's lock at a time; a request handler holds only
/// its member's lock and never waits for the set (the set pushes its view into the members).
public final class FakeReplicaSet: @unchecked Sendable {
    /// The members, in config order (`_id` 0, 1, …).
    public let members: [FakeMongod]
    /// The set name.
    public let setName: String
    /// `127.0.0.1:<port>` of each member, as in the config.
    public let hosts: [String]

    private let lock = NSLock()
    private var timings: FakeReplicaSetTimings
    private var down: Set<Int> = []
    private var isolated: Set<Int> = []
    private var stopped = false
    private var lastHeard: [ContinuousClock.Instant]
    private var lastSawMajority: [ContinuousClock.Instant]
    private var jitter: [Double]
    private var leaderElectUntil: [ContinuousClock.Instant?]
    private var rollbackUntil: [ContinuousClock.Instant?]
    /// A restarted member's next stage (STARTUP2 → RECOVERING → SECONDARY) and when it comes.
    private var restartStage: [(phase: FakeMongodPhase, at: ContinuousClock.Instant)?]
    /// Since when a secondary has had a lower-priority writable primary while fresh enough (§4.2 priority takeover).
    private var takeoverSince: [ContinuousClock.Instant?]
    private var firstOpOfTerm: [FakeOpTime?]
    private var commitPoint: [FakeOpTime?]
    private var syncSource: [Int?]
    /// positionSeen[p][o]: the newest optime member `o` reported to `p` while syncing from it.
    private var positionSeen: [[FakeOpTime?]]
    private var removedByRollback: [[BSONDocument]]
    private var rollbacks = 0
    private var statusRound = 0
    private var reachablePeers: [Set<String>?]
    private var invariantBreaches: [String] = []
    /// Members that copy nothing for now (``pauseReplication(to:)``).
    private var replicationPaused: Set<Int> = []
    /// Whether leader-elects cannot fetch from the secondary they must catch up to (``stallCatchUp(_:)``).
    private var catchUpStalled = false
    /// Since when a secondary has been ahead of a primary in catch-up (§4.2 catch-up takeover).
    private var catchUpTakeoverSince: [Int: ContinuousClock.Instant] = [:]
    /// Sync sources tests asked for (``chainSync(_:from:)``).
    private var chainRequests: [Int: Int] = [:]
    /// Members configured `arbiterOnly: true, priority: 0` (§1.2 PSA): they vote, hold no data and no oplog.
    private var arbiterIndices: Set<Int> = []

    /// Starts `memberCount` members; the first `configuredCount` (all by default) form the set: member 0 is the
    /// primary of term 1 and each of them holds the initial history (majority-committed); the members in
    /// `arbiters` (never 0) are arbiters instead (PSA: `arbiters: [2]`). The others run
    /// uninitialised (`--replSet` without a config) until a reconfig adds them; with `configuredCount: 0` every
    /// member waits for `replSetInitiate` (74 when a listed member does not answer), and the initiator is elected
    /// after the election timeout. The loop runs until ``stop()``.
    public static func start(
        setName: String = "rs0",
        memberCount: Int = 3,
        configuredCount: Int? = nil,
        timings: FakeReplicaSetTimings = FakeReplicaSetTimings(),
        periodicNoopInterval: Duration? = .seconds(10),
        arbiters: Set<Int> = []
    ) throws -> FakeReplicaSet {
        var servers: [FakeMongod] = []
        for _ in 0..<max(memberCount, 1) {
            servers.append(
                try FakeMongod.start(
                    FakeMongodConfiguration(
                        scenario: .uninitialized(setName: setName),
                        periodicNoopInterval: periodicNoopInterval
                    )
                )
            )
        }
        let set = FakeReplicaSet(members: servers, setName: setName, timings: timings)
        // Member 0 is the first primary, so it cannot be an arbiter.
        set.arbiterIndices = arbiters.filter { $0 > 0 && $0 < servers.count }
        set.initialize(configuredCount: min(max(configuredCount ?? servers.count, 0), servers.count))
        set.lock.lock()
        set.refreshReachability()
        set.lock.unlock()
        set.startLoop()
        return set
    }

    private init(members: [FakeMongod], setName: String, timings: FakeReplicaSetTimings) {
        self.members = members
        self.setName = setName
        self.hosts = members.map(\.hostAndPort)
        self.timings = timings
        let count = members.count
        lastHeard = Array(repeating: .now, count: count)
        lastSawMajority = Array(repeating: .now, count: count)
        jitter = (0..<count).map { _ in Double.random(in: 0...0.15) }
        leaderElectUntil = Array(repeating: nil, count: count)
        rollbackUntil = Array(repeating: nil, count: count)
        restartStage = Array(repeating: nil, count: count)
        takeoverSince = Array(repeating: nil, count: count)
        firstOpOfTerm = Array(repeating: nil, count: count)
        commitPoint = Array(repeating: nil, count: count)
        syncSource = Array(repeating: nil, count: count)
        positionSeen = Array(repeating: Array(repeating: nil, count: count), count: count)
        removedByRollback = Array(repeating: [], count: count)
        reachablePeers = Array(repeating: nil, count: count)
    }

    deinit { stop() }

    /// A replica-set URI naming every member (libmongoc discovers the primary from it).
    public var uri: String {
        "mongodb://\(hosts.joined(separator: ","))/?replicaSet=\(setName)&serverSelectionTimeoutMS=5000"
            + "&connectTimeoutMS=1000&heartbeatFrequencyMS=500"
    }

    /// A direct-connection URI to one member.
    public func directURI(_ index: Int) -> String {
        "mongodb://\(hosts[index])/?directConnection=true&serverSelectionTimeoutMS=2000&connectTimeoutMS=1000"
    }

    /// Ends the loop and stops every member.
    public func stop() {
        lock.lock()
        let wasStopped = stopped
        stopped = true
        lock.unlock()
        guard !wasStopped else { return }
        for member in members { member.stop() }
    }

    // MARK: - Test controls

    /// A crash: the member refuses connections and closes the open ones; its data and oplog are kept.
    public func kill(_ index: Int) {
        lock.lock()
        down.insert(index)
        refreshReachability()
        lock.unlock()
        members[index].suspendListening()
    }

    /// Restarts a killed member: a new process id, no cursors, SECONDARY; it then syncs (rolling back first if its
    /// oplog diverged from the primary's).
    public func restart(_ index: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard down.contains(index) else { return }
        members[index].core.locked {
            let core = members[index].core
            core.processId = FakeMongodCore.randomObjectID()
            core.cursors.removeAll()
            core.startedAt = Date()
            // §4.3: STARTUP2 (loading the config; it has data, so no initial sync), RECOVERING briefly, SECONDARY.
            core.phase =
                core.replicaSetConfig == nil ? .uninitialized : core.isConfiguredArbiter ? .arbiter : .startup2
            core.tooStale = false
            core.clearShutdown()
            core.steppingDown = false
            core.handoffRequested = false
            core.stepDownUntil = nil
            core.knownPrimaryHost = nil
            core.topologyCounter += 1
        }
        leaderElectUntil[index] = nil
        restartStage[index] = (.recovering, .now + timings.restartStartup2)
        lastHeard[index] = .now
        down.remove(index)
        refreshReachability()
        members[index].resumeListening()
    }

    /// A signalled shutdown (SIGTERM, §4.1, §1.1): a primary first steps down and hands off to a caught-up
    /// secondary (election handoff), then the member spends `quiesce` in quiesce mode (hello fails with 91 and
    /// `topologyVersion`, open cursors keep reading), then waiting operations end with 11600 and the member goes
    /// down like ``kill(_:)`` (restart it with ``restart(_:)``).
    public func shutDown(_ index: Int, quiesce: Duration = .milliseconds(200)) async {
        let core = members[index].core
        core.locked {
            if core.phase == .primary || core.phase == .drain {
                core.phase = .secondary
                core.knownPrimaryHost = nil
                core.handoffRequested = true
                core.stepDownUntil = .now + .seconds(3600)
                core.topologyCounter += 1
            }
            core.enterQuiesce()
        }
        try? await Task.sleep(for: quiesce)
        core.locked { core.beginShutdown() }
        // Let the interrupted operations answer before the connections close.
        try? await Task.sleep(for: .milliseconds(50))
        kill(index)
    }

    /// Cuts the member off from the other members (clients still reach it).
    public func partition(_ index: Int) {
        lock.lock()
        isolated.insert(index)
        refreshReachability()
        lock.unlock()
    }

    /// Ends every partition.
    public func heal() {
        lock.lock()
        isolated.removeAll()
        refreshReachability()
        lock.unlock()
    }

    /// The "impossible" case of §9.2 rule 3, on purpose: every member loses its entries after `point` although they
    /// were majority-committed (what a majority data loss or a forced reconfig does), and every connection drops.
    public func loseHistory(after point: FakeOpTime) {
        lock.lock()
        for index in members.indices where !down.contains(index) {
            members[index].core.locked { members[index].core.truncateOplog(after: point) }
            for other in members.indices { positionSeen[other][index] = point }
        }
        lock.unlock()
        for member in members { member.dropConnections() }
    }

    /// Makes `member` sync from the secondary `source` (nil: from the primary again), as mongod's sync-source
    /// selection may choose when the config's `settings.chainingAllowed` is true (the default; mongod picks by ping
    /// and freshness, tests pick explicitly). While the ruling config says `chainingAllowed: false`, every
    /// secondary syncs from the primary (spec replication-ha §2.1, §9.1 item 8). Positions travel up the chain to
    /// the primary (its commit point counts the chained member); the chained member learns the commit point from its
    /// sync source.
    public func chainSync(_ member: Int, from source: Int?) {
        lock.lock()
        chainRequests[member] = source
        lock.unlock()
    }

    /// The members in `members` copy nothing until the set is changed again (e.g. to build a secondary that is
    /// ahead of the others).
    public func pauseReplication(to members: Set<Int>) {
        lock.lock()
        replicationPaused = members
        lock.unlock()
    }

    /// While true, a leader-elect cannot fetch the entries it must catch up to (a one-way network problem): it stays
    /// in catch-up (`catchUpTimeoutMillis` −1, §4.1) and the secondary that is ahead calls a catch-up takeover
    /// after `catchUpTakeoverDelay` (§4.2).
    public func stallCatchUp(_ stalled: Bool) {
        lock.lock()
        catchUpStalled = stalled
        lock.unlock()
    }

    /// Changes the replication lag from now on.
    public func setReplicationLag(_ lag: Duration) {
        lock.lock()
        timings.replicationLag = lag
        lock.unlock()
    }

    /// The index of the writable primary, if there is exactly one that is up.
    public var writablePrimary: Int? {
        let candidates = members.indices.filter { index in
            isUp(index) && members[index].core.locked { members[index].core.phase == .primary }
        }
        return candidates.count == 1 ? candidates.first : nil
    }

    private func isUp(_ index: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return !down.contains(index)
    }

    /// Waits for a single writable primary (other than `excluding`).
    public func waitForWritablePrimary(excluding: Int? = nil, timeout: Duration = .seconds(10)) async -> Int? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let primary = writablePrimary, primary != excluding { return primary }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// A member's committed snapshot (`hello.lastWrite.majorityOpTime`).
    public func majorityOpTime(_ index: Int) -> FakeOpTime? {
        members[index].core.locked { FakeOpTime(members[index].core.committedSnapshot) }
    }

    /// A member's newest oplog entry.
    public func lastApplied(_ index: Int) -> FakeOpTime? {
        members[index].core.locked { members[index].core.lastAppliedOpTime }
    }

    /// A member's phase.
    public func phase(_ index: Int) -> FakeMongodPhase { members[index].core.locked { members[index].core.phase } }

    /// The entries rollbacks removed from a member (what mongod writes to `rollback/<uuid>/removed.<ts>.bson`).
    public func rolledBackEntries(_ index: Int) -> [BSONDocument] {
        lock.lock()
        defer { lock.unlock() }
        return removedByRollback[index]
    }

    /// How many rollbacks ran.
    public var rollbackCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return rollbacks
    }

    /// Breaches of "common point ≥ commit point" (must stay empty).
    public var rollbackInvariantBreaches: [String] {
        lock.lock()
        defer { lock.unlock() }
        return invariantBreaches
    }

    /// Appends an entry to the primary's oplog as a `w:1` write would (for tests that need exact contents).
    @discardableResult
    public func appendOnPrimary(_ index: Int, _ entry: BSONDocument) -> BSONTimestamp {
        members[index].appendOplogEntry(entry)
    }

    // MARK: - Set-up

    private func initialize(configuredCount: Int) {
        let members = self.members
        guard configuredCount > 0 else {
            for member in members { member.core.locked { member.core.setMember = true } }
            return
        }
        let hosts = self.hosts
        let arbiterIndices = self.arbiterIndices
        let memberDocuments: [BSONValue] = hosts.prefix(configuredCount).enumerated().map { index, host in
            arbiterIndices.contains(index)
                ? .document([
                    "_id": .int32(Int32(index)), "host": .string(host), "arbiterOnly": true, "priority": .double(0),
                ])
                : .document(["_id": .int32(Int32(index)), "host": .string(host)])
        }
        let config = members[0].core.locked {
            members[0].core.normalizedConfig(setName: setName, members: memberDocuments, version: 1)
        }
        let history: [OplogRecord] = members[0].core.locked {
            let core = members[0].core
            core.setMember = true
            core.replicaSetConfig = config
            core.selfHost = hosts[0]
            core.phaseDeadline = nil
            core.writeInitialHistory()
            core.phase = .primary
            core.writableSince = .now
            core.armNoopTimer()
            core.topologyCounter += 1
            return Array(core.liveOplog)
        }
        let last = history.last.map(FakeMongodCore.opTime)
        firstOpOfTerm[0] =
            history.last { $0.document["o"]?.documentValue?["msg"]?.stringValue == "new primary" }
            .map(FakeMongodCore.opTime)
        for index in members.indices {
            guard index < configuredCount else {
                members[index].core.locked { members[index].core.setMember = true }
                continue
            }
            members[index].core.locked {
                let core = members[index].core
                if index != 0 {
                    core.setMember = true
                    core.replicaSetConfig = config
                    core.selfHost = hosts[index]
                    core.phaseDeadline = nil
                    if arbiterIndices.contains(index) {
                        core.phase = .arbiter
                    } else {
                        core.createOplog()
                        core.applyReplicated(history)
                        core.phase = .secondary
                    }
                    core.term = 1
                    core.topologyCounter += 1
                }
                core.knownPrimaryHost = hosts[0]
                // An arbiter has no committed snapshot (hello omits majorityOpTime, §1.2).
                if !arbiterIndices.contains(index) { core.committedSnapshot = last?.document }
                core.lastCommittedOpTime = last?.document
            }
            commitPoint[index] = last
            for other in members.indices { positionSeen[other][index] = last }
        }
    }

    private func startLoop() {
        Thread.detachNewThread { [weak self] in
            while true {
                guard let tick = self?.step() else { return }
                Thread.sleep(forTimeInterval: tick.seconds)
            }
        }
    }

    // MARK: - The loop

    private struct View {
        var phase: FakeMongodPhase
        var term: Int64
        var last: FakeOpTime?
        var handoff: Bool
        var stepDownUntil: ContinuousClock.Instant?
        var config: BSONDocument?
        var configVersion: Int64
        var votingHosts: Set<String>
        var newlyAdded: Set<String>
        var configCommitted: Bool
        var arbiterHosts: Set<String>

        init(_ core: FakeMongodCore) {
            phase = core.phase
            term = core.term
            last = core.lastAppliedOpTime
            handoff = core.handoffRequested
            stepDownUntil = core.stepDownUntil
            config = core.replicaSetConfig
            configVersion = core.replicaSetConfig?["version"]?.int64Value ?? -1
            votingHosts = core.votingHosts
            newlyAdded = core.newlyAddedHosts
            configCommitted = core.configCommitted
            arbiterHosts = Set(
                core.configMembers.filter { $0["arbiterOnly"]?.isTruthy == true }.compactMap { $0["host"]?.stringValue }
            )
        }
    }

    /// This round's voters (config members with votes, `newlyAdded` excluded) and their majority.
    private var voters: Set<Int> = []
    private var majority: Int = 2
    /// writeMajorityCount = min(majority, voters that are not arbiters) (§2.1, S:RSC): the commit point's index.
    private var writeMajority: Int = 2

    /// What each member's heartbeats reach (replSetInitiate's quorum check: 74 for a member that does not answer).
    /// Under the set lock; called by every round and at once by the test controls.
    private func refreshReachability() {
        for index in members.indices where !down.contains(index) {
            let reachable = Set(members.indices.filter { $0 != index && reach(index, $0) }.map { hosts[$0] })
            if reachable != reachablePeers[index] {
                reachablePeers[index] = reachable
                members[index].core.locked { members[index].core.configuration.reachablePeers = reachable }
            }
        }
    }

    private func reach(_ a: Int, _ b: Int) -> Bool {
        !down.contains(a) && !down.contains(b) && (a == b || (!isolated.contains(a) && !isolated.contains(b)))
    }

    /// One heartbeat round; returns how long to sleep, or nil once stopped.
    private func step() -> Duration? {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return nil }
        let now = ContinuousClock.now
        var views: [View?] = members.indices.map { index in
            guard !down.contains(index) else { return nil }
            return members[index].core.locked {
                let core = members[index].core
                core.advance()
                return View(core)
            }
        }
        let all = members.indices
        // The config that rules: the newest-term primary's, else the newest version any member holds.
        let authority =
            all.filter { views[$0]?.phase == .primary || views[$0]?.phase == .drain }
            .max { (views[$0]?.term ?? 0) < (views[$1]?.term ?? 0) }
            ?? all.filter { views[$0]?.config != nil }.max {
                (views[$0]?.configVersion ?? -1) < (views[$1]?.configVersion ?? -1)
            }
        var arbiterVoters = 0
        if let authority, let view = views[authority] {
            let voting = view.votingHosts.subtracting(view.newlyAdded)
            voters = Set(all.filter { voting.contains(hosts[$0]) })
            arbiterVoters = voting.intersection(view.arbiterHosts).count
        } else {
            voters = Set(all)
        }
        majority = voters.count / 2 + 1
        writeMajority = min(majority, voters.count - arbiterVoters)
        refreshReachability()

        // Restarted members: STARTUP2 → RECOVERING → SECONDARY (§4.3).
        for index in all where views[index] != nil {
            guard let stage = restartStage[index], stage.at <= now else { continue }
            restartStage[index] =
                stage.phase == .recovering ? (.secondary, stage.at + timings.restartRecovering) : nil
            update(index, &views) { core in
                guard core.phase == .startup2 || core.phase == .recovering, !core.tooStale else { return }
                core.phase = stage.phase
                core.topologyCounter += 1
                core.condition.broadcast()
            }
        }

        // Rollbacks that are done: SECONDARY again (§5.2 step 9).
        for index in all where views[index]?.phase == .rollback {
            if let until = rollbackUntil[index], until <= now {
                rollbackUntil[index] = nil
                update(index, &views) { core in
                    core.phase = .secondary
                    core.topologyCounter += 1
                }
            }
        }

        // Two primaries that can see each other: the lower term steps down (§3.3).
        let primaries = all.filter { views[$0]?.phase == .primary || views[$0]?.phase == .drain }
        for p in primaries {
            for q in primaries where q != p && reach(p, q) {
                if let vp = views[p], let vq = views[q], vp.term < vq.term {
                    stepDown(p, &views, term: vq.term)
                }
            }
        }

        // Liveness: a primary that cannot see a majority relinquishes (§3.3, §4.4).
        for p in all where views[p]?.phase == .primary || views[p]?.phase == .drain {
            let visible = all.filter { reach(p, $0) && voters.contains($0) }.count
            if visible >= majority {
                lastSawMajority[p] = now
            } else if now - lastSawMajority[p] >= timings.livenessTimeout {
                stepDown(p, &views, term: nil)
            }
        }

        // Leader-elect window over: "new primary" no-op, writable (§4.2).
        for p in all where views[p]?.phase == .drain {
            if let until = leaderElectUntil[p], until <= now {
                // Catch-up (§4.2 step 3): a reachable secondary ahead of the leader-elect on its branch is copied
                // first; a stalled catch-up keeps it leader-elect (catchUpTimeoutMillis −1: unlimited).
                if let ahead = secondaryAhead(of: p, views) {
                    if catchUpStalled { continue }
                    let before = members[p].core.locked { members[p].core.oplog.count }
                    replicate(from: ahead, to: p, &views, now: now)
                    let copied = members[p].core.locked { members[p].core.oplog.count } - before
                    if copied > 0 {
                        update(p, &views) { core in
                            let done = core.electionCandidateMetrics?["numCatchUpOps"]?.int64Value ?? 0
                            core.electionCandidateMetrics?.set("numCatchUpOps", .int64(done + Int64(copied)))
                        }
                    }
                    if secondaryAhead(of: p, views) != nil { continue }
                }
                leaderElectUntil[p] = nil
                let first: FakeOpTime? = update(p, &views) { core in
                    core.phase = .primary
                    core.writableSince = .now
                    core.topologyCounter += 1
                    core.completeElection()
                    if core.firstElectionPending {
                        core.firstElectionPending = false
                        core.appendStartupCollections()
                    }
                    core.armNoopTimer()
                    return core.lastAppliedOpTime
                }
                firstOpOfTerm[p] = first
                lastSawMajority[p] = now
            }
        }

        // Replication, primary discovery, elections.
        for s in all {
            guard let view = views[s], view.phase == .secondary else { continue }
            let source = all.filter { p in
                p != s && reach(s, p) && (views[p]?.phase == .primary || views[p]?.phase == .drain)
                    && (views[p]?.term ?? 0) >= view.term
            }.max { (views[$0]?.term ?? 0) < (views[$1]?.term ?? 0) }
            if let p = source {
                lastHeard[s] = now
                // chainingAllowed (default true): a requested secondary source that itself syncs (not from s).
                let chaining = views[p]?.config?["settings"]?.documentValue?["chainingAllowed"]?.isTruthy ?? true
                var from = p
                if chaining, let o = chainRequests[s], o != s, reach(s, o), views[o]?.phase == .secondary,
                    let upstream = syncSource[o], upstream != s
                {
                    from = o
                }
                syncSource[s] = from
                // §4.2 catch-up takeover: ahead of a primary stuck in catch-up for catchUpTakeoverDelay.
                if views[p]?.phase == .drain, (views[s]?.last).map({ $0 > (views[p]?.last ?? $0) }) == true {
                    let since = catchUpTakeoverSince[s] ?? now
                    catchUpTakeoverSince[s] = since
                    if now - since >= timings.catchUpTakeoverDelay {
                        catchUpTakeoverSince[s] = nil
                        tryElection(s, &views, now: now, reason: "catchupTakeover")
                        continue
                    }
                } else {
                    catchUpTakeoverSince[s] = nil
                }
                let host = hosts[p]
                let sourceTerm = views[p]?.term ?? 0
                let sourceEntry = (host: hosts[from], id: Int32(from))
                update(s, &views) { core in
                    if core.knownPrimaryHost != host { core.knownPrimaryHost = host }
                    if sourceTerm > core.term { core.term = sourceTerm }
                    if core.syncSource?.host != sourceEntry.host { core.syncSource = sourceEntry }
                }
                // A node never syncs from a source behind it (term-first order: a new primary's term is ahead once
                // it wrote its "new primary" no-op, which is what exposes a divergent branch to rollback).
                let behind = (views[from]?.last).map { source in (views[s]?.last).map { $0 > source } ?? false }
                if !replicationPaused.contains(s), behind != true {
                    replicate(from: from, to: s, &views, now: now)
                }
                priorityTakeover(s, primary: p, &views, now: now)
            } else {
                takeoverSince[s] = nil
                syncSource[s] = nil
                if members[s].core.locked({ members[s].core.syncSource != nil }) {
                    update(s, &views) { core in core.syncSource = nil }
                }
                let silentFor = now - lastHeard[s]
                if silentFor >= timings.electionTimeout {
                    update(s, &views) { core in core.knownPrimaryHost = nil }
                }
                if silentFor >= timings.electionTimeout * (1 + jitter[s]) {
                    tryElection(s, &views, now: now)
                }
            }
        }

        // Arbiters: learn the primary and its commit point from heartbeats; their lastApplied is that commit point,
        // which the primary counts among the voters' optimes (§1.2, §3.1: "the arbiter does not help").
        for a in all where views[a]?.phase == .arbiter {
            let primary = all.filter { p in
                p != a && reach(a, p) && (views[p]?.phase == .primary || views[p]?.phase == .drain)
            }.max { (views[$0]?.term ?? 0) < (views[$1]?.term ?? 0) }
            if let p = primary {
                lastHeard[a] = now
                let host = hosts[p]
                let term = views[p]?.term ?? 0
                let point = commitPoint[p]
                update(a, &views) { core in
                    if core.knownPrimaryHost != host { core.knownPrimaryHost = host }
                    if term > core.term { core.term = term }
                    if let point { core.lastCommittedOpTime = point.document }
                }
                if let point { positionSeen[p][a] = point }
            } else if now - lastHeard[a] >= timings.electionTimeout {
                update(a, &views) { core in core.knownPrimaryHost = nil }
            }
        }

        // Election handoff after a stepdown (§4.4 step 4).
        for p in all where views[p]?.handoff == true {
            update(p, &views) { core in core.handoffRequested = false }
            let target = all.filter { s in
                s != p && reach(p, s) && views[s]?.phase == .secondary && views[s]?.last == views[p]?.last
            }.first
            if let target { tryElection(target, &views, now: now, reason: "stepUpRequestSkipDryRun") }
        }

        propagateConfig(&views, now: now)

        // Commit point on each writable primary (§3.1), adopted by its followers.
        for p in all where views[p]?.phase == .primary {
            // Positions reach the primary along the sync chain (replSetUpdatePosition is forwarded upstream).
            for o in all where o != p && syncChain(from: o, reaches: p) {
                positionSeen[p][o] = views[o]?.last
            }
            let optimes = all.filter { voters.contains($0) }.map { o in o == p ? views[p]?.last : positionSeen[p][o] }
                .sorted {
                    ($0 ?? FakeOpTime(ts: .init(seconds: 0, increment: 0), t: -2))
                        > ($1 ?? FakeOpTime(ts: .init(seconds: 0, increment: 0), t: -2))
                }
            let caughtUp = all.contains { o in
                o != p && reach(p, o) && syncSource[o] == p && views[o]?.last == views[p]?.last
            }
            var newPoint = commitPoint[p]
            if voters.contains(p), writeMajority >= 1, writeMajority - 1 < optimes.count,
                let candidate = optimes[writeMajority - 1],
                let first = firstOpOfTerm[p], candidate >= first, candidate > (newPoint ?? candidate) || newPoint == nil
            {
                newPoint = candidate
            }
            commitPoint[p] = newPoint
            update(p, &views) { core in
                core.electableSecondaryCaughtUp = caughtUp
                if let newPoint {
                    core.lastCommittedOpTime = newPoint.document
                    core.committedSnapshot = newPoint.document
                }
                core.condition.broadcast()
            }
        }
        for s in all where views[s]?.phase == .secondary {
            guard let p = syncSource[s], let point = commitPoint[p], let last = views[s]?.last else { continue }
            // Adopted only in the term of the node's lastApplied, capped at it (§3.1).
            guard point.t == last.t else { continue }
            let snapshot = point.ts <= last.ts ? point : last
            if let known = commitPoint[s], known >= snapshot { continue }
            commitPoint[s] = snapshot
            update(s, &views) { core in
                core.lastCommittedOpTime = snapshot.document
                core.committedSnapshot = snapshot.document
            }
        }

        // replSetGetStatus views every 10th round (heartbeats are slower than replication, and this is costly).
        statusRound += 1
        if statusRound % 10 == 1 { publishStatus(views, now: now) }
        return timings.tick
    }

    /// The most up-to-date reachable secondary whose oplog is ahead of the leader-elect `p` on `p`'s branch.
    private func secondaryAhead(of p: Int, _ views: [View?]) -> Int? {
        guard let mine = views[p]?.last else { return nil }
        let candidates = members.indices.filter { s in
            guard s != p, reach(p, s), views[s]?.phase == .secondary, let theirs = views[s]?.last, theirs > mine
            else { return false }
            let core = members[s].core
            return core.locked {
                let found = core.oplogIndex(after: mine.ts, strict: false)
                return found < core.oplog.count && FakeMongodCore.opTime(core.oplog[found]) == mine
            }
        }
        return candidates.max { (views[$0]?.last ?? mine) < (views[$1]?.last ?? mine) }
    }

    /// Whether `o`'s sync chain (every hop reachable) leads to `p`, at most as many hops as members.
    private func syncChain(from o: Int, reaches p: Int) -> Bool {
        var current = o
        for _ in members.indices {
            guard let next = syncSource[current], reach(current, next) else { return false }
            if next == p { return true }
            current = next
        }
        return false
    }

    /// Heartbeats carry the primary's config to the members it lists (an uninitialised member joins as SECONDARY
    /// and copies the whole oplog); the config commits once a majority of voters has it; a `newlyAdded` member that
    /// reached SECONDARY becomes a voter through a server reconfig with version + 1 (§7.2).
    private func propagateConfig(_ views: inout [View?], now: ContinuousClock.Instant) {
        for p in members.indices where views[p]?.phase == .primary {
            guard let primaryView = views[p], let config = primaryView.config else { continue }
            let listed = Set(
                config["members"]?.arrayValue?.compactMap { $0.documentValue?["host"]?.stringValue } ?? []
            )
            for o in members.indices where o != p && reach(p, o) && listed.contains(hosts[o]) {
                guard let view = views[o], view.configVersion < primaryView.configVersion else { continue }
                let host = hosts[o]
                let term = primaryView.term
                let primaryHost = hosts[p]
                update(o, &views) { core in
                    core.replicaSetConfig = config
                    core.selfHost = host
                    if core.phase == .uninitialized && core.isConfiguredArbiter {
                        core.phase = .arbiter
                        core.term = term
                        core.knownPrimaryHost = primaryHost
                        core.topologyCounter += 1
                    } else if core.phase == .uninitialized {
                        core.createOplog()
                        core.phase = .secondary
                        core.term = term
                        core.knownPrimaryHost = primaryHost
                        core.topologyCounter += 1
                    }
                }
                lastHeard[o] = now
            }
            let voting = primaryView.votingHosts.subtracting(primaryView.newlyAdded)
            let haveIt = members.indices.filter { o in
                reach(p, o) && voting.contains(hosts[o]) && views[o]?.configVersion == primaryView.configVersion
            }.count
            if !primaryView.configCommitted && haveIt >= voting.count / 2 + 1 {
                update(p, &views) { core in core.configCommitted = true }
            } else if primaryView.configCommitted, let host = primaryView.newlyAdded.sorted().first,
                let o = hosts.firstIndex(of: host), reach(p, o), views[o]?.phase == .secondary, syncSource[o] == p
            {
                update(p, &views) { core in
                    core.newlyAddedHosts.remove(host)
                    guard var config = core.replicaSetConfig else { return }
                    let version = (config["version"]?.int64Value ?? 1) + 1
                    config.set("version", .int32(Int32(clamping: version)))
                    core.replicaSetConfig = config
                    core.configCommitted = false
                    core.appendNoop(["msg": "Reconfig set", "version": .int32(Int32(clamping: version))])
                }
            }
        }
    }

    @discardableResult
    private func update<T>(_ index: Int, _ views: inout [View?], _ body: (FakeMongodCore) -> T) -> T {
        let core = members[index].core
        let (result, view) = core.locked { () -> (T, View) in
            let result = body(core)
            return (result, View(core))
        }
        views[index] = view
        return result
    }

    private func stepDown(_ p: Int, _ views: inout [View?], term: Int64?) {
        leaderElectUntil[p] = nil
        update(p, &views) { core in
            core.phase = .secondary
            core.knownPrimaryHost = nil
            if let term, term > core.term { core.term = term }
            core.topologyCounter += 1
            core.condition.broadcast()
        }
        lastHeard[p] = .now
    }

    /// §4.2 priority takeover: a secondary of higher priority than the writable primary, whose last applied is
    /// within the freshness window of the primary's, calls an election after `electionTimeout × (priorityRank + 1)`
    /// (+ its 0–15 % offset), priorityRank = how many members have a higher priority than it (S:HB, S:TC).
    private func priorityTakeover(_ s: Int, primary p: Int, _ views: inout [View?], now: ContinuousClock.Instant) {
        guard let view = views[s], view.phase == .secondary, let primaryView = views[p], primaryView.phase == .primary,
            let config = primaryView.config
        else {
            takeoverSince[s] = nil
            return
        }
        let priorities: [String: Double] = Dictionary(
            (config["members"]?.arrayValue ?? []).compactMap { member -> (String, Double)? in
                guard let host = member.documentValue?["host"]?.stringValue else { return nil }
                return (host, member.documentValue?["priority"]?.doubleValue ?? 1)
            },
            uniquingKeysWith: { first, _ in first }
        )
        let mine = priorities[hosts[s]] ?? 1
        let primaryLast = Double(primaryView.last?.ts.seconds ?? 0)
        let myLast = Double(view.last?.ts.seconds ?? 0)
        let fresh = primaryLast - myLast <= Double(timings.priorityTakeoverFreshnessWindow.components.seconds)
        guard mine > (priorities[hosts[p]] ?? 1), fresh, !view.newlyAdded.contains(hosts[s]) else {
            takeoverSince[s] = nil
            return
        }
        let since = takeoverSince[s] ?? now
        takeoverSince[s] = since
        let rank = priorities.values.filter { $0 > mine }.count
        guard now - since >= timings.electionTimeout * (Double(rank + 1) + jitter[s]) else { return }
        takeoverSince[s] = nil
        tryElection(s, &views, now: now, reason: "priorityTakeover")
    }

    private func tryElection(
        _ s: Int,
        _ views: inout [View?],
        now: ContinuousClock.Instant,
        reason: String = "electionTimeout"
    ) {
        guard let view = views[s], view.phase == .secondary, self.voters.contains(s) else { return }
        if let until = view.stepDownUntil, until > now { return }
        let voters = members.indices.filter { reach(s, $0) && views[$0] != nil && self.voters.contains($0) }
        guard voters.count >= majority else { return }
        let mine = view.last ?? FakeOpTime(ts: .init(seconds: 0, increment: 0), t: -1)
        // Voters refuse a candidate staler than themselves (§4.2).
        let grant = voters.filter { v in
            v == s || ((views[v]?.last ?? mine) <= mine && views[v]?.phase != .primary)
        }
        guard grant.count >= majority else { return }
        let newTerm = (voters.compactMap { views[$0]?.term }.max() ?? view.term) + 1
        update(s, &views) { core in
            core.term = newTerm - 1
            core.beginElection()
            core.syncSource = nil
            core.electionCandidateMetrics?.set("lastElectionReason", .string(reason))
            core.phase = .drain
            core.knownPrimaryHost = core.selfHost
            core.stepDownUntil = nil
            core.topologyCounter += 1
            core.condition.broadcast()
        }
        leaderElectUntil[s] = now + timings.leaderElectWindow
        syncSource[s] = nil
        lastSawMajority[s] = now
        firstOpOfTerm[s] = nil
        for v in grant where v != s {
            // A leader-elect that votes in a newer term steps down (S:TC: a higher term makes a primary step down).
            if views[v]?.phase == .drain { stepDown(v, &views, term: newTerm) }
            update(v, &views) { core in
                if newTerm > core.term { core.term = newTerm }
                core.knownPrimaryHost = hosts[s]
            }
            lastHeard[v] = now
        }
    }

    /// Copies what the primary has held for at least the lag; on divergence, rolls the secondary back (§5).
    private func replicate(from p: Int, to s: Int, _ views: inout [View?], now: ContinuousClock.Instant) {
        let sLast = views[s]?.last
        let cutoff =
            Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) - Int64(timings.replicationLag.seconds * 1000)
        enum Outcome {
            case copy([OplogRecord])
            case diverged
            case tooStale
        }
        let primary = members[p].core
        let outcome: Outcome = primary.locked {
            var index = primary.oplogStart
            if let sLast {
                let found = primary.oplogIndex(after: sLast.ts, strict: false)
                if found < primary.oplog.count, FakeMongodCore.opTime(primary.oplog[found]) == sLast {
                    index = found + 1
                } else if let oldest = primary.liveOplog.first, oldest.ts > sLast.ts {
                    return .tooStale
                } else {
                    return .diverged
                }
            }
            var records: [OplogRecord] = []
            while index < primary.oplog.count && records.count < 1000 {
                let record = primary.oplog[index]
                if case .datetime(let wall) = record.document["wall"], wall > cutoff { break }
                records.append(record)
                index += 1
            }
            return .copy(records)
        }
        switch outcome {
        case .copy(let records):
            guard !records.isEmpty else { return }
            update(s, &views) { core in core.applyReplicated(records) }
        case .tooStale:
            // §5.1: TooStaleToSyncFromSource; the double has no chaining, so no other source works: RECOVERING with
            // tooStale, for good (a resync is needed).
            update(s, &views) { core in
                core.phase = .recovering
                core.tooStale = true
                core.knownPrimaryHost = nil
                core.topologyCounter += 1
                core.condition.broadcast()
            }
            syncSource[s] = nil
        case .diverged:
            rollBack(s, against: p, &views, now: now)
        }
    }

    /// §5.2: ROLLBACK, connections closed, oplog truncated to the common point (never below the commit point).
    private func rollBack(_ s: Int, against p: Int, _ views: inout [View?], now: ContinuousClock.Instant) {
        let mine: [FakeOpTime] = members[s].core.locked {
            members[s].core.liveOplog.reversed().map(FakeMongodCore.opTime)
        }
        let primary = members[p].core
        let common: FakeOpTime? = primary.locked {
            mine.first { opTime in
                let found = primary.oplogIndex(after: opTime.ts, strict: false)
                return found < primary.oplog.count && FakeMongodCore.opTime(primary.oplog[found]) == opTime
            }
        }
        let removed: [BSONDocument] = update(s, &views) { core in
            core.phase = .rollback
            core.topologyCounter += 1
            let keep = common.map { core.oplogIndex(after: $0.ts, strict: true) } ?? core.oplogStart
            let removed = core.oplog[keep...].map(\.document)
            core.truncateOplog(after: common)
            core.condition.broadcast()
            return removed
        }
        if let committed = commitPoint[s], let common, committed.t == common.t, committed.ts > common.ts {
            invariantBreaches.append("member \(s): commit point \(committed) above common point \(common)")
        }
        members[s].dropConnections()
        rollbacks += 1
        removedByRollback[s].append(contentsOf: removed)
        rollbackUntil[s] = now + timings.rollbackDuration
        syncSource[s] = nil
        for o in members.indices { positionSeen[o][s] = common }
    }

    /// Each member's `replSetGetStatus` view of the others (§2.2), from what it can reach.
    private func publishStatus(_ views: [View?], now: ContinuousClock.Instant) {
        let zero: BSONDocument = ["ts": .timestamp(BSONTimestamp(seconds: 0, increment: 0)), "t": .int64(-1)]
        let nowMillis = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        for viewer in members.indices where views[viewer] != nil {
            var status: [String: BSONDocument] = [:]
            for other in members.indices where other != viewer {
                var entry: BSONDocument = ["_id": .int32(Int32(other)), "name": .string(hosts[other])]
                if reach(viewer, other), let view = views[other], view.phase == .arbiter {
                    // §2.2: an arbiter's entry carries no optimes and no wall times.
                    entry.append("health", .double(1))
                    entry.append("state", .int32(7))
                    entry.append("stateStr", "ARBITER")
                    entry.append("uptime", .int32(1))
                    entry.append("lastHeartbeat", .datetime(nowMillis))
                    entry.append("lastHeartbeatRecv", .datetime(nowMillis))
                    entry.append("pingMs", .int64(0))
                    entry.append("lastHeartbeatMessage", "")
                    entry.append("syncSourceHost", "")
                    entry.append("syncSourceId", .int32(-1))
                    entry.append("infoMessage", "")
                    entry.append("configVersion", .int32(Int32(clamping: view.configVersion)))
                    entry.append("configTerm", .int64(view.term))
                } else if reach(viewer, other), let view = views[other] {
                    // §2: a member in STARTUP2 reports null optimes in its heartbeats.
                    let opTime = view.phase == .startup2 ? zero : view.last?.document ?? zero
                    let date = FakeMongodCore.secondsDate(opTime)
                    entry.append("health", .double(1))
                    entry.append("state", .int32(view.phase.memberStateCode))
                    entry.append("stateStr", .string(view.phase.stateString))
                    entry.append("uptime", .int32(1))
                    FakeMongodCore.appendPeerOpTimes(opTime, date: date, wall: date, to: &entry)
                    entry.append("lastHeartbeat", .datetime(nowMillis))
                    entry.append("lastHeartbeatRecv", .datetime(nowMillis))
                    entry.append("pingMs", .int64(0))
                    entry.append("lastHeartbeatMessage", "")
                    let source = syncSource[other]
                    entry.append("syncSourceHost", .string(source.map { hosts[$0] } ?? ""))
                    entry.append("syncSourceId", .int32(Int32(source ?? -1)))
                    entry.append("infoMessage", "")
                    entry.append("configVersion", .int32(1))
                    entry.append("configTerm", .int64(view.term))
                } else {
                    entry.append("health", .double(0))
                    entry.append("state", .int32(8))
                    entry.append("stateStr", "(not reachable/healthy)")
                    entry.append("uptime", .int32(0))
                    FakeMongodCore.appendPeerOpTimes(zero, date: .datetime(0), wall: .datetime(0), to: &entry)
                    entry.append("lastHeartbeat", .datetime(nowMillis))
                    entry.append("lastHeartbeatRecv", .datetime(0))
                    entry.append("pingMs", .int64(0))
                    entry.append(
                        "lastHeartbeatMessage",
                        .string("Error connecting to \(hosts[other]) :: caused by :: Connection refused")
                    )
                    entry.append("syncSourceHost", "")
                    entry.append("syncSourceId", .int32(-1))
                    entry.append("infoMessage", "")
                    entry.append("configVersion", .int32(1))
                    entry.append("configTerm", .int64(views[other]?.term ?? -1))
                }
                status[hosts[other]] = entry
            }
            members[viewer].core.locked { members[viewer].core.peerStatus = status }
        }
    }
}
