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
            channel.write(RedisRequest(bytes: [], replies: count, promise: promise), promise: nil)
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
}
