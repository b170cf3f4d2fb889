import Foundation
public import RESP

#if canImport(Glibc)
import Glibc
#endif

/// One blocking admin command to a loopback Redis or Sentinel (test set-up: roles, failovers, cluster meet).
/// Run it off the cooperative pool (``onDedicatedThread(_:)``).
public func redisAdminCommand(port: UInt16, _ arguments: [String], timeout: Double = 5) throws -> RESPValue {
    guard let fd = connectLoopback(port: port) else { throw FakeMongodError("cannot connect to 127.0.0.1:\(port)") }
    defer { Glibc.close(fd) }
    var wait = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
    var out: [UInt8] = []
    RESPCodec.encodeCommand(arguments.map { Array($0.utf8) }, into: &out)
    guard out.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == out.count else {
        throw FakeMongodError("cannot write to 127.0.0.1:\(port)")
    }
    var buffer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        var index = 0
        if let value = try RESPCodec.decode(buffer, at: &index) { return value }
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { throw FakeMongodError("127.0.0.1:\(port) closed or timed out") }
        buffer += chunk[..<count]
    }
}

/// Polls `condition` (off the cooperative pool) until it holds or `timeout` passes.
func waitUntil(_ what: String, timeout: TimeInterval, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    throw FakeMongodError("timed out waiting for \(what)")
}

/// A Sentinel-managed master on loopback: a master, replicas and Sentinels, all real `redis-server` processes
/// (Sentinels with `down-after-milliseconds` 1000, so a killed master fails over within a few seconds).
public final class RedisSentinelSet: @unchecked Sendable {
    public let masterName: String
    /// The data nodes; `servers[0]` is the first master.
    public let servers: [RedisServerProcess]
    public let sentinels: [RedisServerProcess]

    private init(masterName: String, servers: [RedisServerProcess], sentinels: [RedisServerProcess]) {
        self.masterName = masterName
        self.servers = servers
        self.sentinels = sentinels
    }

    /// Starts the master, `replicas` replicas and `sentinelCount` Sentinels (quorum 2), and waits until every
    /// Sentinel sees the replicas and the other Sentinels (so a failover can be authorised at once).
    public static func launch(
        masterName: String = "mymaster",
        replicas: Int = 1,
        sentinelCount: Int = 3,
        downAfterMilliseconds: Int = 1000
    ) async throws -> RedisSentinelSet {
        let master = try await RedisServerProcess.launch()
        var servers = [master]
        for _ in 0..<replicas {
            servers.append(try await RedisServerProcess.launch(["--replicaof", "127.0.0.1", "\(master.port)"]))
        }
        var sentinels: [RedisServerProcess] = []
        for _ in 0..<sentinelCount {
            sentinels.append(
                try await RedisServerProcess.launchSentinel(
                    masterName: masterName,
                    masterPort: master.port,
                    downAfterMilliseconds: downAfterMilliseconds
                )
            )
        }
        // A replica answers LOADING (and its subscribers get nothing) until its first sync is done.
        let replicaPorts = servers.dropFirst().map(\.port)
        try await onDedicatedThread {
            try waitUntil("the replicas to sync", timeout: 30) {
                replicaPorts.allSatisfy { port in
                    guard case .array(let role?)? = try? redisAdminCommand(port: port, ["ROLE"]) else { return false }
                    return role.count >= 4 && role[3].string == "connected"
                }
            }
        }
        let set = RedisSentinelSet(masterName: masterName, servers: servers, sentinels: sentinels)
        try await set.waitUntilReady(replicas: replicas)
        return set
    }

    /// Every running Sentinel knows the replicas (online) and the other Sentinels.
    public func waitUntilReady(replicas: Int, timeout: Double = 30) async throws {
        let ports = sentinels.map(\.port)
        let name = masterName
        let others = sentinels.count - 1
        try await onDedicatedThread {
            try waitUntil("the Sentinels to see the replicas and each other", timeout: timeout) {
                ports.allSatisfy { port in
                    guard case .array(let fields?)? = try? redisAdminCommand(port: port, ["SENTINEL", "MASTER", name])
                    else { return false }
                    let info = Self.pairs(fields)
                    return info["num-slaves"].flatMap { Int($0) } ?? 0 >= replicas
                        && info["num-other-sentinels"].flatMap { Int($0) } ?? 0 >= others
                        && !(info["flags"] ?? "").contains("down")
                }
            }
        }
    }

    static func pairs(_ fields: [RESPValue]) -> [String: String] {
        var result: [String: String] = [:]
        var index = 0
        while index + 1 < fields.count {
            if let key = fields[index].string { result[key] = fields[index + 1].string }
            index += 2
        }
        return result
    }

    /// `redis+sentinel://127.0.0.1:<s1>,…/<master>` plus an optional query.
    public func url(query: String = "") -> String {
        "redis+sentinel://" + sentinels.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") + "/\(masterName)"
            + (query.isEmpty ? "" : "?" + query)
    }

    /// The master port the first answering Sentinel names.
    public func masterPort() async throws -> UInt16 {
        let ports = sentinels.map(\.port)
        let name = masterName
        return try await onDedicatedThread {
            for port in ports {
                if case .array(let fields?)? = try? redisAdminCommand(
                    port: port,
                    ["SENTINEL", "get-master-addr-by-name", name]
                ),
                    fields.count == 2, let text = fields[1].string, let value = UInt16(text)
                {
                    return value
                }
            }
            throw FakeMongodError("no Sentinel answered")
        }
    }

    /// The data node currently on `port`.
    public func server(port: UInt16) -> RedisServerProcess? { servers.first { $0.port == port } }

