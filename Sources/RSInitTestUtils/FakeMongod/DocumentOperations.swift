import BSON
import Foundation

/// Orders BSON values the way MongoDB compares them across types (MinKey < null < numbers < strings < objects <
/// arrays < binary < ObjectId < bool < date < timestamp < regex < MaxKey).
enum BSONOrdering {
    static func typeRank(_ value: BSONValue) -> Int {
        switch value {
        case .minKey: return 0
        case .null, .undefined: return 1
        case .double, .int32, .int64, .decimal128: return 2
        case .string, .symbol: return 3
        case .document: return 4
        case .array: return 5
        case .binary: return 6
        case .objectID: return 7
        case .bool: return 8
        case .datetime: return 9
        case .timestamp: return 10
        case .regex: return 11
        case .dbPointer, .javascript, .javascriptWithScope: return 12
        case .maxKey: return 13
        }
    }

    /// -1, 0 or 1.
    static func compare(_ a: BSONValue, _ b: BSONValue) -> Int {
        let ra = typeRank(a)
        let rb = typeRank(b)
        if ra != rb { return ra < rb ? -1 : 1 }
        switch (a, b) {
        case (.int32, _), (.int64, _), (.double, _):
            if let x = a.int64Value, let y = b.int64Value { return x < y ? -1 : (x == y ? 0 : 1) }
            let x = a.doubleValue ?? 0
            let y = b.doubleValue ?? 0
            return x < y ? -1 : (x == y ? 0 : 1)
        case (.string(let x), .string(let y)): return x < y ? -1 : (x == y ? 0 : 1)
        case (.objectID(let x), .objectID(let y)): return lexicographic(x.bytes, y.bytes)
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (x ? 1 : -1)
        case (.datetime(let x), .datetime(let y)): return x < y ? -1 : (x == y ? 0 : 1)
        case (.timestamp(let x), .timestamp(let y)): return x < y ? -1 : (x == y ? 0 : 1)
        case (.binary(let x), .binary(let y)):
            if x.data.count != y.data.count { return x.data.count < y.data.count ? -1 : 1 }
            if x.subtype != y.subtype { return x.subtype < y.subtype ? -1 : 1 }
            return lexicographic(x.data, y.data)
        case (.document(let x), .document(let y)): return lexicographic(x.bytes, y.bytes)
        case (.array(let x), .array(let y)):
            for (l, r) in zip(x, y) {
                let c = compare(l, r)
                if c != 0 { return c }
            }
            return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
        default: return a == b ? 0 : -1
        }
    }

    private static func lexicographic(_ a: [UInt8], _ b: [UInt8]) -> Int {
        for (x, y) in zip(a, b) where x != y { return x < y ? -1 : 1 }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    }
}

/// Query-filter matching: equality on any (dotted) field, `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex`,
/// `$and $or $nor`. Enough for the oplog tailer's and tests' filters.
enum DocumentMatcher {
    static func matches(_ document: BSONDocument, _ filter: BSONDocument) -> Bool {
        DocumentFilter(filter).matches(document)
    }
}

/// A query filter parsed once (as mongod builds its match expression once per query), then matched against many
/// documents: a tailing cursor tests every oplog entry it scans, so the filter is not re-read per entry.
struct DocumentFilter {
    private enum Clause {
        case all([DocumentFilter])
        case any([DocumentFilter])
        case noneOf([DocumentFilter])
        /// A malformed `$and`/`$or`/`$nor` (not an array of documents) matches nothing.
        case never
        /// A dotted path, split once.
        case field(path: [String], Test)
    }

    private enum Test {
        case equals(BSONValue)
        /// `{$op: operand, …}`; `$regex` operands are compiled up front (nil: an invalid pattern, never matches).
        case operators([(op: String, operand: BSONValue, regex: NSRegularExpression?)])
    }

    private let clauses: [Clause]

    init(_ filter: BSONDocument) {
        clauses = filter.elements.map { key, condition in
            let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            switch key {
            case "$and", "$or", "$nor":
                guard let clauses = condition.arrayValue?.compactMap(\.documentValue) else { return .never }
                let filters = clauses.map(DocumentFilter.init)
                return key == "$and" ? .all(filters) : key == "$or" ? .any(filters) : .noneOf(filters)
            default:
                if case .regex = condition {
                    return .field(path: path, .operators([("$regex", condition, Self.regex(condition))]))
                }
                if case .document(let operators) = condition, operators.firstKey?.hasPrefix("$") == true {
                    return .field(
                        path: path,
                        .operators(
                            operators.elements.map {
                                ($0.key, $0.value, $0.key == "$regex" ? Self.regex($0.value) : nil)
                            }
                        )
                    )
                }
                return .field(path: path, .equals(condition))
            }
        }
    }

