/// Waits for an event instead of sleeping for a guessed time: polls `condition` every `interval` until it holds
/// (true) or `timeout` has passed (false, so the test's own expectation names what did not happen).
public func eventually(
    within timeout: Duration = .seconds(20),
    every interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
}
