import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A loopback TCP proxy in front of a server (Redis) that injects the faults a network path has: connections
/// reset at once or after a given number of bytes (mid-pipeline: the server gets part of a write), and connections
/// that stall (nothing forwarded either way: a server that never answers, a hung load balancer).
///
/// Each connection is served by two blocking pump threads (client → server, server → client). Thread-safe: the
/// state is behind an `NSLock` (a pthread mutex, which ThreadSanitizer understands; with `Synchronization.Mutex`
/// it reported the pumps' locked accesses as races).
public final class TCPFaultProxy: @unchecked Sendable {
    /// Where clients connect (`127.0.0.1:port`).
    public let port: UInt16
    private let target: UInt16
    private let listener: Int32

    private struct Link {
        var client: Int32
        var upstream: Int32
        var pumpsRunning = 2
        var stalled: Bool
        var closing = false
    }

    private struct State {
        var links: [Int: Link] = [:]
        var nextID = 0
        var stopped = false
        /// New connections start stalled.
        var stallNew = false
        /// Client → server bytes still forwarded before every open connection is reset (nil: not armed).
        var resetAfterBytes: Int?
        var accepted = 0
        var resets = 0
    }

    private let lock = NSLock()
    /// Guarded by `lock` (only through `withState`).
    private var storage = State()

    private func withState<T>(_ body: (inout State) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&storage)
    }

    private init(port: UInt16, target: UInt16, listener: Int32) {
        self.port = port
        self.target = target
        self.listener = listener
    }

    /// Listens on a free loopback port and forwards every connection to `127.0.0.1:target`.
    public static func start(forwardingTo target: UInt16) throws -> TCPFaultProxy {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FakeMongodError("proxy: socket() failed") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withLoopbackAddress(port: 0) { bind(fd, $0, $1) } == 0
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound, named == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw FakeMongodError("proxy: cannot listen on loopback")
        }
        let proxy = TCPFaultProxy(port: UInt16(bigEndian: address.sin_port), target: target, listener: fd)
        Thread.detachNewThread { proxy.acceptLoop() }
        return proxy
    }

    /// Connections accepted so far.
    public var connectionsAccepted: Int { withState { $0.accepted } }
    /// Connections reset so far.
    public var resets: Int { withState { $0.resets } }

    /// Resets every open connection now (RST to both sides).
    public func resetAll() {
        let ids = withState { Array($0.links.keys) }
        for id in ids { reset(id) }
    }

    /// Forwards `bytes` more bytes from clients to the server, then resets every open connection: the server gets
    /// the first part of a write and the rest is lost.
    public func resetAfter(clientBytes bytes: Int) {
        withState { $0.resetAfterBytes = max(0, bytes) }
    }

    /// Stops forwarding on every open connection (and, with `newConnections`, on those accepted from now on).
    public func stall(newConnections: Bool = false) {
        withState { state in
            for id in state.links.keys { state.links[id]?.stalled = true }
            state.stallNew = newConnections
        }
    }

    /// Forwards again what was held and everything after.
    public func resume() {
        withState { state in
            for id in state.links.keys { state.links[id]?.stalled = false }
            state.stallNew = false
        }
    }

    /// Stops listening and resets every connection.
    public func stop() {
        let first = withState { state in
            defer { state.stopped = true }
            return !state.stopped
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        resetAll()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                close(listener)
                return
            }
            guard let upstream = connectLoopback(port: target) else {
                close(client)
                continue
            }
            var yes: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(upstream, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            let id: Int? = withState { state in
                guard !state.stopped else { return nil }
                let id = state.nextID
                state.nextID += 1
                state.accepted += 1
                state.links[id] = Link(client: client, upstream: upstream, stalled: state.stallNew)
                return id
            }
            guard let id else {
                close(client)
                close(upstream)
                return
            }
            Thread.detachNewThread { self.pump(id, from: client, to: upstream, clientToServer: true) }
            Thread.detachNewThread { self.pump(id, from: upstream, to: client, clientToServer: false) }
        }
    }

    private func pump(_ id: Int, from source: Int32, to destination: Int32, clientToServer: Bool) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        pumping: while true {
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            // Held while stalled (the bytes wait here, as in a hung network path).
            while true {
                let (stalled, closing) = withState {
                    ($0.links[id]?.stalled ?? false, $0.links[id]?.closing ?? true)
                }
                if closing { break pumping }
                if !stalled { break }
                usleep(2_000)
            }
            var forward = count
            var resetAfterwards = false
            if clientToServer {
                withState { state in
                    guard let budget = state.resetAfterBytes else { return }
                    if count >= budget {
                        forward = budget
                        resetAfterwards = true
                        state.resetAfterBytes = nil
                    } else {
                        state.resetAfterBytes = budget - count
                    }
                }
            }
            var written = 0
            while written < forward {
                let result = buffer.withUnsafeBytes {
                    write(destination, $0.baseAddress! + written, forward - written)
                }
                if result <= 0 { break pumping }
                written += result
            }
            if resetAfterwards {
                resetAll()
                break
            }
        }
        finish(id)
    }

    /// Marks the connection closing and wakes both pumps; with `abort`, the sockets close with RST.
    private func reset(_ id: Int) {
        let link: Link? = withState { state in
            guard var link = state.links[id], !link.closing else { return nil }
            link.closing = true
            state.links[id] = link
            state.resets += 1
            return link
        }
        guard let link else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        for fd in [link.client, link.upstream] {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            shutdown(fd, Int32(SHUT_RD))
        }
    }

    /// A pump ended: the connection is over (both pumps are woken); the last one closes the sockets.
    private func finish(_ id: Int) {
        let (wake, close): (Link?, Link?) = withState { state in
            guard var link = state.links[id] else { return (nil, nil) }
            link.pumpsRunning -= 1
            let first = !link.closing
            link.closing = true
            if link.pumpsRunning == 0 {
                state.links[id] = nil
                return (first ? link : nil, link)
            }
            state.links[id] = link
            return (first ? link : nil, nil)
        }
        if let wake {
            shutdown(wake.client, Int32(SHUT_RDWR))
            shutdown(wake.upstream, Int32(SHUT_RDWR))
        }
        if let close {
            Glibc.close(close.client)
            Glibc.close(close.upstream)
        }
    }
}
