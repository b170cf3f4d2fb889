import BSON
import Dispatch
import Foundation
import MongoCWrapper
import RedisClient
import Synchronization
import Testing

@testable import RSInitCore

#if canImport(Glibc)
import Glibc
#endif

/// Blocking I/O never runs on Swift's cooperative pool (2 threads on a 2-core machine): a stalled stdout or a
/// slow file must not keep other tasks (the health endpoint, signal handling, the tail) from running.
@Suite struct CooperativePoolTests {
    /// One NDJSON batch larger than a pipe's buffer (64 KiB): its write blocks until the reader drains the pipe.
    static func largeBatch() -> OplogBatch {
        var mapper = OplogEventMapper(configuration: .init(), startPosition: nil)
        var events: [ChangeEvent] = []
        let padding = String(repeating: "x", count: 200)
        for n in 1...1_000 {
            let entry: BSONDocument = [
                "ts": .timestamp(BSONTimestamp(seconds: 1, increment: UInt32(n))), "op": "i", "ns": "app.c",
                "o": ["_id": .string("id\(n)"), "pad": .string(padding)],
            ]
            _ = mapper.map(entry, into: &events)
        }
        return OplogBatch(
            events: events,
            resumePosition: mapper.resumePosition,
            lastRead: mapper.lastRead,
            entriesRead: events.count,
            unexpressed: []
        )
    }

    /// Stdout is a pipe nobody reads (a paused `rsinit tail | less`): eight publishers, more than the pool has
    /// threads, each blocked writing a batch the pipe cannot hold. A task started afterwards still runs — and
    /// finishes while every write is still blocked — because the writes wait on the publishers' own queues. On the
    /// cooperative pool the probe could not start before a reader drained the pipes.
    @Test func aStalledStdoutPipeDoesNotOccupyTheCooperativePool() async throws {
        let batch = Self.largeBatch()
        let pipes: [(read: Int32, write: Int32)] = try (0..<8).map { _ in
            var fds: [Int32] = [0, 0]
            try #require(pipe(&fds) == 0)
            return (fds[0], fds[1])
        }
        defer { for p in pipes { close(p.read) } }
        let finished = Counter()
        // Drains every pipe once the probe ran — or after 20 s, so that on a blocked pool the test ends (and fails)
        // instead of hanging. A plain thread: it must not need the pool.
        let probeRan = DispatchSemaphore(value: 0)
        let drained = Mutex<[Int]>(Array(repeating: 0, count: pipes.count))
        let drainers = DispatchGroup()
        for _ in pipes { drainers.enter() }
        Thread.detachNewThread {
            _ = probeRan.wait(timeout: .now() + 20)
            for (index, p) in pipes.enumerated() {
                Thread.detachNewThread {
                    var buffer = [UInt8](repeating: 0, count: 65_536)
                    while true {
                        let count = buffer.withUnsafeMutableBytes { read(p.read, $0.baseAddress, $0.count) }
                        if count <= 0 { break }
                        drained.withLock { $0[index] += count }
                    }
                    drainers.leave()
                }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in pipes {
                group.addTask {
                    let publisher = NDJSONPublisher(channelPrefix: "", descriptor: p.write)
                    let receipt = try await publisher.publish(batch)
                    #expect(receipt.published == 1_000)
                    finished.increment()
                    close(p.write)
                }
            }
            // A fresh task gets a thread while all eight writes are stalled.
            let writesDoneWhenProbed = await Task.detached {
                finished.value
            }.value
            probeRan.signal()
            #expect(
                writesDoneWhenProbed == 0,
                "the probe ran only after \(writesDoneWhenProbed) writes finished: the stalled writes held the pool"
            )
            try await group.waitForAll()
        }
        #expect(finished.value == 8)
        // The readers see end-of-file once each publisher closed its write end.
        await withCheckedContinuation { done in drainers.notify(queue: .global()) { done.resume() } }
        #expect(drained.withLock { $0.allSatisfy { $0 > 65_536 } }, "each batch, more than a pipe holds, was written")
    }

    /// The PEM files of a `rediss://` URL are read at every connect (so renewed certificates are picked up), as
    /// blocking file I/O off the cooperative pool. Here each CA file is a FIFO nobody writes to (a hung network
    /// file system): eight connects, more than the pool has threads, are blocked opening it, and a task started
    /// afterwards still runs while all of them are. Then the FIFOs deliver garbage and every connect fails with a
    /// clear TLS error.
    @Test func aHungPEMFileDoesNotOccupyTheCooperativePool() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-pem-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fifos = try (0..<8).map { index in
            let path = "\(directory)/ca\(index).pem"
            try #require(mkfifo(path, 0o600) == 0)
            return path
        }
        let connectsEnded = Counter()
        let probeRan = DispatchSemaphore(value: 0)
        // Feeds every FIFO once the probe ran, or after 20 s (so a blocked pool ends the test instead of hanging).
        // The reads run on NIO's small thread pool, a few at a time and in no fixed order, so a FIFO is fed only
        // once somebody has it open (a non-blocking open fails with ENXIO until then): a blocking open of a FIFO
        // whose read has not started would wait forever while the pool's threads wait on the others.
        Thread.detachNewThread {
            _ = probeRan.wait(timeout: .now() + 20)
            var unfed = Set(fifos)
            let deadline = Date().addingTimeInterval(120)
            while !unfed.isEmpty, Date() < deadline {
                for path in unfed {
                    let fd = open(path, O_WRONLY | O_NONBLOCK)
                    guard fd >= 0 else { continue }
                    writeAll("not a certificate\n", to: fd)
                    close(fd)
                    unfed.remove(path)
                }
                usleep(5_000)
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for path in fifos {
                group.addTask {
                    // Port 1: nothing listens; the connect never gets that far while the CA file hangs.
                    let url = try RedisURL("rediss://127.0.0.1:1/0?ca=\(path)")
                    let error = await #expect(throws: RedisError.self) { try await RedisConnection.connect(url) }
                    #expect(error?.kind == .tlsFailed, "\(String(describing: error))")
                    connectsEnded.increment()
                }
            }
            // Let the connects reach the file reads (they block in them; no event to wait for): the probe below is
            // the test's subject, and a connect that had not started would only make it pass less strictly.
            try await Task.sleep(for: .milliseconds(200))
            let connectsEndedWhenProbed = await Task.detached { connectsEnded.value }.value
            probeRan.signal()
            #expect(
                connectsEndedWhenProbed == 0,
                "the probe ran only after \(connectsEndedWhenProbed) connects ended: the file reads held the pool"
            )
            try await group.waitForAll()
        }
        #expect(connectsEnded.value == 8)
    }
}

/// A count shared between tasks and threads.
private final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}
