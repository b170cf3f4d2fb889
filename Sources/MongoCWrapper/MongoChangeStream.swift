public import BSON

/// What a change stream watches (`mongoc_client_watch`, `mongoc_database_watch`, `mongoc_collection_watch`).
public enum ChangeStreamScope: Sendable, Equatable, CustomStringConvertible {
    /// Every database except `admin`, `config` and `local` (the aggregate runs on `admin` with
    /// `allChangesForCluster`); never invalidated.
    case cluster
    /// One database; invalidated by `dropDatabase`.
    case database(String)
    /// One collection; invalidated by its `drop`, `rename` or its database's `dropDatabase`.
    case collection(database: String, collection: String)

    public var description: String {
        switch self {
        case .cluster: return "cluster"
        case .database(let name): return "database \(name)"
        case .collection(let database, let collection): return "collection \(database).\(collection)"
        }
    }
}

/// A change stream opened through libmongoc (`mongoc_change_stream_t`), bound to its ``MongoClient``.
///
/// libmongoc resumes by itself on resumable errors (network, `ResumableChangeStreamError`, 43), using its cached
/// resume token; what it cannot resume (286, 280, 260, 136, …) is thrown by ``next()``. Every call hops to the
/// client's private queue: no libmongoc call runs on the cooperative pool.
public final class MongoChangeStream: Sendable {
    private let client: MongoClient
    private let box: ChangeStreamBox

    init(client: MongoClient, box: ChangeStreamBox) {
        self.client = client
        self.box = box
    }

    deinit { client.changeStreamCloseDetached(box) }

    /// The next change event, or `nil` when a getMore came back empty (the stream is still open: call again), or
    /// after an invalidate closed the cursor (the following call makes libmongoc try to resume, which the server
    /// refuses with 260 for `resumeAfter`).
    ///
    /// - Throws: ``MongoError`` for what libmongoc does not resume, with the server's reply (and its
    ///   `errorLabels`) when there is one.
    public func next() async throws -> BSONDocument? {
        try await client.changeStreamNext(box)
    }

    /// The cached resume token (`mongoc_change_stream_get_resume_token`): the last event's `_id`, or the batch's
    /// `postBatchResumeToken` once the batch is used up; nil before the server sent any.
    public func resumeToken() async throws -> BSONDocument? {
        try await client.changeStreamResumeToken(box)
    }

    /// Kills the server cursor (when open) and frees the stream.
    public func close() async { await client.changeStreamClose(box) }
}

/// Start and shape options of a change stream, as libmongoc 1.23.1 understands them (§1.3 of the change-stream
/// fact sheet). Only one of `resumeAfter`, `startAfter`, `startAtOperationTime` should be set (the server rejects
/// two, 50865/40674).
public struct ChangeStreamOptions: Sendable, Equatable {
    public var resumeAfter: BSONDocument?
    public var startAfter: BSONDocument?
    public var startAtOperationTime: BSONTimestamp?
    /// `"updateLookup"` to receive the current document with updates; nil for the server's default.
    public var fullDocument: String?
    /// `maxTimeMS` of each getMore (how long an empty getMore waits).
    public var maxAwaitTimeMS: Int64?
    public var batchSize: Int32?

    public init(
        resumeAfter: BSONDocument? = nil,
        startAfter: BSONDocument? = nil,
        startAtOperationTime: BSONTimestamp? = nil,
        fullDocument: String? = nil,
        maxAwaitTimeMS: Int64? = nil,
        batchSize: Int32? = nil
    ) {
        self.resumeAfter = resumeAfter
        self.startAfter = startAfter
        self.startAtOperationTime = startAtOperationTime
        self.fullDocument = fullDocument
        self.maxAwaitTimeMS = maxAwaitTimeMS
        self.batchSize = batchSize
    }

    /// The `opts` document libmongoc's `*_watch` functions take.
    public var document: BSONDocument {
        var options = BSONDocument()
        if let fullDocument { options.append("fullDocument", .string(fullDocument)) }
        if let resumeAfter { options.append("resumeAfter", .document(resumeAfter)) }
        if let startAfter { options.append("startAfter", .document(startAfter)) }
        if let startAtOperationTime { options.append("startAtOperationTime", .timestamp(startAtOperationTime)) }
        if let maxAwaitTimeMS, maxAwaitTimeMS > 0 { options.append("maxAwaitTimeMS", .int64(maxAwaitTimeMS)) }
        if let batchSize, batchSize > 0 { options.append("batchSize", .int32(batchSize)) }
        return options
    }
}
