import Foundation

/// Runs blocking or CPU-heavy test work on a new thread and awaits it, so it never occupies one of Swift's
/// cooperative threads (two on a 2-core machine: one busy test would stall every other test's awaits).
public func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
