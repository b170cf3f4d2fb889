import MongoCWrapper

extension FakeMongod {
    /// The next change-stream getMore fails with `code` and its cursor is gone; `resumable` puts the
    /// `ResumableChangeStreamError` label on the reply (libmongoc resumes only then, on wire ≥ 9).
    public func failNextChangeStreamGetMore(code: Int32, message: String, resumable: Bool) {
        core.locked { core.changeStreams.pendingFailures.append((code, message, resumable)) }
    }

    /// Open `$changeStream` cursors.
    public var openChangeStreamCount: Int { core.locked { core.changeStreams.cursors.count } }
}
