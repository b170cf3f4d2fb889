import Foundation
import RSInitTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The README's first command, `scripts/demo.sh`, on the binaries this suite already built (no install, no build), so
/// the README cannot rot: bootstrap, bridge, the three writes and the six messages a subscriber receives, status.
@Suite(
    .enabled(
        if: RedisServerProcess.isAvailable && FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-cli"),
        "redis-server and redis-cli are not installed"
    )
)
struct DemoScriptTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct SpawnFailed: Error {
        let path: String
        let errno: Int32
    }

    /// posix_spawn with an empty signal mask and default dispositions (a Foundation.Process child inherits the test
    /// runner's blocked signals, so the script's SIGTERMs would never arrive), output to `path`, waited for at most
    /// 120 s; returns the exit status (-1 on timeout, after SIGKILL).
    static func runScript(_ arguments: [String], to path: String) throws -> Int32 {
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environment =
            ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("RSINIT_") }.map {
                strdup("\($0.key)=\($0.value)")
            }
            + [nil]
        defer { for pointer in environment { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environment)
        guard spawned == 0 else { throw SpawnFailed(path: arguments[0], errno: spawned) }
        let deadline = Date().addingTimeInterval(120)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                return -1
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    @Test func demoRunsTheMainJobEndToEnd() async throws {
        let script = Self.repository.appendingPathComponent("scripts/demo.sh").path
        let binaries = CLI.binary.deletingLastPathComponent().path
        let logFile = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: logFile) }
        let status = try await onDedicatedThread {
            try Self.runScript(
                ["/bin/bash", script, "--no-install", "--no-build", "--bin-path", binaries],
                to: logFile.path
            )
        }
        let output = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(output)")
        #expect(output.contains("rsinit: ready: replica set steedos, primary 127.0.0.1:"), "\(output)")
        let messages = output.split(separator: "\n").filter { $0.hasPrefix("message: ") }
        #expect(
            messages.map { String($0) } == [
                #"message: steedos.tasks  {"e":"i","d":{"_id":"task-1"},"f":["_id","title","done"]}"#,
                #"message: steedos.tasks::task-1  {"e":"i","d":{"_id":"task-1"},"f":["_id","title","done"]}"#,
                #"message: steedos.tasks  {"e":"u","d":{"_id":"task-1"},"f":["done"]}"#,
                #"message: steedos.tasks::task-1  {"e":"u","d":{"_id":"task-1"},"f":["done"]}"#,
                #"message: steedos.tasks  {"e":"r","d":{"_id":"task-1"},"f":[]}"#,
                #"message: steedos.tasks::task-1  {"e":"r","d":{"_id":"task-1"},"f":[]}"#,
            ],
            "\(output)"
        )
        #expect(output.contains("writable primary: yes"))
        #expect(output.contains("ok      probe: marker write → message on rsinit_doctor.probe::"), "\(output)")
        #expect(output.contains("==> demo complete: 3 writes, 6 messages received"))
        for marker in ["Fatal error", "Stack dump", "demo: error"] { #expect(!output.contains(marker)) }
    }
}
