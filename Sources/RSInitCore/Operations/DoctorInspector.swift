import BSON
import Dispatch
import FoundationEssentials
public import Logging
public import MongoCWrapper
import RESP
import RSInitSupport
public import RedisClient

/// Gathers ``DoctorFacts`` for `rsinit doctor`: read-only, except the opt-in probe (a marker document in
/// `rsinit_doctor.probe`, removed again). Every network call has a deadline; nothing here decides anything
/// (``DoctorReport`` does).
public struct DoctorInspector: Sendable {
    /// What to look at and how long to wait.
    public struct Configuration: Sendable {
        /// mongod (`--host`/`--uri`).
        public var connectionString: MongoConnectionString
        /// The expected set name.
        public var setName: String
        /// The bridge's Redis (`--redis`), if any.
        public var redis: RedisURL?
        /// The bridge's `--prefix` (channels) and `--metadata-prefix` (checkpoint and dedupe keys).
        public var channelPrefix: String
        /// Prefix of the checkpoint and dedupe keys (`--metadata-prefix`).
        public var metadataPrefix: String
        /// How long to watch the oplog's write rate.
        public var sampleDuration: Duration
        /// Run the write probe (`--probe`).
        public var probe: Bool
        /// How long the probe waits for the bridge's message.
        public var probeTimeout: Duration
        /// Per connection attempt (mongod, members, Redis).
        public var attemptTimeout: Duration

        /// A configuration; every duration has a default.
        public init(
            connectionString: MongoConnectionString,
            setName: String,
            redis: RedisURL? = nil,
            channelPrefix: String = "",
            metadataPrefix: String = "rsinit::",
            sampleDuration: Duration = .seconds(5),
            probe: Bool = false,
            probeTimeout: Duration = .seconds(5),
            attemptTimeout: Duration = .seconds(3)
        ) {
            self.connectionString = connectionString
            self.setName = setName
            self.redis = redis
            self.channelPrefix = channelPrefix
            self.metadataPrefix = metadataPrefix
            self.sampleDuration = sampleDuration
            self.probe = probe
            self.probeTimeout = probeTimeout
            self.attemptTimeout = attemptTimeout
        }
    }

    /// The database and collection the probe writes its marker to.
    public static let probeDatabase = "rsinit_doctor"
    /// The probe's collection.
    public static let probeCollection = "probe"
    /// The most oplog entries the write-rate sample reads.
    static let sampleLimit = 200_000
    /// The most SCAN calls for dedupe keys.
    static let scanCalls = 20

    let configuration: Configuration
    let logger: Logger

    /// An inspector; `logger` receives libmongoc's and rsinit's debug logs.
    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Looks at mongod, every member host, the oplog, Redis and (with `probe`) the bridge. Never throws: what could
    /// not be read is a fact too.
    public func gather() async -> DoctorFacts {
        guard let seed = configuration.connectionString.hosts.first else {
            return DoctorFacts(
                seed: "?",
                seedIsThisMachine: false,
                expectedSetName: configuration.setName,
                node: .unreachable("the URI lists no host (mongodb+srv is not resolved by doctor: pass --host)"),
                redis: await gatherRedis(),
                now: Date().timeIntervalSince1970
            )
        }
        let ownAddresses = HostResolver.ownAddresses()
        let seedHost = HostAndPort(parsing: seed)?.host ?? seed
        let seedIsThisMachine = await Self.pointsHere(seedHost, ownAddresses: ownAddresses).any
        var facts = DoctorFacts(
            seed: seed,
            seedIsThisMachine: seedIsThisMachine,
            expectedSetName: configuration.setName,
            node: .unreachable("not contacted"),
            now: Date().timeIntervalSince1970
        )
        let status = await inspectNode(seed, ownAddresses: ownAddresses, into: &facts)
        facts.redis = await gatherRedis()
        if let status, configuration.probe, configuration.redis != nil, status.kind == "member" {
            facts.probe = await runProbe(primary: primaryHost(status, members: facts.memberHosts, seed: seed))
        }
        facts.now = Date().timeIntervalSince1970
        return facts
    }

