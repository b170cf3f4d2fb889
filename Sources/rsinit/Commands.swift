import ArgumentParser
import BSON
import FoundationEssentials
import Logging
import MongoCWrapper
import RSInitCore

/// `rsinit [--host …]`: bootstrap and verify the replica set (the default command).
struct RSInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rsinit",
        abstract: "Bootstrap and verify a MongoDB replica set (the one-shot job of an init container).",
        discussion: """
            Waits for mongod, initiates the replica set with an explicit config (or verifies an existing one), \
            waits for a writable primary and proves that the oplog advances. Safe to run again: a set that \
            already exists is verified, not re-initiated.

            EXIT CODES
              0  ready: writable primary, oplog advancing
              2  usage or bad input (flags, variables, _FILEs, URI, loopback member host without --allow-localhost-member)
              3  mongod not reachable before the deadline
              4  mongod not started with --replSet
              5  invalid config, set-name mismatch, member host not mapping to the node, or REMOVED
              6  authentication or authorization failed
              7  no writable primary before the deadline
              8  the oplog is not advancing

            ENVIRONMENT
              Every flag has an RSINIT_* variable (RSINIT_HOST, RSINIT_PORT, RSINIT_URI, RSINIT_USERNAME, \
            RSINIT_PASSWORD_FILE, RSINIT_SET_NAME, RSINIT_MEMBER_HOST, RSINIT_MEMBERS, RSINIT_ALLOW_LOCALHOST_MEMBER, \
            RSINIT_FORCE_RECONFIG, RSINIT_TIMEOUT, RSINIT_JSON, RSINIT_QUIET, RSINIT_VERBOSE); a flag on the command \
            line wins. Boolean variables take 1/true/yes/on or 0/false/no/off. Any valued variable can come from a \
            file instead: RSINIT_URI_FILE=/run/secrets/mongo-uri (Docker/Kubernetes secrets; trailing newlines \
            dropped). Durations: 90, 90s, 500ms, 2m, 1h, 1d (1 ms to 7 d). Errors never show a password.
            """,
        version: RSInitVersion.current,
        subcommands: [StatusCommand.self, WaitCommand.self, TailCommand.self, DoctorCommand.self]
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(
        name: .customLong("member-host"),
        help: ArgumentHelp(
            "The member host to put in the config, as clients reach mongod (default: --host:--port, or the --uri "
                + "host). Never silently localhost (env RSINIT_MEMBER_HOST).",
            valueName: "host:port"
        )
    )
    var memberHost: String?

    @Option(
        help: ArgumentHelp(
            "All members of a multi-member set, comma-separated; the first gets priority 2 (env RSINIT_MEMBERS).",
            valueName: "h1:p,h2:p,..."
        )
    )
    var members: String?

    @OptionGroup var localhostMember: LocalhostMemberOption

    @Flag(
        name: .customLong("force-reconfig"),
        help: ArgumentHelp(
            "Repair a REMOVED node with a forced reconfig to the member hosts (env RSINIT_FORCE_RECONFIG)."
        )
    )
    var forceReconfig = false

    @OptionGroup var output: OutputOptions

    func run() async throws {
        let console = Console(output: output, command: "bootstrap")
        let start = ContinuousClock.now
        do {
            let timeout = try connection.timeoutDuration()
            let connectionString = try connection.connectionString()
            try connection.validateSetName()
            let configuration = BootstrapConfiguration(
                connectionString: connectionString,
                setName: connection.setName,
                members: try memberHosts(connectionString),
                allowLocalhostMember: localhostMember.allowLocalhostMember,
                forceReconfig: forceReconfig,
                timeout: timeout
            )
            console.info("bootstrapping replica set \(configuration.setName) via \(connectionString.redacted)")
            let bootstrapper = ReplicaSetBootstrapper(configuration: configuration, logger: console.logger)
            let report = try await bootstrapper.run { phase in console.phase(phase) }
            for warning in report.warnings { console.warn(warning) }
            console.info(
                "ready: replica set \(report.setName), primary \(report.primary ?? "?"), "
                    + "\(report.initiated ? "initiated now" : "already initiated")\(report.repaired ? ", repaired" : ""), "
                    + "oplog proof by \(report.oplogProof == .note ? "appendOplogNote" : "lastWrite"), \(report.totalMs) ms"
            )
            console.result(.success(report: report, status: nil), elapsed: ContinuousClock.now - start)
        } catch let failure as BootstrapFailure {
            console.result(.failure(failure), elapsed: ContinuousClock.now - start)
            throw ExitCode(failure.exitCode)
        }
    }

    private func memberHosts(_ connectionString: MongoConnectionString) throws(BootstrapFailure) -> [HostAndPort] {
        if let members {
            let parsed = members.split(separator: ",", omittingEmptySubsequences: false).map {
                HostAndPort(parsing: String($0))
            }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else {
                throw BootstrapFailure(
                    .usage,
                    "invalid --members \"\(InputValue.shown(members))\"",
                    fix: "use host:port,host:port (ports 1-65535, no empty items)"
                )
            }
            if memberHost != nil {
                throw BootstrapFailure(.usage, "--member-host and --members both given", fix: "use one of them")
            }
            return parsed.compactMap { $0 }
        }
        if let memberHost {
            guard let parsed = HostAndPort(parsing: memberHost) else {
                throw BootstrapFailure(
                    .usage,
                    "invalid --member-host \"\(InputValue.shown(memberHost))\"",
                    fix: "use host:port, e.g. mongodb:27017"
                )
            }
            return [parsed]
        }
        guard connectionString.hosts.count == 1, let only = HostAndPort(parsing: connectionString.hosts[0]) else {
            throw BootstrapFailure(
                .usage,
                "--uri lists \(connectionString.hosts.count) hosts; the bootstrap talks to one node",
                fix: "put only the node to initiate in --uri and list the set with --members"
            )
        }
        return [only]
    }
}

