/// Include/exclude rules on `database` or `database.collection`, with `*` wildcards (`app`, `app.*`, `*.users`,
/// `tenant_*.orders`). An empty include list includes everything; an exclude always wins.
public struct NamespaceFilter: Sendable, Equatable {
    struct Pattern: Sendable, Equatable {
        let database: String
        let collection: String  // "*" when the rule names only a database

        init(_ text: String) {
            let namespace = Namespace(text)
            database = namespace.database
            collection = namespace.collection.isEmpty ? "*" : namespace.collection
        }

        func matches(_ namespace: Namespace) -> Bool {
            guard Glob.matches(database, namespace.database) else { return false }
            // Database-level events (dropDatabase) concern every collection of a matching database.
            return namespace.collection.isEmpty || Glob.matches(collection, namespace.collection)
        }
    }

    let includes: [Pattern]
    let excludes: [Pattern]

    public init(include: [String] = [], exclude: [String] = []) {
        includes = include.filter { !$0.isEmpty }.map(Pattern.init)
        excludes = exclude.filter { !$0.isEmpty }.map(Pattern.init)
    }

    public static let everything = NamespaceFilter()

    public func includes(_ namespace: Namespace) -> Bool {
        if excludes.contains(where: { $0.matches(namespace) && ($0.collection == "*" || !namespace.collection.isEmpty) }
        ) {
            return false
        }
        return includes.isEmpty || includes.contains { $0.matches(namespace) }
    }

    /// A server-side `find` filter that is a superset of the include rules: entries of the included databases, plus
    /// every no-op (so the position keeps advancing on a quiet stream) and `admin.$cmd` (transactions, renames).
    /// nil when everything is included.
    public var serverFilter: [String]? {
        guard !includes.isEmpty else { return nil }
        return Array(Set(includes.map(\.database))).sorted()
    }
}

enum Glob {
    /// `*` matches any run of characters (dots included); everything else literally.
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8)
        let t = Array(text.utf8)
        var pi = 0
        var ti = 0
        var star = -1
        var mark = 0
        while ti < t.count {
            if pi < p.count && p[pi] != UInt8(ascii: "*") && p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// A regular expression for a glob (for the server-side `ns` filter).
    static func regex(_ pattern: String) -> String {
        var out = ""
        for character in pattern {
            if character == "*" {
                out += ".*"
            } else if "\\^$.|?+()[]{}".contains(character) {
                out += "\\" + String(character)
            } else {
                out.append(character)
            }
        }
        return out
    }
}
