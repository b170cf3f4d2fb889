import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// Runs the built `rsinit` binary.
struct CLIRun {
    var exitCode: Int32
    var stdout: String
    var stderr: String

    var json: [String: Any]? {
        guard let data = stdout.split(separator: "\n").last.map({ Data($0.utf8) }) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}

enum CLI {
    /// The binary next to the test bundle (swift build puts every product in the same directory).
    static let binary: URL = {
        if let override = ProcessInfo.processInfo.environment["RSINIT_BINARY"] { return URL(fileURLWithPath: override) }
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDirectory, bundleDirectory.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("rsinit")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/rsinit")
    }()

    /// Runs the binary; waits on a dedicated thread so the cooperative pool is never blocked.
    static func run(
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: TimeInterval = 60
    ) async throws
        -> CLIRun
    {
        try await onDedicatedThread { try runBlocking(arguments, environment: environment, timeout: timeout) }
    }

    private static func runBlocking(
        _ arguments: [String],
        environment: [String: String],
        timeout: TimeInterval
    ) throws
        -> CLIRun
    {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("RSINIT_") }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Drain both pipes on their own threads so a chatty child never blocks.
        let outData = Mutexed<Data>(Data())
        let errData = Mutexed<Data>(Data())
        let done = DispatchSemaphore(value: 0)
        for (pipe, sink) in [(out, outData), (err, errData)] {
            Thread.detachNewThread {
                sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
                done.signal()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        done.wait()
        done.wait()
        return CLIRun(
            exitCode: process.terminationStatus,
            stdout: String(decoding: outData.get(), as: UTF8.self),
            stderr: String(decoding: errData.get(), as: UTF8.self)
        )
    }
}

final class Mutexed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ newValue: T) {
        lock.lock()
        value = newValue
        lock.unlock()
    }
    func get() -> T {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

func startDouble(
    _ scenario: FakeMongodConfiguration.Scenario,
    configure: (inout FakeMongodConfiguration) -> Void = { _ in }
)
    throws -> FakeMongod
{
    var configuration = FakeMongodConfiguration(scenario: scenario, periodicNoopInterval: nil)
    configure(&configuration)
    return try FakeMongod.start(configuration)
}

func expectNoCrashOutput(_ run: CLIRun) {
    for marker in ["Stack dump", "Fatal error", "Current stack trace", "backtrace", "💣"] {
        #expect(!run.stderr.contains(marker), "\(run.stderr)")
    }
}

@Suite struct CLIHelpTests {
    @Test func helpDocumentsFlagsEnvironmentAndExitCodes() async throws {
        let run = try await CLI.run(["--help"])
        #expect(run.exitCode == 0)
        for flag in [
            "--host", "--port", "--uri", "--username", "--password-file", "--set-name", "--timeout", "--member-host",
            "--members",
            "--allow-localhost-member", "--force-reconfig", "--json", "--quiet", "--verbose", "--version", "status",
            "wait",
        ] {
            #expect(run.stdout.contains(flag), "help lacks \(flag)")
        }
        for variable in [
            "RSINIT_HOST", "RSINIT_PORT", "RSINIT_URI", "RSINIT_USERNAME", "RSINIT_PASSWORD_FILE", "RSINIT_URI_FILE",
            "RSINIT_SET_NAME", "RSINIT_MEMBER_HOST", "RSINIT_MEMBERS",
            "RSINIT_ALLOW_LOCALHOST_MEMBER", "RSINIT_FORCE_RECONFIG", "RSINIT_TIMEOUT", "RSINIT_JSON", "RSINIT_QUIET",
            "RSINIT_VERBOSE",
        ] {
            #expect(run.stdout.contains(variable), "help lacks \(variable)")
        }
        #expect(run.stdout.contains("EXIT CODES"))
        for code in 2...8 { #expect(run.stdout.contains("  \(code)  "), "exit code \(code) undocumented") }
        for subcommand in ["status", "wait"] {
            let sub = try await CLI.run([subcommand, "--help"])
            #expect(sub.exitCode == 0)
            #expect(sub.stdout.contains("--host") && sub.stdout.contains("--json"))
        }
    }

    @Test func tailHelpDocumentsItsFlagsEnvironmentAndExitCodes() async throws {
        let run = try await CLI.run(["tail", "--help"])
        #expect(run.exitCode == 0)
        for flag in [
            "--host", "--port", "--uri", "--redis", "--prefix", "--control-channel", "--fields", "--from",
            "--on-history-lost", "--ha", "--metadata-prefix", "--include", "--exclude", "--fan-out", "--http",
            "--stall-timeout", "--max-lag",
        ] {
            #expect(run.stdout.contains(flag), "tail help lacks \(flag)")
        }
        for variable in [
            "RSINIT_REDIS", "RSINIT_PREFIX", "RSINIT_CONTROL_CHANNEL", "RSINIT_FIELDS", "RSINIT_FROM",
            "RSINIT_ON_HISTORY_LOST", "RSINIT_HA", "RSINIT_METADATA_PREFIX", "RSINIT_INCLUDE", "RSINIT_EXCLUDE",
            "RSINIT_FAN_OUT", "RSINIT_HTTP", "RSINIT_STALL_TIMEOUT", "RSINIT_MAX_LAG",
        ] {
            #expect(run.stdout.contains(variable), "tail help lacks \(variable)")
        }
        for code in ["0  stopped", "2  usage", "4  mongod has no oplog", "6  authentication", "9  oplog history lost"] {
            #expect(run.stdout.contains(code), "tail help lacks exit code \(code)")
        }
    }

    @Test func version() async throws {
        let run = try await CLI.run(["--version"])
        #expect(run.exitCode == 0)
        #expect(run.stdout.contains("libmongoc 1."))
    }

    @Test(arguments: [
        ["--bogus"], ["--port", "notanumber", "--host", "x"], ["--host", "db", "--timeout", "soon"], [],
        ["--uri", "notmongodb://x"], ["--host", "localhost"], ["--host", "db", "--members", "a:1,,b"],
        ["--host", "db", "--member-host", "db:99999"], ["--uri", "mongodb://a:1,b:2/"], ["status"],
    ])
    func usageErrorsExit2(_ arguments: [String]) async throws {
        let run = try await CLI.run(arguments + ["--timeout", "1"].filter { _ in !arguments.contains("--timeout") })
        #expect(run.exitCode == 2, "\(arguments): \(run.stderr)")
        #expect(!run.stderr.isEmpty)
        expectNoCrashOutput(run)
    }

    @Test func loopbackMemberIsExplained() async throws {
        let run = try await CLI.run(["--host", "127.0.0.1"])
        #expect(run.exitCode == 2)
        #expect(run.stderr.contains("refusing loopback member host 127.0.0.1:27017"))
        #expect(run.stderr.contains("--allow-localhost-member"))
    }
}

@Suite struct CLIBootstrapTests {
    @Test func bootstrapsAndPrintsTheJSONSchema() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        let run = try await CLI.run([
            "--host", "127.0.0.1", "--port", "\(server.port)", "--allow-localhost-member", "--json",
        ])
        #expect(run.exitCode == 0, "\(run.stderr)")
        let json = try #require(run.json)
        #expect(Set(json.keys) == ["command", "outcome", "exitCode", "elapsedMs", "report"])
        #expect(json["outcome"] as? String == "ready")
        #expect(json["command"] as? String == "bootstrap")
        let report = try #require(json["report"] as? [String: Any])
        #expect(
            Set(report.keys) == [
                "setName", "primary", "hosts", "initiated", "repaired", "oplogProof", "reachableAfterMs",
                "primaryAfterMs", "totalMs", "unhealthyMembers", "warnings",
            ]
        )
        #expect(report["initiated"] as? Bool == true)
        #expect(report["oplogProof"] as? String == "note")
        #expect(run.stderr.contains("rsinit: initiating the replica set"))
        #expect(server.acceptedInitiateCount == 1)
    }

    @Test func environmentVariablesAndFlagsWin() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        let env = [
            "RSINIT_HOST": "127.0.0.1", "RSINIT_PORT": "1", "RSINIT_ALLOW_LOCALHOST_MEMBER": "true", "RSINIT_JSON": "1",
            "RSINIT_QUIET": "yes", "RSINIT_TIMEOUT": "20s", "RSINIT_SET_NAME": "steedos",
        ]
        let run = try await CLI.run(["--port", "\(server.port)"], environment: env)
        #expect(run.exitCode == 0, "\(run.stderr)")
        #expect(run.json?["outcome"] as? String == "ready")
        #expect(run.stderr.isEmpty)
        let wait = try await CLI.run(
            ["wait"],
            environment: ["RSINIT_HOST": "127.0.0.1", "RSINIT_PORT": "\(server.port)"]
        )
        #expect(wait.exitCode == 0, "\(wait.stderr)")
        let memberHost = try await CLI.run(
            ["status", "--json"],
            environment: ["RSINIT_URI": server.uri, "RSINIT_MEMBER_HOST": "x:1"]
        )
        #expect(memberHost.exitCode == 0, "RSINIT_MEMBER_HOST must not leak into status: \(memberHost.stderr)")
    }

