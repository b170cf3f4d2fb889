import NIOCore
import NIOEmbedded
import RESP
import Testing

@testable import RedisClient

/// The reply matcher without a server: replies arrive in reads of any size, several requests are outstanding, and
/// values no request waits for are kept as pushed messages.
@Suite struct RedisChannelHandlerTests {
    @Test(arguments: [[6], [1, 1, 1, 1, 1, 1], [2, 3, 1], [1, 4, 1], [5, 1], [3, 3]])
    func repliesAreMatchedToRequestsInOrderWhateverTheReadSizes(reads: [Int]) throws {
        let channel = EmbeddedChannel()
        let handler = RedisChannelHandler(
            url: try RedisURL("redis://127.0.0.1"),
            timeout: .seconds(60),
            handshake: nil
        )
        try channel.pipeline.syncOperations.addHandler(handler)
        let expected = [2, 3, 1]
        let promises = expected.map { count in
            let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
            channel.write(RedisRequest(bytes: [], replies: count, sink: .values(promise)), promise: nil)
            return promise
        }
        let values = (1...6).map { RESPValue.integer(Int64($0)) }
        var start = 0
        for size in reads {
            try channel.writeInbound(Array(values[start..<start + size]))
            start += size
        }
        var results: [[RESPValue]] = []
        for promise in promises { results.append(try promise.futureResult.wait()) }
        #expect(results == [[.integer(1), .integer(2)], [.integer(3), .integer(4), .integer(5)], [.integer(6)]])

        // Nothing outstanding: values are pushed messages, handed to a reader in order.
        try channel.writeInbound([RESPValue.bulk("a"), .bulk("b")])
        for expectedValue in [RESPValue.bulk("a"), .bulk("b")] {
            let pushed = channel.eventLoop.makePromise(of: RESPValue?.self)
            channel.triggerUserOutboundEvent(
                RedisChannelHandler.AwaitPushed(promise: pushed, wait: .seconds(1)),
                promise: nil
            )
            #expect(try pushed.futureResult.wait() == expectedValue)
        }
        _ = try? channel.finish()
    }

    /// Counted requests (pipelined PUBLISHes) between requests that keep their replies, in reads of any size: each
    /// gets its own count and only its first reply that is not an integer, at its position.
    @Test(arguments: [[9], [1, 1, 1, 1, 1, 1, 1, 1, 1], [2, 5, 2], [4, 4, 1], [3, 6]])
    func countedRequestsKeepOnlyTheirFirstNonIntegerReply(reads: [Int]) throws {
        let channel = EmbeddedChannel()
        let handler = RedisChannelHandler(url: try RedisURL("redis://127.0.0.1"), timeout: .seconds(60), handshake: nil)
        try channel.pipeline.syncOperations.addHandler(handler)
        let first = channel.eventLoop.makePromise(of: IntegerReplies.self)
        let middle = channel.eventLoop.makePromise(of: [RESPValue].self)
        let last = channel.eventLoop.makePromise(of: IntegerReplies.self)
        channel.write(RedisRequest(bytes: [], replies: 4, sink: .integers(first)), promise: nil)
        channel.write(RedisRequest(bytes: [], replies: 2, sink: .values(middle)), promise: nil)
        channel.write(RedisRequest(bytes: [], replies: 3, sink: .integers(last)), promise: nil)
        let values: [RESPValue] = [
            .integer(1), .error("BUSY a script runs"), .integer(0), .error("ERR second"),
            .integer(7), .simpleString("OK"),
            .integer(2), .integer(3), .simpleString("OK"),
        ]
        var start = 0
        for size in reads {
            try channel.writeInbound(Array(values[start..<start + size]))
            start += size
        }
        var busy = IntegerReplies()
        busy.count = 4
        busy.firstOtherIndex = 1
        busy.firstOther = .error("BUSY a script runs")
        #expect(try first.futureResult.wait() == busy)
        #expect(try middle.futureResult.wait() == [.integer(7), .simpleString("OK")])
        var trailingOK = IntegerReplies()
        trailingOK.count = 3
        trailingOK.firstOtherIndex = 2
        trailingOK.firstOther = .simpleString("OK")
        #expect(try last.futureResult.wait() == trailingOK)
        _ = try? channel.finish()
    }

    /// A counted request still outstanding when the connection closes fails like any other.
    @Test func countedRequestsFailWhenTheConnectionCloses() throws {
        let channel = EmbeddedChannel()
        let handler = RedisChannelHandler(url: try RedisURL("redis://127.0.0.1"), timeout: .seconds(60), handshake: nil)
        try channel.pipeline.syncOperations.addHandler(handler)
        let counted = channel.eventLoop.makePromise(of: IntegerReplies.self)
        channel.write(RedisRequest(bytes: [], replies: 3, sink: .integers(counted)), promise: nil)
        try channel.writeInbound([RESPValue.integer(1)])
        _ = try? channel.finish()
        #expect(throws: RedisError.self) { try counted.futureResult.wait() }
    }
}
