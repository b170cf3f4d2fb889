import FoundationEssentials
public import Logging
import NIOConcurrencyHelpers
import RESP

/// Opens the connection that takes writes for the bridge, wherever the topology puts it, and notices failovers.
///
/// - `.direct`: the URL's server.
/// - `.sentinel`: asks the Sentinels in turn (`SENTINEL get-master-addr-by-name`), verifies the answer with `ROLE`
///   (a Sentinel may still name the old master during a failover), and keeps a subscription to `+switch-master` on
///   one Sentinel, live before the Sentinels are asked (waiting up to 2 s for it): a switch closes the current
///   connection at once, so the bridge re-discovers instead of writing
///   to a demoted master that Sentinel has not reconfigured yet. Every ``connect(forKey:)`` discovers afresh, so
///   any connection loss or `READONLY` reply (both end the caller's connection) leads to re-discovery. A master a
///   `+switch-master` named as the old one is not taken again from a Sentinel that has not learnt the switch yet
///   (Sentinels share a new configuration within ~2 s, and the old master still answers `ROLE` as a master until
///   it is reconfigured): writes there would be lost when it resyncs from the new master.
/// - `.cluster`: reads `CLUSTER SLOTS` from a known node and connects to the master of the key's slot; every
///   ``connect(forKey:)`` reads the map again, so a `MOVED` (which ends the caller's connection) or a failover
///   lands on the new owner.
///
/// Thread-safe; the publisher owns one and calls ``close()``.
public final class RedisConnector: Sendable {
    public let url: RedisURL
    private let logger: Logger
    private let timeout: Duration
    private struct State {
        /// The connection handed out last (closed by the `+switch-master` watcher).
        var current: RedisConnection?
        /// Whether a master was ever found (an unknown master name is then a transient state, not a typo).
        var resolvedOnce = false
        /// Sentinels or cluster nodes that answered last, tried first next time.
        var preferred: RedisAddress?
        /// Cluster nodes learned from the slot map (tried after the seeds).
        var knownNodes: [RedisAddress] = []
        /// Masters a `+switch-master` replaced, and when: skipped for ``demotedFor`` (or until a later switch names
        /// one as the new master), so a missed switch back cannot keep the bridge away from a master for long.
        var demoted: [RedisAddress: ContinuousClock.Instant] = [:]
        var watcher: Task<Void, Never>?
        /// Whether the watcher's `+switch-master` subscription is live.
        var watching = false
        var closed = false
    }
    private let state = NIOLockedValueBox(State())
    /// How long a replaced master is not taken from a Sentinel: Sentinels learn a new configuration within ~2 s.
    static let demotedFor: Duration = .seconds(30)

    /// Tests only: how long the watcher waits before each subscription (a slow Sentinel), to show that a
    /// connection is not handed out before the subscription is live.
    let watcherDelay: Duration

    public convenience init(url: RedisURL, logger: Logger, timeout: Duration = .seconds(5)) {
        self.init(url: url, logger: logger, timeout: timeout, watcherDelay: .zero)
    }

    init(url: RedisURL, logger: Logger, timeout: Duration, watcherDelay: Duration) {
        self.url = url
        self.logger = logger
        self.timeout = timeout
        self.watcherDelay = watcherDelay
    }

    deinit { state.withLockedValue { $0.watcher?.cancel() } }

    /// Whether a new connection may be to another node than the last one (Sentinel, Cluster).
    public var followsFailovers: Bool { url.followsFailovers }

    /// A connection to the node that takes writes for `key` (the master, or the master of its slot).
    ///
    /// - Throws: ``RedisError``: transient ones (no Sentinel or node answered, the named node is not a master yet,
    ///   the slot is not served) are retried by the caller; a wrong password or an unknown master name is not.
    public func connect(forKey key: String) async throws -> RedisConnection {
        let connection: RedisConnection
        switch url.topology {
        case .direct: connection = try await RedisConnection.connect(url, timeout: timeout)
        case .sentinel(let sentinel): connection = try await connectSentinelMaster(sentinel)
        case .cluster(let seeds):
            connection = try await connectClusterMaster(seeds, slot: RedisClusterSlots.slot(of: key))
        }
        let followsSwitches = if case .sentinel = url.topology { true } else { false }
        let (stale, replaced) = state.withLockedValue { state -> (RedisConnection?, Bool) in
            // A `+switch-master` heard while this discovery was in flight (after the Sentinel named the master,
            // before the watcher could close the connection, which was not `current` yet): checked in the same
            // lock that makes it current, so either this sees the switch or the watcher sees this connection.
            let address = RedisAddress(host: connection.url.host, port: connection.url.port)
            if followsSwitches, let since = state.demoted[address], ContinuousClock.now - since < Self.demotedFor {
                return (nil, true)
            }
            let previous = state.current
            state.current = connection
            state.resolvedOnce = true
            return (previous === connection ? nil : previous, false)
        }
        if replaced {
            await connection.close()
            throw RedisError(
                .connectionLost,
                "a failover replaced \(connection.url.host):\(connection.url.port) while connecting to it; discovering again"
            )
        }
        await stale?.close()
        return connection
    }