    @Test func twoProcessesAtOnceBothSucceedWithOneInitiate() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) {
            $0.timings = .init(initiate: .milliseconds(200))
        }
        defer { server.stop() }
        let arguments = [
            "--host", "127.0.0.1", "--port", "\(server.port)", "--allow-localhost-member", "--json", "--quiet",
        ]
        async let first = CLI.run(arguments)
        async let second = CLI.run(arguments)
        let runs = try await [first, second]
        #expect(runs.map(\.exitCode) == [0, 0], "\(runs.map(\.stderr))")
        let initiated = runs.compactMap { ($0.json?["report"] as? [String: Any])?["initiated"] as? Bool }
        #expect(initiated.sorted { !$0 && $1 } == [false, true])
        #expect(server.acceptedInitiateCount == 1)
    }

    struct ExitCase: Sendable, CustomTestStringConvertible {
        let name: String
        let code: Int32
        let scenario: FakeMongodConfiguration.Scenario
        let extra: [String]
        let configure: @Sendable (inout FakeMongodConfiguration) -> Void
        let stopFirst: Bool
        var testDescription: String { name }
    }

    static let exitCases: [ExitCase] = [
        .init(
            name: "3 unreachable",
            code: 3,
            scenario: .standalone,
            extra: ["--timeout", "1"],
            configure: { _ in },
            stopFirst: true
        ),
        .init(name: "4 standalone", code: 4, scenario: .standalone, extra: [], configure: { _ in }, stopFirst: false),
        .init(
            name: "5 removed",
            code: 5,
            scenario: .removed(setName: "steedos", storedHosts: ["old:27017"]),
            extra: [],
            configure: { _ in },
            stopFirst: false
        ),
        .init(
            name: "5 set-name mismatch",
            code: 5,
            scenario: .uninitialized(setName: "rs0"),
            extra: [],
            configure: { _ in },
            stopFirst: false
        ),
        .init(
            name: "6 auth",
            code: 6,
            scenario: .uninitialized(setName: "steedos"),
            extra: [],
            configure: { $0.auth = .required },
            stopFirst: false
        ),
        .init(
            name: "7 no writable primary",
            code: 7,
            scenario: .uninitialized(setName: "steedos"),
            extra: ["--timeout", "3"],  // enough to get past initiate on a loaded machine; STARTUP2 lasts 30 s
            configure: { $0.timings = .init(startup2: .seconds(30)) },
            stopFirst: false
        ),
        .init(
            name: "8 oplog not advancing",
            code: 8,
            scenario: .primary(setName: "steedos"),
            extra: ["--timeout", "2"],
            configure: { $0.appendOplogNoteAllowed = false },
            stopFirst: false
        ),
    ]

    @Test(arguments: exitCases)
    func exitCodes(_ c: ExitCase) async throws {
        let server = try startDouble(c.scenario, configure: c.configure)
        if c.stopFirst { server.stop() }
        defer { server.stop() }
        let run = try await CLI.run(
            ["--host", "127.0.0.1", "--port", "\(server.port)", "--allow-localhost-member", "--json"] + c.extra
        )
        #expect(run.exitCode == c.code, "\(run.stderr)")
        let json = try #require(run.json)
        #expect(json["outcome"] as? String == "failed")
        #expect(json["exitCode"] as? Int == Int(c.code))
        let error = try #require(json["error"] as? [String: Any])
        #expect(error["kind"] is String && error["message"] is String)
        #expect(run.stderr.contains("rsinit: error: "))
        expectNoCrashOutput(run)
    }

    @Test func credentialsNeverPrinted() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) { $0.auth = .required }
        defer { server.stop() }
        let uri = "mongodb://root:hunter2@127.0.0.1:\(server.port)/?authSource=admin"
        let run = try await CLI.run(["--uri", uri, "--allow-localhost-member", "--json", "--verbose", "--timeout", "3"])
        #expect(run.exitCode == 6, "\(run.stderr)")
        #expect(!run.stdout.contains("hunter2"))
        #expect(!run.stderr.contains("hunter2"))
        #expect(run.stderr.contains("root:***@"))
    }

    @Test func credentialsFromSecretFiles() async throws {
        let server = try startDouble(.primary(setName: "steedos")) { $0.auth = .required }
        defer { server.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-secrets-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let passwordFile = directory.appendingPathComponent("password").path
        try "p@ss:w/rd%\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let host = ["--host", "127.0.0.1", "--port", "\(server.port)", "--timeout", "3"]
        // The double has no users here, so every login gets 18: a clean exit 6 proves the credentials were sent,
        // and neither the password nor its percent-encoding may appear anywhere (the success path:
        // AuthenticatedCLITests).
        let run = try await CLI.run(
            ["wait", "--username", "root", "--password-file", passwordFile, "--verbose"] + host
        )
        #expect(run.exitCode == 6, "\(run.stderr)")
        for secret in ["p@ss", "p%40ss", "w/rd"] { #expect(!(run.stdout + run.stderr).contains(secret)) }
        #expect(run.stderr.contains("--username and --password-file"))
        let fromEnvironment = try await CLI.run(
            ["wait"] + host,
            environment: ["RSINIT_USERNAME": "root", "RSINIT_PASSWORD_FILE": passwordFile]
        )
        #expect(fromEnvironment.exitCode == 6)
        // Usage mistakes exit 2 with a fix.
        for arguments in [
            ["--username", "root"], ["--password-file", passwordFile],
            ["--username", "root", "--password-file", directory.appendingPathComponent("missing").path],
        ] {
            let bad = try await CLI.run(["wait"] + arguments + host)
            #expect(bad.exitCode == 2, "\(arguments)")
            #expect(bad.stderr.contains("rsinit: fix:"))
        }
        let withURI = try await CLI.run([
            "wait", "--uri", "mongodb://127.0.0.1:\(server.port)/", "--username", "root", "--password-file",
            passwordFile,
        ])
        #expect(withURI.exitCode == 2)
        // Any valued variable may come from <VARIABLE>_FILE.
        let uriFile = directory.appendingPathComponent("uri").path
        try "mongodb://root:hunter2@127.0.0.1:\(server.port)/?authSource=admin\n".write(
            toFile: uriFile,
            atomically: true,
            encoding: .utf8
        )
        let fromFile = try await CLI.run(["wait", "--timeout", "3"], environment: ["RSINIT_URI_FILE": uriFile])
        #expect(fromFile.exitCode == 6)
        #expect(!(fromFile.stdout + fromFile.stderr).contains("hunter2"))
        let unreadable = try await CLI.run(["wait"], environment: ["RSINIT_URI_FILE": uriFile + ".missing"])
        #expect(unreadable.exitCode == 2)
        #expect(unreadable.stderr.contains("cannot read RSINIT_URI_FILE"))
    }

    @Test func statusAndWait() async throws {
        let server = try startDouble(.primary(setName: "steedos"))
        defer { server.stop() }
        let status = try await CLI.run(["status", "--host", "127.0.0.1", "--port", "\(server.port)", "--json"])
        #expect(status.exitCode == 0)
        let report = try #require(status.json?["status"] as? [String: Any])
        #expect(report["state"] as? String == "PRIMARY")
        #expect(report["writablePrimary"] as? Bool == true)
        let text = try await CLI.run(["status", "--host", "127.0.0.1", "--port", "\(server.port)"])
        #expect(text.stdout.contains("replica set steedos: this node is PRIMARY"))
        let wait = try await CLI.run(["wait", "--host", "127.0.0.1", "--port", "\(server.port)", "--json"])
        #expect(wait.exitCode == 0)
        #expect(wait.json?["outcome"] as? String == "ready")
        let uninitialized = try startDouble(.uninitialized(setName: "steedos"))
        defer { uninitialized.stop() }
        let notReady = try await CLI.run([
            "wait", "--host", "127.0.0.1", "--port", "\(uninitialized.port)", "--timeout", "3",
        ])
        #expect(notReady.exitCode == 7)
        #expect(uninitialized.acceptedInitiateCount == 0)
    }
}
