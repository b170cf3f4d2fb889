import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A running `rsinit tail` process; output goes to files so a long run never blocks on a pipe.
final class TailProcess: @unchecked Sendable {
    let process = Process()
    let stdout: URL
    let stderr: URL

    init(_ arguments: [String]) throws {
        let directory = FileManager.default.temporaryDirectory
        stdout = directory.appendingPathComponent("rsinit-tail-\(UUID().uuidString).out")
        stderr = directory.appendingPathComponent("rsinit-tail-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.executableURL = CLI.binary
        process.arguments = ["tail"] + arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("RSINIT_") }
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits (off the cooperative pool) for the exit status; 128 + n when killed by signal n, -1 on timeout.
    func exitCode(timeout: TimeInterval = 20) async throws -> Int32 {
        let process = self.process
        return try await onDedicatedThread {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                return -1
            }
            let status = process.terminationStatus
            return process.terminationReason == .uncaughtSignal ? 128 + status : status
        }
    }

    var output: String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }
}

/// Polls the stored checkpoint until it equals `expected` (or the timeout passes); returns the last value seen.
func waitForCheckpoint(
    _ connection: RedisConnection,
    _ expected: BSONTimestamp,
    timeout: Duration = .seconds(15)
) async throws
    -> UInt64?
{
    let deadline = ContinuousClock.now + timeout
    var value: UInt64?
    repeat {
        value = try await connection.command(["GET", "rsinit::checkpoint"]).string.flatMap { UInt64($0) }
        if value == expected.rawValue { return value }
        try await Task.sleep(for: .milliseconds(20))
    } while ContinuousClock.now < deadline
    return value
}

func insertMany(_ mongo: FakeMongod, _ ids: Range<Int>) async throws {
    let client = try MongoClient(uri: mongo.uri, logger: .init(label: "cli"))
    for id in ids {
        _ = try await client.runCommand(
            ["insert": "Foo", "documents": [["_id": .string("id\(id)")]]],
            database: "tests"
        )
    }
    await client.close()
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct TailCLITests {
    @Test func ndjsonOnStdoutAndSigtermExitsZero() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let tail = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(from.seconds).\(from.increment)",
        ])
        try await insertMany(mongo, 0..<3)
        let deadline = ContinuousClock.now + .seconds(15)
        while tail.output.components(separatedBy: "\"message\"").count < 4 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        let lines = tail.output.split(separator: "\n").filter { $0.contains("\"message\"") }
        #expect(lines.count == 3, "\(tail.output)")
        #expect(lines.first?.contains(#""channels":["tests.Foo","tests.Foo::id0"]"#) == true)
        #expect(lines.first?.contains(#""message":{"e":"i","d":{"_id":"id0"},"f":["_id"]}"#) == true)
    }

    @Test func sigtermWritesTheCheckpointAndKillNineLosesNothing() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let from = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        let first = try TailProcess(
            [
                "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--from",
                "\(from.seconds).\(from.increment)",
            ])
        try await insertMany(mongo, 0..<20)
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
        #expect(try await waitForCheckpoint(connection, mongo.lastOplogTimestamp) == mongo.lastOplogTimestamp.rawValue)
        first.signal(SIGTERM)
        #expect(try await first.exitCode() == 0, "\(first.errors)")
        let stored = try await connection.command(["GET", "rsinit::checkpoint"]).string
        #expect(stored.flatMap { UInt64($0) } == mongo.lastOplogTimestamp.rawValue)
        // Written while no bridge runs, then a bridge killed with -9 mid-stream: the next one resumes.
        try await insertMany(mongo, 20..<40)
        let second = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(), "--from", "checkpoint",
        ])
        try await Task.sleep(for: .milliseconds(600))
        second.signal(SIGKILL)
        _ = try await second.exitCode()
        try await insertMany(mongo, 40..<50)
        let third = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url()])
        // The restarted bridge resumes from the checkpoint and reaches the end of the oplog.
        #expect(try await waitForCheckpoint(connection, mongo.lastOplogTimestamp) == mongo.lastOplogTimestamp.rawValue)
        third.signal(SIGINT)
        #expect(try await third.exitCode() == 0)
        await connection.close()
    }

    @Test func sigtermWhileMongodIsUnreachableStillExitsPromptly() async throws {
        let tail = try TailProcess(["--host", "127.0.0.1", "--port", "1"])  // nothing listens on port 1
        try await Task.sleep(for: .milliseconds(1500))  // in the re-establish backoff by now
        let signalled = ContinuousClock.now
        tail.signal(SIGTERM)
        #expect(try await tail.exitCode() == 0)
        #expect(ContinuousClock.now - signalled < .seconds(5))  // ~70 ms alone; generous under the full suite
        #expect(tail.errors.contains("oplog cursor lost"))  // the operator was told
    }

    @Test func exitCodesForHistoryLossBadURLsAndWrongPasswords() async throws {
        let mongo = try startDouble(.primary(setName: "rs0"))
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch(["--requirepass", "s3cret"])
        let stale = mongo.lastOplogTimestamp
        try await insertMany(mongo, 0..<5)
        mongo.truncateOplog(keepingLast: 2)
        let lost = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--from", "\(stale.seconds).\(stale.increment)",
        ])
        #expect(try await lost.exitCode() == 9)
        #expect(lost.errors.contains("oplog history lost"))
        let badURL = try TailProcess(["--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", "http://cache"])
        #expect(try await badURL.exitCode() == 2)
        let wrong = try TailProcess([
            "--host", "127.0.0.1", "--port", "\(mongo.port)", "--redis", redis.url(password: "hunter2"),
        ])
        #expect(try await wrong.exitCode() == 6)
        #expect(!wrong.errors.contains("hunter2"))
        #expect(wrong.errors.contains(":***@"))
    }
}
