import BSON
import MongoCWrapper
import RSInitTestUtils
import Synchronization
import Testing

@testable import RSInitCore

/// A mongod that stops answering (a half-open connection, a frozen host, a proxy that drops a request) must not
/// stall the tail: every reply is bounded by `maxAwaitTime + replyMargin` (libmongoc's `socketTimeoutMS`, whose
/// default of 5 minutes stalled the bridges of the chaos soak), then the cursor is re-established.
@Suite struct TailerReplyDeadlineTests {
    @Test func aGetMoreThatIsNeverAnsweredIsAbandonedAfterTheReplyMargin() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        var configuration = OplogTailerConfiguration(
            connectionString: try MongoConnectionString(server.uri),
            start: .after(server.lastOplogTimestamp),
            maxAwaitTime: .milliseconds(300),
            backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))
        )
        configuration.replyMargin = .seconds(1)
        let tail = OplogTailer(configuration: configuration, logger: tailLogger)
        let seen = SeenIDs()
        let reading = Task {
            var iterator = tail.makeAsyncIterator()
            while let batch = try await iterator.next() {
                let read = ids(batch.events).map { Int($0) }
                seen.ids.withLock { $0 += read }
                if seen.ids.withLock({ $0.count }) >= 3 { break }
            }
            await iterator.close()
        }
        defer { reading.cancel() }
        func waitFor(_ count: Int, within limit: Duration) async throws -> Bool {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                if seen.ids.withLock({ $0.count }) >= count { return true }
                try await Task.sleep(for: .milliseconds(20))
            }
            return false
        }
        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(0)]])
        #expect(try await waitFor(1, within: .seconds(10)))
        // Requests that arrive now are read and never answered; the connection stays open.
        server.setSilent(true)
        try await Task.sleep(for: .milliseconds(800))  // at least one getMore (every 300 ms) is swallowed
        server.setSilent(false)
        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(1)]])
        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(2)]])
        // 0.3 s + 1 s for the swallowed getMore, the backoff and a new cursor: well under 15 s. Without the bound,
        // libmongoc waits 5 minutes.
        #expect(try await waitFor(3, within: .seconds(15)), "the tail is stuck on an unanswered getMore")
        #expect(seen.ids.withLock { $0 } == [0, 1, 2])
    }
}

/// The same bound on the change-stream source: a swallowed `getMore` on the stream is abandoned after
/// `maxAwaitTime + replyMargin` and the stream resumes from its token, losing and repeating nothing.
@Suite struct ChangeStreamReplyDeadlineTests {
    @Test func aStreamGetMoreThatIsNeverAnsweredIsAbandonedAfterTheReplyMargin() async throws {
        let server = try primaryDouble()
        defer { server.stop() }
        var configuration = ChangeStreamTailerConfiguration(
            connectionString: try MongoConnectionString(server.uri),
            maxAwaitTime: .milliseconds(300),
            backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))
        )
        configuration.replyMargin = .seconds(1)
        let tail = ChangeStreamTailer(configuration: configuration, logger: tailLogger)
        let seen = SeenIDs()
        let opened = Mutex(false)
        let reading = Task {
            var iterator = tail.makeAsyncIterator()
            while let batch = try await iterator.next() {
                opened.withLock { $0 = true }
                let read = batch.events.compactMap { event -> Int? in
                    guard case .int32(let id) = event.documentID else { return nil }
                    return Int(id)
                }
                seen.ids.withLock { $0 += read }
                if seen.ids.withLock({ $0.count }) >= 3 { break }
            }
            await iterator.close()
        }
        defer { reading.cancel() }
        func waitUntil(within limit: Duration, _ condition: () -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                if condition() { return true }
                try await Task.sleep(for: .milliseconds(20))
            }
            return false
        }
        #expect(try await waitUntil(within: .seconds(10)) { opened.withLock { $0 } }, "the stream never opened")
        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(0)]])
        #expect(try await waitUntil(within: .seconds(10)) { seen.ids.withLock { $0.count } >= 1 })
        server.setSilent(true)
        try await Task.sleep(for: .milliseconds(800))  // at least one getMore (every 300 ms) is swallowed
        server.setSilent(false)
        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(1)]])
        server.appendOplogEntry(["op": "i", "ns": "app.c", "o": ["_id": .int32(2)]])
        #expect(
            try await waitUntil(within: .seconds(15)) { seen.ids.withLock { $0.count } >= 3 },
            "the stream is stuck on an unanswered getMore"
        )
        #expect(seen.ids.withLock { $0 } == [0, 1, 2])
    }
}

private final class SeenIDs: Sendable {
    let ids = Mutex<[Int]>([])
}
