import FoundationEssentials
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
public import RESP
import RSInitSupport

/// One connection to Redis on SwiftNIO: plain TCP or TLS (`rediss://`), AUTH (password or ACL user), SELECT, and
/// pipelined commands whose replies are matched in order.
///
/// Error replies are values (``RESPValue/error(_:)``); transport failures throw ``RedisError`` and close the
/// connection (a reply stream that lost a frame cannot be trusted again). Every request has a deadline.
public final class RedisConnection: Sendable {
    public let url: RedisURL
    private let channel: any Channel
    private let timeout: Duration

    /// What a reply may be: the bridge's replies are integers, `OK` and a short checkpoint; pub/sub messages (for
    /// subscribers built on this connection) carry channel names and redis-oplog payloads. A frame over these
    /// limits closes the connection (``RedisError/Kind/protocolError``).
    static let replyLimits = RESPLimits(
        maximumBulkLength: 16 << 20,
        maximumArrayCount: 1 << 16,
        maximumDepth: 8,
        maximumLineLength: 64 << 10,
        maximumBufferSize: 32 << 20
    )

    /// Values Redis may push without a request (pub/sub messages) held until ``readPushed(wait:)``; more is a
    /// reader that does not keep up or a server that is not answering our requests: the connection is closed.
    public static let maximumUnsolicitedReplies = 65_536

    private init(url: RedisURL, channel: any Channel, timeout: Duration) {
        self.url = url
        self.channel = channel
        self.timeout = timeout
    }

