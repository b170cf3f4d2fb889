public import BSON

/// A cursor over a `find` result (plain or tailable), bound to its ``MongoClient``.
///
/// Every call hops to the client's private queue. For a tailable `awaitData` cursor ``next()`` returns `nil` when a
/// `getMore` came back empty and the cursor is still open (``isAlive``); call it again to wait for more.
public final class MongoCursor: Sendable {
    private let client: MongoClient
    private let box: CursorBox

    init(client: MongoClient, box: CursorBox) {
        self.client = client
        self.box = box
    }

    deinit { client.cursorCloseDetached(box) }

    /// The next document, or `nil` when no document is available now (exhausted, or an empty tailable batch).
    ///
    /// - Throws: ``MongoError`` for server errors (e.g. 136 ``MongoError/Code/cappedPositionLost``) and network
    ///   errors.
    public func next() async throws -> BSONDocument? {
        try await client.cursorNext(box)
    }

    /// Whether the server may still return documents (`mongoc_cursor_more` after the last empty `next`).
    public var isAlive: Bool { box.alive }

    /// Kills the cursor on the server (when it is still open) and frees it.
    public func close() async { await client.cursorClose(box) }
}
