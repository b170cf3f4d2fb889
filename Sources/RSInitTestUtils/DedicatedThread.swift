import Foundation

/// Runs blocking or CPU-heavy test work on a new thread and awaits it, so it never occupies one of Swift's
/// cooperative threads (two on a 2-core machine: one busy test would stall every other test's awaits).
public func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Names the calling thread as the kernel sees it (`/proc/thread-self/comm`, at most 15 bytes), so profiles and the
/// benchmark's per-thread CPU tell the double's and the subscriber's threads from rsinit's. Foundation's
/// `Thread.current.name` on a detached thread did not always reach the kernel (`pthread_setname_np` is not imported
/// into Swift from glibc).
public func nameCurrentThread(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