    func matches(_ document: BSONDocument) -> Bool {
        for clause in clauses {
            switch clause {
            case .all(let filters): if !filters.allSatisfy({ $0.matches(document) }) { return false }
            case .any(let filters): if !filters.contains(where: { $0.matches(document) }) { return false }
            case .noneOf(let filters): if filters.contains(where: { $0.matches(document) }) { return false }
            case .never: return false
            case .field(let path, let test):
                let value = Self.value(at: path, in: document)
                switch test {
                case .equals(let expected): if !Self.equals(value, expected) { return false }
                case .operators(let operators):
                    for (op, operand, regex) in operators where !Self.apply(op, operand, regex, value) { return false }
                }
            }
        }
        return true
    }

    private static func value(at path: [String], in document: BSONDocument) -> BSONValue? {
        var current = document
        for (index, part) in path.enumerated() {
            guard let value = current[part] else { return nil }
            if index == path.count - 1 { return value }
            guard case .document(let next) = value else { return nil }
            current = next
        }
        return nil
    }

    private static func regex(_ operand: BSONValue) -> NSRegularExpression? {
        switch operand {
        case .regex(let regex): return try? NSRegularExpression(pattern: regex.pattern)
        case .string(let string): return try? NSRegularExpression(pattern: string)
        default: return nil
        }
    }

    private static func equals(_ value: BSONValue?, _ expected: BSONValue) -> Bool {
        guard let value else { return expected == .null }
        if BSONOrdering.typeRank(value) == BSONOrdering.typeRank(expected), BSONOrdering.compare(value, expected) == 0 {
            return true
        }
        if case .array(let elements) = value { return elements.contains { equals($0, expected) } }
        return false
    }

    private static func apply(
        _ op: String,
        _ operand: BSONValue,
        _ regex: NSRegularExpression?,
        _ value: BSONValue?
    )
        -> Bool
    {
        switch op {
        case "$eq": return equals(value, operand)
        case "$ne": return !equals(value, operand)
        case "$in": return operand.arrayValue?.contains { equals(value, $0) } ?? false
        case "$nin": return !(operand.arrayValue?.contains { equals(value, $0) } ?? false)
        case "$exists": return (value != nil) == operand.isTruthy
        case "$regex":
            guard case .string(let text)? = value, let regex else { return false }
            return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
        case "$gt", "$gte", "$lt", "$lte":
            guard let value, BSONOrdering.typeRank(value) == BSONOrdering.typeRank(operand) else { return false }
            let c = BSONOrdering.compare(value, operand)
            switch op {
            case "$gt": return c > 0
            case "$gte": return c >= 0
            case "$lt": return c < 0
            default: return c <= 0
            }
        default: return false
        }
    }
}

/// A failure applying an update (mongod's code and message).
struct UpdateFailure: Error {
    let code: Int32
    let codeName: String
    let message: String
}

/// Applies replacement documents and the `$set $unset $inc $push` operators.
enum UpdateApplier {
    static func apply(_ update: BSONDocument, to original: BSONDocument) throws(UpdateFailure) -> BSONDocument {
        guard update.firstKey?.hasPrefix("$") == true else {
            // Replacement: keep the original _id first.
            var replaced = BSONDocument()
            if let id = original["_id"] { replaced.append("_id", id) }
            for (k, v) in update.elements where k != "_id" { replaced.append(k, v) }
            return replaced
        }
        var current = BSONValue.document(original)
        for (op, fields) in update.elements {
            guard case .document(let assignments) = fields else {
                throw UpdateFailure(code: 9, codeName: "FailedToParse", message: "Modifiers operate on fields")
            }
            for (path, operand) in assignments.elements {
                let parts = path.split(separator: ".", omittingEmptySubsequences: false)
                switch op {
                case "$set":
                    current = set(operand, at: parts[...], in: current)
                case "$unset":
                    current = set(nil, at: parts[...], in: current)
                case "$inc":
                    let existing = value(at: parts[...], in: current)
                    current = set(try add(existing, operand), at: parts[...], in: current)
                case "$push":
                    var items: [BSONValue] = [operand]
                    if case .document(let modifiers) = operand, let each = modifiers["$each"]?.arrayValue {
                        items = each
                    }
                    let existing = value(at: parts[...], in: current) ?? .array([])
                    guard case .array(var array) = existing else {
                        throw UpdateFailure(
                            code: 2,
                            codeName: "BadValue",
                            message: "The field '\(path)' must be an array but is of type \(existing.typeByte)"
                        )
                    }
                    array.append(contentsOf: items)
                    current = set(.array(array), at: parts[...], in: current)
                default:
                    throw UpdateFailure(
                        code: 9,
                        codeName: "FailedToParse",
                        message: "Unknown modifier: \(op). Expected a valid update modifier or pipeline-style update "
                            + "specified as an array"
                    )
                }
            }
        }
        return current.documentValue ?? original
    }

