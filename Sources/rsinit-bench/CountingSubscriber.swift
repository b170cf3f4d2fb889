import Foundation
import RSInitTestUtils
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A `PSUBSCRIBE *` subscriber that keeps up with Redis at full speed: a raw socket on its own thread that counts
/// `pmessage` frames without decoding them. `redis-cli psubscribe` cannot keep up with a pipelined PUBLISH
/// benchmark, and Redis drops a pub/sub client whose output buffer passes its limit (32 MB by default) — which is
/// what silently happened to the subscriber of earlier versions of this benchmark.
final class CountingSubscriber: Sendable {
    private let fd: Int32
    private let count = Atomic<Int>(0)
    private let finished = Atomic<Bool>(false)

    init(port: UInt16) throws {
        guard let fd = connectLoopback(port: port) else { throw BenchError("cannot connect the subscriber to Redis") }
        self.fd = fd
        let command = Array("*2\r\n$10\r\nPSUBSCRIBE\r\n$1\r\n*\r\n".utf8)
        guard write(fd, command, command.count) == command.count else {
            throw BenchError("cannot send PSUBSCRIBE")
        }
        let thread = Thread { [self] in
            // Named so the report can tell its CPU apart from rsinit's (they share the process).
            nameCurrentThread(Self.threadName)
            readLoop()
        }
        thread.start()
    }

    static let threadName = "bench-sub"  // thread names are cut at 15 bytes

    /// Messages received so far.
    var messages: Int { count.load(ordering: .relaxed) }

    /// Whether Redis closed the connection (for instance for an overflowing output buffer).
    var disconnected: Bool { finished.load(ordering: .relaxed) }

    /// Waits until `total` messages arrived (or `timeout` passed); returns the count.
    func waitFor(_ total: Int, timeout: Duration = .seconds(30)) async -> Int {
        let deadline = ContinuousClock.now + timeout
        while messages < total, !disconnected, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return messages
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)) }

    private func readLoop() {
        // Counts "pmessage\r\n": its 'p' occurs once, so a match that fails restarts on 'p' only.
        let pattern = Array("pmessage\r\n".utf8)
        var matched = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            var found = 0
            for index in 0..<n {
                let byte = buffer[index]
                if byte == pattern[matched] {
                    matched += 1
                    if matched == pattern.count {
                        found += 1
                        matched = 0
                    }
                } else {
                    matched = byte == pattern[0] ? 1 : 0
                }
            }
            if found > 0 { count.add(found, ordering: .relaxed) }
        }
        finished.store(true, ordering: .relaxed)
        close(fd)
    }
}