/// `--allow-localhost-member`, shared by the bootstrap and `doctor` (one type, so the root command's parse hands the
/// value on to the subcommand instead of keeping it).
struct LocalhostMemberOption: ParsableArguments {
    @Flag(
        name: .customLong("allow-localhost-member"),
        help: ArgumentHelp(
            "Allow a loopback member host (only if every client runs in mongod's network namespace) "
                + "(env RSINIT_ALLOW_LOCALHOST_MEMBER)."
        )
    )
    var allowLocalhostMember = false
}

/// `rsinit status`: print the replica set's state.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the node's and the replica set's state (exit 0 when mongod answered).",
        discussion: "Exit codes: 0 answered (whatever the state), 2 usage, 3 unreachable, 6 auth."
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let console = Console(output: output, command: "status")
        let start = ContinuousClock.now
        do {
            let timeout = try connection.timeoutDuration()
            let reader = ReplicaSetStatusReader(
                connectionString: try connection.connectionString(),
                attemptTimeout: min(timeout, .seconds(5)),
                logger: console.logger
            )
            let status = try await reader.read()
            if !output.json { print(StatusText.render(status)) }
            console.result(.success(report: nil, status: status), elapsed: ContinuousClock.now - start)
        } catch {
            let failure = error
            console.result(.failure(failure), elapsed: ContinuousClock.now - start)
            throw ExitCode(failure.exitCode)
        }
    }
}

/// `rsinit wait`: exit 0 only when the set has a writable primary and the oplog advances (a health check).
struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Exit 0 only when the set has a writable primary and the oplog advances (compose/k8s health check).",
        discussion: "Never initiates. Exit codes as for the bootstrap: 3 unreachable, 4 no --replSet, 5 wrong set, "
            + "6 auth, 7 no writable primary, 8 oplog not advancing."
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let console = Console(output: output, command: "wait")
        let start = ContinuousClock.now
        do {
            let timeout = try connection.timeoutDuration()
            let connectionString = try connection.connectionString()
            try connection.validateSetName()
            let seed =
                connectionString.hosts.first.flatMap { HostAndPort(parsing: $0) } ?? HostAndPort(host: "?", port: 27017)
            let configuration = BootstrapConfiguration(
                connectionString: connectionString,
                setName: connection.setName,
                members: [seed],
                allowLocalhostMember: true,
                timeout: timeout
            )
            let report = try await ReplicaSetBootstrapper(configuration: configuration, logger: console.logger)
                .waitUntilReady { phase in console.phase(phase) }
            console.info("ready: primary \(report.primary ?? "?"), oplog advancing (\(report.totalMs) ms)")
            // A multi-member set: the members' health and the majority as this node sees them.
            var status: ReplicaSetStatusReport?
            if report.hosts.count > 1 {
                status = try? await ReplicaSetStatusReader(connectionString: connectionString, logger: console.logger)
                    .read()
                if let status { console.info(StatusText.render(status)) }
            }
            console.result(.success(report: report, status: status), elapsed: ContinuousClock.now - start)
        } catch let failure as BootstrapFailure {
            console.result(.failure(failure), elapsed: ContinuousClock.now - start)
            throw ExitCode(failure.exitCode)
        }
    }
}
