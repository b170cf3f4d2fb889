import BSON
import MongoCWrapper
import Testing

@testable import RSInitCore

@Suite("Stored checkpoint format v2")
struct StoredCheckpointTests {
    static let ts = BSONTimestamp(seconds: 1_700_000_000, increment: 7)
    static let token = ChangeStreamResumeToken(clusterTime: ts, tokenType: .event, txnOpIndex: 2).data
    static let invalidateToken = ChangeStreamResumeToken(
        clusterTime: ts,
        tokenType: .event,
        fromInvalidate: true
    ).data

    @Test("every value round-trips through its string")
    func roundTrip() throws {
        let values: [StoredCheckpoint] = [
            .legacyTimestamp(Self.ts), .legacyTimestamp(BSONTimestamp(rawValue: 0)),
            .legacyTimestamp(BSONTimestamp(rawValue: .max)),
            .oplog(ts: Self.ts, t: 0), .oplog(ts: Self.ts, t: -1), .oplog(ts: Self.ts, t: .max),
            .oplog(ts: BSONTimestamp(rawValue: .max), t: 12),
            .changeStream(token: Self.token, clusterTime: Self.ts),
            .changeStream(token: Self.invalidateToken, clusterTime: Self.ts),
        ]
        for value in values {
            #expect(try StoredCheckpoint.decode(value.encoded) == value, "\(value.encoded)")
        }
    }

    @Test("the v1 value is read as a timestamp without term, and its string is unchanged")
    func legacy() throws {
        let old = CheckpointEncoding.encode(Self.ts)
        #expect(try StoredCheckpoint.decode(old) == .legacyTimestamp(Self.ts))
        #expect(StoredCheckpoint.legacyTimestamp(Self.ts).encoded == old)
        #expect(try StoredCheckpoint.decode("42") == .legacyTimestamp(BSONTimestamp(rawValue: 42)))
        #expect(StoredCheckpoint.legacyTimestamp(Self.ts).version == 1)
        #expect(StoredCheckpoint.oplog(ts: Self.ts, t: 1).version == 2)
    }

