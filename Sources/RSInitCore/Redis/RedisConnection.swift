import Dispatch
import Foundation
public import RESP
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One connection to Redis: plain TCP, AUTH (password or ACL user), SELECT, and pipelined commands.
///
/// Threading: the socket is blocking with timeouts and confined to a private serial queue, so no call ever blocks
/// Swift's cooperative pool; that confinement is why the class is `@unchecked Sendable`. Error replies are values
/// (``RESPValue/error(_:)``); transport failures throw ``RedisError`` and leave the connection closed.
public final class RedisConnection: @unchecked Sendable {
    public let url: RedisURL
    private let queue = DispatchQueue(label: "rsinit.redis.connection")
    private let timeout: Duration
    /// Touched only on `queue`.
    private var socket: Int32 = -1 {
        didSet { openFlag.withLock { $0 = socket >= 0 } }
    }
    /// Mirrors `socket >= 0` for ``isOpen`` without waiting for the queue (which may be busy with I/O).
    private let openFlag = Mutex(false)
    private var buffer: [UInt8] = []
    private var readIndex = 0

    private init(url: RedisURL, timeout: Duration) {
        self.url = url
        self.timeout = timeout
    }

    deinit {
        if socket >= 0 { Glibc.close(socket) }
    }

    /// Connects, authenticates and selects the database.
    ///
    /// - Throws: ``RedisError``: refused, host not found, timeout, wrong password (`authenticationFailed`), TLS.
    public static func connect(_ url: RedisURL, timeout: Duration = .seconds(5)) async throws -> RedisConnection {
        guard !url.useTLS else {
            throw RedisError(
                .tlsUnsupported,
                "rediss:// (TLS) is not supported by this build yet; use redis:// on a trusted network"
            )
        }
        let connection = RedisConnection(url: url, timeout: timeout)
        try await connection.onQueue { try connection.openSocket() }
        var handshake: [[String]] = []
        if let password = url.password {
            handshake.append(url.username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if url.database != 0 { handshake.append(["SELECT", String(url.database)]) }
        if !handshake.isEmpty {
            let replies = try await connection.pipeline(handshake.map { $0.map { Array($0.utf8) } })
            for (command, reply) in zip(handshake, replies) {
                guard case .error(let message) = reply else { continue }
                await connection.close()
                if command[0] == "AUTH" {
                    throw RedisError(
                        .authenticationFailed,
                        "Redis rejected the credentials for \(url): \(Self.firstWord(message))"
                            + " — check the user and password in --redis"
                    )
                }
                throw RedisError(.server, "SELECT \(url.database) failed: \(message)")
            }
        }
        return connection
    }

    private static func firstWord(_ message: String) -> String {
        // WRONGPASS / ERR ... — never echo anything the server might have copied from our input.
        message.hasPrefix("WRONGPASS") ? "WRONGPASS (invalid username-password pair or user is disabled)" : message
    }

    /// Sends all commands at once, then reads their replies in order.
    public func pipeline(_ commands: [[[UInt8]]]) async throws -> [RESPValue] {
        try await onQueue {
            var out: [UInt8] = []
            for command in commands { RESPCodec.encodeCommand(command, into: &out) }
            try self.write(out)
            var replies: [RESPValue] = []
            replies.reserveCapacity(commands.count)
            while replies.count < commands.count { replies.append(try self.readValue()) }
            return replies
        }
    }

    /// One command; an error reply is returned as `.error`.
    public func command(_ arguments: [String]) async throws -> RESPValue {
        try await pipeline([arguments.map { Array($0.utf8) }])[0]
    }

    /// One command that must not fail: an error reply throws (`NOAUTH` as ``RedisError/Kind/authenticationRequired``).
    @discardableResult
    public func require(_ arguments: [String]) async throws -> RESPValue {
        try Self.check(try await command(arguments), command: arguments.first ?? "")
    }

    static func check(_ reply: RESPValue, command: String) throws -> RESPValue {
        guard case .error(let message) = reply else { return reply }
        if message.hasPrefix("NOAUTH") {
            throw RedisError(
                .authenticationRequired,
                "Redis requires authentication: put the password (and user) in --redis"
            )
        }
        if message.hasPrefix("NOPERM") {
            throw RedisError(.authenticationFailed, "the Redis user lacks a permission: \(message)")
        }
        throw RedisError(.server, "\(command) failed: \(message)")
    }

    /// Blocks (off the pool) until one pushed value arrives, or nil after `wait` (for pub/sub subscribers).
    public func readPushed(wait: Duration) async throws -> RESPValue? {
        try await onQueue {
            if let value = try self.decodeBuffered() { return value }
            var pollDescriptor = pollfd(fd: self.socket, events: Int16(POLLIN), revents: 0)
            guard poll(&pollDescriptor, 1, Int32(wait.milliseconds)) > 0 else { return nil }
            return try self.readValue()
        }
    }

    /// Closes the socket. Safe to call twice.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if self.socket >= 0 { Glibc.close(self.socket) }
                self.socket = -1
                continuation.resume()
            }
        }
    }

    /// Whether the socket is open (false after ``close()`` or a transport failure). Never blocks.
    public var isOpen: Bool { openFlag.withLock { $0 } }

    // MARK: - On the queue

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    private func fail(_ kind: RedisError.Kind, _ message: String) -> RedisError {
        if socket >= 0 { Glibc.close(socket) }
        socket = -1
        buffer.removeAll()
        readIndex = 0
        return RedisError(kind, message)
    }

    private func openSocket() throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(url.host, String(url.port), &hints, &result)
        guard status == 0, let first = result else {
            throw RedisError(.hostNotFound, "cannot resolve Redis host \(url.host)")
        }
        defer { freeaddrinfo(result) }
        var lastError = RedisError(.connectionRefused, "cannot connect to Redis at \(url)")
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            let flags = fcntl(fd, F_GETFL, 0)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var result = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result != 0 && errno == EINPROGRESS {
                var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&descriptor, 1, Int32(timeout.milliseconds)) == 1 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                    result = error == 0 ? 0 : -1
                    errno = error
                } else {
                    Glibc.close(fd)
                    lastError = RedisError(
                        .timeout,
                        "connecting to Redis at \(url) timed out after \(timeout.formattedSeconds)"
                    )
                    continue
                }
            }
            guard result == 0 else {
                let code = errno
                Glibc.close(fd)
                lastError = RedisError(
                    code == ECONNREFUSED ? .connectionRefused : .connectionLost,
                    "cannot connect to Redis at \(url): \(String(cString: strerror(code)))"
                )
                continue
            }
            _ = fcntl(fd, F_SETFL, flags)
            var yes: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.milliseconds % 1000) * 1000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            socket = fd
            return
        }
        throw lastError
    }

    private func write(_ bytes: [UInt8]) throws {
        guard socket >= 0 else { throw RedisError(.connectionLost, "the Redis connection is closed") }
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 && errno == EINTR { continue }
            guard sent > 0 else {
                let timedOut = errno == EAGAIN || errno == EWOULDBLOCK
                throw fail(
                    timedOut ? .timeout : .connectionLost,
                    "writing to Redis at \(url) failed"
                        + (timedOut ? ": timed out" : ": connection lost")
                )
            }
            offset += sent
        }
    }

    private func decodeBuffered() throws -> RESPValue? {
        do {
            guard let value = try RESPCodec.decode(buffer, at: &readIndex) else { return nil }
            if readIndex > 65_536 && readIndex * 2 > buffer.count {
                buffer.removeFirst(readIndex)
                readIndex = 0
            }
            return value
        } catch {
            throw fail(.protocolError, "Redis sent a malformed reply: \(error)")
        }
    }

    private func readValue() throws -> RESPValue {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let value = try decodeBuffered() { return value }
            guard socket >= 0 else { throw RedisError(.connectionLost, "the Redis connection is closed") }
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let timedOut = count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                throw fail(
                    timedOut ? .timeout : .connectionLost,
                    timedOut
                        ? "Redis at \(url) did not answer within \(timeout.formattedSeconds)"
                        : "Redis at \(url) closed the connection"
                )
            }
            buffer.append(contentsOf: chunk[0..<count])
        }
    }
}