    /// The node doctor looks at first (a URI listing several hosts: the first) into `facts.node`; for a set member
    /// also every member host itself and the oplog. Returns the node's status, or nil when it could not be read
    /// (`facts.node` says why).
    private func inspectNode(
        _ seed: String,
        ownAddresses: Set<String>,
        into facts: inout DoctorFacts
    ) async -> ReplicaSetStatusReport? {
        let seedConnection: MongoConnectionString
        do {
            seedConnection =
                configuration.connectionString.hosts.count == 1
                ? configuration.connectionString
                : try MongoConnectionString(Self.uri(configuration.connectionString.uri, replacingHostsWith: seed))
        } catch {
            facts.node = .unreachable(error.message)
            return nil
        }
        let reader = ReplicaSetStatusReader(
            connectionString: seedConnection,
            attemptTimeout: configuration.attemptTimeout,
            logger: logger
        )
        let status: ReplicaSetStatusReport
        do { status = try await reader.read() } catch {
            facts.node =
                error.kind == .auth ? .authenticationFailed(error.message) : .unreachable(error.message)
            return nil
        }
        let client: MongoClient
        do { client = try MongoClient(try directOptions(seedConnection), logger: logger) } catch {
            facts.node = .unreachable("\(error)")
            return nil
        }
        let version = try? await client.runCommand(["buildInfo": 1])["version"]?.stringValue
        facts.node = .answered(
            DoctorFacts.NodeFacts(
                version: version,
                kind: status.kind,
                setName: status.setName,
                state: status.state,
                isWritablePrimary: status.writablePrimary,
                primary: status.primary,
                members: status.members
            )
        )
        if status.kind == "member" {
            facts.memberHosts = await inspectMembers(of: status, client, ownAddresses: ownAddresses)
            do { facts.oplog = try await gatherOplog(client) } catch { facts.oplogError = "\(error)" }
        }
        await client.close()
        return status
    }

