import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

/// `rsinit status` and `rsinit wait` on the 3-member double: member health and the majority.
@Suite(.serialized) struct ReplicaSetCLITests {
    @Test func statusAndWaitReportMemberHealthAndTheMajority() async throws {
        let set = try FakeReplicaSet.start(periodicNoopInterval: .milliseconds(200))
        defer { set.stop() }
        let port = "\(set.members[0].port)"
        let host = ["--host", "127.0.0.1", "--port", port, "--set-name", "rs0"]
        let healthy = try await CLI.run(["status"] + host)
        #expect(healthy.exitCode == 0, "\(healthy.stderr)")
        let healthyOutput = healthy.stdout + healthy.stderr
        #expect(
            healthyOutput.contains("majority: 3 of 3 voting members healthy; a majority needs 2"),
            "\(healthyOutput)"
        )
        #expect(healthyOutput.contains("last majority-committed write:"))
        set.kill(1)
        set.kill(2)
        // Until the survivor stops counting the killed members healthy (its heartbeats), not a guessed time.
        var degradedOutput = ""
        _ = try await eventually(within: .seconds(20), every: .milliseconds(100)) {
            let degraded = try await CLI.run(["status"] + host)
            degradedOutput = degraded.stdout + degraded.stderr
            return degradedOutput.contains("NO MAJORITY")
        }
        #expect(degradedOutput.contains("(not reachable/healthy)"), "\(degradedOutput)")
        #expect(degradedOutput.contains("1 of 3 voting members healthy"), "\(degradedOutput)")
        #expect(degradedOutput.contains("NO MAJORITY"))
        set.restart(1)
        set.restart(2)
        let waited = try await CLI.run(["wait"] + host + ["--timeout", "20"])
        #expect(waited.exitCode == 0, "\(waited.stderr)")
        #expect((waited.stdout + waited.stderr).contains("voting members healthy"), "\(waited.stdout + waited.stderr)")
    }
}

/// `rsinit tail` (NDJSON) when a delivered, majority-committed entry vanishes: exit 11 with both lines.
@Suite(.serialized) struct TailMajorityCLITests {
    @Test func aVanishedCommittedEntryIsExitElevenWithTheFix() async throws {
        let set = try FakeReplicaSet.start(periodicNoopInterval: nil)
        defer { set.stop() }
        let start = try #require(set.majorityOpTime(0))
        let writer = try MongoClient(uri: set.uri, logger: Logger(label: "test"))
        _ = try await writer.runCommand(["insert": "c", "documents": [["_id": 1]]], database: "app")
        let keep = try #require(set.lastApplied(0))
        _ = try await writer.runCommand(["insert": "c", "documents": [["_id": 2]]], database: "app")
        await writer.close()
        let tail = try TailProcess(["--uri", set.uri, "--from", "\(start.ts.seconds).\(start.ts.increment)"])
        // Once the entry is delivered (on stdout), not after a guessed time.
        let delivered = await eventually(within: .seconds(20)) {
            tail.output.contains("\"_id\":2") || tail.output.contains("\"_id\": 2")
        }
        #expect(delivered, "\(tail.output)")
        set.loseHistory(after: keep)
        let exitCode = try await tail.exitCode(timeout: 30)
        #expect(exitCode == 11, "\(tail.errors)")
        #expect(tail.errors.contains("rsinit: error: the delivered, majority-committed oplog entry"))
        #expect(tail.errors.contains("rsinit: fix:"))
    }
}
