import FoundationEssentials

/// A `host:port` of a Redis node or Sentinel.
public struct RedisAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension RedisURL {
    /// Where the data lives: one server, a master that Sentinels manage (and fail over), or a Redis Cluster.
    public enum Topology: Sendable, Equatable {
        /// `redis://` / `rediss://`: the one server at `host:port`.
        case direct
        /// `redis+sentinel://`: ask the Sentinels for the master's address; follow its failovers.
        case sentinel(Sentinel)
        /// `redis+cluster://`: read the slot map from any of the seed nodes; follow MOVED and failovers.
        case cluster(seeds: [RedisAddress])
    }

    /// The Sentinels to ask and how to authenticate with them (their own password, not the data nodes').
    public struct Sentinel: Sendable, Equatable {
        public var masterName: String
        public var sentinels: [RedisAddress]
        public var username: String?
        public var password: String?

        public init(masterName: String, sentinels: [RedisAddress], username: String? = nil, password: String? = nil) {
            self.masterName = masterName
            self.sentinels = sentinels
            self.username = username
            self.password = password
        }
    }

    /// This URL pointed at one node (TLS settings, credentials and database kept): what the connector dials.
    public func node(_ address: RedisAddress) -> RedisURL {
        var url = self
        url.host = address.host
        url.port = address.port
        url.topology = .direct
        return url
    }

    /// A Sentinel's own URL: the Sentinel credentials (none by default), the same TLS settings, database 0.
    func sentinelNode(_ address: RedisAddress, _ sentinel: Sentinel) -> RedisURL {
        var url = node(address)
        url.username = sentinel.username
        url.password = sentinel.password
        url.database = 0
        return url
    }

    /// Parses the topology URL forms, or returns nil for a plain `redis://` / `rediss://` URL:
    ///
    /// - `redis+sentinel://[user:pass@]s1[:26379],s2[:26379]/<master>[/db][?sentinel_password=…]` (TLS:
    ///   `rediss+sentinel://`, for the Sentinels and the master alike). The master name can also come as
    ///   `?master_name=` / `?masterName=` (go-redis, ioredis option names), the Sentinels' password as
    ///   `sentinel_password` / `sentinelPassword`, their ACL user as `sentinel_username` / `sentinelUsername`.
    ///   Celery/kombu's `sentinel://s1:26379;sentinel://s2:26379` list is accepted too (with `?master_name=` or a
    ///   `/<master>` path).
    /// - `redis+cluster://[user:pass@]n1[:6379],n2[:6379][?…]` (TLS: `rediss+cluster://`); `redis://n1,n2?cluster=true`
    ///   is the same. Database 0 only (a Cluster has no other).
    static func parseTopologyURL(_ input: String) throws(RedisError) -> RedisURL? {
        let text = celeryListAsSentinelURL(input)
        let schemes: [(String, Bool, String)] = [
            ("redis+sentinel://", false, "sentinel"), ("rediss+sentinel://", true, "sentinel"),
            ("redis+cluster://", false, "cluster"), ("rediss+cluster://", true, "cluster"),
            ("redis://", false, ""), ("rediss://", true, ""),
        ]
        guard let (scheme, useTLS, declared) = schemes.first(where: { text.hasPrefix($0.0) }) else { return nil }
        let rest = text.dropFirst(scheme.count)
        let beforeQuery = rest.prefix { $0 != "?" }
        let queryText = rest.dropFirst(beforeQuery.count).dropFirst()
        let options = try TopologyOptions(queryText)
        let (kept, clusterOption) = (options.kept, options.cluster)
        var masterName = options.masterName
        let kind = declared.isEmpty ? (clusterOption ? "cluster" : masterName != nil ? "sentinel" : "") : declared
        let authority = beforeQuery.prefix { $0 != "/" }
        let at = authority.lastIndex(of: "@")
        let hostList = at.map { authority[authority.index(after: $0)...] } ?? authority
        guard !kind.isEmpty else {
            if hostList.contains(",") {
                throw RedisError(
                    .invalidURL,
                    "several hosts in a redis:// URL: use redis+sentinel://…/<master> for Sentinels or redis+cluster:// for a Cluster"
                )
            }
            return nil
        }
        if kind == "sentinel" && clusterOption {
            throw RedisError(.invalidURL, "cluster=true does not go with a Sentinel URL")
        }
        let userInfo = at.map { String(authority[..<$0]) + "@" } ?? ""
        var segments = beforeQuery.dropFirst(authority.count).split(separator: "/", omittingEmptySubsequences: false)
            .dropFirst().map(String.init)
        if segments.last == "" { segments.removeLast() }
        if kind == "sentinel", masterName == nil, !segments.isEmpty {
            masterName = segments.removeFirst().percentDecoded
        }
        guard segments.count <= 1 else {
            throw RedisError(.invalidURL, "too many path segments in the Redis URL (expected /<master>/<db>)")
        }
        let seeds = try Self.seeds(hostList, defaultPort: kind == "sentinel" ? 26379 : 6379)
        // Credentials, TLS options and the database are parsed (and checked) by the single-node parser.
        let queryPart = kept.isEmpty ? "" : "?" + kept.joined(separator: "&")
        let single =
            "\(useTLS ? "rediss" : "redis")://\(userInfo)\(hostList.split(separator: ",")[0])/\(segments.first ?? "")\(queryPart)"
        var url = try RedisURL(single)
        url.topology =
            kind == "sentinel"
            ? try Self.sentinelTopology(masterName: masterName, seeds: seeds, options: options)
            : try Self.clusterTopology(seeds: seeds, options: options, masterName: masterName, database: url.database)
        return url
    }