    /// Connects (and completes the TLS handshake), authenticates and selects the database.
    ///
    /// - Throws: ``RedisError``: refused, host not found, timeout, TLS, wrong password (`authenticationFailed`).
    public static func connect(_ url: RedisURL, timeout: Duration = .seconds(5)) async throws -> RedisConnection {
        guard url.topology == .direct else {
            throw RedisError(.invalidURL, "\(url) names several nodes: connect through RedisConnector")
        }
        // Reading the PEM files is blocking file I/O: on NIO's thread pool, not the cooperative pool (a slow or
        // hung file system must not stall other tasks). Read at each connect, so renewed certificates are used.
        let tls = url.useTLS ? try await loadTLSContext(url) : nil
        let handshake = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: handshake.futureResult.eventLoop)
            .connectTimeout(TimeAmount(saturating: timeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        let isAddress = (try? SocketAddress(ipAddress: url.host, port: 0)) != nil
                        try pipeline.addHandler(
                            NIOSSLClientHandler(context: tls, serverHostname: isAddress ? nil : url.host)
                        )
                    }
                    try pipeline.addHandler(ByteToMessageHandler(RESPFrameDecoder()))
                    try pipeline.addHandler(
                        RedisChannelHandler(url: url, timeout: timeout, handshake: tls == nil ? nil : handshake)
                    )
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: url.host, port: url.port).get()
        } catch {
            handshake.succeed()
            throw connectError(error, url: url, timeout: timeout)
        }
        if tls == nil { handshake.succeed() }
        do { try await handshake.futureResult.get() } catch {
            try? await channel.close()
            throw error
        }
        let connection = RedisConnection(url: url, channel: channel, timeout: timeout)
        var commands: [[String]] = []
        if let password = url.password {
            commands.append(url.username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if url.database != 0 { commands.append(["SELECT", String(url.database)]) }
        if !commands.isEmpty {
            let replies = try await connection.pipeline(commands.map { $0.map { Array($0.utf8) } })
            for (command, reply) in zip(commands, replies) {
                guard case .error(let message) = reply else {
                    guard case .simpleString("OK") = reply else {
                        await connection.close()
                        throw RedisError(
                            .unexpectedReply,
                            "Redis answered \(command[0]) with \(reply.kindName), not OK"
                        )
                    }
                    continue
                }
                await connection.close()
                if command[0] == "AUTH" {
                    let kind = RedisError.kind(ofReply: message)
                    guard RedisError.category(of: kind) == .authentication || kind == .server else {
                        throw RedisError.reply(message, command: "AUTH")
                    }
                    throw RedisError(
                        .authenticationFailed,
                        "Redis rejected the credentials for \(url): \(Self.firstWord(message))"
                            + " — check the user and password in --redis"
                    )
                }
                let failure = RedisError.reply(message, command: "SELECT \(url.database)")
                if failure.kind == .server || failure.kind == .serverConfiguration {
                    throw RedisError(
                        .serverConfiguration,
                        "\(failure.message) — the server has no database \(url.database) (see its databases setting)"
                    )
                }
                throw failure
            }
        }
        return connection
    }

    private static func firstWord(_ message: String) -> String {
        // WRONGPASS / ERR ... — never echo anything the server might have copied from our input.
        message.hasPrefix("WRONGPASS")
            ? "WRONGPASS (invalid username-password pair or user is disabled)"
            : Redaction.redact(String(message.prefix(200)))
    }

    /// ``makeTLSContext(_:)`` on NIO's blocking-I/O thread pool.
    static func loadTLSContext(_ url: RedisURL) async throws -> NIOSSLContext {
        try await NIOThreadPool.singleton.runIfActive { try makeTLSContext(url) }
    }

    static func makeTLSContext(_ url: RedisURL) throws(RedisError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        do {
            if let caFile = url.tls.caFile {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            }
            if let certificateFile = url.tls.certificateFile, let keyFile = url.tls.keyFile {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map {
                    .certificate($0)
                }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            }
            switch url.tls.verify {
            case .full: configuration.certificateVerification = .fullVerification
            case .ca: configuration.certificateVerification = .noHostnameVerification
            case .none: configuration.certificateVerification = .none
            }
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw RedisError(
                .tlsFailed,
                "cannot set up TLS for \(url): \(error) — check the ca=, cert= and key= files in --redis"
            )
        }
    }

    private static func connectError(_ error: any Error, url: RedisURL, timeout: Duration) -> RedisError {
        if let error = error as? RedisError { return error }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return RedisError(.timeout, "connecting to Redis at \(url) timed out after \(timeout.formattedSeconds)")
        }
        if let error = error as? NIOConnectionError {
            let failures = error.connectionErrors.map(\.error)
            if failures.isEmpty {
                return RedisError(.hostNotFound, "cannot resolve Redis host \(url.host)")
            }
            if failures.contains(where: { ($0 as? IOError)?.errnoCode == ECONNREFUSED }) {
                return RedisError(.connectionRefused, "cannot connect to Redis at \(url): Connection refused")
            }
            if failures.contains(where: {
                ($0 as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false
            }) {
                return RedisError(.timeout, "connecting to Redis at \(url) timed out after \(timeout.formattedSeconds)")
            }
            return RedisError(.connectionLost, "cannot connect to Redis at \(url): \(failures[0])")
        }
        if let error = error as? IOError {
            return RedisError(
                error.errnoCode == ECONNREFUSED ? .connectionRefused : .connectionLost,
                "cannot connect to Redis at \(url): \(String(cString: strerror(error.errnoCode)))"
            )
        }
        return RedisError(.connectionLost, "cannot connect to Redis at \(url): \(error)")
    }

    /// Sends all commands at once, then reads their replies in order.
    public func pipeline(_ commands: [[[UInt8]]]) async throws -> [RESPValue] {
        var out: [UInt8] = []
        for command in commands { RESPCodec.encodeCommand(command, into: &out) }
        return try await send(encoded: out, replies: commands.count)
    }

    /// Sends `replies` commands already RESP-encoded back to back in `encoded`; returns their replies in order.
    public func send(encoded: [UInt8], replies: Int) async throws -> [RESPValue] {
        try await submit(encoded: encoded, replies: replies).replies()
    }

    /// Replies still to come for commands already written.
    public struct PendingReplies: Sendable {
        fileprivate let future: EventLoopFuture<[RESPValue]>?
        fileprivate let connection: RedisConnection

        /// Waits for the replies (in order); transport failures throw ``RedisError``.
        public func replies() async throws -> [RESPValue] {
            guard let future else { return [] }
            do { return try await future.get() } catch { throw connection.transportError(error) }
        }
    }

    /// Replies still to come for commands whose integer answers nobody reads (pipelined PUBLISHes): they are
    /// counted as they arrive, without an array of them.
    public struct PendingIntegerReplies: Sendable {
        fileprivate let future: EventLoopFuture<IntegerReplies>?
        fileprivate let connection: RedisConnection

        /// Waits for the tally; transport failures throw ``RedisError``.
        public func tally() async throws -> IntegerReplies {
            guard let future else { return IntegerReplies() }
            do { return try await future.get() } catch { throw connection.transportError(error) }
        }
    }

    /// Writes commands already RESP-encoded and returns without waiting for their replies, so the caller can
    /// prepare the next commands while Redis runs these (pipelining across writes). Replies stay in order.
    public func submit(encoded: [UInt8], replies: Int) -> PendingReplies {
        guard replies > 0 else { return PendingReplies(future: nil, connection: self) }
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        let request = RedisRequest(bytes: encoded, replies: replies, sink: .values(promise))
        channel.writeAndFlush(request).cascadeFailure(to: promise)
        return PendingReplies(future: promise.futureResult, connection: self)
    }

    /// ``submit(encoded:replies:)`` for commands answering integers whose values are not needed: the replies are
    /// counted on arrival, and only the first that is not an integer (an error, or the `OK` of a trailing SET) is
    /// kept (the bridge's PUBLISH pipelines: no array of replies per chunk is collected, handed over and walked).
    public func submitCounted(encoded: [UInt8], replies: Int) -> PendingIntegerReplies {
        guard replies > 0 else { return PendingIntegerReplies(future: nil, connection: self) }
        let promise = channel.eventLoop.makePromise(of: IntegerReplies.self)
        let request = RedisRequest(bytes: encoded, replies: replies, sink: .integers(promise))
        channel.writeAndFlush(request).cascadeFailure(to: promise)
        return PendingIntegerReplies(future: promise.futureResult, connection: self)
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

    package static func check(_ reply: RESPValue, command: String) throws(RedisError) -> RESPValue {
        guard case .error(let message) = reply else { return reply }
        throw RedisError.reply(message, command: command)
    }

    // MARK: Reply checking: a reply of the wrong type is an error (``RedisError/Kind/unexpectedReply``), never a
    // default.

    /// An integer reply (PUBLISH, EVALSHA of a script returning a number).
    package static func integer(_ reply: RESPValue, command: String) throws(RedisError) -> Int64 {
        guard case .integer(let value) = try check(reply, command: command) else {
            throw RedisError(.unexpectedReply, "Redis answered \(command) with \(reply.kindName), not an integer")
        }
        return value
    }

    /// The dedupe script's reply: the number of events it published, -1 (fence missing) up to `events`.
    package static func scriptCount(_ reply: RESPValue, events: Int) throws(RedisError) -> Int {
        let value = try integer(reply, command: "EVALSHA (the dedupe script)")
        guard value >= -1, value <= Int64(events) else {  // trap-checked: Int to Int64 widens
            throw RedisError(
                .unexpectedReply,
                "the dedupe script answered \(value) for a chunk of \(events) events (expected -1 to \(events))"
            )
        }
        return Int(value)  // trap-checked: -1...events (checked above)
    }

    /// A bulk string or nil reply (GET).
    package static func optionalString(_ reply: RESPValue, command: String) throws(RedisError) -> String? {
        switch try check(reply, command: command) {
        case .bulkString(nil): return nil
        case .bulkString(let bytes?):
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw RedisError(.unexpectedReply, "Redis answered \(command) with a value that is not UTF-8 text")
            }
            return text
        case .simpleString(let text): return text
        default:
            throw RedisError(.unexpectedReply, "Redis answered \(command) with \(reply.kindName), not a string")
        }
    }

    /// The next value Redis pushed without a request (pub/sub messages), or nil after `wait`.
    public func readPushed(wait: Duration) async throws -> RESPValue? {
        let promise = channel.eventLoop.makePromise(of: RESPValue?.self)
        channel.triggerUserOutboundEvent(RedisChannelHandler.AwaitPushed(promise: promise, wait: wait))
            .cascadeFailure(to: promise)
        do { return try await promise.futureResult.get() } catch { throw transportError(error) }
    }

    /// Closes the connection. Safe to call twice.
    public func close() async {
        try? await channel.close()
    }

    /// Whether the connection is open (false after ``close()`` or a transport failure). Never blocks.
    public var isOpen: Bool { channel.isActive }

    fileprivate func transportError(_ error: any Error) -> RedisError {
        if let error = error as? RedisError { return error }
        return RedisError(.connectionLost, "Redis at \(url) closed the connection")
    }
}