    @Test("the exact strings written (documented in the README)")
    func exactStrings() {
        let ts = BSONTimestamp(seconds: 5, increment: 1)
        #expect(StoredCheckpoint.oplog(ts: ts, t: 3).encoded == "00000000021474836481:v2:oplog:3")
        #expect(
            StoredCheckpoint.changeStream(token: "82AB", clusterTime: ts).encoded == "00000000021474836481:v2:cs:82AB"
        )
    }

    @Test("string order is timestamp order across formats and sources (the HA script compares strings)")
    func ordering() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let a = BSONTimestamp(
                rawValue: UInt64.random(in: 0...UInt64.max, using: &generator)
                    >> UInt64.random(in: 0...63, using: &generator)
            )
            let b = BSONTimestamp(
                rawValue: UInt64.random(in: 0...UInt64.max, using: &generator)
                    >> UInt64.random(in: 0...63, using: &generator)
            )
            let forms: [(BSONTimestamp) -> StoredCheckpoint] = [
                { .legacyTimestamp($0) }, { .oplog(ts: $0, t: Int64.random(in: -1...Int64.max)) },
                {
                    .changeStream(
                        token: ChangeStreamResumeToken(clusterTime: $0, tokenType: .event).data,
                        clusterTime: $0
                    )
                },
            ]
            for f in forms {
                for g in forms where a != b {
                    #expect((f(a).encoded < g(b).encoded) == (a < b), "\(f(a).encoded) vs \(g(b).encoded)")
                }
            }
        }
        // Upgrade: the v2 value of the same entry moves a v1 checkpoint forward.
        #expect(StoredCheckpoint.legacyTimestamp(Self.ts).encoded < StoredCheckpoint.oplog(ts: Self.ts, t: 1).encoded)
        // Two tokens of one clusterTime keep their order (a v2 token's bytes sort as the events).
        let first = ChangeStreamResumeToken(clusterTime: Self.ts, tokenType: .event, txnOpIndex: 1).data
        let second = ChangeStreamResumeToken(clusterTime: Self.ts, tokenType: .event, txnOpIndex: 2).data
        #expect(
            StoredCheckpoint.changeStream(token: first, clusterTime: Self.ts).encoded
                < StoredCheckpoint.changeStream(token: second, clusterTime: Self.ts).encoded
        )
    }

    @Test(
        "bad values are clear errors, never a trap or a misread",
        arguments: [
            "", " ", "abc", "-1", "1.5", "18446744073709551616", "99999999999999999999",
            "123456789012345678901", "00000000021474836481:", "00000000021474836481:v2",
            "00000000021474836481:v2:oplog", "00000000021474836481:v2:oplog:", "00000000021474836481:v2:oplog:x",
            "00000000021474836481:v2:oplog:-2", "00000000021474836481:v2:oplog:9223372036854775808",
            "00000000021474836481:v2:oplog:1e3", "00000000021474836481:v2:oplog:+3",
            "00000000021474836481:v2:oplog:3-", "00000000021474836481:v3:oplog:3",
            "00000000021474836481:v2:cs:", "00000000021474836481:v2:cs:abc", "00000000021474836481:v2:cs:ABC",
            "00000000021474836481:v2:cs:82ab", "00000000021474836481:v2:cs:ZZ", "00000000021474836481:v2:tail:3",
            ":v2:oplog:3", "x:v2:oplog:3", "0000000002147483648\u{0}:v2:oplog:3", "٣",
            "00000000021474836481:v2:cs:"
                + String(repeating: "AB", count: StoredCheckpoint.maximumTokenLength),
        ]
    )
    func badValues(_ text: String) {
        #expect(throws: StoredCheckpointError.self) { try StoredCheckpoint.decode(text) }
        do {
            _ = try StoredCheckpoint.decode(text)
        } catch {
            #expect(error.message.contains("is not one rsinit writes"))
            #expect(error.message.count < 400)
            #expect(error.fix.contains("--from"))
        }
    }

    @Test("a token whose clusterTime is not the stored position is refused")
    func tokenMismatch() {
        let other = BSONTimestamp(seconds: 1, increment: 1)
        let text = StoredCheckpoint.changeStream(token: Self.token, clusterTime: other).encoded
        #expect(throws: StoredCheckpointError.self) { try StoredCheckpoint.decode(text) }
    }

    @Test("cross-source: an oplog position starts a change stream one tick after it; a token is refused by the oplog")
    func crossSource() throws {
        #expect(
            try StoredCheckpoint.legacyTimestamp(Self.ts).resume(for: .changeStream) == .changeStreamAfterTime(Self.ts)
        )
        #expect(
            try StoredCheckpoint.oplog(ts: Self.ts, t: 4).resume(for: .changeStream) == .changeStreamAfterTime(Self.ts)
        )
        #expect(
            try StoredCheckpoint.oplog(ts: Self.ts, t: 4).resume(for: .oplog)
                == .oplogAfter(OplogOpTime(ts: Self.ts, t: 4))
        )
        #expect(
            try StoredCheckpoint.legacyTimestamp(Self.ts).resume(for: .oplog)
                == .oplogAfter(OplogOpTime(ts: Self.ts, t: nil))
        )
        let stream = StoredCheckpoint.changeStream(token: Self.token, clusterTime: Self.ts)
        #expect(
            try stream.resume(for: .changeStream)
                == .changeStreamToken(["_data": .string(Self.token)], invalidate: false)
        )
        let invalidate = StoredCheckpoint.changeStream(token: Self.invalidateToken, clusterTime: Self.ts)
        #expect(
            try invalidate.resume(for: .changeStream)
                == .changeStreamToken(["_data": .string(Self.invalidateToken)], invalidate: true)
        )
        #expect(throws: StoredCheckpointError.wrongSource(stream)) { try stream.resume(for: .oplog) }
        #expect(StoredCheckpointError.wrongSource(stream).fix.contains("--source change-stream"))
    }

    @Test("a change-stream checkpoint is made from the token document, uppercased")
    func fromTokenDocument() {
        let lower = Self.token.lowercased()
        #expect(
            StoredCheckpoint.changeStream(token: ["_data": .string(lower)], fallback: nil)
                == .changeStream(token: Self.token, clusterTime: Self.ts)
        )
        #expect(StoredCheckpoint.changeStream(token: ["_data": .string("")], fallback: Self.ts) == nil)
        #expect(StoredCheckpoint.changeStream(token: ["x": 1], fallback: Self.ts) == nil)
    }
}
