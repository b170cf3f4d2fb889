import BSON
import MongoCWrapper
import RSInitSupport

/// A value from a flag, an `RSINIT_*` variable or a `_FILE` that cannot be used. The message names where it came
/// from, the value (redacted, shortened; never the contents of a file) and what is accepted.
public struct InputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var fix: String

    public init(_ message: String, fix: String) {
        self.message = message
        self.fix = fix
    }

    public var description: String { message }

    /// As a usage failure (exit 2).
    public var failure: BootstrapFailure { BootstrapFailure(.usage, message, fix: fix) }
}

/// Where a value came from, for messages: a flag (`--timeout`), a variable (`RSINIT_TIMEOUT`) or a file named by a
/// variable (`RSINIT_TIMEOUT_FILE`), whose contents are never echoed (it may be a secret mounted at the wrong name).
public struct InputSource: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var isFile: Bool

    public init(_ name: String, isFile: Bool = false) {
        self.name = name
        self.isFile = isFile
    }

    public var description: String { name }

    /// `--timeout "1e16"`, or `RSINIT_TIMEOUT_FILE (its contents)`.
    func quoting(_ value: String) -> String {
        if isFile { return "\(name) (the file's contents, not shown)" }
        return "\(name) \"\(InputValue.shown(value))\""
    }
}

/// One validated parse per kind of input: durations, ports, counts and indexes, booleans, comma-separated lists.
/// Every parse is strict (digits only where a number is expected: no signs, exponents, hex, NaN or infinities, no
/// white space, no stray units) and range-checked; failures are ``InputError``s naming the source and the range.
public enum InputValue {
    /// Durations accepted anywhere: 1 ms to 7 days.
    public static let durationRange: ClosedRange<Duration> = .milliseconds(1) ... .seconds(7 * 86_400)
    static let durationUnits: [(suffix: String, milliseconds: Int64)] = [
        ("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]
    static let durationSyntax = "a number of seconds or a number with a unit ms, s, m, h or d (500ms, 90, 90s, 2m)"

    /// `90` (seconds), `90s`, `500ms`, `1.5s`, `2m`, `1h`, `1d`; within `range`.
    public static func duration(
        _ text: String,
        from source: InputSource,
        range: ClosedRange<Duration> = durationRange
    ) throws(InputError) -> Duration {
        let fix =
            "use \(durationSyntax), from \(range.lowerBound.formattedSeconds) to \(range.upperBound.formattedSeconds)"
        guard !text.isEmpty else { throw InputError("\(source) is empty", fix: fix) }
        let lower = text.lowercased()
        var number = Substring(lower)
        var scale: Int64 = 1_000
        // Longest suffix first: "ms" before "s" and "m".
        for unit in durationUnits.sorted(by: { $0.suffix.count > $1.suffix.count }) where lower.hasSuffix(unit.suffix) {
            number = lower.dropLast(unit.suffix.count)
            scale = unit.milliseconds
            break
        }
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0]
        let fraction = parts.count > 1 ? parts[1] : ""
        guard !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit), fraction.allSatisfy(\.isASCIIDigit),
            parts.count == 1 || !fraction.isEmpty
        else {
            throw InputError("invalid \(source.quoting(text)): not a duration", fix: fix)
        }
        let tooLong = InputError(
            "invalid \(source.quoting(text)): longer than \(range.upperBound.formattedSeconds)",
            fix: fix
        )
        let significant = whole.drop { $0 == "0" }
        // trap-checked: parsing text
        guard significant.count <= 15, let wholeValue = Int64(whole.isEmpty ? "0" : String(whole)) else {
            throw tooLong
        }
        let (wholeMilliseconds, overflow) = wholeValue.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw tooLong }
        var fractionMilliseconds: Int64 = 0
        if !fraction.isEmpty {
            let digits = fraction.prefix(9)
            let numerator = Int64(String(digits)) ?? 0  // trap-checked: parsing text: nil, not a trap
            var denominator: Int64 = 1
            for _ in 0..<digits.count { denominator *= 10 }
            fractionMilliseconds = numerator * scale / denominator
        }
        let milliseconds = wholeMilliseconds + fractionMilliseconds
        let duration = Duration.milliseconds(milliseconds)
        guard duration >= range.lowerBound else {
            throw InputError(
                "invalid \(source.quoting(text)): shorter than \(range.lowerBound.formattedSeconds)",
                fix: fix
            )
        }
        guard duration <= range.upperBound else { throw tooLong }
        return duration
    }

    /// A TCP port, 1 to 65535.
    public static func port(_ text: String, from source: InputSource) throws(InputError) -> Int {
        try integer(text, from: source, range: 1...65_535, what: "a port")
    }

    /// A whole number within `range` (counts, indexes): decimal digits only.
    public static func integer(
        _ text: String,
        from source: InputSource,
        range: ClosedRange<Int>,
        what: String = "a number"
    ) throws(InputError) -> Int {
        let fix = "use \(what) from \(range.lowerBound) to \(range.upperBound)"
        guard !text.isEmpty else { throw InputError("\(source) is empty", fix: fix) }
        guard text.allSatisfy(\.isASCIIDigit) else {
            throw InputError("invalid \(source.quoting(text)): not \(what)", fix: fix)
        }
        // trap-checked: parsing text
        guard text.drop(while: { $0 == "0" }).count <= 18, let value = Int(text), range.contains(value) else {
            throw InputError("invalid \(source.quoting(text)): out of range", fix: fix)
        }
        return value
    }

    /// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (any case).
    public static func boolean(_ text: String, from source: InputSource) throws(InputError) -> Bool {
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            throw InputError(
                "invalid \(source.quoting(text)): not a boolean",
                fix: "use 1, true, yes or on (or 0, false, no, off), or unset \(source)"
            )
        }
    }

    /// Comma-separated items, white space around them ignored; nil input → []. An empty item (`a,,b`, `,`, a
    /// trailing comma) is an error: it is almost always a typo, and `--include ,` must not mean "everything".
    public static func list(_ text: String?, from source: InputSource, example: String) throws(InputError) -> [String] {
        guard let text else { return [] }
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map {
            String($0).trimmingWhitespace()
        }
        guard !items.contains(where: \.isEmpty) else {
            throw InputError(
                "invalid \(source.quoting(text)): an empty item in the comma-separated list",
                fix: "list items separated by single commas, e.g. \(source) \(example)"
            )
        }
        return items
    }

    /// The value as it may be shown: redacted, control characters escaped, at most 80 characters.
    public static func shown(_ value: String) -> String { Redaction.shown(value) }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
