public import BSON

/// Which changed-field names an update reports (`f` in the Redis message).
public enum ChangedFieldsMode: String, Sendable, CaseIterable {
    /// Top-level field names only (a superset of any deeper change).
    case top
    /// Dotted leaf paths where the update names them exactly; the nearest containing field where it cannot.
    case deep
}

/// Computes changed fields from oplog `o` documents: inserts, replacements, classic `$set`/`$unset` updates and
/// `$v: 2` diffs (sections `i`, `u`, `d`, `b`, `s<field>`; array diffs `a`, `l`, `u<i>`, `s<i>`). Rules and vectors:
/// `shared/spec/event-format.md` §3, §8 (G7, G8), §9c–9d. A change is never dropped: what cannot be named exactly
/// falls back to the nearest containing field; only the unknown is counted in ``Result/unprocessable``.
public enum ChangedFields {
    public struct Result: Sendable, Equatable {
        /// Field names, de-duplicated, in first-seen order (consumers treat `f` as a set).
        public var fields: [String]
        /// Parts of the update that named no field (malformed operator values); for a metric.
        public var unprocessable: Int
    }

    /// How an update's `o` is written.
    public enum UpdateFormat: Sendable, Equatable {
        /// `$v: 2` (numeric) with a `diff` document.
        case diff(BSONDocument)
        /// `$set` / `$unset` operators.
        case classic
        /// A whole replacement document.
        case replacement
    }

    /// F12–F18: `$v` must be numeric 2 and `diff` a document for a v2 diff; `$set` or `$unset` makes it classic.
    public static func format(of object: BSONDocument) -> UpdateFormat {
        let values = object.values(for: formatKeys)
        if let version = values[0], isNumericTwo(version), case .document(let diff)? = values[1] {
            return .diff(diff)
        }
        if values[2] != nil || values[3] != nil { return .classic }
        return .replacement
    }

    private static let formatKeys = BSONKeySet(["$v", "diff", "$set", "$unset"])

    private static func isNumericTwo(_ value: BSONValue) -> Bool {
        switch value {
        case .int32(2), .int64(2): return true
        case .double(let d): return d == 2
        case .decimal128: return false
        default: return false
        }
    }

    /// Top-level keys of an inserted or replacement document.
    public static func documentKeys(_ document: BSONDocument) -> Result {
        Result(fields: document.keys, unprocessable: 0)
    }

    /// Changed fields of an update's `o`.
    public static func update(_ object: BSONDocument, mode: ChangedFieldsMode) -> Result {
        update(object, format: format(of: object), mode: mode)
    }

    /// Changed fields of an update whose ``format(of:)`` the caller already knows (no second scan).
    public static func update(_ object: BSONDocument, format: UpdateFormat, mode: ChangedFieldsMode) -> Result {
        var collector = Collector()
        switch format {
        case .replacement:
            return documentKeys(object)
        case .classic:
            for (operatorName, value) in object.elements where operatorName != "$v" {
                guard operatorName.hasPrefix("$"), case .document(let paths) = value else {
                    collector.unprocessable += 1  // F06: a non-operator or non-document operator value
                    continue
                }
                for path in paths.keys {
                    collector.add(mode == .deep ? path : String(path.prefix { $0 != "." }))
                }
            }
        case .diff(let diff):
            switch mode {
            case .top: collectTop(diff, into: &collector)
            case .deep: collectDeep(diff, prefix: nil, into: &collector)
            }
        }
        return collector.result
    }

    // MARK: - $v: 2, top-level names

    private static let documentType: UInt8 = 0x03

    private static func collectTop(_ diff: BSONDocument, into collector: inout Collector) {
        diff.forEachField { key, type, value in
            switch key {
            case "i", "u", "d", "b":
                guard type == documentType, case .document(let section) = value() else {
                    collector.unprocessable += 1  // F10: "i": 10
                    return
                }
                for field in section.keys { collector.add(field) }
            default:
                if key.hasPrefix("s") && key.utf8.count > 1 {
                    collector.add(String(key.dropFirst()))  // F07: "sg": 10 still names g
                } else if type == documentType, case .document(let section) = value() {
                    // G8: a section we do not know yet; its keys are field names in every known section.
                    for field in section.keys { collector.add(field) }
                } else {
                    collector.unprocessable += 1
                }
            }
        }
    }

