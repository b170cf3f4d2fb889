public import BSON
internal import CLibMongoC
import Dispatch
public import Logging

/// A connection to MongoDB through one libmongoc `mongoc_client_t`.
///
/// Threading: `mongoc_client_t` is not thread-safe and every libmongoc call blocks, so the handle is confined to a
/// private serial `DispatchQueue` and every operation hops there; no libmongoc call ever runs on Swift's cooperative
/// pool. That confinement is why the class is `@unchecked Sendable`. Cancellation is honoured between calls (a call
/// that has started runs to its own timeout). Call ``close()`` for a deterministic teardown (`endSessions`,
/// `killCursors`); `deinit` is only a fallback.
public final class MongoClient: @unchecked Sendable {
    /// The connection string (never print `.uri`; use `.redacted`).
    public let connectionString: MongoConnectionString
    let queue: DispatchQueue
    private let logger: Logger
    let secrets: [String]
    private let appName: String?
    /// Touched only on `queue`.
    private var client: OpaquePointer?
    /// Whether the libmongoc client exists. Read only on `queue`.
    var hasClient: Bool { client != nil }
    /// Whether `mongoc_client_t` is still to be created on `queue` (a `mongodb+srv://` URI). Touched only on `queue`.
    private var creationPending = false
    /// Open cursors, destroyed before the client. Touched only on `queue`.
    private var openCursors: [ObjectIdentifier: CursorBox] = [:]
    /// Open change streams, destroyed before the client. Touched only on `queue`.
    var openStreams: [ObjectIdentifier: ChangeStreamBox] = [:]

    /// Creates the client. No I/O happens on the caller's thread, here or later.
    ///
    /// For a `mongodb+srv://` URI libmongoc resolves the SRV and TXT records (blocking DNS) while it creates its
    /// client, so that creation is deferred to the client's own queue on the first operation; a resolution failure
    /// is thrown by that operation, and the next operation tries again.
    ///
    /// - Throws: ``MongoError`` (``MongoError/Code/invalidURI``) when libmongoc rejects the URI.
    public init(_ connectionString: MongoConnectionString, appName: String? = nil, logger: Logger) throws(MongoError) {
        MongoRuntime.ensureInitialized()
        self.connectionString = connectionString
        self.logger = logger
        self.secrets = connectionString.password.map { [$0] } ?? []
        self.appName = appName
        self.queue = DispatchQueue(label: "rsinit.mongoc.client")
        let uri = try connectionString.makeURI()
        defer { mongoc_uri_destroy(uri) }
        if mongoc_uri_get_srv_hostname(uri) != nil {
            creationPending = true
        } else {
            // Without SRV, libmongoc creates its client without any I/O: create it now so errors show at once.
            self.client = try Self.create(uri, appName: appName, secrets: secrets)
        }
    }

    /// Creates the libmongoc client; for a `mongodb+srv://` URI this blocks on DNS (only ever on `queue`).
    private static func create(
        _ uri: OpaquePointer,
        appName: String?,
        secrets: [String]
    ) throws(MongoError)
        -> OpaquePointer
    {
        var error = bson_error_t()
        guard let created = mongoc_client_new_from_uri_with_error(uri, &error) else {
            throw MongoError.from(&error, reply: nil, secrets: secrets)
        }
        mongoc_client_set_error_api(created, MONGOC_ERROR_API_VERSION_2)
        if let appName { _ = mongoc_client_set_appname(created, appName) }
        return created
    }

    /// The libmongoc client, created now if it was deferred. Call only on `queue`.
    private func openClient() throws(MongoError) -> OpaquePointer {
        if let client { return client }
        guard creationPending else { throw MongoError(code: .closed, message: "the MongoDB client is closed") }
        let uri = try connectionString.makeURI()
        defer { mongoc_uri_destroy(uri) }
        let created = try Self.create(uri, appName: appName, secrets: secrets)
        client = created
        creationPending = false
        return created
    }

    /// Convenience: parse `uri` and create the client.
    public convenience init(uri: String, appName: String? = nil, logger: Logger) throws(MongoError) {
        try self.init(MongoConnectionString(uri), appName: appName, logger: logger)
    }

