import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The authentication success path of the built binary against the double's SCRAM (§7): bootstrap and `tail` with
/// credentials from `--password-file`, from `RSINIT_PASSWORD_FILE`, and in the URI; a wrong password is exit 6.
@Suite struct AuthenticatedCLITests {
    /// Characters a URI must percent-encode, and a colon, so every way of passing the password is exercised.
    static let password = "p@ss:w/rd%"
    static let user = FakeMongodUser(name: "root", password: password)

    enum CredentialSource: String, CaseIterable, CustomTestStringConvertible {
        case passwordFileFlag, passwordFileEnvironment, uri
        var testDescription: String { rawValue }
    }

    /// A password file in a fresh directory (removed by the caller).
    static func passwordFile(_ content: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-auth-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("password")
        try (content + "\n").write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// The connection arguments and environment for `source`.
    static func connection(
        _ source: CredentialSource,
        port: UInt16,
        passwordFile: URL,
        password: String = password
    ) -> (arguments: [String], environment: [String: String]) {
        let host = ["--host", "127.0.0.1", "--port", "\(port)"]
        switch source {
        case .passwordFileFlag:
            return (host + ["--username", "root", "--password-file", passwordFile.path], [:])
        case .passwordFileEnvironment:
            return (host, ["RSINIT_USERNAME": "root", "RSINIT_PASSWORD_FILE": passwordFile.path])
        case .uri:
            let unreserved = CharacterSet(
                charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
            )
            let encoded = password.addingPercentEncoding(withAllowedCharacters: unreserved) ?? password
            return (["--uri", "mongodb://root:\(encoded)@127.0.0.1:\(port)/?authSource=admin"], [:])
        }
    }

    static func expectNoSecret(_ text: String) {
        for secret in ["p@ss", "p%40ss", "w/rd", "w%2Frd"] { #expect(!text.contains(secret), "\(secret) leaked") }
    }

    static func authDouble(_ scenario: FakeMongodConfiguration.Scenario) throws -> FakeMongod {
        try startDouble(scenario) {
            $0.auth = .required
            $0.users = [user]
        }
    }

    @Test(arguments: CredentialSource.allCases)
    func bootstrapAuthenticatesAndInitiates(_ source: CredentialSource) async throws {
        let server = try Self.authDouble(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        let file = try Self.passwordFile(Self.password)
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        let (arguments, environment) = Self.connection(source, port: server.port, passwordFile: file)
        let run = try await CLI.run(
            arguments + ["--allow-localhost-member", "--json", "--verbose", "--timeout", "30"],
            environment: environment
        )
        #expect(run.exitCode == 0, "\(run.stderr)")
        #expect(run.json?["outcome"] as? String == "ready")
        #expect(server.acceptedInitiateCount == 1)
        #expect(server.receivedCommandNames.contains("saslcontinue"))
        Self.expectNoSecret(run.stdout + run.stderr)
        // The verification path of a second start (23 → verify) authenticates too.
        let again = try await CLI.run(
            arguments + ["--allow-localhost-member", "--json", "--timeout", "30"],
            environment: environment
        )
        #expect(again.exitCode == 0, "\(again.stderr)")
        #expect(server.acceptedInitiateCount == 1)
        // The health check and the status report log in the same way.
        for command in ["wait", "status"] {
            let run = try await CLI.run(
                [command] + arguments + ["--json", "--timeout", "30"],
                environment: environment
            )
            #expect(run.exitCode == 0, "\(command): \(run.stderr)")
            Self.expectNoSecret(run.stdout + run.stderr)
        }
    }

    @Test(arguments: CredentialSource.allCases)
    func wrongPasswordExitsSix(_ source: CredentialSource) async throws {
        let server = try Self.authDouble(.primary(setName: "steedos"))
        defer { server.stop() }
        let file = try Self.passwordFile("p@ss:w/rd%-wrong")
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        let (arguments, environment) = Self.connection(
            source,
            port: server.port,
            passwordFile: file,
            password: "p@ss:w/rd%-wrong"
        )
        let run = try await CLI.run(
            arguments + ["--allow-localhost-member", "--timeout", "5", "--verbose"],
            environment: environment
        )
        #expect(run.exitCode == 6, "\(run.stderr)")
        #expect(run.stderr.contains("rsinit: error: "))
        #expect(run.stderr.contains("rsinit: fix: "))
        Self.expectNoSecret(run.stdout + run.stderr)
    }

    @Test(arguments: CredentialSource.allCases)
    func tailAuthenticatesAndStreams(_ source: CredentialSource) async throws {
        let mongo = try Self.authDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let file = try Self.passwordFile(Self.password)
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        let (arguments, environment) = Self.connection(source, port: mongo.port, passwordFile: file)
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess(
            arguments + ["--from", "\(from.seconds).\(from.increment)"],
            environment: environment
        )
        let writer = try MongoClient(
            uri: "mongodb://root:p%40ss%3Aw%2Frd%25@127.0.0.1:\(mongo.port)/?directConnection=true",
            logger: .init(label: "cli")
        )
        for id in 0..<3 {
            _ = try await writer.runCommand(
                ["insert": "Foo", "documents": [["_id": .string("id\(id)")]]],
                database: "tests"
            )
        }
        await writer.close()
        let deadline = ContinuousClock.now + .seconds(20)
        while tail.output.components(separatedBy: "\"message\"").count < 4 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0, "\(tail.errors)")
        let lines = tail.output.split(separator: "\n").filter { $0.contains("\"message\"") }
        #expect(lines.count == 3, "\(tail.output)\n\(tail.errors)")
        Self.expectNoSecret(tail.output + tail.errors)
    }

    @Test(arguments: CredentialSource.allCases)
    func tailWithAWrongPasswordExitsSix(_ source: CredentialSource) async throws {
        let mongo = try Self.authDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let file = try Self.passwordFile("p@ss:w/rd%-wrong")
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        let (arguments, environment) = Self.connection(
            source,
            port: mongo.port,
            passwordFile: file,
            password: "p@ss:w/rd%-wrong"
        )
        let tail = try TailProcess(arguments, environment: environment)
        #expect(try await tail.exitCode() == 6, "\(tail.errors)")
        #expect(tail.errors.contains("rsinit: fix: "))
        Self.expectNoSecret(tail.output + tail.errors)
    }
}

/// `mongod-double --auth user:password` (repeatable) from its command line, with the built `rsinit`.
@Suite struct MongodDoubleAuthFlagTests {
    static let binary = CLI.binary.deletingLastPathComponent().appendingPathComponent("mongod-double")

    /// Starts the binary on a free port; returns the process and the port it printed.
    static func launch(_ arguments: [String]) throws -> (Process, UInt16, Pipe) {
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--port", "0"] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = Pipe()
        try process.run()
        // A binary that never prints is stopped after 20 s, which ends the read below.
        let announced = Mutexed<Bool>(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 20) {
            if !announced.get() { kill(process.processIdentifier, SIGKILL) }
        }
        defer { announced.set(true) }
        // "mongod-double listening on 127.0.0.1:<port> (…)"
        var text = ""
        let handle = out.fileHandleForReading
        while !text.contains(" (") {
            let data = handle.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        let port = text.split(separator: ":").dropFirst().first.flatMap { UInt16($0.prefix { $0.isNumber }) } ?? 0
        return (process, port, out)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary.path), "mongod-double is not built"))
    func repeatedAuthFlagsAddUsersThatRsinitLogsInAs() async throws {
        let (process, port, _) = try await onDedicatedThread {
            let launched = try Self.launch([
                "--scenario", "uninitialized", "--auth", "other:x", "--auth", "root:\(AuthenticatedCLITests.password)",
            ])
            return (UncheckedBox(launched.0), launched.1, UncheckedBox(launched.2))
        }
        defer {
            // SIGKILL: the test process may ignore SIGTERM (swift-service-lifecycle), and children inherit that.
            kill(process.value.processIdentifier, SIGKILL)
            process.value.waitUntilExit()
        }
        try #require(port != 0)
        let file = try AuthenticatedCLITests.passwordFile(AuthenticatedCLITests.password)
        defer { try? FileManager.default.removeItem(at: file.deletingLastPathComponent()) }
        let host = ["--host", "127.0.0.1", "--port", "\(port)", "--allow-localhost-member", "--timeout", "30"]
        let ok = try await CLI.run(host + ["--username", "root", "--password-file", file.path])
        #expect(ok.exitCode == 0, "\(ok.stderr)")
        let wrong = try await CLI.run(host + ["--username", "other", "--password-file", file.path])
        #expect(wrong.exitCode == 6, "\(wrong.stderr)")
        let anonymous = try await CLI.run(["status"] + host)
        #expect(anonymous.exitCode == 6, "\(anonymous.stderr)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary.path), "mongod-double is not built"))
    func aMalformedAuthFlagIsAUsageError() async throws {
        let status = try await onDedicatedThread { () -> Int32 in
            let process = Process()
            process.executableURL = Self.binary
            process.arguments = ["--port", "0", "--auth", "no-colon"]
            process.standardOutput = Pipe()
            process.standardError = Pipe()
            try process.run()
            process.waitUntilExit()
            return process.terminationStatus
        }
        #expect(status == 64)
    }
}

/// Carries a non-Sendable value out of a dedicated thread (used once, by one task).
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
