import Foundation
import RSInitTestUtils
import Testing

/// Bad input through the built binary, as a user meets it: every case must end within 10 s (not a retry loop) with
/// its documented exit code, `rsinit: error:` and `rsinit: fix:` on stderr, no backtrace, and never the secret
/// token that every URI, URL and password file of the table carries.
enum BadInput {
    /// The distinctive secret: in every password, URI, URL and secret file below.
    static let token = "Tk9x-5ecr3t-QZ7w"

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var arguments: [String]
        var environment: [String: String] = [:]
        var exitCode: Int32 = 2
        /// Text stderr must contain (the cause named), if any.
        var mentions: String?

        var testDescription: String { name }
    }

    /// Files the cases point at: a secret (the token), an empty file, a directory, a missing path.
    struct Files: Sendable {
        let directory: String
        let secret: String
        let empty: String
        let missing: String
    }

    static let files: Files = {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("rsinit-bad-input-\(ProcessInfo.processInfo.processIdentifier)").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let secret = directory + "/secret"
        let empty = directory + "/empty"
        _ = FileManager.default.createFile(atPath: secret, contents: Data("\(token)\n".utf8))
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        return Files(directory: directory, secret: secret, empty: empty, missing: directory + "/missing")
    }()

    static let mongoURI = "mongodb://root:\(token)@127.0.0.1:1/"
    static let redisURL = "redis://:\(token)@127.0.0.1:1"

    static func c(
        _ name: String,
        _ arguments: [String],
        env: [String: String] = [:],
        exit: Int32 = 2,
        mentions: String? = nil
    ) -> Case {
        Case(name: name, arguments: arguments, environment: env, exitCode: exit, mentions: mentions)
    }

    /// The connection part every tail case needs to get past "no mongod given" (nothing listens on port 1; a
    /// valid configuration would retry, so a case that passes validation fails the 10 s bound).
    static let tail = ["tail", "--uri", mongoURI]

    static var cases: [Case] {
        let f = files
        var all: [Case] = []
        // A secret mounted at a variable whose value is shown in messages: named, never echoed.
        all.append(c("RSINIT_HTTP_FILE=<secret>", ["tail", "--host", "h"], env: ["RSINIT_HTTP_FILE": f.secret]))
        // Durations: flags of every command and their variables.
        let badDurations = [
            "1e16", "1e300", "99999999999999999999", "nan", "inf", "-5", "0", "", "5x", "10 s", "0x10", "1.5.5s", "s",
            "8d", "-inf", "1_000",
        ]
        for value in badDurations {
            all.append(c("--timeout \(value)", ["--uri", mongoURI, "--timeout", value], mentions: "--timeout"))
        }
        for command in ["status", "wait"] {
            for value in ["1e16", "-1", "abc"] {
                all.append(c("\(command) --timeout \(value)", [command, "--uri", mongoURI, "--timeout", value]))
            }
        }
        for value in ["1e300", "0", "-3s", "12parsecs"] {
            all.append(
                c("tail --stall-timeout \(value)", tail + ["--stall-timeout", value], mentions: "--stall-timeout")
            )
            all.append(c("tail --max-lag \(value)", tail + ["--max-lag", value], mentions: "--max-lag"))
        }
        for value in ["1e16", "NaN", "99999999999999999999", "-1", "2 m"] {
            all.append(
                c(
                    "RSINIT_TIMEOUT=\(value)",
                    ["--uri", mongoURI],
                    env: ["RSINIT_TIMEOUT": value],
                    mentions: "RSINIT_TIMEOUT"
                )
            )
        }
        all.append(
            c("RSINIT_STALL_TIMEOUT=inf", tail, env: ["RSINIT_STALL_TIMEOUT": "inf"], mentions: "RSINIT_STALL_TIMEOUT")
        )
        all.append(c("RSINIT_MAX_LAG=-5", tail, env: ["RSINIT_MAX_LAG": "-5"], mentions: "RSINIT_MAX_LAG"))
        // A secret file mounted at the wrong variable: named, never echoed.
        all.append(
            c(
                "RSINIT_TIMEOUT_FILE=<secret>",
                ["--uri", mongoURI],
                env: ["RSINIT_TIMEOUT_FILE": f.secret],
                mentions: "RSINIT_TIMEOUT_FILE"
            )
        )
        all.append(
            c(
                "RSINIT_PORT_FILE=<secret>",
                ["--host", "mongodb"],
                env: ["RSINIT_PORT_FILE": f.secret],
                mentions: "RSINIT_PORT_FILE"
            )
        )
        // Ports.
        for value in ["0", "65536", "-1", "abc", "99999999999999999999", "", " 80", "+80", "80.5"] {
            all.append(c("--port \(value)", ["--host", "mongodb", "--port", value], mentions: "--port"))
        }
        all.append(c("RSINIT_PORT=abc", ["--host", "mongodb"], env: ["RSINIT_PORT": "abc"], mentions: "RSINIT_PORT"))
        all.append(c("tail RSINIT_PORT=70000", ["tail", "--host", "mongodb"], env: ["RSINIT_PORT": "70000"]))
        // Booleans.
        all.append(c("RSINIT_HA=maybe", tail, env: ["RSINIT_HA": "maybe"], mentions: "RSINIT_HA"))
        all.append(c("RSINIT_JSON=2", ["--uri", mongoURI], env: ["RSINIT_JSON": "2"], mentions: "RSINIT_JSON"))
        all.append(c("RSINIT_QUIET=yesplease", ["status"], env: ["RSINIT_QUIET": "yesplease"]))
        // Files.
        all.append(c("RSINIT_URI_FILE missing", [], env: ["RSINIT_URI_FILE": f.missing], mentions: "RSINIT_URI_FILE"))
        all.append(c("RSINIT_URI_FILE directory", ["wait"], env: ["RSINIT_URI_FILE": f.directory]))
        all.append(c("RSINIT_REDIS_FILE missing", tail, env: ["RSINIT_REDIS_FILE": f.missing]))
        all.append(c("RSINIT_URI and _FILE", [], env: ["RSINIT_URI": mongoURI, "RSINIT_URI_FILE": f.secret]))
        all.append(
            c(
                "--password-file missing",
                ["--host", "mongodb", "--username", "root", "--password-file", f.missing],
                mentions: "--password-file"
            )
        )
        all.append(
            c(
                "--password-file empty",
                ["--host", "mongodb", "--username", "root", "--password-file", f.empty],
                mentions: "empty"
            )
        )
        all.append(
            c(
                "--password-file directory",
                ["status", "--host", "mongodb", "--username", "root", "--password-file", f.directory]
            )
        )
        all.append(c("--password-file without --username", ["--host", "mongodb", "--password-file", f.secret]))
        all.append(c("--username without --password-file", ["wait", "--host", "mongodb", "--username", "root"]))
        all.append(c("--username with --uri", ["--uri", mongoURI, "--username", "root", "--password-file", f.secret]))
        // MongoDB URIs, through every command.
        let badURIs: [(String, String)] = [
            ("no scheme", "root:\(token)@mongodb:27017"),
            ("no host", "mongodb://root:\(token)@"),
            ("unknown authMechanism", "mongodb://root:\(token)@127.0.0.1:1/?authMechanism=BOGUS"),
            ("unsupported option", "mongodb://root:\(token)@127.0.0.1:1/?foo=bar"),
            ("missing tlsCAFile", "mongodb://root:\(token)@127.0.0.1:1/?tls=true&tlsCAFile=\(f.missing)"),
            ("malformed IPv6", "mongodb://root:\(token)@[zz::1]:27017/"),
            ("port out of range", "mongodb://root:\(token)@127.0.0.1:99999/"),
            ("http scheme", "http://root:\(token)@127.0.0.1/"),
            (
                "secret mechanism properties",
                "mongodb://root@127.0.0.1:1/?authMechanism=BOGUS&authMechanismProperties=SERVICE_NAME:\(token)"
            ),
            ("unsupported compressor", "mongodb://root:\(token)@127.0.0.1:1/?compressors=bogus"),
            (
                "key password, missing key file",
                "mongodb://root@127.0.0.1:1/?tls=true&tlsCertificateKeyFile=\(f.missing)&tlsCertificateKeyFilePassword=\(token)"
            ),
        ]
        for (index, (name, uri)) in badURIs.enumerated() {
            let command = ["", "status", "wait", "tail"][index % 4]
            all.append(
                c(
                    "\(command.isEmpty ? "bootstrap" : command) --uri (\(name))",
                    (command.isEmpty ? [] : [command]) + ["--uri", uri]
                )
            )
        }
        all.append(c("RSINIT_URI no scheme", ["status"], env: ["RSINIT_URI": "root:\(token)@mongodb:27017"]))
        all.append(
            c(
                "RSINIT_URI_FILE no scheme",
                ["tail"],
                env: ["RSINIT_URI_FILE": writeSecretFile("uri", "root:\(token)@mongodb:27017")]
            )
        )
        // Hosts and members.
        for (name, host) in [
            ("credentials in --host", "root:\(token)@mongodb"), ("space", "mongo db"), ("open bracket", "[zz::1"),
            ("port 0", "mongodb:0"), ("port 99999", "mongodb:99999"), ("empty", ""), ("two colons", "a:b:c"),
            ("signed port", "mongodb:+80"),
        ] {
            all.append(c("--host \(name)", ["--host", host], mentions: name == "empty" ? nil : "--host"))
        }
        all.append(c("no mongod given", []))
        all.append(c("tail: no mongod given", ["tail"]))
        all.append(
            c("--member-host port 0", ["--host", "mongodb", "--member-host", "mongodb:0"], mentions: "--member-host")
        )
        all.append(c("--members empty item", ["--host", "mongodb", "--members", "a:1,,b:2"], mentions: "--members"))
        all.append(c("--members only a comma", ["--host", "mongodb", "--members", ","]))
        all.append(c("--members and --member-host", ["--host", "mongodb", "--members", "a:1", "--member-host", "a:1"]))
        all.append(c("--set-name empty", ["--host", "mongodb", "--set-name", ""], mentions: "--set-name"))
        all.append(c("--set-name with a slash", ["wait", "--host", "mongodb", "--set-name", "a/b"]))
        // Redis URLs.
        let badRedis: [(String, String)] = [
            ("malformed IPv6", "redis://:\(token)@[zz::1]:6379"),
            ("IPv6 without brackets", "redis://:\(token)@::1:6379"),
            ("DB index 99999999999", "redis://:\(token)@127.0.0.1/99999999999"),
            ("DB index -1", "redis://:\(token)@127.0.0.1/-1"),
            ("DB index abc", "redis://:\(token)@127.0.0.1/abc"),
            ("port 0", "redis://:\(token)@127.0.0.1:0"),
            ("port 99999", "redis://:\(token)@127.0.0.1:99999"),
            ("no host", "redis://:\(token)@"),
            ("http scheme", "http://:\(token)@127.0.0.1"),
            ("no scheme", "\(token)@127.0.0.1:6379"),
            ("TLS option on redis://", "redis://:\(token)@127.0.0.1/?ca=\(f.secret)"),
            ("verify=maybe", "rediss://:\(token)@127.0.0.1/?verify=maybe"),
            ("missing ca file", "rediss://:\(token)@127.0.0.1/?ca=\(f.missing)"),
            ("cert without key", "rediss://:\(token)@127.0.0.1/?cert=\(f.secret)"),
            ("unknown option", "rediss://:\(token)@127.0.0.1/?bogus=1"),
            ("malformed escape", "redis://:\(token)%ZZ@127.0.0.1"),
            ("space in host", "redis://user:\(token)@cache host"),
            ("empty ca", "rediss://:\(token)@127.0.0.1/?ca="),
        ]
        for (name, url) in badRedis {
            all.append(c("tail --redis (\(name))", tail + ["--redis", url], mentions: "Redis URL"))
        }
        all.append(c("RSINIT_REDIS (DB index)", tail, env: ["RSINIT_REDIS": "redis://:\(token)@127.0.0.1/99999999999"]))
        // Tail options.
        for (flag, value) in [
            ("--include", ",,,"), ("--include", "a,,b"), ("--exclude", ","), ("--include", "a b"),
            ("--include", ".coll"),
            ("--exclude", "db."), ("--fan-out", "bogus"), ("--fan-out", "a=weird:x"), ("--fan-out", "a=namespace:"),
            ("--fan-out", ","), ("--control-channel", ""), ("--from", "garbage"), ("--from", "1.2.3"), ("--from", ""),
            ("--from", "-1.0"), ("--http", "nope"), ("--http", ":0"), ("--http", ":99999"), ("--http", "[zz::1]:9121"),
            ("--http", "a:b:9121"), ("--http", "root:\(token)@0.0.0.0:9121"), ("--fields", "bogus"),
            ("--on-history-lost", "bogus"),
        ] {
            all.append(c("tail \(flag) \(value)", tail + [flag, value], mentions: flag))
        }
        all.append(c("RSINIT_INCLUDE=,", tail, env: ["RSINIT_INCLUDE": ","], mentions: "--include"))
        all.append(c("--ha without --redis", tail + ["--ha"], mentions: "--ha"))
        // The argument parser's own errors.
        for command in ["", "status", "wait", "tail"] {
            all.append(
                c(
                    "\(command.isEmpty ? "bootstrap" : command) --bogus",
                    (command.isEmpty ? [] : [command]) + ["--bogus"]
                )
            )
        }
        all.append(c("missing value", ["--uri"]))
        all.append(c("unknown subcommand", ["bogus", "--uri", mongoURI]))
        all.append(c("--json with a bad URI", ["--json", "--uri", "root:\(token)@mongodb:27017"]))
        return all
    }

    static let slots = Slots(3)

    /// At most `count` bodies at once (FIFO).
    actor Slots {
        private var free: Int
        private var waiting: [CheckedContinuation<Void, Never>] = []

        init(_ count: Int) { free = count }

        func withSlot<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
            if free > 0 {
                free -= 1
            } else {
                await withCheckedContinuation { waiting.append($0) }
            }
            defer {
                if waiting.isEmpty { free += 1 } else { waiting.removeFirst().resume() }
            }
            return try await body()
        }
    }

    static func writeSecretFile(_ name: String, _ contents: String) -> String {
        let path = files.directory + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data((contents + "\n").utf8))
        return path
    }

    /// The checks every case gets.
    static func check(_ run: CLIRun, elapsed: Duration, _ expected: Case) {
        #expect(elapsed < .seconds(10), "took \(elapsed): a retry loop instead of an error? \(run.stderr)")
        #expect(run.exitCode == expected.exitCode, "stderr: \(run.stderr)")
        #expect(run.stderr.contains("rsinit: error: "), "stderr: \(run.stderr)")
        #expect(run.stderr.contains("rsinit: fix: "), "stderr: \(run.stderr)")
        if let mentions = expected.mentions { #expect(run.stderr.contains(mentions), "stderr: \(run.stderr)") }
        expectNoCrashOutput(run)
        for output in [run.stderr, run.stdout] {
            #expect(!output.contains(token), "the secret was echoed: \(output)")
            #expect(!output.contains("5ecr3t"), "part of the secret was echoed: \(output)")
        }
    }
}