    // MARK: - $v: 2, dotted leaf paths

    private static func join(_ prefix: String?, _ name: String) -> String {
        guard let prefix else { return name }
        return prefix + "." + name
    }

    private static func collectDeep(_ diff: BSONDocument, prefix: String?, into collector: inout Collector) {
        diff.forEachField { key, type, value in
            switch key {
            case "i", "u":
                guard type == documentType, case .document(let section) = value() else {
                    fallBack(prefix, into: &collector)
                    return
                }
                section.forEachField { field, fieldType, fieldValue in
                    let path = join(prefix, field)
                    if fieldType == documentType, case .document(let inner) = fieldValue() {
                        flatten(inner, path: path, into: &collector)
                    } else {
                        collector.add(path)
                    }
                }
            case "d", "b":
                guard type == documentType, case .document(let section) = value() else {
                    fallBack(prefix, into: &collector)
                    return
                }
                for field in section.keys { collector.add(join(prefix, field)) }
            default:
                if key.hasPrefix("s") && key.utf8.count > 1 {
                    let path = join(prefix, String(key.dropFirst()))
                    guard type == documentType, case .document(let sub) = value() else {
                        collector.add(path)  // malformed sub-diff: the field itself changed
                        return
                    }
                    if sub["a"]?.isTruthy == true {
                        collectArray(sub, path: path, into: &collector)
                    } else {
                        collectDeep(sub, prefix: path, into: &collector)  // F08: an empty sub-diff names nothing
                    }
                } else if let prefix {
                    collector.add(prefix)  // G8: an unknown section names the enclosing field
                } else if type == documentType, case .document(let section) = value() {
                    for field in section.keys { collector.add(field) }  // G8 at the top: its keys
                } else {
                    collector.unprocessable += 1
                }
            }
        }
    }

    /// G7: every `u<i>` / `s<i>` element and an `l` truncation, however they are mixed.
    private static func collectArray(_ diff: BSONDocument, path: String, into collector: inout Collector) {
        for (key, value) in diff.elements {
            if key == "a" { continue }
            if key == "l" {
                collector.add(path)  // truncation: the array itself changed
                continue
            }
            let index = key.dropFirst()
            guard let first = key.first, first == "u" || first == "s", !index.isEmpty, index.allSatisfy(\.isNumber)
            else {
                collector.add(path)  // unknown array-diff key: fall back to the array
                continue
            }
            let elementPath = path + "." + index
            if first == "u" {
                collector.add(elementPath)
            } else if case .document(let sub) = value {
                if sub["a"]?.isTruthy == true {
                    collectArray(sub, path: elementPath, into: &collector)
                } else {
                    let before = collector.count
                    collectDeep(sub, prefix: elementPath, into: &collector)
                    if collector.count == before && !sub.isEmpty { collector.add(elementPath) }
                }
            } else {
                collector.add(elementPath)
            }
        }
    }

    /// Inserted/updated documents become leaf paths; an empty document is its own leaf (C06); arrays are leaves
    /// (C11).
    private static func flatten(_ document: BSONDocument, path: String, into collector: inout Collector) {
        guard !document.isEmpty else {
            collector.add(path)
            return
        }
        document.forEachField { field, type, value in
            let inner = path + "." + field
            if type == documentType, case .document(let nested) = value() {
                flatten(nested, path: inner, into: &collector)
            } else {
                collector.add(inner)
            }
        }
    }

    private static func fallBack(_ prefix: String?, into collector: inout Collector) {
        if let prefix { collector.add(prefix) } else { collector.unprocessable += 1 }
    }

    private struct Collector {
        var fields: [String] = []
        /// Only built past a few fields: a linear scan is cheaper for the usual handful.
        var seen: Set<String>?
        var unprocessable = 0
        var count: Int { fields.count }

        mutating func add(_ field: String) {
            if seen == nil {
                if fields.contains(field) { return }
                fields.append(field)
                if fields.count > 12 { seen = Set(fields) }
            } else if seen?.insert(field).inserted == true {
                fields.append(field)
            }
        }

        var result: Result { Result(fields: fields, unprocessable: unprocessable) }
    }
}
