/// Where a set's writable primary is, as seen from the node a bootstrap talks to (shared/spec/replication-ha.md §1.1,
/// §7.3: "P := the node whose hello says isWritablePrimary:true"). Pure: the bootstrapper asks the node `hello`,
/// this decides, the bootstrapper moves its direct connection when told to.
public enum PrimaryLocation: Sendable, Equatable {
    /// The node itself is the writable primary.
    case here
    /// Another member is the primary (`hello.primary`, listed in the set's `hosts`): send the reconfig there.
    case elsewhere(HostAndPort)
    /// No primary known (election, leader-elect/drain on this node, no config yet): wait and ask again.
    case unknown
}

public enum PrimaryLocator {
    /// Decides from the node's `hello`. `primary` is trusted only when it is one of the set's electable members
    /// (`hosts`, §1.1: a primary is always electable) and is not the node itself (`me`): a node in catch-up or drain
    /// names itself as primary while not yet writable (§1.3), which is "wait", not "move".
    public static func locate(_ hello: HelloSummary) -> PrimaryLocation {
        if hello.isWritablePrimary { return .here }
        guard let named = hello.primary, named != hello.me, hello.hosts.contains(named),
            let primary = HostAndPort(parsing: named)
        else { return .unknown }
        return .elsewhere(primary)
    }

    /// `uri` with its seed list replaced by `host`, every other part (credentials, database, options) kept; nil for
    /// a `mongodb+srv://` URI (its hosts come from DNS, and SRV implies TLS and TXT options that a plain seed would
    /// lose) or one without a host part.
    public static func uri(_ uri: String, withHost host: HostAndPort) -> String? {
        let scheme = "mongodb://"
        guard uri.hasPrefix(scheme) else { return nil }
        let rest = uri.dropFirst(scheme.count)
        // The host list ends at the first "/" or "?" (neither may appear unescaped in userinfo or hosts).
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let hostsStart = authority.lastIndex(of: "@").map { authority.index(after: $0) } ?? authority.startIndex
        guard hostsStart < authorityEnd else { return nil }
        return scheme + authority[..<hostsStart] + host.description + rest[authorityEnd...]
    }
}
