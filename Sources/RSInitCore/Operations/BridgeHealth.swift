import BSON
import MongoCWrapper
import RSInitSupport

/// Health of a running bridge, for `/healthz`: failing when the tail is stalled or too far behind, not merely when
/// a process answers. Pure: the bridge records observations, the HTTP shell asks for a verdict.
public struct BridgeHealth: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        /// No batch, heartbeat or successful publish for this long → unhealthy (Redis or mongod unreachable,
        /// a wedged cursor). The tail heartbeats about every second while idle.
        public var stallTimeout: Duration
        /// The newest delivered entry is older than this, while entries are still arriving → unhealthy.
        public var maximumLag: Duration

        public init(stallTimeout: Duration = .seconds(30), maximumLag: Duration = .seconds(60)) {
            self.stallTimeout = stallTimeout
            self.maximumLag = maximumLag
        }
    }

    public enum Verdict: Sendable, Equatable {
        case healthy
        case stalled(secondsSinceProgress: Double)
        case lagging(seconds: Double)
        case stopped(reason: String)

        public var isHealthy: Bool { self == .healthy }
    }

    public var policy: Policy
    /// Monotonic time of the last progress (start-up counts as progress).
    public private(set) var lastProgress: ContinuousClock.Instant
    /// Seconds the last delivered batch was behind the oplog's newest write (0 when caught up).
    public private(set) var lagSeconds: Double = 0
    public private(set) var position: String?
    public private(set) var stopReason: String?

    public init(policy: Policy, startedAt: ContinuousClock.Instant) {
        self.policy = policy
        self.lastProgress = startedAt
    }

    /// The tail returned an idle heartbeat: caught up.
    public mutating func caughtUp(at now: ContinuousClock.Instant) {
        lastProgress = now
        lagSeconds = 0
    }

    /// A batch was delivered; `lagSeconds` = now − the wall time of its newest entry.
    public mutating func delivered(at now: ContinuousClock.Instant, lagSeconds: Double?, position: String?) {
        lastProgress = now
        if let lagSeconds { self.lagSeconds = max(0, lagSeconds) }
        if let position { self.position = position }
    }

    public mutating func stopped(reason: String) { stopReason = reason }

    public func verdict(at now: ContinuousClock.Instant) -> Verdict {
        if let stopReason { return .stopped(reason: stopReason) }
        let idle = now - lastProgress
        if idle > policy.stallTimeout { return .stalled(secondsSinceProgress: idle.inSeconds) }
        if lagSeconds > policy.maximumLag.inSeconds { return .lagging(seconds: lagSeconds) }
        return .healthy
    }

    /// The `/healthz` body: one JSON object.
    public func report(at now: ContinuousClock.Instant) -> (healthy: Bool, json: String) {
        let verdict = verdict(at: now)
        var json = "{\"status\":\"\(verdict.isHealthy ? "ok" : "unhealthy")\""
        switch verdict {
        case .healthy: break
        case .stalled(let seconds):
            json +=
                ",\"reason\":\"stalled: no progress for \(Self.format(seconds)) s (limit \(Self.format(policy.stallTimeout.inSeconds)) s)\""
        case .lagging(let seconds):
            json +=
                ",\"reason\":\"lagging \(Self.format(seconds)) s behind the oplog (limit \(Self.format(policy.maximumLag.inSeconds)) s)\""
        case .stopped(let reason):
            // Redacted as text, before it is quoted: the reason can hold an error naming a URL.
            json += ",\"reason\":" + RedisOplogFormat.jsonString(Redaction.redact("stopped: " + reason))
        }
        json += ",\"lagSeconds\":\(Self.format(lagSeconds))"
        json += ",\"secondsSinceProgress\":\(Self.format((now - lastProgress).inSeconds))"
        if let position { json += ",\"position\":\"\(position)\"" }
        return (verdict.isHealthy, json + "}")
    }

    static func format(_ seconds: Double) -> String {
        // The lag comes from the oplog's `wall` (outside data): a date far off must print a (huge) number, not trap
        // in `Int(_:)`; 9e15 ms is about 285,000 years.
        guard !seconds.isNaN else { return "0.000" }
        let milliseconds = Int(min(max((seconds * 1000).rounded(), -9e15), 9e15))  // trap-checked: clamped, not NaN
        let whole = milliseconds / 1000
        let fraction = milliseconds % 1000
        let digits = String(fraction)
        return "\(whole).\(String(repeating: "0", count: 3 - digits.count))\(digits)"
    }
}

extension Duration {
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