    /// A Sentinel URL's topology: it needs a master name; the Sentinels' own credentials come from the query.
    static func sentinelTopology(
        masterName: String?,
        seeds: [RedisAddress],
        options: TopologyOptions
    ) throws(RedisError) -> Topology {
        guard let masterName, !masterName.isEmpty else {
            throw RedisError(
                .invalidURL,
                "no master name in the Sentinel URL: redis+sentinel://host:26379,host2:26379/<master-name>"
            )
        }
        return .sentinel(
            Sentinel(
                masterName: masterName,
                sentinels: seeds,
                username: options.sentinelUser,
                password: options.sentinelPassword
            )
        )
    }

    /// A Cluster URL's topology: no Sentinel options, database 0 only.
    static func clusterTopology(
        seeds: [RedisAddress],
        options: TopologyOptions,
        masterName: String?,
        database: Int
    ) throws(RedisError) -> Topology {
        if options.sentinelUser != nil || options.sentinelPassword != nil || masterName != nil {
            throw RedisError(.invalidURL, "Sentinel options in a Cluster URL")
        }
        guard database == 0 else {
            throw RedisError(.invalidURL, "a Redis Cluster has database 0 only: drop /\(database) from the URL")
        }
        return .cluster(seeds: seeds)
    }

    /// Celery/kombu's `sentinel://s1:26379;sentinel://s2:26379` as `redis+sentinel://s1:26379,s2:26379`; any other
    /// text unchanged. Celery repeats the credentials in every entry: the first entry's are kept.
    static func celeryListAsSentinelURL(_ text: String) -> String {
        guard text.hasPrefix("sentinel://") else { return text }
        let entries = text.dropFirst("sentinel://".count).components(separatedBy: ";sentinel://")
        let rest = entries.dropFirst().map { entry in
            entry.prefix { $0 != "/" && $0 != "?" }.lastIndex(of: "@").map {
                String(entry[entry.index(after: $0)...])
            }
                ?? entry
        }
        return "redis+sentinel://" + ([entries.first ?? ""] + rest).joined(separator: ",")
    }

    /// The query options that belong to the topology; the rest (`kept`) goes to the single-node parser (TLS).
    struct TopologyOptions {
        var kept: [Substring] = []
        var masterName: String?
        var sentinelUser: String?
        var sentinelPassword: String?
        var cluster = false

        init(_ queryText: Substring) throws(RedisError) {
            for (pair, key, value) in try RedisURL.queryOptions(queryText) {
                switch key {
                case "master_name", "masterName", "service_name": masterName = value
                case "sentinel_password", "sentinelPassword": sentinelPassword = value
                case "sentinel_username", "sentinelUsername": sentinelUser = value
                case "cluster":
                    guard ["true", "1", "yes"].contains(value.lowercased()) || value.isEmpty else {
                        throw RedisError(.invalidURL, "bad cluster=\(value) in the Redis URL: use cluster=true")
                    }
                    cluster = true
                default: kept.append(pair)
                }
            }
        }
    }

    /// The comma-separated host list as addresses (each checked by the single-node parser; `defaultPort` when
    /// an entry has none).
    static func seeds(_ hostList: Substring, defaultPort: Int) throws(RedisError) -> [RedisAddress] {
        var seeds: [RedisAddress] = []
        for item in hostList.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw RedisError(.invalidURL, "an empty host in the Redis URL's host list") }
            let hasPort = item.hasPrefix("[") ? item.contains("]:") : item.contains(":")
            let seed = try RedisURL("redis://\(item)\(hasPort ? "" : ":\(defaultPort)")")
            seeds.append(RedisAddress(host: seed.host, port: seed.port))
        }
        return seeds
    }

    /// The redacted form of a Sentinel or Cluster URL (nil for one server).
    var topologyDescription: String? {
        let user = username.map { $0 + (password != nil ? ":***@" : "@") } ?? (password != nil ? ":***@" : "")
        let tlsSuffix = useTLS ? "s" : ""
        switch topology {
        case .direct: return nil
        case .sentinel(let sentinel):
            let sentinels = sentinel.sentinels.map(\.description).joined(separator: ",")
            return "redis\(tlsSuffix)+sentinel://\(user)\(sentinels)/\(sentinel.masterName)/\(database)"
        case .cluster(let seeds):
            return "redis\(tlsSuffix)+cluster://\(user)\(seeds.map(\.description).joined(separator: ","))"
        }
    }

    /// Whether the node to write to can change while the bridge runs (a failover, a slot moved).
    public var followsFailovers: Bool { topology != .direct }
}
