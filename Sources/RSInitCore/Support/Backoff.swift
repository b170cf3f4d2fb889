import RSInitSupport

/// Exponential backoff with jitter: `initial × 2^attempt`, capped, then scaled by a jitter factor in [0.8, 1.2].
public struct Backoff: Sendable, Equatable {
    /// The delay before the first retry.
    public var initial: Duration
    /// The cap on the delay before jitter.
    public var maximum: Duration

    /// A backoff from `initial`, doubling up to `maximum`.
    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(2)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before retry number `attempt` (0-based); `jitter` in 0...1 (0.5 = no change).
    public func delay(attempt: Int, jitter: Double) -> Duration {
        let multiplier = 1 << min(attempt, 30)  // 0 for a negative attempt: no delay (as before)
        // Compared before multiplying: `initial * multiplier` traps when it overflows Duration (a huge initial).
        let base: Duration
        if multiplier == 0 {
            base = .zero
        } else if initial < .zero || initial > maximum / multiplier {
            base = maximum
        } else {
            base = initial * multiplier
        }
        let factor = 0.8 + 0.4 * min(max(jitter, 0), 1)
        let milliseconds = (Double(base.milliseconds) * factor).rounded()
        // A maximum near Duration's limit times the jitter factor would not fit Int64: saturate at the maximum.
        guard milliseconds < 9e18 else { return maximum }
        return .milliseconds(Int64(milliseconds))  // trap-checked: finite, 0 to 9e18
    }
}
