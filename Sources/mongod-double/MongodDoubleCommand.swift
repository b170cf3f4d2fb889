import ArgumentParser
import Foundation
import RSInitTestUtils

/// Runs the FakeMongod wire-protocol double on a port, so rsinit can be tried without MongoDB.
@main
struct MongodDoubleCommand: ParsableCommand {
    enum ScenarioName: String, ExpressibleByArgument, CaseIterable {
        case standalone, uninitialized, primary, removed, mongos
    }

    static let configuration = CommandConfiguration(
        commandName: "mongod-double",
        abstract: "A MongoDB 7.0 wire-protocol double for trying rsinit without mongod (test support; not mongod).",
        discussion: """
            Listens on 127.0.0.1 only. Example:
              swift run mongod-double --port 27017 --scenario uninitialized --set-name steedos
              swift run rsinit --host 127.0.0.1 --allow-localhost-member
            With users (SCRAM-SHA-256 and SCRAM-SHA-1, speculative authentication in the handshake):
              swift run mongod-double --scenario uninitialized --auth root:secret
              swift run rsinit --host 127.0.0.1 --allow-localhost-member --username root --password-file pw.txt
            A 3-member replica set (elections, lagged replication, majority commit point; free ports):
              swift run mongod-double --members 3 --scenario primary --set-name rs0
            A sharded cluster: a mongos on --port over in-process shard primaries (shard key _id, hashed; events
            from a cold shard wait for its periodic no-op, so a short --noop-interval keeps streams prompt):
              swift run mongod-double --scenario mongos --shards 2 --noop-interval 0.1
            """
    )

    @Option(help: "Port on 127.0.0.1 (0 picks a free one).")
    var port: UInt16 = 27017

    @Option(help: "Starting state: \(ScenarioName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var scenario: ScenarioName = .uninitialized

    @Option(name: .customLong("set-name"), help: "The --replSet name mongod was started with.")
    var setName = "steedos"

    @Option(name: .customLong("self-host"), help: "A host name that maps to this node (repeatable).")
    var selfHosts: [String] = ["localhost", "127.0.0.1"]

    @Option(name: .customLong("stored-host"), help: "For --scenario removed: a member host stored in the config.")
    var storedHosts: [String] = ["old-hostname:27017"]

    @Option(name: .customLong("noop-interval"), help: "Seconds between periodic no-ops while primary and idle.")
    var noopInterval: Double = 10

    @Option(name: .customLong("listen-delay"), help: "Seconds to wait before accepting connections.")
    var listenDelay: Double = 0

    @Option(
        name: .customLong("auth"),
        help: ArgumentHelp(
            "Require authentication and add a SCRAM-SHA-1/SCRAM-SHA-256 user on admin (repeatable).",
            valueName: "user:password"
        )
    )
    var users: [String] = []

    @Flag(name: .customLong("auth-without-users"), help: "Require authentication with no users: every login gets 18.")
    var authWithoutUsers = false

    @Option(
        help:
            "Run a replica set of this many members on free ports (scenario primary: initiated, member 0 primary; uninitialized: waiting for replSetInitiate)."
    )
    var members = 1

    @Option(
        help:
            "With --members and --scenario primary: how many of the last members are arbiters (PSA: --members 3 --arbiters 1)."
    )
    var arbiters = 0

    @Option(help: "For --scenario mongos: how many shards (each a single-member replica set shardN).")
    var shards = 2

    func validate() throws {
        guard (1...8).contains(shards) else { throw ValidationError("--shards takes 1 to 8") }
        if scenario == .mongos, members > 1 || !users.isEmpty || authWithoutUsers {
            throw ValidationError("--scenario mongos does not take --members or --auth")
        }
        guard (1...7).contains(members) else { throw ValidationError("--members takes 1 to 7") }
        guard arbiters == 0 || (scenario == .primary && (1..<members).contains(arbiters)) else {
            throw ValidationError("--arbiters takes 1 to --members minus 1, with --scenario primary")
        }
        if members > 1 {
            guard scenario == .primary || scenario == .uninitialized else {
                throw ValidationError("--members works with --scenario primary or uninitialized")
            }
            guard users.isEmpty && !authWithoutUsers else {
                throw ValidationError("--members does not support --auth")
            }
        }
        for user in users where FakeMongodUser(argument: user) == nil {
            throw ValidationError("--auth takes user:password (a non-empty user name, then a colon)")
        }
    }

    func run() throws {
        if scenario == .mongos {
            let cluster = try FakeShardedCluster.start(
                shardCount: shards,
                port: port,
                periodicNoopInterval: .milliseconds(Int64(noopInterval * 1000))
            )
            FileHandle.standardOutput.write(
                Data(
                    "mongod-double mongos listening on \(cluster.mongos.hostAndPort) over \(shards) shards (\(cluster.uri))\n"
                        .utf8
                )
            )
            while true { Thread.sleep(forTimeInterval: 3600) }
            _ = cluster
        }
        if members > 1 {
            let set = try FakeReplicaSet.start(
                setName: setName,
                memberCount: members,
                configuredCount: self.scenario == .primary ? members : 0,
                periodicNoopInterval: .milliseconds(Int64(noopInterval * 1000)),
                arbiters: Set((members - arbiters)..<members)
            )
            FileHandle.standardOutput.write(
                Data("mongod-double replica set \(setName) on \(set.hosts.joined(separator: ",")) (\(set.uri))\n".utf8)
            )
            while true { Thread.sleep(forTimeInterval: 3600) }
            _ = set
        }
        let scenario: FakeMongodConfiguration.Scenario
        switch self.scenario {
        case .standalone: scenario = .standalone
        case .uninitialized: scenario = .uninitialized(setName: setName)
        case .primary: scenario = .primary(setName: setName)
        case .removed: scenario = .removed(setName: setName, storedHosts: storedHosts)
        case .mongos: return
        }
        let configuration = FakeMongodConfiguration(
            scenario: scenario,
            port: port,
            selfHostNames: selfHosts,
            periodicNoopInterval: .milliseconds(Int64(noopInterval * 1000)),
            auth: users.isEmpty && !authWithoutUsers ? .disabled : .required,
            users: users.compactMap(FakeMongodUser.init(argument:)),
            listenDelay: .milliseconds(Int64(listenDelay * 1000))
        )
        let server = try FakeMongod.start(configuration)
        // Unbuffered, so a script or test reading the pipe learns the port at once (--port 0).
        FileHandle.standardOutput.write(
            Data(
                "mongod-double listening on \(server.hostAndPort) (scenario \(self.scenario.rawValue), set \(setName))\n"
                    .utf8
            )
        )
        while true { Thread.sleep(forTimeInterval: 3600) }
        _ = server
    }
}
