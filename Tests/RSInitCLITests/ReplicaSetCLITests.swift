import Foundation
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
        try await Task.sleep(for: .milliseconds(300))
        let degraded = try await CLI.run(["status"] + host)
        let degradedOutput = degraded.stdout + degraded.stderr
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