    deinit {
        // Fallback only: close() is the deterministic path. Never queue.sync here (deinit may run on the queue).
        let leftovers = openCursors.values.map(\.pointer)
        let streams = openStreams.values.map(\.pointer)
        if let client {
            let box = PointerBox(client: client, cursors: leftovers, streams: streams)
            queue.async { box.destroy() }
        }
    }

    /// Runs `body` with the client on the confined queue.
    func withClient<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        if Task.isCancelled { throw MongoError(code: .cancelled, message: "cancelled before the call started") }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            queue.async {
                continuation.resume(with: Result { try body(try self.openClient()) })
            }
        }
    }

    /// Runs a command on `database` and returns the server's reply.
    ///
    /// Blocks a private thread, never the caller's executor. A reply with `ok: 0` throws.
    /// - Throws: ``MongoError``.
    public func runCommand(_ command: BSONDocument, database: String = "admin") async throws -> BSONDocument {
        try await runCommand(command, database: database, serverID: nil)
    }

    /// Runs a command on one server (the one ``selectServer()`` returned), never re-selecting: a cursor's
    /// `getMore`s and the `hello` that gates it must reach the node the cursor lives on.
    /// - Throws: ``MongoError``; a network error when that server is gone.
    public func runCommand(
        _ command: BSONDocument,
        database: String = "admin",
        on server: MongoServer
    ) async throws -> BSONDocument {
        try await runCommand(command, database: database, serverID: server.id)
    }

    /// The server libmongoc selects for a read with the client's read preference (the URI's; primary by default).
    /// - Throws: ``MongoError`` (``MongoError/Code/serverSelection``) when none is suitable in time.
    public func selectServer() async throws -> MongoServer {
        let secrets = self.secrets
        return try await withClient { client in
            var error = bson_error_t()
            guard
                let description = mongoc_client_select_server(
                    client,
                    false,
                    mongoc_client_get_read_prefs(client),
                    &error
                )
            else {
                throw MongoError.from(&error, reply: nil, secrets: secrets)
            }
            defer { mongoc_server_description_destroy(description) }
            let id = mongoc_server_description_id(description)
            var host = ""
            if let list = mongoc_server_description_host(description) {
                host = withUnsafeBytes(of: list.pointee.host_and_port) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
            }
            return MongoServer(id: id, host: host)
        }
    }

    private func runCommand(
        _ command: BSONDocument,
        database: String,
        serverID: UInt32?
    ) async throws -> BSONDocument {
        let secrets = self.secrets
        let logger = self.logger
        return try await withClient { client in
            try command.withBSONPointer { commandPointer in
                try withReplyBSON { reply in
                    var error = bson_error_t()
                    let ok =
                        if let serverID {
                            mongoc_client_command_simple_with_server_id(
                                client,
                                database,
                                commandPointer,
                                nil,
                                serverID,
                                reply,
                                &error
                            )
                        } else {
                            mongoc_client_command_simple(client, database, commandPointer, nil, reply, &error)
                        }
                    let replyDocument = try? BSONDocument(copying: reply)
                    guard ok else {
                        let failure = MongoError.from(
                            &error,
                            reply: replyDocument.flatMap { $0.isEmpty ? nil : $0 },
                            secrets: secrets
                        )
                        logger.debug(
                            "command failed",
                            metadata: [
                                "rsinit.command": "\(command.firstKey ?? "?")", "rsinit.error": "\(failure)",
                            ]
                        )
                        throw failure
                    }
                    guard let replyDocument else {
                        throw MongoError(code: .invalidBSON, message: "the server's reply is not valid BSON")
                    }
                    return replyDocument
                }
            }
        }
    }

    /// Opens a cursor with `mongoc_collection_find_with_opts`; the query is sent on the first ``MongoCursor/next()``.
    ///
    /// `options` are libmongoc's find options (`tailable`, `awaitData`, `maxAwaitTimeMS`, `batchSize`, `sort`,
    /// `limit`, `projection`, …).
    public func find(
        database: String,
        collection: String,
        filter: BSONDocument = [:],
        options: BSONDocument = [:]
    ) async throws -> MongoCursor {
        let cursor = try await withClient { client -> CursorBox in
            // trap-checked: libmongoc never returns NULL here
            let collectionPointer = mongoc_client_get_collection(client, database, collection)!
            defer { mongoc_collection_destroy(collectionPointer) }
            let pointer = filter.withBSONPointer { filterPointer in
                options.withBSONPointer { optionsPointer in
                    // trap-checked: libmongoc never returns NULL here
                    mongoc_collection_find_with_opts(collectionPointer, filterPointer, optionsPointer, nil)!
                }
            }
            let box = CursorBox(pointer: pointer)
            self.openCursors[ObjectIdentifier(box)] = box
            return box
        }
        return MongoCursor(client: self, box: cursor)
    }

    /// Destroys the client (sending `endSessions` and killing open cursors). Safe to call twice.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                for cursor in self.openCursors.values { mongoc_cursor_destroy(cursor.pointer) }
                self.openCursors.removeAll()
                for stream in self.openStreams.values { mongoc_change_stream_destroy(stream.pointer) }
                self.openStreams.removeAll()
                self.creationPending = false
                if let client = self.client {
                    mongoc_client_destroy(client)
                    self.client = nil
                }
                continuation.resume()
            }
        }
    }

    // MARK: Cursor support (all on `queue`)

    func cursorNext(_ box: CursorBox) async throws -> BSONDocument? {
        let secrets = self.secrets
        return try await withClient { _ in
            guard self.openCursors[ObjectIdentifier(box)] != nil else {
                throw MongoError(code: .closed, message: "the cursor is closed")
            }
            var document: OpaquePointer?
            if mongoc_cursor_next(box.pointer, &document), let document {
                // Borrowed until the next mongoc_cursor_next: copy now.
                do { return try BSONDocument(copying: document) } catch {
                    throw MongoError(code: .invalidBSON, message: "\(error)")
                }
            }
            var error = bson_error_t()
            var errorDocument: OpaquePointer?
            if mongoc_cursor_error_document(box.pointer, &error, &errorDocument) {
                let reply = errorDocument.flatMap { try? BSONDocument(copying: $0) }
                throw MongoError.from(&error, reply: reply.flatMap { $0.isEmpty ? nil : $0 }, secrets: secrets)
            }
            box.alive = mongoc_cursor_more(box.pointer)
            return nil
        }
    }

    func cursorClose(_ box: CursorBox) async {
        _ = try? await withClient { _ in
            if self.openCursors.removeValue(forKey: ObjectIdentifier(box)) != nil {
                mongoc_cursor_destroy(box.pointer)
            }
        }
    }

    func cursorCloseDetached(_ box: CursorBox) {
        queue.async {
            if self.openCursors.removeValue(forKey: ObjectIdentifier(box)) != nil, self.client != nil {
                mongoc_cursor_destroy(box.pointer)
            }
        }
    }
}

/// A libmongoc cursor pointer, touched only on its client's queue.
final class CursorBox: @unchecked Sendable {
    let pointer: OpaquePointer
    var alive = true
    init(pointer: OpaquePointer) { self.pointer = pointer }
}

/// Carries handles into the queue for the deinit fallback.
private final class PointerBox: @unchecked Sendable {
    let client: OpaquePointer
    let cursors: [OpaquePointer]
    let streams: [OpaquePointer]
    init(client: OpaquePointer, cursors: [OpaquePointer], streams: [OpaquePointer]) {
        self.client = client
        self.cursors = cursors
        self.streams = streams
    }
    func destroy() {
        for cursor in cursors { mongoc_cursor_destroy(cursor) }
        for stream in streams { mongoc_change_stream_destroy(stream) }
        mongoc_client_destroy(client)
    }
}

/// One server of the deployment, as libmongoc's topology knows it (an id valid for this client only).
public struct MongoServer: Sendable, Equatable {
    /// libmongoc's server id.
    public var id: UInt32
    /// `host:port` as the topology names it.
    public var host: String

    public init(id: UInt32, host: String) {
        self.id = id
        self.host = host
    }
}
