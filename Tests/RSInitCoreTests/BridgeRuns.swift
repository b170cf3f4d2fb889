import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient

/// One bridge "process" of a test: starts `bridge.run()`, runs `body` (the writes and waits of that process), then
/// stops the bridge, waits for its run to end (rethrowing what the run threw) and closes its publisher. A restart
/// test is two of these with the writes made while no bridge runs between them.
@discardableResult
func whileRunning<Result>(
    _ made: (OplogBridge, RedisEventPublisher),
    _ body: (OplogBridge) async throws -> Result
) async throws -> Result {
    let (bridge, publisher) = made
    let running = Task { try await bridge.run() }
    let result: Result
    do {
        result = try await body(bridge)
    } catch {
        bridge.stop()
        _ = try? await running.value
        await publisher.close()
        throw error
    }
    bridge.stop()
    try await running.value
    await publisher.close()
    return result
}

/// Stores `value` as the checkpoint (`rsinit::checkpoint`), as an earlier bridge would have.
func storeCheckpoint(_ value: String, in redis: RedisServerProcess) async throws {
    let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
    _ = try await connection.command(["SET", "rsinit::checkpoint", value])
    await connection.close()
}

/// The stored checkpoint's value as the bridge wrote it (nil: none).
func storedCheckpoint(in redis: RedisServerProcess) async throws -> String? {
    let connection = try await RedisConnection.connect(try RedisURL(redis.url()))
    let value = try await connection.command(["GET", "rsinit::checkpoint"]).string
    await connection.close()
    return value
}

extension Subscriber {
    /// Everything published before now (a barrier proves it arrived); then stops listening.
    func finish() async throws -> [(String, String)] {
        try await barrier()
        stop()
        return received
    }
}
