public import BSON
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A MongoDB 7.0 wire-protocol double that the real libmongoc talks to over loopback TCP.
///
/// It binds `127.0.0.1` (port 0 by default, so parallel tests never collide), serves every connection on its own
/// thread, and reproduces mongod's replica-set states, replies, codes and messages as listed in
/// `shared/spec/mongod-behaviour.md`, plus an oplog with tailable awaitData cursors and fault injection.
public final class FakeMongod: @unchecked Sendable {
    let core: FakeMongodCore
    /// Guards the socket bookkeeping below (never held while calling into `core`).
    private let networkLock = NSLock()
    private var listener: Int32 = -1
    private var listening = false
    private var stopped = false
    private var openSockets: Set<Int32> = []
    private var silentOverride: Bool?
    private var replyCounter: Int32 = 9000

    /// The bound port.
    public let port: UInt16

    /// `127.0.0.1:<port>`.
    public var hostAndPort: String { "127.0.0.1:\(port)" }

    /// A URI for a direct connection with short timeouts, as the bootstrap uses before a set exists.
    public var uri: String {
        "mongodb://127.0.0.1:\(port)/?directConnection=true&serverSelectionTimeoutMS=2000&connectTimeoutMS=2000"
    }

    /// Binds and starts listening (after `configuration.listenDelay`, connections are refused until then).
    public static func start(_ configuration: FakeMongodConfiguration = FakeMongodConfiguration()) throws -> FakeMongod
    {
        let socket = try bindSocket(port: configuration.port)
        let port = boundPort(socket)
        let server = FakeMongod(core: FakeMongodCore(configuration: configuration), listener: socket, port: port)
        server.core.locked {
            server.core.port = port
            server.core.applyScenario()
        }
        server.startTicker()
        if configuration.listenDelay > .zero {
            let delay = configuration.listenDelay
            Thread.detachNewThread { [server] in
                Thread.sleep(forTimeInterval: delay.seconds)
                server.beginListening()
            }
        } else {
            server.beginListening()
        }
        return server
    }

    private init(core: FakeMongodCore, listener: Int32, port: UInt16) {
        self.core = core
        self.listener = listener
        self.port = port
    }

    deinit { stop() }

    /// Stops listening, closes every connection and ends the background threads.
    public func stop() {
        networkLock.lock()
        let wasStopped = stopped
        stopped = true
        networkLock.unlock()
        guard !wasStopped else { return }
        closeListener()
        shutdownOpenSockets()
        core.locked {
            core.generation += 1
            core.condition.broadcast()
        }
    }

    // MARK: - Test API: state

    /// The current member phase.
    public var phase: FakeMongodPhase {
        core.locked {
            core.advance()
            return core.phase
        }
    }

    /// When the node last became a writable primary through an election (nil for `.primary` scenarios).
    public var writablePrimarySince: ContinuousClock.Instant? { core.locked { core.writableSince } }

    /// How many `replSetInitiate` calls succeeded.
    public var acceptedInitiateCount: Int { core.locked { core.acceptedInitiates } }

    /// Lower-cased names of the commands received so far (most recent last; the oldest are dropped past 10,000).
    public var receivedCommandNames: [String] { core.locked { core.receivedCommands } }

    /// Adds (or replaces) a SCRAM user, as `db.createUser` does; connections authenticate as it from then on.
    public func createUser(_ user: FakeMongodUser) {
        core.locked { core.addUser(user) }
    }

    /// The stored replica-set config, if any.
    public var replicaSetConfig: BSONDocument? { core.locked { core.replicaSetConfig } }

    /// The documents of `namespace` ("db.collection"), in insertion order.
    public func documents(in namespace: String) -> [BSONDocument] {
        core.locked { core.collections[namespace]?.documents ?? [] }
    }

