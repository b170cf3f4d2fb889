import Foundation
import RSInitTestUtils
import Testing

/// `rsinit status` on a PSA double: the arbiter counts for the election majority, not for majority writes.
@Suite(.serialized) struct ReplicaSetArbiterCLITests {
    @Test func statusCountsTheArbiterForElectionsOnly() async throws {
        let set = try FakeReplicaSet.start(periodicNoopInterval: .milliseconds(200), arbiters: [2])
        defer { set.stop() }
        let host = ["--host", "127.0.0.1", "--port", "\(set.members[0].port)", "--set-name", "rs0"]
        try await Task.sleep(for: .milliseconds(200))
        let healthy = try await CLI.run(["status"] + host)
        let healthyOutput = healthy.stdout + healthy.stderr
        #expect(healthy.exitCode == 0, "\(healthyOutput)")
        #expect(healthyOutput.contains("ARBITER"), "\(healthyOutput)")
        #expect(
            healthyOutput.contains(
                "majority: 3 of 3 voting members healthy; a majority needs 2 (1 arbiter); 2 of 2 data-bearing voters "
                    + "healthy, majority writes need 2"
            ),
            "\(healthyOutput)"
        )
        set.kill(1)
        try await Task.sleep(for: .milliseconds(300))
        let degraded = try await CLI.run(["status"] + host)
        let degradedOutput = degraded.stdout + degraded.stderr
        #expect(degradedOutput.contains("2 of 3 voting members healthy"), "\(degradedOutput)")
        #expect(degradedOutput.contains("1 of 2 data-bearing voters healthy"), "\(degradedOutput)")
        #expect(degradedOutput.contains("NO WRITE MAJORITY"), "\(degradedOutput)")
    }
}
