import BSON
import FoundationEssentials
public import Logging
import MongoCWrapper
import RSInitSupport

/// Bootstraps a MongoDB replica set idempotently and proves it is usable: waits for mongod, initiates the set
/// (or verifies an existing one), waits for a writable primary, and shows that the oplog advances.
///
/// The decisions are ``BootstrapStateMachine``'s; this type only performs its actions through libmongoc. Every
/// blocking libmongoc call runs on the client's own thread; cancellation is honoured between calls.
public struct ReplicaSetBootstrapper: Sendable {
    /// What to bootstrap and how long to try.
    public let configuration: BootstrapConfiguration
    private let logger: Logger

    /// A bootstrapper; nothing connects until ``run(progress:)``.
    public init(configuration: BootstrapConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs the bootstrap. `progress` is called once per phase change.
    ///
    /// - Throws: ``BootstrapFailure`` (with the documented exit code in ``BootstrapFailure/exitCode``), or
    ///   `CancellationError`.
    public func run(
        progress: @escaping @Sendable (BootstrapStateMachine.Phase) -> Void = { _ in }
    ) async throws
        -> BootstrapReport
    {
        try configuration.validate()
        var machine = BootstrapStateMachine(
            mode: .bootstrap,
            setName: configuration.setName,
            members: configuration.members,
            forceReconfig: configuration.forceReconfig
        )
        return try await execute(&machine, progress: progress)
    }

    /// Waits until the set has a writable primary and a moving oplog, never initiating (a health check).
    ///
    /// - Throws: ``BootstrapFailure``.
    public func waitUntilReady(
        progress: @escaping @Sendable (BootstrapStateMachine.Phase) -> Void = { _ in }
    )
        async throws -> BootstrapReport
    {
        var machine = BootstrapStateMachine(
            mode: .waitOnly,
            setName: configuration.setName,
            members: configuration.members
        )
        return try await execute(&machine, progress: progress)
    }

    // MARK: - The shell

    private func execute(
        _ machine: inout BootstrapStateMachine,
        progress: @Sendable (BootstrapStateMachine.Phase) -> Void
    ) async throws -> BootstrapReport {
        let connection = ClientSlot(try makeClient())
        do {
            let report = try await execute(&machine, connection: connection, progress: progress)
            await connection.client.close()
            return report
        } catch {
            await connection.client.close()
            throw error
        }
    }

    /// What the run observed, for the report.
    private struct Observations {
        let start = ContinuousClock.now
        var reachableAt: ContinuousClock.Instant?
        var primaryAt: ContinuousClock.Instant?
        var lastHello: HelloSummary?
        var lastStatus: StatusSummary?
        var proof: OplogProof = .note
        var repaired = false
    }

    /// Runs the machine's actions until it finishes (the report) or fails (throws its ``BootstrapFailure``).
    private func execute(
        _ machine: inout BootstrapStateMachine,
        connection: ClientSlot,
        progress: @Sendable (BootstrapStateMachine.Phase) -> Void
    ) async throws -> BootstrapReport {
        var seen = Observations()
        let deadline = seen.start + configuration.timeout
        var reported: BootstrapStateMachine.Phase?
        var action = machine.start()
        while true {
            if machine.phase != reported {
                reported = machine.phase
                logger.debug("bootstrap phase", metadata: ["rsinit.phase": "\(machine.phase)"])
                progress(machine.phase)
            }
            try Task.checkCancellation()
            if ContinuousClock.now >= deadline, !isTerminal(action) {
                if let blocked = connection.unreachablePrimary { throw blocked }
                action = machine.deadlinePassed(after: configuration.timeout)
                continue
            }
            switch action {
            case .finish:
                if machine.phase != reported { progress(machine.phase) }
                return report(machine, seen)
            case .fail(let failure):
                if machine.phase != reported { progress(machine.phase) }
                throw failure
            default:
                action = try await perform(action, &machine, &seen, connection: connection, deadline: deadline)
            }
        }
    }

    /// Performs one non-terminal action and returns the machine's next one (the action again once the deadline
    /// has passed during a wait: the loop then asks the machine).
    private func perform(
        _ action: BootstrapStateMachine.Action,
        _ machine: inout BootstrapStateMachine,
        _ seen: inout Observations,
        connection: ClientSlot,
        deadline: ContinuousClock.Instant
    ) async throws -> BootstrapStateMachine.Action {
        let client = connection.client
        switch action {
        case .probe(let attempt):
            try await sleep(configuration.backoff, attempt: attempt - 1, deadline: deadline, skipFirst: attempt == 0)
            guard ContinuousClock.now < deadline else { return action }
            if attempt > 0 {
                // A single-threaded libmongoc client keeps a failed server in a 5 s cooldown ("No servers yet
                // eligible for rescan"); a fresh client dials again at once.
                await connection.replace(with: try makeClient())
            }
            return try await probe(connection.client, &machine, &seen)
        case .fetchStatus:
            do {
                let status = StatusSummary(try await client.runCommand(["replSetGetStatus": 1]))
                seen.lastStatus = status
                return machine.statusReplied(status)
            } catch let error as MongoError {
                return machine.statusFailed(error)
            }
        case .initiate(let attempt):
            try await sleep(configuration.backoff, attempt: attempt - 1, deadline: deadline, skipFirst: attempt == 0)
            guard ContinuousClock.now < deadline else { return action }
            return try await initiate(client, &machine)
        case .fetchStoredConfig:
            let reply = try? await client.runCommand(["replSetGetConfig": 1])
            return machine.storedConfigFetched(reply)
        case .forceReconfig(let stored):
            return try await forceReconfig(client, stored, &machine, &seen)
        case .pollPrimary(let attempt):
            // Short, capped polls: a writable primary is noticed within ~50 ms (hello is cheap).
            try await sleep(
                Backoff(initial: .milliseconds(10), maximum: .milliseconds(50)),
                attempt: attempt - 1,
                deadline: deadline,
                skipFirst: attempt == 0
            )
            guard ContinuousClock.now < deadline else { return action }
            return try await pollPrimary(connection, &machine, &seen)
        case .proveOplog:
            return try await proveOplog(connection, &machine, &seen, deadline: deadline)
        case .finish, .fail:
            return action
        }
    }

    private func probe(
        _ client: MongoClient,
        _ machine: inout BootstrapStateMachine,
        _ seen: inout Observations
    ) async throws -> BootstrapStateMachine.Action {
        do {
            let hello = HelloSummary(try await client.runCommand(["hello": 1]))
            seen.reachableAt = seen.reachableAt ?? .now
            seen.lastHello = hello
            return machine.probeSucceeded(hello)
        } catch let error as MongoError {
            return machine.probeFailed(error)
        }
    }

    private func initiate(
        _ client: MongoClient,
        _ machine: inout BootstrapStateMachine
    ) async throws -> BootstrapStateMachine.Action {
        do {
            logger.debug(
                "replSetInitiate",
                metadata: ["rsinit.config": "\(machine.initiateConfig.extendedJSON(.relaxed))"]
            )
            _ = try await client.runCommand(["replSetInitiate": .document(machine.initiateConfig)])
            return machine.initiateSucceeded()
        } catch let error as MongoError {
            return machine.initiateFailed(error)
        }
    }
    private func forceReconfig(
        _ client: MongoClient,
        _ stored: BSONDocument,
        _ machine: inout BootstrapStateMachine,
        _ seen: inout Observations
    ) async throws -> BootstrapStateMachine.Action {
        logger.warning(
            "forcing a reconfig of a REMOVED node",
            metadata: ["rsinit.members": "\(configuration.members.map(\.description))"]
        )
        do {
            _ = try await client.runCommand(["replSetReconfig": .document(reconfigured(stored)), "force": true])
            seen.repaired = true
            return machine.forceReconfigSucceeded()
        } catch let error as MongoError {
            return machine.forceReconfigFailed(error)
        }
    }

    private func pollPrimary(
        _ connection: ClientSlot,
        _ machine: inout BootstrapStateMachine,
        _ seen: inout Observations
    ) async throws -> BootstrapStateMachine.Action {
        // After a move to the primary, the slot holds the new client: read it at each use.
        var client: MongoClient { connection.client }
        do {
            var hello = HelloSummary(try await client.runCommand(["hello": 1]))
            if machine.mode == .bootstrap, let moved = try await followPrimary(hello, connection: connection) {
                hello = moved
            }
            seen.lastHello = hello
            var status: StatusSummary?
            if configuration.members.count > 1 || !hello.isWritablePrimary {
                status = try? StatusSummary(await client.runCommand(["replSetGetStatus": 1]))
                if let status { seen.lastStatus = status }
            }
            let action = machine.primaryPolled(hello, status: status)
            if case .proveOplog = action { seen.primaryAt = .now }
            return action
        } catch let error as MongoError {
            return machine.primaryPollFailed(error)
        }
    }

    private func proveOplog(
        _ connection: ClientSlot,
        _ machine: inout BootstrapStateMachine,
        _ seen: inout Observations,
        deadline: ContinuousClock.Instant
    ) async throws -> BootstrapStateMachine.Action {
        seen.primaryAt = seen.primaryAt ?? .now
        seen.reachableAt = seen.reachableAt ?? .now
        switch await proveOplog(connection.client, deadline: deadline) {
        case .success(let how):
            seen.proof = how
            if machine.mode == .bootstrap && configuration.members.count > 1 {
                try await addMissingMembers(connection, deadline: deadline)
            }
            return machine.oplogProved()
        case .failure(let failure):
            return failure.kind == .oplogNotAdvancing ? machine.oplogProofFailed(failure.message) : .fail(failure)
        }
    }

    private func report(_ machine: BootstrapStateMachine, _ seen: Observations) -> BootstrapReport {
        let end = ContinuousClock.now
        let status = configuration.members.count > 1 ? seen.lastStatus : nil
        return BootstrapReport(
            setName: configuration.setName,
            primary: seen.lastHello?.primary,
            hosts: seen.lastHello?.hosts ?? [],
            initiated: machine.initiatedByUs,
            repaired: seen.repaired,
            oplogProof: seen.proof,
            reachableAfterMs: ((seen.reachableAt ?? end) - seen.start).milliseconds,
            primaryAfterMs: ((seen.primaryAt ?? end) - seen.start).milliseconds,
            totalMs: (end - seen.start).milliseconds,
            unhealthyMembers: status?.unhealthyMembers ?? [],
            warnings: warnings(hello: seen.lastHello, existing: machine.foundExistingSet)
        )
    }

    /// Adds the `--members` hosts the config lacks, one voter per reconfig, waiting for each to become a voter
    /// (§7.3); idempotent, and safe against a concurrent bootstrapper (a lost race is re-read and retried).
    private func addMissingMembers(_ connection: ClientSlot, deadline: ContinuousClock.Instant) async throws {
        var client: MongoClient { connection.client }
        let wanted = configuration.members.map(\.description)
        var attempt = 0
        var lastProblem = "a new member is still catching up"
        while true {
            guard ContinuousClock.now < deadline else {
                throw BootstrapFailure(
                    .unreachable,
                    "not every --members host is a voting member of \(configuration.setName) before the deadline "
                        + "(\(lastProblem))",
                    fix: "start mongod --replSet \(configuration.setName) on every listed host, make each reachable "
                        + "from the others under the name given, then run rsinit again"
                )
            }
            do {
                let config = try await client.runCommand(["replSetGetConfig": 1])["config"]?.documentValue ?? [:]
                let status = try await client.runCommand(["replSetGetStatus": 1])
                let voting = status["votingMembersCount"]?.int64Value.map { Int(clamping: $0) } ?? 0
                switch MemberReconciler.next(config: config, votingMembersCount: voting, wanted: wanted) {
                case .done:
                    return
                case .waitForNewVoter:
                    lastProblem = "a new member is still catching up"
                case .reconfig(let updated, let host):
                    logger.info("adding a replica set member", metadata: ["rsinit.member": "\(host)"])
                    _ = try await client.runCommand(["replSetReconfig": .document(updated)])
                    attempt = 0
                    continue
                }
            } catch let error as MongoError {
                lastProblem = try await retriedReconfigProblem(error, connection: connection)
            }
            try await sleep(
                Backoff(initial: .milliseconds(50), maximum: .milliseconds(500)),
                attempt: attempt,
                deadline: deadline
            )
            attempt += 1
        }
    }

    /// A MongoError while adding members. Refused credentials and a refused config end the run; anything else is
    /// read again later and returned as the last problem: 109/308 a config change in flight; 10107 not (yet) the
    /// writable primary (the run then follows the primary, where the next reconfig goes); 103 "must be greater":
    /// another reconfig won; 74: a majority did not answer.
    private func retriedReconfigProblem(_ error: MongoError, connection: ClientSlot) async throws -> String {
        switch error.code {
        case .unauthorized, .authenticationFailed:
            throw BootstrapFailure(.auth, error.message, fix: "the user needs the clusterManager role")
        default:
            break
        }
        if error.serverCode == 93 || (error.serverCode == 103 && !error.message.contains("must be greater")) {
            throw BootstrapFailure(
                .invalidConfig,
                "replSetReconfig refused the config adding a member: \(error.message)",
                fix: "check the --members hosts against rs.conf()"
            )
        }
        if error.serverCode == 10107,
            let hello = try? HelloSummary(await connection.client.runCommand(["hello": 1]))
        {
            // The primary moved (stepdown, failover): send the next reconfig to the new one.
            _ = try await followPrimary(hello, connection: connection)
        }
        return error.description
    }

    /// A multi-member bootstrap pointed at a member that is not the primary: the reconfig (§7.3: only a writable
    /// primary accepts it, 10107 elsewhere) and the oplog proof must run on the primary, so the run moves its direct
    /// connection to the member `hello.primary` names (same credentials and options). Returns the primary's `hello`
    /// after a move; nil when there is nothing to move to yet (the primary's answer is re-checked: it must be the
    /// writable primary of this set). A primary that cannot be reached from here is remembered: the run then fails
    /// at its deadline naming it.
    private func followPrimary(_ hello: HelloSummary, connection: ClientSlot) async throws -> HelloSummary? {
        guard configuration.members.count > 1, case .elsewhere(let primary) = PrimaryLocator.locate(hello) else {
            return nil
        }
        let here = hello.me ?? configuration.connectionString.hosts.joined(separator: ",")
        let fix =
            "run rsinit against the primary (--host \(primary.host) --port \(primary.port)), or make \(primary) "
            + "reachable from here under that name"
        guard let uri = PrimaryLocator.uri(configuration.connectionString.uri, withHost: primary),
            let target = try? MongoConnectionString(uri)
        else {
            throw BootstrapFailure(
                .noWritablePrimary,
                "\(here) is not the primary of \(configuration.setName); the primary is \(primary), and this URI "
                    + "cannot be pointed at one member (mongodb+srv)",
                fix: fix
            )
        }
        let candidate = try makeClient(target)
        do {
            let reply = HelloSummary(try await candidate.runCommand(["hello": 1]))
            guard reply.isWritablePrimary, reply.setName == configuration.setName else {
                await candidate.close()
                return nil
            }
            logger.info(
                "bootstrap moves to the primary",
                metadata: ["rsinit.from": "\(here)", "rsinit.primary": "\(primary)"]
            )
            connection.unreachablePrimary = nil
            await connection.replace(with: candidate)
            return reply
        } catch let error as MongoError {
            await candidate.close()
            if error.code == .unauthorized || error.code == .authenticationFailed {
                throw BootstrapFailure(.auth, error.message, fix: "the user needs the clusterManager role")
            }
            connection.unreachablePrimary = BootstrapFailure(
                .noWritablePrimary,
                "\(here) is not the primary of \(configuration.setName); its primary \(primary) did not answer from "
                    + "here before the deadline: \(error.message)",
                fix: fix
            )
            return nil
        }
    }

    private func isTerminal(_ action: BootstrapStateMachine.Action) -> Bool {
        switch action {
        case .finish, .fail: return true
        default: return false
        }
    }

    private func makeClient(
        _ connectionString: MongoConnectionString? = nil
    ) throws(BootstrapFailure) -> MongoClient {
        let attemptMs = Int32(clamping: configuration.attemptTimeout.milliseconds)
        do {
            // Direct connection: an uninitialised member is selectable only in Single topology. socketTimeoutMS
            // covers mongod's isSelf slow path (up to 30 s inside replSetInitiate).
            let direct = try (connectionString ?? configuration.connectionString).settingOptions(
                int32: [
                    "connectTimeoutMS": attemptMs, "serverSelectionTimeoutMS": attemptMs, "socketTimeoutMS": 45_000,
                    "heartbeatFrequencyMS": 500,
                ],
                bool: ["directConnection": true, "serverSelectionTryOnce": true]
            )
            return try MongoClient(direct, appName: "rsinit", logger: logger)
        } catch {
            throw BootstrapFailure(.usage, error.message, fix: "check --uri (see the MongoDB connection string docs)")
        }
    }

    private func sleep(
        _ backoff: Backoff,
        attempt: Int,
        deadline: ContinuousClock.Instant,
        skipFirst: Bool = false
    )
        async throws
    {
        if skipFirst || attempt < 0 { return }
        let delay = backoff.delay(attempt: attempt, jitter: Double.random(in: 0...1))
        let until = min(ContinuousClock.now + delay, deadline)
        if until > .now { try await Task.sleep(until: until, clock: .continuous) }
    }

    private func reconfigured(_ stored: BSONDocument) -> BSONDocument {
        let version = stored["version"]?.int64Value ?? 1
        var members: [BSONValue] = []
        for (index, member) in configuration.members.enumerated() {
            var document: BSONDocument = ["_id": .int32(Int32(clamping: index)), "host": .string(member.description)]
            if configuration.members.count > 1 { document.append("priority", .double(index == 0 ? 2 : 1)) }
            members.append(.document(document))
        }
        var config = stored.removing(["members", "version"])
        config.append("version", .int32(Int32(clamping: version + 1)))
        config.append("members", .array(members))
        return config
    }

    private func warnings(hello: HelloSummary?, existing: Bool) -> [String] {
        guard existing, let hosts = hello?.hosts, !hosts.isEmpty else { return [] }
        let wanted = Set(configuration.members.map { $0.description.lowercased() })
        let stored = Set(hosts.map { $0.lowercased() })
        guard wanted != stored else { return [] }
        var text =
            "the existing config lists member host(s) [\(hosts.joined(separator: ", "))], not "
            + "[\(configuration.members.map(\.description).joined(separator: ", "))]"
        if hosts.compactMap({ HostAndPort(parsing: $0) }).contains(where: \.isLoopback) {
            text +=
                "; clients outside mongod's container will be sent to their own localhost unless they use "
                + "directConnection=true (change it with rs.reconfig on the primary)"
        }
        return [text]
    }

    // MARK: - Oplog proof

    private func proveOplog(
        _ client: MongoClient,
        deadline: ContinuousClock.Instant
    ) async -> Result<OplogProof, BootstrapFailure> {
        do {
            guard let since = try await newestOplogTime(client) else {
                return .failure(BootstrapFailure(.oplogNotAdvancing, "local.oplog.rs does not exist or is empty"))
            }
            let token = HexToken.random()
            do {
                _ = try await client.runCommand([
                    "appendOplogNote": 1, "data": ["msg": "rsinit oplog check", "rsinit": .string(token)],
                ])
            } catch let error as MongoError where error.code == .unauthorized || error.code == .commandNotFound {
                logger.debug(
                    "appendOplogNote not permitted; watching lastWrite",
                    metadata: ["rsinit.error": "\(error)"]
                )
                return await proveByLastWrite(client, since: since, deadline: deadline)
            }
            if try await readsBackNote(token, since: since, client, deadline: deadline) { return .success(.note) }
            return .failure(
                BootstrapFailure(.oplogNotAdvancing, "the appendOplogNote marker was not read back from the oplog")
            )
        } catch let error as MongoError {
            if error.code == .unauthorized || error.code == .authenticationFailed {
                return .failure(
                    BootstrapFailure(
                        .auth,
                        "reading local.oplog.rs was refused: \(error.message)",
                        fix: "use a user with read access to the local database (e.g. clusterMonitor + read on local)"
                    )
                )
            }
            return .failure(BootstrapFailure(.oplogNotAdvancing, "reading the oplog failed: \(error.message)"))
        } catch {
            return .failure(BootstrapFailure(.oplogNotAdvancing, "\(error)"))
        }
    }

    /// The `ts` of the newest oplog entry; nil when there is no oplog or it is empty.
    private func newestOplogTime(_ client: MongoClient) async throws -> BSONTimestamp? {
        let newest = try await client.find(
            database: "local",
            collection: "oplog.rs",
            options: ["sort": ["$natural": -1], "limit": 1]
        )
        let last = try await newest.next()
        await newest.close()
        return last?["ts"]?.timestampValue
    }

    /// Tails the oplog's no-ops from `since` until the note carrying `token` is read back (true) or the deadline
    /// passes (false).
    private func readsBackNote(
        _ token: String,
        since: BSONTimestamp,
        _ client: MongoClient,
        deadline: ContinuousClock.Instant
    ) async throws -> Bool {
        let cursor = try await client.find(
            database: "local",
            collection: "oplog.rs",
            filter: ["ts": ["$gte": .timestamp(since)], "op": "n"],
            options: ["tailable": true, "awaitData": true, "maxAwaitTimeMS": 500]
        )
        var found = false
        do {
            while !found && ContinuousClock.now < deadline {
                guard let entry = try await cursor.next() else {
                    if !cursor.isAlive { break }
                    continue
                }
                found = entry[path: "o.rsinit"] == .string(token)
            }
        } catch {
            await cursor.close()
            throw error
        }
        await cursor.close()
        return found
    }

    private func proveByLastWrite(
        _ client: MongoClient,
        since: BSONTimestamp,
        deadline: ContinuousClock.Instant
    ) async -> Result<OplogProof, BootstrapFailure> {
        let limit = min(deadline, ContinuousClock.now + configuration.noopProofTimeout)
        var baseline: BSONTimestamp?
        while ContinuousClock.now < limit {
            if let hello = try? HelloSummary(await client.runCommand(["hello": 1])), let ts = hello.lastWrite {
                if let baseline, ts > baseline { return .success(.lastWrite) }
                if baseline == nil { baseline = max(ts, since) }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return .failure(
            BootstrapFailure(
                .oplogNotAdvancing,
                "hello.lastWrite did not advance within \(configuration.noopProofTimeout.formattedSeconds) and "
                    + "appendOplogNote is not permitted for this user"
            )
        )
    }
}

/// The current client of a run; replaced after a failed probe. Only touched by the run's own task.
final class ClientSlot: @unchecked Sendable {
    private(set) var client: MongoClient
    /// Set while the primary a non-primary member names does not answer from here (the failure at the deadline).
    var unreachablePrimary: BootstrapFailure?
    init(_ client: MongoClient) { self.client = client }
    func replace(with newClient: MongoClient) async {
        let old = client
        client = newClient
        await old.close()
    }
}

enum HexToken {
    static func random() -> String {
        (0..<8).map { _ in String(UInt8.random(in: 0...255), radix: 16).leftPaddedHex }.joined()
    }
}

extension String {
    fileprivate var leftPaddedHex: String { count == 1 ? "0" + self : self }
}
