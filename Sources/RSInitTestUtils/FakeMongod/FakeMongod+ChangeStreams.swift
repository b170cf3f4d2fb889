public import BSON

extension FakeMongod {
    /// The next change-stream getMore fails with `code` and its cursor is gone; `resumable` puts the
    /// `ResumableChangeStreamError` label on the reply (libmongoc resumes only then, on wire ≥ 9).
    public func failNextChangeStreamGetMore(code: Int32, message: String, resumable: Bool) {
        core.locked { core.changeStreams.pendingFailures.append((code, message, resumable)) }
    }

    /// Builds the change events of every oplog entry now (they are otherwise built when a stream first reads an
    /// entry, then reused): a benchmark calls it before its measured window, so the window measures the bridge,
    /// not the double's event production. Returns the number of entries built.
    @discardableResult
    public func prepareChangeEvents() -> Int { core.locked { core.prepareChangeEvents() } }

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
