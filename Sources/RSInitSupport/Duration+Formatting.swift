extension Duration {
    /// "1.5 s", "120 s", "250 ms".
    public var formattedSeconds: String {
        let milliseconds = self.milliseconds
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000) s" }
        // Integer arithmetic: a Double would print huge values in exponent notation.
        var fraction = String(milliseconds % 1000)
        while fraction.count < 3 { fraction = "0" + fraction }
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(milliseconds / 1000).\(fraction) s"
    }

    /// Whole milliseconds (saturating at `Int64.max`/`.min` for durations beyond ±292 million years, never a trap).
    public var milliseconds: Int64 {
        let (whole, overflow) = components.seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return components.seconds < 0 ? .min : .max }
        let (total, overflowAgain) = whole.addingReportingOverflow(components.attoseconds / 1_000_000_000_000_000)
        if overflowAgain { return whole < 0 ? .min : .max }
        return total
    }
}
