import BSON
import MongoCWrapper
import RSInitCore
import Testing

/// The pure gating and resume rules of shared/spec/replication-ha.md §9.2, exhaustively over small domains.
struct MajorityGateTests {
    static func entry(_ seconds: UInt32, _ increment: UInt32 = 1, t: Int64 = 1) -> BSONDocument {
        ["ts": .timestamp(BSONTimestamp(seconds: seconds, increment: increment)), "t": .int64(t), "op": "n"]
    }

    static func ts(_ document: BSONDocument) -> BSONTimestamp? { document["ts"]?.timestampValue }

    /// Every subset of 1…6 as an increasing oplog, every majority (none, 0…7): the released entries are exactly
    /// the prefix at or below the majority, in order, and nothing newer is ever released.
    @Test func releasesExactlyTheCommittedPrefix() {
        for mask in 0..<(1 << 6) {
            let seconds = (1...6).filter { mask & (1 << ($0 - 1)) != 0 }.map(UInt32.init)
            let entries = seconds.map { Self.entry($0) }
            for majority in [nil] + (0...7).map({ Optional(BSONTimestamp(seconds: UInt32($0), increment: 1)) }) {
                var gate = MajorityGate()
                gate.hold(entries)
                let released = gate.release(upTo: majority)
                let expected = entries.filter { entry in majority.map { Self.ts(entry)! <= $0 } ?? false }
                #expect(released == expected)
                #expect(released + gate.held == entries)
                #expect(released.allSatisfy { entry in majority.map { Self.ts(entry)! <= $0 } ?? false })
            }
        }
    }

    /// Majorities that rise step by step release every entry exactly once, in oplog order, however the entries
    /// arrive (held in one piece or entry by entry).
    @Test func risingMajorityReleasesEverythingOnceInOrder() {
        let entries = (1...8).map { Self.entry(UInt32($0), t: $0 < 5 ? 1 : 2) }
        for step in 1...4 {
            for pieceSize in 1...3 {
                var gate = MajorityGate()
                var released: [BSONDocument] = []
                var arrived = 0
                var majority: UInt32 = 0
                while released.count < entries.count {
                    if arrived < entries.count {
                        gate.hold(Array(entries[arrived..<min(arrived + pieceSize, entries.count)]))
                        arrived = min(arrived + pieceSize, entries.count)
                    }
                    majority += UInt32(step)
                    released += gate.release(upTo: BSONTimestamp(seconds: majority, increment: 1))
                    #expect(released.allSatisfy { Self.ts($0)!.seconds <= majority })
                }
                #expect(released == entries)
                #expect(gate.isEmpty)
            }
        }
    }

    /// A held entry above the majority blocks everything after it, even an entry without a timestamp (the head
    /// decides; nothing overtakes).
    @Test func nothingOvertakesAHeldEntry() {
        var gate = MajorityGate()
        let odd: BSONDocument = ["op": "n", "ts": "not a timestamp"]
        gate.hold([Self.entry(1), Self.entry(5), odd, Self.entry(6)])
        #expect(gate.release(upTo: BSONTimestamp(seconds: 4, increment: 1)) == [Self.entry(1)])
        #expect(gate.release(upTo: nil) == [])
        #expect(gate.release(upTo: BSONTimestamp(seconds: 5, increment: 1)) == [Self.entry(5), odd])
        #expect(gate.newestHeld == BSONTimestamp(seconds: 6, increment: 1))
        gate.discard()
        #expect(gate.isEmpty)
        #expect(gate.newestHeld == nil)
    }

    /// `(ts, inc)` order, not seconds: an increment above the majority's is held.
    @Test func timestampsCompareBySecondsThenIncrement() {
        var gate = MajorityGate()
        gate.hold([Self.entry(10, 1), Self.entry(10, 2), Self.entry(10, 3)])
        #expect(gate.release(upTo: BSONTimestamp(seconds: 10, increment: 2)).count == 2)
        #expect(gate.held == [Self.entry(10, 3)])
    }

    @Test func modes() {
        for count in 0...4 {
            #expect(MajorityMode.on.isGated(memberCount: count))
            #expect(!MajorityMode.off.isGated(memberCount: count))
            #expect(MajorityMode.auto.isGated(memberCount: count) == (count > 1))
        }
    }

    /// Every combination of checkpoint term, gating, majority, first entry and oldest entry, checked against the
    /// statements of §9.2 rule 3.
    @Test func resumeVerdicts() {
        let c = BSONTimestamp(seconds: 50, increment: 1)
        let before = BSONTimestamp(seconds: 40, increment: 1)
        let after = BSONTimestamp(seconds: 60, increment: 1)
        let checkpointTerms: [Int64?] = [nil, 1, 2]
        let majorities: [BSONTimestamp?] = [nil, before, c, after]
        let firsts: [OplogOpTime?] = [
            nil, OplogOpTime(ts: c, t: 1), OplogOpTime(ts: c, t: 2), OplogOpTime(ts: c, t: nil),
            OplogOpTime(ts: after, t: 2),
        ]
        let oldests: [BSONTimestamp?] = [nil, before, c, after]
        var seen: Set<String> = []
        for term in checkpointTerms {
            let checkpoint = OplogOpTime(ts: c, t: term)
            for gated in [false, true] {
                for majority in majorities {
                    for first in firsts {
                        for oldest in oldests {
                            let verdict = OplogResumeVerdict.classify(
                                checkpoint: checkpoint,
                                gated: gated,
                                majority: majority,
                                first: first,
                                oldest: oldest
                            )
                            seen.insert("\(verdict)")
                            let behind = gated && (majority.map { $0 < c } ?? true)
                            let same =
                                first.map { $0.ts == c && ($0.t == nil || term == nil || $0.t == term) } ?? false
                            switch verdict {
                            case .nodeBehind:
                                #expect(behind)
                            case .anchorFound:
                                #expect(!behind && same)
                            case .rolledOff(let reported):
                                #expect(!behind && !same)
                                #expect(reported == oldest)
                                #expect(oldest.map { $0 > c } ?? true)
                            case .missing:
                                #expect(!behind && !same)
                                #expect(oldest.map { $0 <= c } == true)
                            }
                            if !gated { #expect(verdict != .nodeBehind) }
                        }
                    }
                }
            }
        }
        #expect(seen.count >= 4)
    }
}
