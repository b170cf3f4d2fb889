public import BSON
import RESP

/// The cultofcoders:redis-oplog wire format (event-format.md §1–§3, §8 G4/G5): channels, Meteor id
/// stringification, and the compact JSON payload `{"e":…,"d":{"_id":…},"f":[…]}`.
public enum RedisOplogFormat {
    /// Meteor's `MongoID.idStringify`: the dedicated-channel suffix, or nil for ids Meteor cannot represent
    /// (documents, arrays, dates, binary, …) — those events go to the collection channel only and are counted.
    public static func idStringify(_ id: BSONValue) -> String? {
        var bytes: [UInt8] = []
        guard appendIDStringify(id, to: &bytes) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// ``idStringify(_:)`` as UTF-8 appended to `out`; false (and nothing appended) when the id has no channel.
    static func appendIDStringify(_ id: BSONValue, to out: inout [UInt8]) -> Bool {
        switch id {
        case .objectID(let oid):
            appendHex(oid.bytes, to: &out)
        case .string(let s):
            let utf8 = s.utf8
            if let first = utf8.first,
                first == UInt8(ascii: "-") || first == UInt8(ascii: "~") || first == UInt8(ascii: "{")
                    || looksLikeObjectID(utf8)
            {
                out.append(UInt8(ascii: "-"))
            }
            out.append(contentsOf: utf8)
        case .int32, .int64, .double, .bool, .null:
            out.append(UInt8(ascii: "~"))
            appendNumberOrLiteral(id, to: &out)
        case .undefined:
            out.append(UInt8(ascii: "-"))
        default:
            return false
        }
        return true
    }

    /// Why an event with this `_id` (or none) reaches the collection channel only, for the `id_not_stringifiable`
    /// report both sources make; nil when the id gets its own channel.
    static func collectionChannelOnlyReason(_ id: BSONValue?) -> String? {
        guard let id else { return "no _id: collection channel only" }
        if hasDedicatedChannel(id) { return nil }
        return "_id of BSON type 0x\(String(id.typeByte, radix: 16)): collection channel only"
    }

    /// Whether Meteor can stringify `id` (it gets a dedicated `::<id>` channel); the others go to the collection
    /// channel only.
    public static func hasDedicatedChannel(_ id: BSONValue) -> Bool {
        switch id {
        case .objectID, .string, .int32, .int64, .double, .bool, .null, .undefined: return true
        default: return false
        }
    }

    /// Exactly 24 lowercase hex characters.
    static func looksLikeObjectID(_ utf8: String.UTF8View) -> Bool {
        utf8.count == 24 && utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func appendHex(_ bytes: some Sequence<UInt8>, to out: inout [UInt8]) {
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])  // trap-checked: index < 16
            out.append(hexDigits[Int(byte & 0x0F)])  // trap-checked: index < 16
        }
    }

    /// JavaScript's `JSON.stringify` for numbers, booleans and null. Every BSON number becomes a JavaScript
    /// `Number` (a double) in Meteor first: int64 beyond ±2^53 rounds to the nearest double, as js-bson does.
    static func appendNumberOrLiteral(_ value: BSONValue, to out: inout [UInt8]) {
        switch value {
        case .int32(let v): appendDecimal(Int64(v), to: &out)  // trap-checked: widens
        case .int64(let v): appendJavaScriptNumber(v, to: &out)
        case .double(let d): JavaScriptNumber.append(d, to: &out)
        case .bool(let b): out.append(contentsOf: b ? "true".utf8 : "false".utf8)
        default: out.append(contentsOf: "null".utf8)
        }
    }

    /// An int64 as the JavaScript number it becomes: exact up to ±2^53, the nearest double beyond.
    static func appendJavaScriptNumber(_ value: Int64, to out: inout [UInt8]) {
        if value.magnitude <= 1 << 53 {
            appendDecimal(value, to: &out)
        } else {
            JavaScriptNumber.append(Double(value), to: &out)
        }
    }

    /// How JavaScript prints a double (ECMAScript `Number::toString`; NaN and ±Infinity as null).
    static func appendJavaScriptNumber(_ d: Double, to out: inout [UInt8]) { JavaScriptNumber.append(d, to: &out) }

    /// Decimal digits without a String in between (the publisher's hot path).
    static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        appendDecimal(value.magnitude, to: &out)
    }

    static func appendDecimal(_ value: UInt64, to out: inout [UInt8]) { RESPCodec.appendDigits(value, to: &out) }

    /// The channels of an event: `<prefix><db>.<coll>` and, when the id can be stringified,
    /// `<prefix><db>.<coll>::<idStringify(_id)>`.
    public static func channels(for event: ChangeEvent, prefix: String) -> [String] {
        let base = prefix + event.namespace.database + "." + event.namespace.collection
        guard let id = event.documentID, let suffix = idStringify(id) else { return [base] }
        return [base, base + "::" + suffix]
    }

    /// The JSON message for an insert/update/replace/delete (`e` = `i`, `u`, `r`; replacements are `u`).
    public static func message(for event: ChangeEvent) -> String {
        var out: [UInt8] = []
        appendMessage(for: event, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// ``message(for:)`` as UTF-8 appended to `out`.
    static func appendMessage(for event: ChangeEvent, to out: inout [UInt8]) {
        var fields = ChangedFieldsJSON()
        appendMessage(for: event, to: &out, fields: &fields)
    }

    /// The JSON of the last changed-fields array written (`"a","b"`), kept with that array. Inserts of one shape
    /// share one array (``OplogEventMapper`` reuses it), so their `f` is escaped once and then copied.
    struct ChangedFieldsJSON {
        /// Held, so its storage cannot be freed and reused by another array while it is the key.
        private var fields: [String] = []
        private var json: [UInt8] = []

        /// Appends `"a","b"` for `fields`: a copy of the kept bytes when `fields` is the kept array itself (the
        /// same storage, which an array's copy-on-write never changes in place while it is held here).
        mutating func append(_ fields: [String], to out: inout [UInt8]) {
            if !fields.isEmpty, Self.sameStorage(fields, self.fields) {
                out.append(contentsOf: json)
                return
            }
            let start = out.count
            for (index, field) in fields.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                RedisOplogFormat.appendJSONString(field, to: &out)
            }
            self.fields = fields
            json.removeAll(keepingCapacity: true)
            out.withUnsafeBufferPointer { json.append(contentsOf: UnsafeBufferPointer(rebasing: $0[start...])) }
        }

        private static func sameStorage(_ a: [String], _ b: [String]) -> Bool {
            a.count == b.count
                && a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { a.baseAddress == $0.baseAddress } }
        }
    }

    /// ``appendMessage(for:to:)`` with the changed fields' JSON reused from `fields` when the event shares its
    /// array (the publisher's hot path).
    static func appendMessage(for event: ChangeEvent, to out: inout [UInt8], fields: inout ChangedFieldsJSON) {
        let code: UInt8
        switch event.kind {
        case .insert: code = UInt8(ascii: "i")
        case .update, .replace: code = UInt8(ascii: "u")
        case .delete: code = UInt8(ascii: "r")
        case .command: code = UInt8(ascii: "c")
        }
        out.append(contentsOf: #"{"e":""#.utf8)
        out.append(code)
        if let full = event.fullDocument, event.kind != .delete {
            // --full-document (change-stream source): the whole document, as redis-oplog reads `d` when
            // protectAgainstRaceConditions is false.
            out.append(contentsOf: #"","d":"#.utf8)
            appendEJSON(.document(full), to: &out)
            out.append(contentsOf: #","f":["#.utf8)
        } else {
            out.append(contentsOf: #"","d":{"_id":"#.utf8)
            if let id = event.documentID { appendEJSON(id, to: &out) } else { out.append(contentsOf: "null".utf8) }
            out.append(contentsOf: #"},"f":["#.utf8)
        }
        fields.append(event.changedFields, to: &out)
        out.append(contentsOf: "]}".utf8)
    }

    /// The control-channel message for a command event (`drop`, `dropDatabase`, `renameCollection`, `create`):
    /// `{"c":"drop","db":"app","coll":"tasks","to":"app.new","ts":{"t":…,"i":…}}`.
    public static func commandMessage(for event: ChangeEvent) -> String {
        var out: [UInt8] = []
        appendCommandMessage(for: event, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// ``commandMessage(for:)`` as UTF-8 appended to `out`.
    static func appendCommandMessage(for event: ChangeEvent, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"c":"#.utf8)
        appendJSONString(event.command?.name ?? "", to: &out)
        out.append(contentsOf: #","db":"#.utf8)
        appendJSONString(event.namespace.database, to: &out)
        out.append(contentsOf: #","coll":"#.utf8)
        appendJSONString(event.namespace.collection, to: &out)
        if let to = event.command?.renamedTo {
            out.append(contentsOf: #","to":"#.utf8)
            appendJSONString(to.description, to: &out)
        }
        out.append(contentsOf: #","ts":{"t":"#.utf8)
        appendDecimal(UInt64(event.timestamp.seconds), to: &out)  // trap-checked: widens
        out.append(contentsOf: #","i":"#.utf8)
        appendDecimal(UInt64(event.timestamp.increment), to: &out)  // trap-checked: widens
        out.append(contentsOf: "}}".utf8)
    }

    /// Meteor EJSON (as `EJSON.stringify` writes it) for any BSON value.
    public static func meteorEJSON(_ value: BSONValue) -> String {
        var out: [UInt8] = []
        appendEJSON(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func appendEJSON(_ value: BSONValue, to out: inout [UInt8]) {
        switch value {
        case .string(let s), .symbol(let s): appendJSONString(s, to: &out)
        case .objectID(let oid):
            out.append(contentsOf: #"{"$type":"oid","$value":""#.utf8)
            appendHex(oid.bytes, to: &out)
            out.append(contentsOf: #""}"#.utf8)
        case .int32, .int64, .bool, .null: appendNumberOrLiteral(value, to: &out)
        case .double(let d):
            if d.isNaN {
                out.append(contentsOf: #"{"$InfNaN":0}"#.utf8)
            } else if d.isInfinite {
                out.append(contentsOf: (d > 0 ? #"{"$InfNaN":1}"# : #"{"$InfNaN":-1}"#).utf8)
            } else {
                JavaScriptNumber.append(d, to: &out)
            }
        case .datetime(let ms):
            out.append(contentsOf: #"{"$date":"#.utf8)
            appendDecimal(ms, to: &out)
            out.append(UInt8(ascii: "}"))
        case .binary(let b):
            out.append(contentsOf: #"{"$binary":""#.utf8)
            Base64.append(b.data, to: &out)
            out.append(contentsOf: #""}"#.utf8)
        case .decimal128(let d):
            out.append(contentsOf: #"{"$type":"Decimal","$value":""#.utf8)
            out.append(contentsOf: "\(d)".utf8)
            out.append(contentsOf: #""}"#.utf8)
        case .regex(let r):
            out.append(contentsOf: #"{"$regexp":"#.utf8)
            appendJSONString(r.pattern, to: &out)
            out.append(contentsOf: #","$flags":"#.utf8)
            appendJSONString(r.options, to: &out)
            out.append(UInt8(ascii: "}"))
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendEJSON(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .document(let document):
            let fields = document.elements
            // Meteor escapes objects that would read as an EJSON type ({"$date": …}) with $escape.
            let needsEscape = fields.count <= 2 && fields.contains { $0.key.hasPrefix("$") }
            if needsEscape { out.append(contentsOf: #"{"$escape":"#.utf8) }
            out.append(UInt8(ascii: "{"))
            for (index, field) in fields.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                appendJSONString(field.key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendEJSON(field.value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
            if needsEscape { out.append(UInt8(ascii: "}")) }
        case .timestamp(let t):
            out.append(contentsOf: #"{"$type":"timestamp","$value":{"t":"#.utf8)
            appendDecimal(UInt64(t.seconds), to: &out)  // trap-checked: widens
            out.append(contentsOf: #","i":"#.utf8)
            appendDecimal(UInt64(t.increment), to: &out)  // trap-checked: widens
            out.append(contentsOf: "}}".utf8)
        case .undefined: out.append(contentsOf: "null".utf8)
        case .minKey: out.append(contentsOf: #"{"$type":"minKey","$value":1}"#.utf8)
        case .maxKey: out.append(contentsOf: #"{"$type":"maxKey","$value":1}"#.utf8)
        case .javascript(let code), .javascriptWithScope(let code, _):
            out.append(contentsOf: #"{"$type":"code","$value":"#.utf8)
            appendJSONString(code, to: &out)
            out.append(UInt8(ascii: "}"))
        case .dbPointer(let namespace, let id):
            out.append(contentsOf: #"{"$type":"dbPointer","$value":{"ns":"#.utf8)
            appendJSONString(namespace, to: &out)
            out.append(contentsOf: #","id":""#.utf8)
            appendHex(id.bytes, to: &out)
            out.append(contentsOf: #""}}"#.utf8)
        }
    }

    /// `s` as a quoted JSON string (``appendJSONString(_:to:)`` as text).
    static func jsonString(_ s: String) -> String {
        var out: [UInt8] = []
        appendJSONString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// JSON string with JavaScript's escaping (`"`, `\`, control characters); everything else is copied as UTF-8
    /// (escapes only ever apply to ASCII bytes, which never occur inside a multi-byte sequence).
    static func appendJSONString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        let utf8 = s.utf8
        let copied =
            utf8.withContiguousStorageIfAvailable { bytes in
                for byte in bytes where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                    return false
                }
                out.append(contentsOf: bytes)
                return true
            } ?? false
        if !copied {
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
                case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
                case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
                case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
                case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
                case 0x08: out.append(contentsOf: #"\b"#.utf8)
                case 0x0C: out.append(contentsOf: #"\f"#.utf8)
                case ..<0x20:
                    out.append(contentsOf: #"\u00"#.utf8)
                    appendHex(CollectionOfOne(byte), to: &out)
                default: out.append(byte)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
