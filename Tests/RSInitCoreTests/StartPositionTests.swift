import BSON
import MongoCWrapper
import RESP
import RSInitCore
import RSInitTestUtils
import RedisClient
import Testing

/// The one start-position type: a tailer resumes after a stored checkpoint itself, refuses one it cannot honour, and
/// the conversions the trap lint now covers saturate or fail instead of trapping.
@Suite struct StartPositionTests {
    @Test func anOplogTailerResumesAfterAStoredCheckpoint() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        try await insertDocuments(mongo, 0..<2)
        let handled = mongo.lastOplogTimestamp
        try await insertDocuments(mongo, 2..<4)
        for checkpoint in [StoredCheckpoint.legacyTimestamp(handled), .oplog(ts: handled, t: 1)] {
            let (events, last) = try await collect(try tailer(mongo, start: .stored(checkpoint))) { events, _ in
                events.count >= 2
            }
            #expect(events.map(\.documentID) == ["id2", "id3"], "only the entries after \(checkpoint)")
            #expect(last?.resumePosition == mongo.lastOplogTimestamp)
        }
    }

    @Test func anOplogTailerRefusesAResumeToken() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let time = mongo.lastOplogTimestamp
        let token = StoredCheckpoint.changeStream(
            token: ChangeStreamResumeToken.highWaterMark(time).data,
            clusterTime: time
        )
        var iterator = try tailer(mongo, start: .stored(token)).makeAsyncIterator()
        await #expect(throws: StoredCheckpointError.wrongSource(token)) { _ = try await iterator.next() }
        await iterator.close()
    }

    @Test func theBridgeRefusesAResumeTokenOnTheOplogSource() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let redis = try await RedisServerProcess.launch()
        let time = mongo.lastOplogTimestamp
        let token = StoredCheckpoint.changeStream(
            token: ChangeStreamResumeToken.highWaterMark(time).data,
            clusterTime: time
        )
        let (bridge, publisher) = try await makeBridge(mongo, redis, start: .stored(token))
        await #expect(throws: StoredCheckpointError.wrongSource(token)) { try await bridge.run() }
        await publisher.close()
    }

    @Test func aHugeRedisTimeoutSaturatesInsteadOfTrapping() async throws {
        let redis = try await RedisServerProcess.launch()
        // Int64(ms) * 1_000_000 overflowed (a trap) for any timeout above ~106 days.
        let connection = try await RedisConnection.connect(try RedisURL(redis.url()), timeout: .seconds(Int64.max))
        #expect(try await connection.command(["PING"]) == .simpleString("PONG"))
        await connection.close()
    }

    @Test func resumeTokenIntegersOutOfRangeAreRefusedNotTrapped() {
        let time = BSONTimestamp(seconds: 1_700_000_000, increment: 7)
        let largest = ChangeStreamResumeToken(clusterTime: time, tokenType: .event, txnOpIndex: Int.max)
        #expect(ChangeStreamResumeToken.decode(data: largest.data)?.txnOpIndex == Int.max)
        // A negative version or index is written as 0 (clamped), never trapped on.
        let negative = ChangeStreamResumeToken(clusterTime: time, version: -5, tokenType: .event, txnOpIndex: -1)
        #expect(ChangeStreamResumeToken.decode(data: negative.data)?.txnOpIndex == 0)
        // tokenType as an 8-byte KeyString integer (2^62): not a known type, so no token.
        let hex = "82" + "6553F100" + "00000007" + "2B04" + "32" + "8000000000000000" + "29" + "6E" + "04"
        #expect(ChangeStreamResumeToken.decode(data: hex) == nil)
    }
}