    /// Waits (polling) until the double is in `phase`; false on timeout.
    public func waitForPhase(_ phase: FakeMongodPhase, timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if self.phase == phase { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return self.phase == phase
    }

    /// Waits (polling) until the listener accepts connections again (after `restart` or `refuseConnections`).
    public func waitUntilListening(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if isListening { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    private var isListening: Bool {
        networkLock.lock()
        defer { networkLock.unlock() }
        return listening
    }

    // MARK: - Test API: oplog

    /// All live oplog entries, oldest first.
    public var oplogEntries: [BSONDocument] { core.locked { core.liveOplog.map(\.document) } }

    /// The newest oplog timestamp (Timestamp(0, 0) before the oplog exists).
    public var lastOplogTimestamp: BSONTimestamp { core.locked { core.lastTimestamp } }

    /// Appends a raw entry (any shape: transactions, nested applyOps, commands, odd ids). `ts`, `t`, `v` and `wall`
    /// are filled in when absent. Wakes waiting getMores. Returns the entry's `ts`.
    @discardableResult
    public func appendOplogEntry(_ entry: BSONDocument) -> BSONTimestamp {
        core.locked {
            core.createOplog()
            return core.appendOplog(entry)
        }
    }

    /// Removes all but the newest `count` entries (the capped collection rolling over).
    public func truncateOplog(keepingLast count: Int) {
        core.locked {
            let live = core.oplog.count - core.oplogStart
            if live > count { core.oplogStart += live - count }
        }
    }

    /// Changes the oplog capacity (entries) and trims at once.
    public func setOplogCapacity(_ capacity: Int) {
        core.locked {
            core.configuration.oplogCapacity = capacity
            core.trimOplog()
        }
    }

    // MARK: - Test API: faults

    /// Primary → SECONDARY for `duration`, then a new election (term + 1, new `electionId`, "new primary" entry).
    public func stepDown(for duration: Duration) {
        core.locked { core.stepDown(for: duration) }
    }

    /// The next `count` getMores close the connection instead of answering (a hang-up mid-getMore).
    public func hangUpNextGetMore(count: Int = 1) {
        core.locked {
            core.pendingGetMoreHangUps += count
            core.condition.broadcast()
        }
    }

    /// The next getMore fails with `code` (e.g. 136 CappedPositionLost) and its cursor is gone.
    public func failNextGetMore(code: Int32, message: String) {
        core.locked { core.pendingGetMoreFailures.append((code, message)) }
    }

    /// Accept connections but answer nothing (true), or answer normally again (false).
    public func setSilent(_ silent: Bool) {
        networkLock.lock()
        silentOverride = silent
        networkLock.unlock()
    }

    /// Closes every open client connection (the listener stays up).
    public func dropConnections() {
        core.locked {
            core.generation += 1
            core.condition.broadcast()
        }
        shutdownOpenSockets()
    }

    /// Shuts down (never closes) every open connection. Under `networkLock`, so no fd in the set can have been
    /// closed and reused by another socket: only a connection's own thread closes its fd, also under the lock.
    private func shutdownOpenSockets() {
        networkLock.lock()
        for socket in openSockets { _ = Glibc.shutdown(socket, Int32(SHUT_RDWR)) }
        networkLock.unlock()
    }

    /// Stops listening for `duration` (connections are refused), then listens again on the same port.
    public func refuseConnections(for duration: Duration) {
        closeListener()
        Thread.detachNewThread { [self] in
            Thread.sleep(forTimeInterval: duration.seconds)
            self.reopenListener()
        }
    }

    /// A mongod restart: all sockets close, connections are refused for `downtime`, the data and oplog are kept,
    /// `processId` changes, and the stored config is re-validated (optionally with new host names for "self",
    /// e.g. a container whose hostname changed → REMOVED).
    public func restart(downtime: Duration = .milliseconds(50), selfHostNames: [String]? = nil) {
        closeListener()
        dropConnections()
        core.locked {
            if let selfHostNames { core.configuration.selfHostNames = selfHostNames }
            core.processId = FakeMongodCore.randomObjectID()
            core.cursors.removeAll()
            core.changeStreams.cursors.removeAll()
            core.startedAt = Date()
            core.phaseDeadline = nil
            core.stepDownUntil = nil
            core.initiating = false
            core.revalidateSelf(firstElection: false)
        }
        Thread.detachNewThread { [self] in
            Thread.sleep(forTimeInterval: downtime.seconds)
            self.reopenListener()
        }
    }

    /// A crash for ``FakeReplicaSet``: refuse connections and close the open ones until ``resumeListening()``.
    func suspendListening() {
        closeListener()
        dropConnections()
    }

    /// Listens again on the same port after ``suspendListening()``.
    func resumeListening() { reopenListener() }

    // MARK: - Sockets

    private static func bindSocket(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FakeMongodError("socket() failed: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let result = withLoopbackAddress(port: port) { bind(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw FakeMongodError("bind 127.0.0.1:\(port) failed: errno \(code)")
        }
        return fd
    }

    private static func boundPort(_ fd: Int32) -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    private func beginListening() {
        networkLock.lock()
        guard !stopped, listener >= 0, !listening else {
            networkLock.unlock()
            return
        }
        let fd = listener
        listening = Glibc.listen(fd, 512) == 0
        networkLock.unlock()
        Thread.detachNewThread { [self] in self.acceptLoop(fd) }
    }

    /// Stops accepting. A running accept loop owns the listening fd and closes it itself when `accept` fails, so
    /// the fd number cannot be reused (e.g. by another double's listener) while that loop might still call `accept`.
    private func closeListener() {
        networkLock.lock()
        let fd = listener
        let acceptLoopOwnsIt = listening
        listener = -1
        listening = false
        if fd >= 0 {
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
            if !acceptLoopOwnsIt { _ = Glibc.close(fd) }
        }
        networkLock.unlock()
    }

    private func reopenListener() {
        networkLock.lock()
        let shouldOpen = !stopped && listener < 0
        networkLock.unlock()
        guard shouldOpen else { return }
        // The port may be briefly busy; retry a few times.
        for _ in 0..<200 {
            if let fd = try? Self.bindSocket(port: port) {
                networkLock.lock()
                if stopped {
                    networkLock.unlock()
                    Glibc.close(fd)
                    return
                }
                listener = fd
                networkLock.unlock()
                beginListening()
                return
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    private func acceptLoop(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
                    usleep(1000)
                    continue
                }
                Glibc.close(fd)  // closeListener() shut it down; this loop owns the close
                return
            }
            var yes: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            networkLock.lock()
            if stopped {
                networkLock.unlock()
                Glibc.close(client)
                return
            }
            openSockets.insert(client)
            networkLock.unlock()
            let (connectionId, generation) = core.locked { () -> (Int32, Int) in
                defer { core.nextConnectionId += 1 }
                return (core.nextConnectionId, core.generation)
            }
            Thread.detachNewThread { [self] in
                // Named so profiles and benchmarks can tell the double's CPU from its client's (through the kernel:
                // Foundation's `Thread.current.name` sometimes did not take, and the benchmark then counted the
                // double's CPU as rsinit's).
                nameCurrentThread("mongod-double")
                self.serve(client, connectionId: connectionId, generation: generation)
            }
        }
    }

    private func serve(_ fd: Int32, connectionId: Int32, generation: Int) {
        defer {
            networkLock.lock()
            openSockets.remove(fd)
            // shutdown first: the peer sees the connection end even if a spawned child inherited a copy of the fd
            // (close alone would leave the connection open until every copy is closed).
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
            networkLock.unlock()
        }
        let session = FakeConnectionSession()
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return }
            buffer.append(contentsOf: chunk[0..<count])
            while true {
                let request: WireRequest?
                do { request = try MongoWireCodec.decode(&buffer) } catch { return }
                guard let request else { break }
                networkLock.lock()
                let silent = silentOverride ?? core.configuration.silent
                networkLock.unlock()
                if silent { continue }
                let secondaryOk: Bool
                if case .query(let flags, _, _, _) = request.kind {
                    secondaryOk = flags & 0x4 != 0
                } else {
                    secondaryOk = false
                }
                let context = FakeConnectionContext(
                    connectionId: connectionId,
                    session: session,
                    secondaryOkFlag: secondaryOk,
                    generation: generation
                )
                switch core.handle(request, context: context) {
                case .hangUp:
                    return
                case .none:
                    continue
                case .reply(let document):
                    if core.locked({ core.generation }) != generation { return }
                    if isExhaustHello(request) {
                        // Streaming hello (OP_MSG exhaustAllowed → moreToCome replies): FakeMongod+Exhaust.swift.
                        guard streamHello(fd, request, first: document, context: context) else { return }
                        continue
                    }
                    let bytes: [UInt8]
                    let replyID = nextReplyID()
                    switch request.kind {
                    case .query:
                        bytes = MongoWireCodec.encodeReply(
                            requestID: replyID,
                            responseTo: request.requestID,
                            document: document
                        )
                    case .message:
                        bytes = MongoWireCodec.encodeMessage(
                            requestID: replyID,
                            responseTo: request.requestID,
                            document: document
                        )
                    }
                    if !sendAll(fd, bytes) { return }
                }
            }
        }
    }

    func nextReplyID() -> Int32 {
        networkLock.lock()
        defer { networkLock.unlock() }
        replyCounter &+= 1
        return replyCounter
    }

    func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 {
                if sent < 0 && errno == EINTR { continue }
                return false
            }
            offset += sent
        }
        return true
    }

    private func startTicker() {
        Thread.detachNewThread { [weak self] in
            while let self {
                let finished = self.core.locked { () -> Bool in
                    self.core.advance()
                    let now = ContinuousClock.now
                    let next = self.core.nextWakeUp() ?? now + .milliseconds(250)
                    let wait = min(max(next - now, .milliseconds(1)), .milliseconds(250))
                    _ = self.core.condition.wait(until: Date().addingTimeInterval(wait.seconds))
                    return false
                }
                self.networkLock.lock()
                let stop = self.stopped
                self.networkLock.unlock()
                if stop || finished { return }
            }
        }
    }
}

/// A failure to start the double.
public struct FakeMongodError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