    /// Every member host (the stored configuration's, else the status's), each inspected from here, concurrently:
    /// an unreachable member costs one connect timeout, not one per member.
    private func inspectMembers(
        of status: ReplicaSetStatusReport,
        _ client: MongoClient,
        ownAddresses: Set<String>
    ) async -> [DoctorFacts.MemberHost] {
        var hosts = (try? await storedMemberHosts(client)) ?? []
        if hosts.isEmpty { hosts = status.members.map(\.name) }
        return await withTaskGroup(of: (Int, DoctorFacts.MemberHost).self) { group in
            for (index, host) in hosts.enumerated() {
                group.addTask { (index, await inspectMember(host, ownAddresses: ownAddresses)) }
            }
            var inspected: [(Int, DoctorFacts.MemberHost)] = []
            for await result in group { inspected.append(result) }
            return inspected.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    // MARK: - MongoDB

    private func directOptions(_ connectionString: MongoConnectionString) throws -> MongoConnectionString {
        let ms = Int32(clamping: configuration.attemptTimeout.milliseconds)
        return try connectionString.settingOptions(
            int32: ["connectTimeoutMS": ms, "serverSelectionTimeoutMS": ms, "socketTimeoutMS": max(ms, 10_000)],
            bool: ["directConnection": true]
        )
    }

    private func storedMemberHosts(_ client: MongoClient) async throws -> [String] {
        let reply = try await client.runCommand(["replSetGetConfig": 1])
        let members = reply[path: "config.members"]?.arrayValue ?? []
        return members.compactMap { $0.documentValue?["host"]?.stringValue }
    }

    /// Resolves `host`, compares with loopback and this machine's addresses, and asks it `hello` directly.
    private func inspectMember(_ host: String, ownAddresses: Set<String>) async -> DoctorFacts.MemberHost {
        let parsed = HostAndPort(parsing: host)
        let name = parsed?.host ?? host
        let resolution = await Self.resolve(name)
        let addresses = (try? resolution.get()) ?? []
        let isLoopback =
            (parsed?.isLoopback ?? false) || addresses.contains(where: HostResolver.isLoopback(address:))
        let isThisMachine = addresses.contains { ownAddresses.contains($0) }
        var answer = DoctorFacts.MemberHost.Answer.unreachable("does not resolve")
        if case .success = resolution {
            answer = await helloMember(host)
        }
        return DoctorFacts.MemberHost(
            host: host,
            addresses: resolution,
            isLoopback: isLoopback,
            isThisMachine: isThisMachine,
            answer: answer
        )
    }

    private func helloMember(_ host: String) async -> DoctorFacts.MemberHost.Answer {
        let client: MongoClient
        do {
            let uri = try MongoConnectionString(Self.uri(configuration.connectionString.uri, replacingHostsWith: host))
            client = try MongoClient(try directOptions(uri), logger: logger)
        } catch {
            return .unreachable("\(error)")
        }
        let answer: DoctorFacts.MemberHost.Answer
        do {
            let hello = HelloSummary(try await client.runCommand(["hello": 1]))
            let state =
                hello.isWritablePrimary
                ? "PRIMARY" : (hello.isSecondary ? "SECONDARY" : (hello.setName == nil ? "not a member" : "other"))
            answer = .answered(setName: hello.setName, isWritablePrimary: hello.isWritablePrimary, state: state)
        } catch let error as MongoError {
            answer = .unreachable(error.message)
        } catch {
            answer = .unreachable("\(error)")
        }
        await client.close()
        return answer
    }

    /// `mongodb://[userinfo@]<hosts>/…` with the host list replaced (credentials and options kept).
    static func uri(_ uri: String, replacingHostsWith host: String) -> String {
        let scheme = "mongodb://"
        guard uri.hasPrefix(scheme) else { return scheme + host + "/" }
        let rest = uri.dropFirst(scheme.count)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let userInfo = authority.lastIndex(of: "@").map { String(authority[...$0]) } ?? ""
        var tail = String(rest[authorityEnd...])
        if tail.isEmpty { tail = "/" } else if tail.hasPrefix("?") { tail = "/" + tail }
        return scheme + userInfo + host + tail
    }

    private func gatherOplog(_ client: MongoClient) async throws -> DoctorFacts.Oplog? {
        guard let first = try await oplogEdge(client, newest: false),
            let last = try await oplogEdge(client, newest: true)
        else { return nil }
        var oplog = DoctorFacts.Oplog(first: first, last: last, sampleEntries: 0, sampleBytes: 0, sampleSeconds: 0)
        if let stats = try? await client.runCommand(["collStats": "oplog.rs"], database: "local") {
            oplog.sizeBytes = stats["size"]?.int64Value
            oplog.maxSizeBytes = stats["maxSize"]?.int64Value
            oplog.maxEntries = stats["max"]?.int64Value.flatMap { $0 > 0 ? $0 : nil }
        }
        let start = ContinuousClock.now
        try await Task.sleep(for: configuration.sampleDuration)
        let cursor = try await client.find(
            database: "local",
            collection: "oplog.rs",
            filter: ["ts": ["$gt": .timestamp(last)]],
            options: ["batchSize": 10_000]
        )
        var entries = 0
        var bytes = 0
        while entries < Self.sampleLimit, let entry = try await cursor.next() {
            entries += 1
            bytes += entry.byteCount
        }
        await cursor.close()
        oplog.sampleEntries = entries
        oplog.sampleBytes = bytes
        oplog.sampleSeconds = (ContinuousClock.now - start).inSeconds
        return oplog
    }

    private func oplogEdge(_ client: MongoClient, newest: Bool) async throws -> BSONTimestamp? {
        let cursor = try await client.find(
            database: "local",
            collection: "oplog.rs",
            options: ["sort": ["$natural": newest ? -1 : 1], "limit": 1, "projection": ["ts": 1]]
        )
        let entry = try await cursor.next()
        await cursor.close()
        guard case .timestamp(let ts)? = entry?["ts"] else { return nil }
        return ts
    }

    private func primaryHost(
        _ status: ReplicaSetStatusReport,
        members: [DoctorFacts.MemberHost],
        seed: String
    ) -> String? {
        if status.writablePrimary { return seed }
        for member in members {
            if case .answered(_, true, _) = member.answer { return member.host }
        }
        return nil
    }

    // MARK: - Redis

    private func gatherRedis() async -> DoctorFacts.Redis? {
        guard let url = configuration.redis else { return nil }
        var facts = DoctorFacts.Redis(
            url: url.description,
            connection: .connected,
            checkpointKey: configuration.metadataPrefix + "checkpoint"
        )
        let connection: RedisConnection
        do {
            connection = try await RedisConnection.connect(url, timeout: configuration.attemptTimeout)
        } catch let error as RedisError {
            facts.connection =
                error.kind == .authenticationFailed || error.kind == .authenticationRequired
                ? .authenticationFailed(error.message) : .unreachable(error.message)
            return facts
        } catch {
            facts.connection = .unreachable("\(error)")
            return facts
        }
        do {
            try await connection.require(["PING"])
            facts.persistence = try await persistence(connection)
            facts.checkpointValue = try await connection.require(["GET", facts.checkpointKey]).string
            (facts.dedupeKeys, facts.dedupeScanComplete) = try await countDedupeKeys(connection)
        } catch let error as RedisError {
            facts.connection =
                error.kind == .authenticationFailed || error.kind == .authenticationRequired
                ? .authenticationFailed(error.message) : .unreachable(error.message)
        } catch {
            facts.connection = .unreachable("\(error)")
        }
        await connection.close()
        return facts
    }

    private func persistence(_ connection: RedisConnection) async throws -> DoctorFacts.Redis.Persistence {
        let appendOnly = try await connection.command(["CONFIG", "GET", "appendonly"])
        let save = try await connection.command(["CONFIG", "GET", "save"])
        if case .array(let a?) = appendOnly, a.count == 2, case .array(let s?) = save, s.count == 2,
            let appendValue = a[1].string, let saveValue = s[1].string
        {
            return .configured(appendOnly: appendValue.lowercased() == "yes", rdbSave: saveValue)
        }
        var reason = "CONFIG GET is not available"
        if case .error(let message) = appendOnly {
            reason += " (\(message.prefix(80)))"
        }
        let info = try await connection.command(["INFO", "persistence"]).string ?? ""
        var aof: Bool?
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("aof_enabled:") {
            aof = line.hasSuffix(":1")
        }
        return .fromInfo(appendOnly: aof, reason: reason)
    }

    private func countDedupeKeys(_ connection: RedisConnection) async throws -> (Int, Bool) {
        var cursor = "0"
        var count = 0
        for _ in 0..<Self.scanCalls {
            let reply = try await connection.require([
                "SCAN", cursor, "MATCH", configuration.metadataPrefix + "processed::*", "COUNT", "1000",
            ])
            let (next, keys) = try Self.scanPage(reply)
            count += keys
            cursor = next
            if cursor == "0" { return (count, true) }
        }
        return (count, false)
    }

    /// The next cursor and the number of keys of a SCAN reply. (A synchronous helper: the same guard inline in the
    /// async loop above crashes Swift 6.3.1's release build, in LLVM's coroutine splitting.)
    private static func scanPage(_ reply: RESPValue) throws(RedisError) -> (next: String, keys: Int) {
        guard case .array(let parts?) = reply, parts.count == 2, let next = parts[0].string,
            case .array(let keys?) = parts[1]
        else { throw RedisError(.protocolError, "unexpected SCAN reply") }
        return (next, keys.count)
    }

    // MARK: - Probe

    /// Subscribes to the marker's channel, inserts the marker, waits for the bridge's message, removes the marker.
    private func runProbe(primary: String?) async -> DoctorFacts.Probe {
        guard let url = configuration.redis else { return .failed("no --redis") }
        guard let primary else { return .failed("no writable primary reachable from here") }
        let marker = "doctor-\(UInt64.random(in: 1...UInt64.max))"
        let channel = "\(configuration.channelPrefix)\(Self.probeDatabase).\(Self.probeCollection)::\(marker)"
        let subscriber: RedisConnection
        do {
            subscriber = try await RedisConnection.connect(url, timeout: configuration.attemptTimeout)
            try await subscriber.require(["SUBSCRIBE", channel])
        } catch {
            return .failed("cannot subscribe on Redis: \(error)")
        }
        let client: MongoClient
        do {
            let uri = try MongoConnectionString(
                Self.uri(configuration.connectionString.uri, replacingHostsWith: primary)
            )
            client = try MongoClient(try directOptions(uri), appName: "rsinit-doctor", logger: logger)
        } catch {
            await subscriber.close()
            return .failed("\(error)")
        }
        var outcome: DoctorFacts.Probe
        let start = ContinuousClock.now
        do {
            _ = try await client.runCommand(
                [
                    "insert": .string(Self.probeCollection),
                    "documents": [
                        ["_id": .string(marker), "at": .datetime(Int64(exactly: Self.nowMilliseconds()) ?? 0)]
                    ],
                ],
                database: Self.probeDatabase
            )
            outcome = .noMessage(channel: channel, waitedSeconds: configuration.probeTimeout.inSeconds)
            let deadline = start + configuration.probeTimeout
            while ContinuousClock.now < deadline {
                let remaining = deadline - ContinuousClock.now
                guard let pushed = try await subscriber.readPushed(wait: remaining) else { break }
                if case .array(let parts?) = pushed, parts.count == 3, parts[0].string == "message",
                    parts[1].string == channel
                {
                    outcome = .delivered(channel: channel, milliseconds: (ContinuousClock.now - start).inSeconds * 1000)
                    break
                }
            }
        } catch {
            outcome = .failed("\(error)")
        }
        _ = try? await client.runCommand(
            [
                "delete": .string(Self.probeCollection),
                "deletes": [["q": ["_id": .string(marker)], "limit": 1]],
            ],
            database: Self.probeDatabase
        )
        await client.close()
        await subscriber.close()
        return outcome
    }

    // MARK: - Resolution

    private static func nowMilliseconds() -> Double { (Date().timeIntervalSince1970 * 1000).rounded() }

    private static func resolve(_ host: String) async -> Result<[String], DoctorFacts.ResolutionError> {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: HostResolver.resolve(host)) }
        }
    }

    private static func pointsHere(_ host: String, ownAddresses: Set<String>) async -> (any: Bool, loopback: Bool) {
        let addresses = (try? await resolve(host).get()) ?? []
        let loopback = addresses.contains(where: HostResolver.isLoopback(address:))
        return (loopback || addresses.contains { ownAddresses.contains($0) }, loopback)
    }
}