    private static func add(_ existing: BSONValue?, _ delta: BSONValue) throws(UpdateFailure) -> BSONValue {
        let base = existing ?? .int32(0)
        switch (base, delta) {
        case (.int32(let a), .int32(let b)):
            let (sum, overflow) = a.addingReportingOverflow(b)
            return overflow ? .int64(Int64(a) + Int64(b)) : .int32(sum)
        case (.int32, .int64), (.int64, .int32), (.int64, .int64):
            return .int64(base.int64Value! &+ delta.int64Value!)
        default:
            guard let a = base.doubleValue, let b = delta.doubleValue else {
                throw UpdateFailure(
                    code: 14,
                    codeName: "TypeMismatch",
                    message: "Cannot apply $inc to a non-numeric value"
                )
            }
            return .double(a + b)
        }
    }

    static func value(at path: ArraySlice<Substring>, in container: BSONValue) -> BSONValue? {
        guard let head = path.first else { return container }
        switch container {
        case .document(let d):
            guard let child = d[String(head)] else { return nil }
            return value(at: path.dropFirst(), in: child)
        case .array(let a):
            guard let index = Int(head), index >= 0, index < a.count else { return nil }
            return value(at: path.dropFirst(), in: a[index])
        default:
            return nil
        }
    }

    /// Sets (or, with nil, removes) the value at `path`, creating intermediate documents for `$set`.
    static func set(_ newValue: BSONValue?, at path: ArraySlice<Substring>, in container: BSONValue) -> BSONValue {
        guard let head = path.first else { return newValue ?? container }
        let rest = path.dropFirst()
        switch container {
        case .array(var a):
            guard let index = Int(head), index >= 0 else { return container }
            if rest.isEmpty {
                if let newValue {
                    while a.count <= index { a.append(.null) }
                    a[index] = newValue
                } else if index < a.count {
                    a[index] = .null  // $unset on an array element leaves null, as mongod does
                }
                return .array(a)
            }
            guard index < a.count || newValue != nil else { return container }
            while a.count <= index { a.append(.null) }
            a[index] = set(newValue, at: rest, in: a[index])
            return .array(a)
        case .document(let d):
            let key = String(head)
            var pairs = d.elements
            let position = pairs.firstIndex { $0.key == key }
            if rest.isEmpty {
                if let newValue {
                    if let position { pairs[position].value = newValue } else { pairs.append((key, newValue)) }
                } else if let position {
                    pairs.remove(at: position)
                }
            } else {
                let child = position.map { pairs[$0].value }
                if child == nil && newValue == nil { return container }
                let updated = set(newValue, at: rest, in: child ?? .document([:]))
                if let position { pairs[position].value = updated } else { pairs.append((key, updated)) }
            }
            return .document(BSONDocument(pairs.map { ($0.key, $0.value) }))
        default:
            return container
        }
    }
}

/// Computes mongod's `$v: 2` update diff between two versions of a document (sections `d`, `u`, `i`, `s<field>`;
/// array diffs `a`, `l`, `u<i>`, `s<i>`).
enum OplogDiff {
    static func diff(from old: BSONDocument, to new: BSONDocument) -> BSONDocument {
        let oldPairs = old.elements
        let newPairs = new.elements
        let oldByKey = Dictionary(oldPairs.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let newKeys = Set(newPairs.map(\.key))
        var deletes = BSONDocument()
        var updates = BSONDocument()
        var inserts = BSONDocument()
        var subDiffs: [(String, BSONValue)] = []
        for (key, _) in oldPairs where !newKeys.contains(key) { deletes.append(key, false) }
        for (key, value) in newPairs {
            guard let previous = oldByKey[key] else {
                inserts.append(key, value)
                continue
            }
            if previous == value { continue }
            switch (previous, value) {
            case (.document(let a), .document(let b)):
                let sub = diff(from: a, to: b)
                if !sub.isEmpty { subDiffs.append(("s" + key, .document(sub))) }
            case (.array(let a), .array(let b)):
                subDiffs.append(("s" + key, .document(arrayDiff(from: a, to: b))))
            default:
                updates.append(key, value)
            }
        }
        var result = BSONDocument()
        if !deletes.isEmpty { result.append("d", .document(deletes)) }
        if !updates.isEmpty { result.append("u", .document(updates)) }
        if !inserts.isEmpty { result.append("i", .document(inserts)) }
        for (key, value) in subDiffs { result.append(key, value) }
        return result
    }

    static func arrayDiff(from old: [BSONValue], to new: [BSONValue]) -> BSONDocument {
        var result: BSONDocument = ["a": true]
        if new.count < old.count { result.append("l", .int32(Int32(new.count))) }
        for (index, value) in new.enumerated() {
            if index >= old.count {
                result.append("u\(index)", value)
            } else if old[index] != value {
                if case .document(let a) = old[index], case .document(let b) = value {
                    result.append("s\(index)", .document(diff(from: a, to: b)))
                } else {
                    result.append("u\(index)", value)
                }
            }
        }
        return result
    }
}
