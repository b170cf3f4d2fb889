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
        let exponent = min(attempt, 30)
        var base = initial * (1 << exponent)
        if base > maximum || base < .zero { base = maximum }
        let factor = 0.8 + 0.4 * min(max(jitter, 0), 1)
        return .milliseconds(Int64((Double(base.milliseconds) * factor).rounded()))
    }
}
