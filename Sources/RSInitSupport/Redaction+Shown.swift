extension Redaction {
    /// A value as an error message may quote it: redacted, control characters as `?`, at most 80 characters.
    public static func shown(_ value: String) -> String {
        var text = redact(value)
        text = String(
            text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) }
        )
        if text.count > 80 { text = String(text.prefix(77)) + "..." }
        return text
    }
}
