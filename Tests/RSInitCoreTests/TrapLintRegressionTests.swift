import Foundation
import RSInitCore
import RedisClient
import Testing

/// Lines the trap lint found once it covered every product module: values from outside (an oplog entry's `wall`,
/// a configured backoff) that used to trap in `Int(_:)` / `Int64(_:)`.
@Suite struct TrapLintRegressionTests {
    /// An entry whose `wall` is far in the past (Int64.min ms) makes the lag ~9.2e15 s; `/healthz` formatted it with
    /// `Int(ms)`, which trapped. It now prints a (clamped) number and stays valid JSON.
    @Test func aFarOffWallTimeStillGivesAHealthReport() throws {
        for lag in [9.3e15, -9.3e15, .infinity, .nan, 1.5] {
            var health = BridgeHealth(policy: BridgeHealth.Policy(), startedAt: .now)
            health.delivered(at: .now, lagSeconds: lag, position: "1.1")
            let (_, json) = health.report(at: .now)
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            let printed = try #require(object?["lagSeconds"] as? Double, "\(lag): \(json)")
            if lag.isFinite { #expect(printed == min(max(lag, 0), 9e12), "a negative lag counts as none") }
        }
    }

    /// A backoff whose maximum is near Duration's limit: the jitter factor (up to 1.2) pushed the milliseconds past
    /// Int64 and `Int64(_:)` trapped; it now saturates at the maximum.
    @Test func aHugeBackoffMaximumSaturates() {
        let backoff = Backoff(initial: .seconds(Int64.max / 2), maximum: .seconds(Int64.max))
        for attempt in [0, 1, 5, 40] {
            for jitter in [0.0, 0.5, 1.0] {
                let delay = backoff.delay(attempt: attempt, jitter: jitter)
                #expect(delay > .zero && delay <= .seconds(Int64.max))
            }
        }
        #expect(Backoff().delay(attempt: 0, jitter: 0.5) == .milliseconds(100))
    }

    /// A Redis URL whose query holds a bare "=" split into no part, and the topology parser read `parts[0]`: the
    /// process trapped on `--redis 'redis://h?='`. Now the same clear error as the single-node parser's.
    @Test func anOptionWithoutANameIsAnErrorNotATrap() {
        for text in ["redis://h?=", "redis://h:6379?a=1&=", "redis+sentinel://s1,s2/m?=x", "redis+cluster://n1?="] {
            #expect(throws: RedisError.self, "\(text)") { try RedisURL(text) }
        }
    }
}