/// How many replies a run of commands got, and the first that was not an integer (with its position).
public struct IntegerReplies: Sendable, Equatable {
    public var count = 0
    /// The index of ``firstOther`` among the replies.
    public var firstOtherIndex: Int?
    public var firstOther: RESPValue?

    public init() {}

    mutating func add(_ reply: RESPValue) {
        defer { count += 1 }
        if case .integer = reply { return }
        if firstOther == nil {
            firstOtherIndex = count
            firstOther = reply
        }
    }
}

/// Commands already encoded, how many replies complete them, and who waits for them.
struct RedisRequest: Sendable {
    enum Sink: Sendable {
        /// Every reply, in order.
        case values(EventLoopPromise<[RESPValue]>)
        /// A tally (``RedisConnection/submitCounted(encoded:replies:)``).
        case integers(EventLoopPromise<IntegerReplies>)

        func fail(_ error: any Error) {
            switch self {
            case .values(let promise): promise.fail(error)
            case .integers(let promise): promise.fail(error)
            }
        }
    }

    var bytes: [UInt8]
    var replies: Int
    var sink: Sink
}

/// Frames RESP values out of the byte stream with the pure codec (never consuming a partial frame), straight
/// from NIO's buffer; everything complete in one read goes up the pipeline as one array.
struct RESPFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = [RESPValue]

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let (decoded, consumed) = try buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            var decoded: [RESPValue] = []
            // A run of integer replies (pipelined PUBLISHes) is reserved for at once: each takes at least 4 bytes
            // (`:0\r\n`), so this never reserves more than the read can hold.
            if bytes.first == UInt8(ascii: ":") { decoded.reserveCapacity(min(bytes.count / 4, 4096)) }
            do {
                while let value = try RESPCodec.decode(bytes, at: &index, limits: RedisConnection.replyLimits) {
                    decoded.append(value)
                }
            } catch {
                throw RedisError(.protocolError, "Redis sent a malformed reply: \(error)")
            }
            return (decoded, index)
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        if !decoded.isEmpty { context.fireChannelRead(wrapInboundOut(decoded)) }
        return .needMoreData
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Matches replies to requests in FIFO order; holds pushed values for ``RedisConnection/readPushed(wait:)``;
/// fails everything outstanding on a transport error or a missed deadline, and closes the channel.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = [RESPValue]
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    struct AwaitPushed: Sendable {
        var promise: EventLoopPromise<RESPValue?>
        var wait: Duration
    }

    private struct Pending {
        var sink: RedisRequest.Sink
        var expected: Int
        var deadline: Scheduled<Void>?
    }

    private let url: RedisURL
    private let timeout: Duration
    private var handshake: EventLoopPromise<Void>?
    private var pending = CircularBuffer<Pending>()
    /// Replies collected so far for `pending.first` (kept apart so appending never copies a queued element).
    private var headReplies: [RESPValue] = []
    /// The tally so far for `pending.first` when it only counts.
    private var headTally = IntegerReplies()
    private var pushed = CircularBuffer<RESPValue>()
    private var pushWaiters = CircularBuffer<(EventLoopPromise<RESPValue?>, Scheduled<Void>?)>()
    private var failure: RedisError?

    init(url: RedisURL, timeout: Duration, handshake: EventLoopPromise<Void>?) {
        self.url = url
        self.timeout = timeout
        self.handshake = handshake
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.sink.fail(failure)
            promise?.fail(failure)
            return
        }
        let deadline = context.eventLoop.assumeIsolated().scheduleTask(
            in: TimeAmount(saturating: timeout)
        ) {
            self.failAll(
                RedisError(.timeout, "Redis at \(self.url) did not answer within \(self.timeout.formattedSeconds)"),
                context: context
            )
        }
        pending.append(Pending(sink: request.sink, expected: request.replies, deadline: deadline))
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: request.bytes)), promise: promise)
    }

    /// Hands the replies of one read to the requests in order, a run of replies at a time (a pipeline of
    /// thousands of PUBLISHes arrives in a few reads).
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let values = unwrapInboundIn(data)
        var index = values.startIndex
        while index < values.endIndex {
            guard let head = pending.first else {
                let value = values[index]
                index += 1
                if let (waiter, deadline) = pushWaiters.popFirst() {
                    deadline?.cancel()
                    waiter.succeed(value)
                } else if pushed.count >= RedisConnection.maximumUnsolicitedReplies {
                    failAll(
                        RedisError(
                            .protocolError,
                            "Redis at \(url) sent more than \(RedisConnection.maximumUnsolicitedReplies) replies "
                                + "nobody asked for"
                        ),
                        context: context
                    )
                    return
                } else {
                    pushed.append(value)
                }
                continue
            }
            let promise: EventLoopPromise<[RESPValue]>
            switch head.sink {
            case .values(let waiting):
                promise = waiting
            case .integers(let counted):
                let end = min(values.endIndex, index + head.expected - headTally.count)
                while index < end {
                    headTally.add(values[index])
                    index += 1
                }
                if headTally.count == head.expected {
                    let tally = headTally
                    headTally = IntegerReplies()
                    pending.removeFirst()
                    head.deadline?.cancel()
                    counted.succeed(tally)
                }
                continue
            }
            let end = min(values.endIndex, index + head.expected - headReplies.count)
            let replies: [RESPValue]
            if headReplies.isEmpty && end - index == head.expected {
                // The whole read is this request's replies (the usual pipelined chunk): handed on without a copy.
                replies = index == values.startIndex && end == values.endIndex ? values : Array(values[index..<end])
            } else {
                if headReplies.isEmpty { headReplies.reserveCapacity(head.expected) }
                headReplies.append(contentsOf: values[index..<end])
                index = end
                guard headReplies.count == head.expected else { continue }
                replies = headReplies
                headReplies = []
            }
            index = end
            pending.removeFirst()
            head.deadline?.cancel()
            promise.succeed(replies)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let request = event as? AwaitPushed else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        promise?.succeed()
        if let failure { return request.promise.fail(failure) }
        if let value = pushed.popFirst() { return request.promise.succeed(value) }
        let waiter = request.promise
        let deadline = context.eventLoop.assumeIsolated().scheduleTask(
            in: TimeAmount(saturating: request.wait)
        ) {
            if let index = self.pushWaiters.firstIndex(where: { $0.0.futureResult === waiter.futureResult }) {
                self.pushWaiters.remove(at: index)
            }
            waiter.succeed(nil)
        }
        pushWaiters.append((waiter, deadline))
    }

    func channelActive(context: ChannelHandlerContext) {
        if handshake != nil {
            // A plain Redis port never answers a ClientHello (it waits for the end of an inline command).
            let handshakeDeadline = context.eventLoop.assumeIsolated().scheduleTask(
                in: TimeAmount(saturating: timeout)
            ) {
                guard self.handshake != nil else { return }
                self.failAll(
                    RedisError(
                        .tlsFailed,
                        "no TLS handshake from Redis at \(self.url) within \(self.timeout.formattedSeconds) — is it a TLS port?"
                    ),
                    context: context
                )
            }
            handshake?.futureResult.whenComplete { _ in handshakeDeadline.cancel() }
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshake?.succeed()
            handshake = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError: RedisError
        if let error = error as? RedisError {
            redisError = error
        } else if handshake != nil || error is NIOSSLError || error is BoringSSLError {
            redisError = RedisError(
                .tlsFailed,
                "TLS with Redis at \(url) failed: \(error) — check the server certificate, ca= and verify= in --redis"
            )
        } else {
            redisError = RedisError(.connectionLost, "the connection to Redis at \(url) failed: \(error)")
        }
        failAll(redisError, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let lost = RedisError(.connectionLost, "Redis at \(url) closed the connection")
        if handshake != nil {
            failAll(
                RedisError(
                    .tlsFailed,
                    "Redis at \(url) closed the connection during the TLS handshake — is it a TLS port?"
                ),
                context: context
            )
        } else {
            failAll(failure ?? lost, context: context)
        }
        context.fireChannelInactive()
    }

    private func failAll(_ error: RedisError, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        handshake?.fail(error)
        handshake = nil
        headReplies = []
        headTally = IntegerReplies()
        while let request = pending.popFirst() {
            request.deadline?.cancel()
            request.sink.fail(error)
        }
        while let (waiter, deadline) = pushWaiters.popFirst() {
            deadline?.cancel()
            waiter.fail(error)
        }
        context.close(promise: nil)
    }
}

extension RESPValue {
    /// For messages: what kind of reply this is (never its contents).
    var kindName: String {
        switch self {
        case .simpleString: return "a status reply"
        case .error: return "an error"
        case .integer: return "an integer"
        case .bulkString(nil): return "nil"
        case .bulkString: return "a string"
        case .array(nil): return "a nil array"
        case .array: return "an array"
        }
    }
}

extension TimeAmount {
    /// `duration` in NIO's nanoseconds, saturating: a huge timeout means "never", not an overflow trap (NIO's
    /// deadline arithmetic saturates too).
    init(saturating duration: Duration) {
        let (nanoseconds, overflow) = duration.milliseconds.multipliedReportingOverflow(by: 1_000_000)
        self = .nanoseconds(overflow ? (duration < .zero ? .min : .max) : nanoseconds)
    }
}