    /// Stops the `+switch-master` subscription.
    public func close() async {
        let watcher = state.withLockedValue { state -> Task<Void, Never>? in
            state.closed = true
            defer { state.watcher = nil }
            return state.watcher
        }
        watcher?.cancel()
        await watcher?.value
    }

    private func ordered(_ addresses: [RedisAddress]) -> [RedisAddress] {
        let preferred = state.withLockedValue { $0.preferred }
        guard let preferred, let index = addresses.firstIndex(of: preferred) else { return addresses }
        return [addresses[index]] + addresses[..<index] + addresses[(index + 1)...]
    }

    // MARK: - Sentinel

    private func connectSentinelMaster(_ sentinel: RedisURL.Sentinel) async throws -> RedisConnection {
        // Subscribed before the Sentinels are asked: a failover between their answer and the subscription would
        // otherwise go unheard, and the bridge would keep writing to the replaced master (lost when it resyncs).
        startWatcher(sentinel)
        await waitUntilWatching(atMost: min(timeout, Self.watcherWait))
        var failures: [String] = []
        var unknown = 0
        for address in ordered(sentinel.sentinels) {
            let master: RedisAddress?
            do {
                master = try await askSentinel(address, sentinel)
            } catch let error as RedisError
                where error.kind == .authenticationFailed
                || error.kind == .authenticationRequired
            {
                throw RedisError(
                    error.kind,
                    "the Sentinel at \(address) refused the credentials — check sentinel_password (and sentinel_username) in --redis"
                )
            } catch {
                failures.append("\(address): \(error)")
                continue
            }
            guard let master else {
                unknown += 1
                continue
            }
            if let since = state.withLockedValue({ $0.demoted[master] }), ContinuousClock.now - since < Self.demotedFor
            {
                failures.append("\(address): still names \(master), which a failover replaced (not yet learnt)")
                continue
            }
            state.withLockedValue { $0.preferred = address }
            let connection = try await RedisConnection.connect(url.node(master), timeout: timeout)
            let role: RESPValue
            do { role = try await connection.command(["ROLE"]) } catch {
                await connection.close()
                throw error
            }
            guard case .array(let fields?) = role, fields.first?.string == "master" else {
                await connection.close()
                throw RedisError(
                    .connectionLost,
                    "the Sentinels name \(master) as master of \(sentinel.masterName), but it is not a master (yet); discovering again"
                )
            }
            return connection
        }
        if unknown > 0 && failures.isEmpty && !state.withLockedValue({ $0.resolvedOnce }) {
            throw RedisError(
                .server,
                "no Sentinel knows a master named \"\(sentinel.masterName)\" — check the master name in --redis (redis-cli -p 26379 SENTINEL MASTERS lists them)"
            )
        }
        let detail = failures.isEmpty ? "" : ": " + failures.joined(separator: "; ")
        throw RedisError(
            .connectionRefused,
            "no Sentinel named a master for \"\(sentinel.masterName)\" (\(unknown) did not know it, \(failures.count) did not answer or named a master a failover replaced)\(detail)"
        )
    }