    /// Waits until the Sentinels name a master other than `oldPort` and that node answers ROLE master.
    @discardableResult
    public func waitForNewMaster(other oldPort: UInt16, timeout: Double = 30) async throws -> UInt16 {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let port = try? await masterPort(), port != oldPort {
                let role = try? await onDedicatedThread { try redisAdminCommand(port: port, ["ROLE"]) }
                if case .array(let fields?)? = role, fields.first?.string == "master" { return port }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw FakeMongodError("no failover away from \(oldPort) within \(timeout) s")
    }

    /// `SENTINEL FAILOVER <master>` on the first Sentinel (a graceful, forced failover).
    public func failover() async throws {
        let port = sentinels[0].port
        let name = masterName
        let reply = try await onDedicatedThread { try redisAdminCommand(port: port, ["SENTINEL", "FAILOVER", name]) }
        if case .error(let message) = reply { throw FakeMongodError("SENTINEL FAILOVER: \(message)") }
    }

    public func stop() {
        for sentinel in sentinels { sentinel.stop() }
        for server in servers { server.stop() }
    }
}

/// A Redis Cluster on loopback: `masters` masters with `replicasPerMaster` replicas each (real `redis-server`
/// processes, `cluster-node-timeout` 1000 ms), slots split evenly, created with `redis-cli --cluster create`.
public final class RedisClusterProcesses: @unchecked Sendable {
    public let nodes: [RedisServerProcess]

    private init(nodes: [RedisServerProcess]) { self.nodes = nodes }

    public static func launch(
        masters: Int = 3,
        replicasPerMaster: Int = 1,
        nodeTimeoutMilliseconds: Int = 1000
    ) async throws -> RedisClusterProcesses {
        var nodes: [RedisServerProcess] = []
        for _ in 0..<(masters * (1 + replicasPerMaster)) {
            nodes.append(
                try await RedisServerProcess.launch([
                    "--cluster-enabled", "yes", "--cluster-node-timeout", "\(nodeTimeoutMilliseconds)",
                    "--cluster-replica-validity-factor", "0",
                ])
            )
        }
        let cluster = RedisClusterProcesses(nodes: nodes)
        let addresses = nodes.map { "127.0.0.1:\($0.port)" }
        try await onDedicatedThread {
            guard
                let cli = ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"].first(where: {
                    FileManager.default.isExecutableFile(atPath: $0)
                })
            else { throw FakeMongodError("redis-cli is not installed (Debian: apt-get install redis-tools)") }
            guard
                let pid = spawnQuietly(
                    cli,
                    ["--cluster", "create"] + addresses + [
                        "--cluster-replicas", "\(replicasPerMaster)", "--cluster-yes",
                    ]
                )
            else { throw FakeMongodError("cannot run redis-cli") }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            guard status == 0 else { throw FakeMongodError("redis-cli --cluster create failed (\(status))") }
        }
        try await cluster.waitUntilHealthy(masters: masters, replicas: masters * replicasPerMaster)
        return cluster
    }

    /// Every running node reports `cluster_state:ok` and sees the expected masters and replicas.
    public func waitUntilHealthy(masters: Int, replicas: Int, timeout: Double = 30) async throws {
        let ports = nodes.filter { $0.processID != 0 }.map(\.port)
        try await onDedicatedThread {
            try waitUntil("the cluster to be healthy", timeout: timeout) {
                ports.allSatisfy { port in
                    guard let info = try? redisAdminCommand(port: port, ["CLUSTER", "INFO"]).string,
                        info.contains("cluster_state:ok"),
                        case .array(let slots?)? = try? redisAdminCommand(port: port, ["CLUSTER", "SLOTS"])
                    else { return false }
                    let covered = slots.compactMap { entry -> Int? in
                        guard case .array(let fields?) = entry, fields.count >= 3,
                            let start = fields[0].integer, let end = fields[1].integer
                        else { return nil }
                        return Int(end - start + 1)
                    }.reduce(0, +)
                    let replicaCount = slots.map { entry -> Int in
                        guard case .array(let fields?) = entry else { return 0 }
                        return max(0, fields.count - 3)
                    }.reduce(0, +)
                    return covered == 16384 && slots.count >= masters && replicaCount >= replicas
                }
            }
        }
    }

    /// `redis+cluster://127.0.0.1:<p1>,…` (every node as a seed).
    public var url: String { "redis+cluster://" + nodes.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") }

    /// The port of the master serving `slot`, from a running node's `CLUSTER SLOTS`.
    public func masterPort(slot: Int) async throws -> UInt16 {
        let ports = nodes.filter { $0.processID != 0 }.map(\.port)
        return try await onDedicatedThread {
            for port in ports {
                guard case .array(let slots?)? = try? redisAdminCommand(port: port, ["CLUSTER", "SLOTS"]) else {
                    continue
                }
                for entry in slots {
                    guard case .array(let fields?) = entry, fields.count >= 3,
                        let start = fields[0].integer, let end = fields[1].integer,
                        (start...end).contains(Int64(slot)), case .array(let node?) = fields[2], node.count >= 2,
                        let master = node[1].integer, let value = UInt16(exactly: master)
                    else { continue }
                    return value
                }
            }
            throw FakeMongodError("no node knows the master of slot \(slot)")
        }
    }

    public func node(port: UInt16) -> RedisServerProcess? { nodes.first { $0.port == port } }

    /// Waits until a running node other than `oldPort` serves `slot` as master.
    @discardableResult
    public func waitForNewMaster(slot: Int, other oldPort: UInt16, timeout: Double = 30) async throws -> UInt16 {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let port = try? await masterPort(slot: slot), port != oldPort { return port }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw FakeMongodError("slot \(slot) did not fail over away from \(oldPort) within \(timeout) s")
    }

    public func stop() { for node in nodes { node.stop() } }
}
