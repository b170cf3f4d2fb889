import Foundation
import RSInitTestUtils
import Testing

/// The 60-second run of `rsinit-bench chaos` (issue 17): the built `rsinit tail` binaries under a seeded mix of
/// Redis, network, bridge and mongod faults, with a subscriber checking every event. The seed is fixed (a known
/// passing schedule, so the suite is deterministic in what it injects); `RSINIT_CHAOS_SEED` runs another one. In
/// HA mode the order of first appearances is not checked across a forced oplog roll-over (each HA bridge restarts
/// at its own end; history loss may skip events and is counted): a known limit, notes/issue-17.md.
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct ChaosSoakTests {
    /// A schedule of every fault kind, two roll-overs included, that passes (notes/issue-17.md, "seed 2").
    static let seed: UInt64 = 2

    @Test func sixtySecondsOfFaultsLoseAndReorderNothing() async throws {
        let bench = CLI.binary.deletingLastPathComponent().appendingPathComponent("rsinit-bench")
        try #require(FileManager.default.isExecutableFile(atPath: bench.path), "build rsinit-bench first")
        let seed =
            ProcessInfo.processInfo.environment["RSINIT_CHAOS_SEED"].flatMap { UInt64($0) }
            ?? Self.seed
        let arguments = ["--rsinit", CLI.binary.path, "--seconds", "60", "--seed", "\(seed)", "chaos"]
        let (status, output) = try await onDedicatedThread {
            let process = Process()
            process.executableURL = bench
            process.arguments = arguments
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("RSINIT_") }
            environment["NO_COLOR"] = "1"
            process.environment = environment
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        print(output)
        #expect(status == 0, "chaos seed \(seed) found violations:\n\(output)")
        #expect(output.contains("violations: 0"))
        #expect(output.contains("events written: "))
    }
}
