import RSInitSupport
import Testing

struct DurationFormattingTests {
    @Test func formattedSecondsAndMilliseconds() {
        #expect(Duration.milliseconds(250).formattedSeconds == "250 ms")
        #expect(Duration.seconds(120).formattedSeconds == "120 s")
        #expect(Duration.milliseconds(1500).formattedSeconds == "1.5 s")
        #expect(Duration.milliseconds(1005).formattedSeconds == "1.005 s")
        #expect(Duration.milliseconds(1500).milliseconds == 1500)
        #expect(Duration.microseconds(2999).milliseconds == 2)
    }

    /// A duration from outside (a flag, an environment variable) can be huge: saturate, never trap.
    @Test func hugeDurationsSaturate() {
        #expect(Duration.seconds(Int64.max).milliseconds == .max)
        #expect(Duration.seconds(Int64.min).milliseconds == .min)
        #expect(Duration.seconds(Int64.max / 1000).milliseconds == Int64.max / 1000 * 1000)
        #expect(Duration.seconds(Int64.max).formattedSeconds == "\(Int64.max / 1000).807 s")
    }
}
