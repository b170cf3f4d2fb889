public import BSON

extension FakeMongod {
    /// The next change-stream getMore fails with `code` and its cursor is gone; `resumable` puts the
    /// `ResumableChangeStreamError` label on the reply (libmongoc resumes only then, on wire ≥ 9).
    public func failNextChangeStreamGetMore(code: Int32, message: String, resumable: Bool) {
        core.locked { core.changeStreams.pendingFailures.append((code, message, resumable)) }
    }

    /// Open `$changeStream` cursors.
    public var openChangeStreamCount: Int { core.locked { core.changeStreams.cursors.count } }
}

extension FakeMongod {
    /// The change events the double serves for one oplog entry on a cluster-wide stream (no `updateLookup`), for
    /// tests that run the same input through the oplog and the change-stream source.
    public static func changeStreamEvents(forOplogEntry entry: BSONDocument) -> [BSONDocument] {
        let core = FakeMongodCore(configuration: FakeMongodConfiguration())
        guard let ts = entry["ts"]?.timestampValue else { return [] }
        return core.changeEvents(for: OplogRecord(ts: ts, document: entry), scope: .cluster).map(\.document)
    }
}
