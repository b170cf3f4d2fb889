/// MongoDB Extended JSON v2 output in pure Swift (the Extended JSON specification): canonical (type-preserving) or
/// relaxed (numbers and dates as plain JSON where that loses nothing). Compact: no spaces.
public enum ExtendedJSONFormat: Sendable {
    /// Every number and date in its wrapper: `{"$numberInt":"1"}`, `{"$date":{"$numberLong":"…"}}`.
    case canonical
    /// Finite numbers as JSON numbers, dates from 1970 to 9999 as ISO-8601 strings.
    case relaxed
}

extension BSONDocument {
    /// This document as Extended JSON v2 (``ExtendedJSONFormat``). Every BSON value has a form, and every string
    /// is valid JSON (control characters escaped), so the output is always valid JSON.
    public func extendedJSON(_ format: ExtendedJSONFormat) -> String {
        var out: [UInt8] = []
        ExtendedJSONWriter(format: format).append(self, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

extension BSONValue {
    /// This value as Extended JSON v2 (a document, an array, a string, a number or a `$`-wrapper).
    public func extendedJSON(_ format: ExtendedJSONFormat) -> String {
        var out: [UInt8] = []
        ExtendedJSONWriter(format: format).append(self, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

struct ExtendedJSONWriter {
    let format: ExtendedJSONFormat

    func append(_ document: BSONDocument, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for (key, value) in document.elements {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            Self.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            append(value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    func append(_ value: BSONValue, to out: inout [UInt8]) {
        switch value {
        case .double(let number): appendDouble(number, to: &out)
        case .string(let text): Self.appendString(text, to: &out)
        case .document(let document): append(document, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                append(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .binary(let binary):
            Self.raw(#"{"$binary":{"base64":""#, &out)
            Base64.append(Self.payload(binary), to: &out)
            Self.raw(#"","subType":""#, &out)
            Self.raw(Self.hexByte(binary.subtype), &out)
            Self.raw(#""}}"#, &out)
        case .undefined: Self.raw(#"{"$undefined":true}"#, &out)
        case .objectID(let id): appendObjectID(id, to: &out)
        case .bool(let flag): Self.raw(flag ? "true" : "false", &out)
        case .datetime(let milliseconds): appendDate(milliseconds, to: &out)
        case .null: Self.raw("null", &out)
        case .regex(let regex):
            Self.raw(#"{"$regularExpression":{"pattern":"#, &out)
            Self.appendString(regex.pattern, to: &out)
            Self.raw(#","options":"#, &out)
            // The specification's canonical form lists the option letters in alphabetical order.
            Self.appendString(String(regex.options.sorted()), to: &out)
            Self.raw("}}", &out)
        case .dbPointer(let namespace, let id):
            Self.raw(#"{"$dbPointer":{"$ref":"#, &out)
            Self.appendString(namespace, to: &out)
            Self.raw(#","$id":"#, &out)
            appendObjectID(id, to: &out)
            Self.raw("}}", &out)
        case .javascript(let code):
            Self.raw(#"{"$code":"#, &out)
            Self.appendString(code, to: &out)
            Self.raw("}", &out)
        case .symbol(let text):
            Self.raw(#"{"$symbol":"#, &out)
            Self.appendString(text, to: &out)
            Self.raw("}", &out)
        case .javascriptWithScope(let code, let scope):
            Self.raw(#"{"$code":"#, &out)
            Self.appendString(code, to: &out)
            Self.raw(#","$scope":"#, &out)
            append(scope, to: &out)
            Self.raw("}", &out)
        case .int32(let number):
            if format == .relaxed {
                Self.raw(String(number), &out)
            } else {
                wrapped("$numberInt", String(number), &out)
            }
        case .timestamp(let ts):
            Self.raw(#"{"$timestamp":{"t":\#(ts.seconds),"i":\#(ts.increment)}}"#, &out)
        case .int64(let number):
            if format == .relaxed {
                Self.raw(String(number), &out)
            } else {
                wrapped("$numberLong", String(number), &out)
            }
        case .decimal128(let decimal): wrapped("$numberDecimal", decimal.description, &out)
        case .minKey: Self.raw(#"{"$minKey":1}"#, &out)
        case .maxKey: Self.raw(#"{"$maxKey":1}"#, &out)
        }
    }

    /// The bytes Extended JSON shows: for the old binary subtype 2, without the inner length prefix BSON keeps
    /// (when that prefix is consistent; otherwise every byte, nothing hidden).
    static func payload(_ binary: BSONBinary) -> [UInt8] {
        guard binary.subtype == 0x02, binary.data.count >= 4 else { return binary.data }
        let inner = binary.data[0..<4].reversed().reduce(0) { $0 << 8 | Int($1) }  // trap-checked: UInt8 widens
        return inner == binary.data.count - 4 ? Array(binary.data.dropFirst(4)) : binary.data
    }

    /// `{"<key>":"<text>"}` (the text needs no escaping: digits, signs, letters, points).
    private func wrapped(_ key: String, _ text: String, _ out: inout [UInt8]) {
        Self.raw(#"{""#, &out)
        Self.raw(key, &out)
        Self.raw(#"":""#, &out)
        Self.raw(text, &out)
        Self.raw(#""}"#, &out)
    }

    private func appendObjectID(_ id: BSONObjectID, to out: inout [UInt8]) {
        Self.raw(#"{"$oid":""#, &out)
        Self.raw(id.hex, &out)
        Self.raw(#""}"#, &out)
    }

    /// Relaxed: a finite double as a JSON number; otherwise (and always in canonical) `{"$numberDouble":"…"}`.
    private func appendDouble(_ number: Double, to out: inout [UInt8]) {
        if format == .relaxed, number.isFinite {
            Self.raw(Self.doubleText(number), &out)
        } else {
            wrapped("$numberDouble", Self.doubleText(number), &out)
        }
    }

    /// The shortest text that reads back as the same double, with a decimal point in the mantissa and an `E`
    /// exponent when there is one ("1.0", "-0.0", "1.0E-5", "1.7976931348623157E+308"); "Infinity",
    /// "-Infinity", "NaN" for the rest.
    static func doubleText(_ number: Double) -> String {
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Infinity" : "Infinity" }
        let text = "\(number)"  // Swift prints the shortest round-tripping digits ("1e-05", "5e-324", "0.1")
        let parts = text.split(separator: "e", maxSplits: 1)
        var mantissa = String(parts[0])
        if !mantissa.contains(".") { mantissa += ".0" }
        guard parts.count == 2, let exponent = Int(parts[1]) else { return mantissa }  // trap-checked: text parse
        return mantissa + "E" + (exponent < 0 ? "-" : "+") + String(exponent.magnitude)
    }

    /// Relaxed: a date from 1970 to 9999 as `{"$date":"YYYY-MM-DDTHH:MM:SS[.mmm]Z"}`; otherwise (and always in
    /// canonical) `{"$date":{"$numberLong":"…"}}`.
    private func appendDate(_ milliseconds: Int64, to out: inout [UInt8]) {
        Self.raw(#"{"$date":"#, &out)
        if format == .relaxed, milliseconds >= 0, milliseconds < 253_402_300_800_000 {
            Self.raw("\"" + Self.iso8601(milliseconds) + "\"", &out)
        } else {
            wrapped("$numberLong", String(milliseconds), &out)
        }
        Self.raw("}", &out)
    }

    /// UTC ISO-8601 for 0 ≤ `milliseconds` < year 10000; milliseconds only when not zero.
    static func iso8601(_ milliseconds: Int64) -> String {
        let days = milliseconds / 86_400_000
        let inDay = milliseconds % 86_400_000
        // Days since 1970-01-01 → civil date (H. Hinnant's algorithm, proleptic Gregorian).
        let shifted = days + 719_468
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        var text = pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2)
        text += "T" + pad(inDay / 3_600_000, 2) + ":" + pad(inDay / 60000 % 60, 2) + ":" + pad(inDay / 1000 % 60, 2)
        if inDay % 1000 != 0 { text += "." + pad(inDay % 1000, 3) }
        return text + "Z"
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func hexByte(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        // trap-checked: indexes below 16
        return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
    }

    private static func raw(_ text: String, _ out: inout [UInt8]) { out.append(contentsOf: text.utf8) }

    /// A JSON string (RFC 8259): `"` and `\` escaped, control characters as `\n`, `\t`, … or `\u00XX`.
    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw(#"\""#, &out)
            case UInt8(ascii: "\\"): raw(#"\\"#, &out)
            case 0x0A: raw(#"\n"#, &out)
            case 0x0D: raw(#"\r"#, &out)
            case 0x09: raw(#"\t"#, &out)
            case 0x08: raw(#"\b"#, &out)
            case 0x0C: raw(#"\f"#, &out)
            case 0..<0x20: raw(#"\u00"# + hexByte(byte), &out)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
