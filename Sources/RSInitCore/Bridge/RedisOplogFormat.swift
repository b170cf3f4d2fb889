public import MongoCWrapper

/// The cultofcoders:redis-oplog wire format (event-format.md §1–§3, §8 G4/G5): channels, Meteor id
/// stringification, and the compact JSON payload `{"e":…,"d":{"_id":…},"f":[…]}`.
public enum RedisOplogFormat {
    /// Meteor's `MongoID.idStringify`: the dedicated-channel suffix, or nil for ids Meteor cannot represent
    /// (documents, arrays, dates, binary, …) — those events go to the collection channel only and are counted.
    public static func idStringify(_ id: BSONValue) -> String? {
        switch id {
        case .objectID(let oid):
            return oid.hex
        case .string(let s):
            if s.isEmpty { return "" }
            if let first = s.first, first == "-" || first == "~" || first == "{" { return "-" + s }
            if looksLikeObjectID(s) { return "-" + s }
            return s
        case .int32, .int64, .double, .bool, .null:
            return "~" + jsonNumberOrLiteral(id)
        case .undefined:
            return "-"
        default:
            return nil
        }
    }

    /// Exactly 24 lowercase hex characters.
    static func looksLikeObjectID(_ s: String) -> Bool {
        let utf8 = s.utf8
        return utf8.count == 24 && utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// JavaScript's `JSON.stringify` for numbers, booleans and null.
    static func jsonNumberOrLiteral(_ value: BSONValue) -> String {
        switch value {
        case .int32(let v): return String(v)
        case .int64(let v): return String(v)
        case .double(let d): return javaScriptNumber(d)
        case .bool(let b): return b ? "true" : "false"
        default: return "null"
        }
    }

    /// How JavaScript prints a double: integral values without ".0", NaN/±Infinity as null (JSON has no such number).
    static func javaScriptNumber(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == 0 { return "0" }
        if d == d.rounded() && abs(d) < 1e21 { return String(Int64(d)) }
        return "\(d)"
    }

    /// The channels of an event: `<prefix><db>.<coll>` and, when the id can be stringified,
    /// `<prefix><db>.<coll>::<idStringify(_id)>`.
    public static func channels(for event: ChangeEvent, prefix: String) -> [String] {
        let base = prefix + event.namespace.database + "." + event.namespace.collection
        guard let id = event.documentID, let suffix = idStringify(id) else { return [base] }
        return [base, base + "::" + suffix]
    }

    /// The JSON message for an insert/update/replace/delete (`e` = `i`, `u`, `r`; replacements are `u`).
    public static func message(for event: ChangeEvent) -> String {
        let code: String
        switch event.kind {
        case .insert: code = "i"
        case .update, .replace: code = "u"
        case .delete: code = "r"
        case .command: code = "c"
        }
        var out = "{\"e\":\"" + code + "\",\"d\":{\"_id\":"
        out += event.documentID.map(meteorEJSON) ?? "null"
        out += "},\"f\":["
        for (index, field) in event.changedFields.enumerated() {
            if index > 0 { out += "," }
            appendJSONString(field, to: &out)
        }
        out += "]}"
        return out
    }

    /// The control-channel message for a command event (`drop`, `dropDatabase`, `renameCollection`, `create`):
    /// `{"c":"drop","db":"app","coll":"tasks","to":"app.new","ts":{"t":…,"i":…}}`.
    public static func commandMessage(for event: ChangeEvent) -> String {
        var out = "{\"c\":"
        appendJSONString(event.command?.name ?? "", to: &out)
        out += ",\"db\":"
        appendJSONString(event.namespace.database, to: &out)
        out += ",\"coll\":"
        appendJSONString(event.namespace.collection, to: &out)
        if let to = event.command?.renamedTo {
            out += ",\"to\":"
            appendJSONString(to.description, to: &out)
        }
        out += ",\"ts\":{\"t\":\(event.timestamp.seconds),\"i\":\(event.timestamp.increment)}}"
        return out
    }

    /// Meteor EJSON (as `EJSON.stringify` writes it) for any BSON value.
    public static func meteorEJSON(_ value: BSONValue) -> String {
        var out = ""
        appendEJSON(value, to: &out)
        return out
    }

    static func appendEJSON(_ value: BSONValue, to out: inout String) {
        switch value {
        case .string(let s), .symbol(let s): appendJSONString(s, to: &out)
        case .objectID(let oid): out += "{\"$type\":\"oid\",\"$value\":\"\(oid.hex)\"}"
        case .int32, .int64, .bool, .null: out += jsonNumberOrLiteral(value)
        case .double(let d):
            if d.isNaN {
                out += "{\"$InfNaN\":0}"
            } else if d.isInfinite {
                out += "{\"$InfNaN\":\(d > 0 ? 1 : -1)}"
            } else {
                out += javaScriptNumber(d)
            }
        case .datetime(let ms): out += "{\"$date\":\(ms)}"
        case .binary(let b): out += "{\"$binary\":\"\(Base64.encode(b.data))\"}"
        case .decimal128(let d): out += "{\"$type\":\"Decimal\",\"$value\":\"\(d)\"}"
        case .regex(let r):
            out += "{\"$regexp\":"
            appendJSONString(r.pattern, to: &out)
            out += ",\"$flags\":"
            appendJSONString(r.options, to: &out)
            out += "}"
        case .array(let values):
            out += "["
            for (index, element) in values.enumerated() {
                if index > 0 { out += "," }
                appendEJSON(element, to: &out)
            }
            out += "]"
        case .document(let document):
            let fields = document.elements
            // Meteor escapes objects that would read as an EJSON type ({"$date": …}) with $escape.
            let needsEscape = fields.count <= 2 && fields.contains { $0.key.hasPrefix("$") }
            if needsEscape { out += "{\"$escape\":" }
            out += "{"
            for (index, field) in fields.enumerated() {
                if index > 0 { out += "," }
                appendJSONString(field.key, to: &out)
                out += ":"
                appendEJSON(field.value, to: &out)
            }
            out += "}"
            if needsEscape { out += "}" }
        case .timestamp(let t): out += "{\"$type\":\"timestamp\",\"$value\":{\"t\":\(t.seconds),\"i\":\(t.increment)}}"
        case .undefined: out += "null"
        case .minKey: out += "{\"$type\":\"minKey\",\"$value\":1}"
        case .maxKey: out += "{\"$type\":\"maxKey\",\"$value\":1}"
        case .javascript(let code), .javascriptWithScope(let code, _):
            out += "{\"$type\":\"code\",\"$value\":"
            appendJSONString(code, to: &out)
            out += "}"
        case .dbPointer(let namespace, let id):
            out += "{\"$type\":\"dbPointer\",\"$value\":{\"ns\":"
            appendJSONString(namespace, to: &out)
            out += ",\"id\":\"\(id.hex)\"}}"
        }
    }

    /// JSON string with JavaScript's escaping (`"`, `\`, control characters).
    static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [
                alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)],
            ]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], 61, 61]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], 61]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