@Suite struct BadInputTests {
    @Test func theTableCoversEveryCommandWithEnoughCases() {
        let cases = BadInput.cases
        #expect(cases.count >= 80)
        #expect(Set(cases.map(\.name)).count == cases.count, "case names are unique")
        for command in ["status", "wait", "tail"] {
            #expect(cases.contains { $0.arguments.first == command }, "no case for \(command)")
        }
    }

    @Test(arguments: BadInput.cases)
    func badInputIsAClearErrorWithoutTheSecret(_ input: BadInput.Case) async throws {
        // Parallel, but a few processes at a time: 140 debug binaries starting at once on two cores would measure
        // the machine's load, not rsinit.
        try await BadInput.slots.withSlot {
            let started = ContinuousClock.now
            let run = try await CLI.run(input.arguments, environment: input.environment, timeout: 12)
            BadInput.check(run, elapsed: ContinuousClock.now - started, input)
        }
    }

    /// Cases a server must answer: wrong or missing Redis credentials (6) and a database the server does not have
    /// (2, not a retry loop).
    @Test func redisRefusalsEndTheRunWithTheirExitCode() async throws {
        let redis = try await RedisServerProcess.launch(["--requirepass", BadInput.token + "-right"])
        let port = redis.port
        let cases: [BadInput.Case] = [
            BadInput.c(
                "wrong password",
                BadInput.tail + ["--redis", "redis://:\(BadInput.token)@127.0.0.1:\(port)"],
                exit: 6
            ),
            BadInput.c("no password", BadInput.tail + ["--redis", "redis://127.0.0.1:\(port)"], exit: 6),
            BadInput.c(
                "DB index out of range",
                BadInput.tail + ["--redis", "redis://:\(BadInput.token)-right@127.0.0.1:\(port)/99"],
                exit: 2,
                mentions: "out of range"
            ),
            BadInput.c(
                "wrong password, HA",
                BadInput.tail + ["--ha", "--redis", "redis://:\(BadInput.token)@127.0.0.1:\(port)"],
                exit: 6
            ),
        ]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for input in cases {
                group.addTask {
                    let started = ContinuousClock.now
                    let run = try await CLI.run(input.arguments, environment: input.environment, timeout: 12)
                    BadInput.check(run, elapsed: ContinuousClock.now - started, input)
                }
            }
            try await group.waitForAll()
        }
    }
}

@Suite struct RedisTLSWarningTests {
    @Test func verifyNoneWarnsOnceAtStart() async throws {
        let tail = try TailProcess([
            "--uri", "mongodb://127.0.0.1:1/", "--redis", "rediss://:\(BadInput.token)@127.0.0.1:1/?verify=none",
        ])
        let deadline = ContinuousClock.now + .seconds(15)
        while !tail.errors.contains("reading the checkpoint failed"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        // A retry or two after the first failure: the warning must not repeat with them (a negative check).
        try await Task.sleep(for: .milliseconds(300))
        tail.signal(SIGTERM)
        _ = try await tail.exitCode()
        let errors = tail.errors
        #expect(errors.components(separatedBy: "certificate is not checked").count == 2, "\(errors)")
        #expect(errors.contains("rsinit: warning: --redis has verify=none"))
        #expect(!errors.contains(BadInput.token))
    }
}
