import ArgumentParser
import Foundation
import RSInitTestUtils

/// Runs the FakeMongod wire-protocol double on a port, so rsinit can be tried without MongoDB.
@main
struct MongodDoubleCommand: ParsableCommand {
    enum ScenarioName: String, ExpressibleByArgument, CaseIterable {
        case standalone, uninitialized, primary, removed
    }

    static let configuration = CommandConfiguration(
        commandName: "mongod-double",
        abstract: "A MongoDB 7.0 wire-protocol double for trying rsinit without mongod (test support; not mongod).",
        discussion: """
            Listens on 127.0.0.1 only. Example:
              swift run mongod-double --port 27017 --scenario uninitialized --set-name steedos
              swift run rsinit --host 127.0.0.1 --allow-localhost-member
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

    @Flag(help: "Require authentication (unauthenticated replSetInitiate gets 13).")
    var auth = false

    func run() throws {
        let scenario: FakeMongodConfiguration.Scenario
        switch self.scenario {
        case .standalone: scenario = .standalone
        case .uninitialized: scenario = .uninitialized(setName: setName)
        case .primary: scenario = .primary(setName: setName)
        case .removed: scenario = .removed(setName: setName, storedHosts: storedHosts)
        }
        let configuration = FakeMongodConfiguration(
            scenario: scenario,
            port: port,
            selfHostNames: selfHosts,
            periodicNoopInterval: .milliseconds(Int64(noopInterval * 1000)),
            auth: auth ? .required : .disabled,
            listenDelay: .milliseconds(Int64(listenDelay * 1000))
        )
        let server = try FakeMongod.start(configuration)
        // Written unbuffered: scripts (scripts/demo.sh) read this line while the double keeps running.
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
