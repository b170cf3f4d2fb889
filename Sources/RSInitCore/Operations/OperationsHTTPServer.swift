public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RSInitSupport
public import ServiceLifecycle
import Synchronization

/// A small HTTP/1.1 server for operations endpoints (`/healthz`, `/metrics`), on SwiftNIO.
///
/// A `Service`: it serves until its task is cancelled or the `ServiceGroup` shuts down gracefully. Only GET and
/// HEAD; every route is answered by ``Router`` from the path alone (no bodies are read).
public final class OperationsHTTPServer: Service, Sendable {
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var contentType: String
        public var body: String

        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    /// Answers a path (query string removed); nil → 404.
    public typealias Router = @Sendable (_ path: String) -> Response?

    public let host: String
    public let port: Int
    /// Connections served at once; one more is closed as soon as it is accepted (probes and scrapers need few).
    public let maximumConnections: Int
    /// A connection that sends nothing for this long (no request, or a request never finished) is closed.
    public let idleTimeout: Duration
    private let router: Router
    private let logger: Logger
    private let onBound: @Sendable (_ port: Int) -> Void

    /// `port` 0 picks a free port, reported through `onBound` once listening.
    public init(
        host: String,
        port: Int,
        logger: Logger,
        maximumConnections: Int = 64,
        idleTimeout: Duration = .seconds(30),
        onBound: @escaping @Sendable (_ port: Int) -> Void = { _ in },
        router: @escaping Router
    ) {
        self.host = host
        self.port = port
        self.maximumConnections = max(1, maximumConnections)
        self.idleTimeout = idleTimeout
        self.logger = logger
        self.onBound = onBound
        self.router = router
    }

    /// The address could not be bound (in use, not on this host).
    public struct BindError: Error, Sendable, CustomStringConvertible {
        public var address: String
        public var reason: String
        public var description: String { "cannot listen on \(address): \(reason)" }
    }

    public func run() async throws {
        let server: NIOAsyncChannel<Connection, Never>
        do { server = try await bind() } catch {
            throw BindError(address: "\(host):\(port)", reason: "\(error)")
        }
        let boundPort = server.channel.localAddress?.port ?? port
        logger.info("serving /healthz and /metrics", metadata: ["rsinit.http": "\(host):\(boundPort)"])
        onBound(boundPort)
        let router = self.router
        let active = ConnectionCount()
        let maximumConnections = self.maximumConnections
        let logger = self.logger
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            guard active.enter(maximum: maximumConnections) else {
                                logger.debug("--http: connection limit reached; closing a new connection")
                                // Through executeThenClose: an async channel must finish its writer before it goes.
                                group.addTask { try? await connection.executeThenClose { _, _ in } }
                                continue
                            }
                            group.addTask {
                                await Self.serve(connection, router)
                                active.leave()
                            }
                        }
                    } catch {
                        // The listening socket failed or closed: stop serving.
                    }
                    // Idle keep-alive connections must not hold up shutdown.
                    group.cancelAll()
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private func bind() async throws -> NIOAsyncChannel<Connection, Never> {
        let idle = TimeAmount.milliseconds(idleTimeout.milliseconds)
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: idle), CloseWhenIdle(),
                    ])
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel
                    )
                }
            }
    }

    private static func serve(
        _ connection: Connection,
        _ router: Router
    ) async {
        try? await connection.executeThenClose { inbound, outbound in
            var request: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let head): request = head
                case .body: continue
                case .end:
                    guard let head = request else { continue }
                    request = nil
                    let response = respond(to: head, router)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: response.contentType)
                    headers.add(name: "Content-Length", value: String(response.body.utf8.count))
                    headers.add(name: "Cache-Control", value: "no-store")
                    let keepAlive = head.isKeepAlive
                    if !keepAlive { headers.add(name: "Connection", value: "close") }
                    try await outbound.write(
                        .head(
                            HTTPResponseHead(
                                version: head.version,
                                status: HTTPResponseStatus(statusCode: response.status),
                                headers: headers
                            )
                        )
                    )
                    if head.method != .HEAD {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: response.body))))
                    }
                    try await outbound.write(.end(nil))
                    if !keepAlive { return }
                }
            }
        }
    }

    static func respond(to head: HTTPRequestHead, _ router: Router) -> Response {
        guard head.method == .GET || head.method == .HEAD else {
            return Response(status: 405, body: "method not allowed: use GET\n")
        }
        let path = String(head.uri.prefix { $0 != "?" })
        return router(path) ?? Response(status: 404, body: "not found: try /healthz or /metrics\n")
    }
}

/// Connections being served, for the `--http` connection cap.
private final class ConnectionCount: Sendable {
    private let count = Atomic<Int>(0)

    func enter(maximum: Int) -> Bool {
        if count.add(1, ordering: .relaxed).newValue <= maximum { return true }
        count.subtract(1, ordering: .relaxed)
        return false
    }

    func leave() { count.subtract(1, ordering: .relaxed) }
}

/// Closes a connection when `IdleStateHandler` reports it idle.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