    /// The master address one Sentinel gives, nil when it does not know the name.
    private func askSentinel(_ address: RedisAddress, _ sentinel: RedisURL.Sentinel) async throws -> RedisAddress? {
        let connection = try await RedisConnection.connect(url.sentinelNode(address, sentinel), timeout: timeout)
        let answer: RESPValue
        do {
            answer = try await connection.command(["SENTINEL", "get-master-addr-by-name", sentinel.masterName])
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
        let reply = try RedisConnection.check(answer, command: "SENTINEL get-master-addr-by-name")
        switch reply {
        case .array(nil), .bulkString(nil): return nil
        case .array(let fields?):
            guard fields.count == 2, let host = fields[0].string, !host.isEmpty, let portText = fields[1].string,
                let port = Int(portText), (1...65535).contains(port)  // trap-checked: parsing text: nil, not a trap
            else {
                throw RedisError(
                    .protocolError,
                    "the Sentinel at \(address) sent a master address this client cannot read"
                )
            }
            return RedisAddress(host: host, port: port)
        default:
            throw RedisError(.protocolError, "the Sentinel at \(address) sent a master address this client cannot read")
        }
    }

    /// How long a connection waits for the `+switch-master` subscription (no Sentinel answering is then the
    /// error the discovery reports).
    static let watcherWait: Duration = .seconds(2)

    /// Returns once the watcher's subscription is live, or after `limit`.
    private func waitUntilWatching(atMost limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while !state.withLockedValue({ $0.watching || $0.closed }) {
            guard ContinuousClock.now < deadline, !Task.isCancelled else {
                logger.debug("discovering the master before the +switch-master subscription is live")
                return
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Subscribes to `+switch-master` on one Sentinel after another until ``close()``.
    private func startWatcher(_ sentinel: RedisURL.Sentinel) {
        state.withLockedValue { state in
            guard state.watcher == nil, !state.closed else { return }
            state.watcher = Task { [weak self] in
                while !Task.isCancelled {
                    guard let self else { return }
                    await self.watchOnce(sentinel)
                    try? await Task.sleep(for: .milliseconds(500))
                }
            }
        }
    }

    private func watchOnce(_ sentinel: RedisURL.Sentinel) async {
        for address in ordered(sentinel.sentinels) where !Task.isCancelled {
            if watcherDelay > .zero { try? await Task.sleep(for: watcherDelay) }
            guard
                let connection = try? await RedisConnection.connect(
                    url.sentinelNode(address, sentinel),
                    timeout: timeout
                )
            else { continue }
            await follow(connection, sentinel)
            await connection.close()
        }
    }

    /// Reads `+switch-master` messages until the Sentinel connection fails or the task is cancelled.
    private func follow(_ connection: RedisConnection, _ sentinel: RedisURL.Sentinel) async {
        guard case .array? = try? await connection.command(["SUBSCRIBE", "+switch-master"]) else { return }
        state.withLockedValue { $0.watching = true }
        defer { state.withLockedValue { $0.watching = false } }
        while !Task.isCancelled {
            let pushed: RESPValue?
            do { pushed = try await connection.readPushed(wait: .seconds(1)) } catch { break }
            guard case .array(let parts?) = pushed, parts.count == 3, parts[0].string == "message",
                let text = parts[2].string
            else { continue }
            // "<name> <old-ip> <old-port> <new-ip> <new-port>"
            let words = text.split(separator: " ")
            guard words.first.map(String.init) == sentinel.masterName else { continue }
            logger.warning(
                "Sentinel reports a failover: switching to the new master",
                metadata: ["rsinit.redis.switch": "\(words.dropFirst().joined(separator: " "))"]
            )
            // trap-checked: parsing text: nil, not a trap
            if words.count == 5, let oldPort = Int(words[2]), let newPort = Int(words[4]) {
                let old = RedisAddress(host: String(words[1]), port: oldPort)
                let new = RedisAddress(host: String(words[3]), port: newPort)
                state.withLockedValue { state in
                    state.demoted[old] = .now
                    state.demoted[new] = nil
                }
            }
            let current = state.withLockedValue { $0.current }
            // Already on the new master (re-discovered after a connection loss): nothing to do.
            // trap-checked: parsing text: nil, not a trap
            if let current, words.count == 5, current.url.host == words[3], current.url.port == Int(words[4]) {
                continue
            }
            await current?.close()
        }
    }

    // MARK: - Cluster

    private func connectClusterMaster(_ seeds: [RedisAddress], slot: Int) async throws -> RedisConnection {
        let candidates = ordered(seeds + state.withLockedValue { $0.knownNodes }.filter { !seeds.contains($0) })
        var failures: [String] = []
        for address in candidates {
            let seed: RedisConnection
            do { seed = try await RedisConnection.connect(url.node(address), timeout: timeout) } catch let error
                as RedisError
            {
                if error.kind == .authenticationFailed || error.kind == .authenticationRequired { throw error }
                failures.append("\(address): \(error)")
                continue
            }
            let ranges: [RedisClusterSlots.Range]
            do {
                let reply = try RedisConnection.check(
                    try await seed.command(["CLUSTER", "SLOTS"]),
                    command: "CLUSTER SLOTS"
                )
                ranges = try RedisClusterSlots.parse(reply, fallbackHost: address.host)
            } catch let error as RedisError {
                await seed.close()
                if error.message.contains("cluster support disabled") {
                    throw RedisError(
                        .server,
                        "\(address) is not a Cluster node (cluster support disabled) — use redis:// for one server"
                    )
                }
                failures.append("\(address): \(error)")
                continue
            }
            state.withLockedValue { state in
                state.preferred = address
                state.knownNodes = Array(Set(ranges.map(\.master))).sorted { $0.description < $1.description }
            }
            guard let master = RedisClusterSlots.master(of: slot, in: ranges) else {
                await seed.close()
                throw RedisError(
                    .server,
                    "CLUSTERDOWN: no master serves slot \(slot) of the bridge's keys yet (failover in progress?)"
                )
            }
            if master == address { return seed }
            await seed.close()
            return try await RedisConnection.connect(url.node(master), timeout: timeout)
        }
        throw RedisError(
            .connectionRefused,
            "no Cluster node answered CLUSTER SLOTS: " + failures.joined(separator: "; ")
        )
    }
}
