public import BSON
import FoundationEssentials
public import Logging
public import MongoCWrapper
import RSInitSupport

/// How the change-stream source reads.
public struct ChangeStreamTailerConfiguration: Sendable {
    /// The deployment (a replica set or mongos).
    public var connectionString: MongoConnectionString
    /// Cluster-wide by default; a database stream when the bridge watches one database.
    public var scope: ChangeStreamScope
    /// Where the first stream starts: ``StartPosition/end`` (no option: one tick after the newest operation),
    /// ``StartPosition/at(_:)`` (`startAtOperationTime`, inclusive), ``StartPosition/after(_:)``
    /// (`startAtOperationTime` one tick after a checkpoint), ``StartPosition/stored(_:)`` (a change-stream
    /// checkpoint: `resumeAfter` its token, `startAfter` when the token is an invalidate's; an oplog checkpoint: one
    /// tick after its `ts`). ``StartPosition/checkpoint`` (no store here) starts at the end.
    public var start: StartPosition
    public var mapping: OplogEventMapper.Configuration
    /// `fullDocument: "updateLookup"`: updates carry the current document (or none when it was deleted since).
    public var fullDocument: Bool
    public var batchSize: Int
    /// `maxTimeMS` of each getMore.
    public var maxAwaitTime: Duration
    /// How long a reply may take beyond ``maxAwaitTime`` before the connection counts as dead and the stream is
    /// resumed (libmongoc's `socketTimeoutMS` is their sum; its 5-minute default would let a mongod that stops
    /// answering stall the stream silently — the same rule as ``OplogTailerConfiguration/replyMargin``).
    public var replyMargin: Duration = .seconds(10)
    public var backoff: Backoff

    public init(
        connectionString: MongoConnectionString,
        scope: ChangeStreamScope = .cluster,
        start: StartPosition = .end,
        mapping: OplogEventMapper.Configuration = .init(),
        fullDocument: Bool = false,
        batchSize: Int = 1000,
        maxAwaitTime: Duration = .seconds(1),
        backoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
    ) {
        self.connectionString = connectionString
        self.scope = scope
        self.start = start
        self.mapping = mapping
        self.fullDocument = fullDocument
        self.batchSize = batchSize
        self.maxAwaitTime = maxAwaitTime
        self.backoff = backoff
    }
}

/// The `ts` one tick after `position` (the first operation a checkpoint at `position` has not handled).
func oneTickAfter(_ position: BSONTimestamp) -> BSONTimestamp {
    position.increment == UInt32.max
        ? BSONTimestamp(seconds: position.seconds &+ 1, increment: 0)
        : BSONTimestamp(seconds: position.seconds, increment: position.increment + 1)
}

/// The `ts` one tick before `time`: the newest position every event before `time` is at or below.
func oneTickBefore(_ time: BSONTimestamp) -> BSONTimestamp {
    if time.increment > 0 { return BSONTimestamp(seconds: time.seconds, increment: time.increment - 1) }
    if time.seconds > 0 { return BSONTimestamp(seconds: time.seconds - 1, increment: UInt32.max) }
    return time
}

/// Reads a change stream and yields ``OplogBatch``es, the oplog tailer's shape, so the bridge publishes either.
///
/// The stream is driven with `aggregate`/`getMore` commands (as ``OplogTailer`` drives its find), which gives the
/// tailer each server batch and its `postBatchResumeToken` exactly; within a run it resumes from the last token
/// (`resumeAfter`, or `startAfter` after an invalidate, which reopens database and collection streams past it).
/// Batch positions: `resumePosition` is one tick before the token's clusterTime (every event before it was in
/// this or an earlier batch), so a checkpoint restarts with `startAtOperationTime` at that clusterTime — at least
/// once, never past an undelivered event; an empty batch whose token moved counts as one entry read, so quiet
/// streams keep checkpointing. 286, 280, 260 and 136 throw ``OplogHistoryLost``; network errors, stepdowns,
/// `ResumableChangeStreamError` and lost cursors reopen after the backoff.
public struct ChangeStreamTailer: Sendable {
    public let configuration: ChangeStreamTailerConfiguration
    let logger: Logger

    public init(configuration: ChangeStreamTailerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// An iterator that ends (returns nil) once `shouldStop` returns true or its task is cancelled.
    public func makeAsyncIterator(stoppingWhen shouldStop: @escaping @Sendable () -> Bool = { false }) -> Iterator {
        Iterator(session: ChangeStreamSession(configuration: configuration, logger: logger, shouldStop: shouldStop))
    }

    public struct Iterator: BatchIterator {
        let session: ChangeStreamSession

        public mutating func next() async throws -> OplogBatch? { try await session.next() }

        public func close() async { await session.close() }

        /// The newest resume token (the last `postBatchResumeToken` or event `_id`).
        public var resumeToken: BSONDocument? { session.token }
    }
}

/// Something the bridge reads batches from: ``OplogTailer`` or ``ChangeStreamTailer``.
public protocol BatchIterator {
    mutating func next() async throws -> OplogBatch?
    func close() async
}

extension OplogTailer.Iterator: BatchIterator {}

/// One change-stream read; used by one task at a time, hence `@unchecked Sendable`.
public final class ChangeStreamSession: @unchecked Sendable {
    let configuration: ChangeStreamTailerConfiguration
    let logger: Logger
    private let shouldStop: @Sendable () -> Bool
    private var client: MongoClient?
    private var cursorID: Int64 = 0
    private var getMoreCollection = ""
    private var pendingFirstBatch: [BSONValue]?
    private var mapper: ChangeStreamEventMapper
    /// The newest token (event `_id` or post-batch resume token); resumes within this run start after it.
    private(set) var token: BSONDocument?
    /// The token is an invalidate's: reopen with `startAfter`.
    private var reopenAfterInvalidate = false
    private var finished = false
    private var failures = 0
    private var lastPosition: BSONTimestamp?
    /// An event was over 16 MB with its looked-up document (10334): read one event without the lookup.
    private var lookupSuspended = false
    /// Events published without their full document because the document made them too large.
    public private(set) var oversizedLookups = 0

    init(
        configuration: ChangeStreamTailerConfiguration,
        logger: Logger,
        shouldStop: @escaping @Sendable () -> Bool
    ) {
        self.configuration = configuration
        self.logger = logger
        self.shouldStop = shouldStop
        self.mapper = ChangeStreamEventMapper(configuration: configuration.mapping)
        switch configuration.start {
        case .after(let position):
            lastPosition = position
        case .stored(let checkpoint):
            switch try? checkpoint.resume(for: .changeStream) {
            case .changeStreamToken(let stored, let invalidate):
                // The position the batches report for the token's event: a tick before its clusterTime.
                lastPosition = oneTickBefore(checkpoint.timestamp)
                token = stored
                reopenAfterInvalidate = invalidate
            case .changeStreamAfterTime(let ts):
                lastPosition = ts
            case .oplogAfter(let opTime):
                lastPosition = opTime.ts
            case nil:
                break
            }
        case .checkpoint, .end, .at:
            break
        }
    }

    private var database: String {
        switch configuration.scope {
        case .cluster: return "admin"
        case .database(let name), .collection(let name, _): return name
        }
    }

    /// Kills the open cursor (the next batch opens a new one from the token).
    private func killCursor() async {
        if let client, cursorID != 0 {
            _ = try? await client.runCommand(
                ["killCursors": .string(getMoreCollection), "cursors": [.int64(cursorID)]],
                database: database
            )
        }
        cursorID = 0
        pendingFirstBatch = nil
    }

    func close() async {
        finished = true
        if let client {
            if cursorID != 0 {
                _ = try? await client.runCommand(
                    ["killCursors": .string(getMoreCollection), "cursors": [.int64(cursorID)]],
                    database: database
                )
            }
            await client.close()
        }
        client = nil
        cursorID = 0
    }

    func next() async throws -> OplogBatch? {
        while !finished {
            if Task.isCancelled || shouldStop() {
                await close()
                return nil
            }
            do {
                if client == nil || (cursorID == 0 && pendingFirstBatch == nil) { try await open() }
                let reply: (events: [BSONValue], token: BSONDocument?, invalidated: Bool)
                if let first = pendingFirstBatch {
                    pendingFirstBatch = nil
                    reply = (first, token, false)
                } else {
                    reply = try await getMore()
                }
                failures = 0
                let batch = try process(reply.events, postBatchToken: reply.token)
                if lookupSuspended && !reply.events.isEmpty {
                    // The oversized event went out without its document: back to updateLookup after it.
                    lookupSuspended = false
                    await killCursor()
                }
                return batch
            } catch let lost as OplogHistoryLost {
                await close()
                throw lost
            } catch is CancellationError {
                await close()
                return nil
            } catch let error as MongoError {
                if let lost = historyLost(error) {
                    await close()
                    throw lost
                }
                if error.serverCode == 10334, configuration.fullDocument, !lookupSuspended {
                    // §7.5: the event with its looked-up document is over 16 MB. Read it once without the lookup
                    // (its message then carries only the _id, as without --full-document), never skip it.
                    lookupSuspended = true
                    oversizedLookups += 1
                    logger.warning(
                        "a change event with its full document is over 16 MB; publishing it without the document",
                        metadata: ["rsinit.error": "\(error)"]
                    )
                    cursorID = 0
                    pendingFirstBatch = nil
                    continue
                }
                guard isRecoverable(error) else {
                    await close()
                    throw error
                }
                failures += 1
                let level: Logger.Level = failures == 1 || failures % 20 == 0 ? .warning : .debug
                logger.log(
                    level: level,
                    "change stream lost; resuming with backoff",
                    metadata: ["rsinit.error": "\(error)", "rsinit.attempt": "\(failures)"]
                )
                cursorID = 0
                pendingFirstBatch = nil
                if error.code != .cursorNotFound, let client {
                    await client.close()
                    self.client = nil
                }
                let delay = configuration.backoff.delay(attempt: failures - 1, jitter: Double.random(in: 0...1))
                let until = ContinuousClock.now + delay
                while ContinuousClock.now < until && !shouldStop() && !Task.isCancelled {
                    try? await Task.sleep(for: min(.milliseconds(100), until - .now))
                }
            }
        }
        return nil
    }

    /// 286, 280, 260 and 136 cannot be resumed from the token in hand (§9b).
    private func historyLost(_ error: MongoError) -> OplogHistoryLost? {
        guard let code = error.serverCode, [286, 280, 260, 136].contains(code) else { return nil }
        let position =
            token.flatMap(ChangeStreamResumeToken.decode)?.clusterTime ?? lastPosition
            ?? BSONTimestamp(seconds: 0, increment: 0)
        return OplogHistoryLost(
            position: position,
            oldestAvailable: nil,
            reason: "the change stream cannot resume (\(error.description))"
        )
    }

    private func isRecoverable(_ error: MongoError) -> Bool {
        if error.errorLabels.contains("NonResumableChangeStreamError") { return false }
        switch error.code {
        case .network, .timeout, .serverSelection, .cursorNotFound, .notWritablePrimary, .notPrimaryNoSecondaryOk,
            .notPrimaryOrSecondary, .stateChangeInterrupted, .shutdownInProgress, .maxTimeExpired, .cancelled,
            .protocolError:
            return true
        default:
            return error.isTransient
        }
    }

    /// Sends the `aggregate` (§1.3's shape) from the token, the checkpoint or the configured start.
    private func open() async throws {
        if client == nil {
            let socketTimeout = (configuration.maxAwaitTime + configuration.replyMargin).milliseconds
            let options = try configuration.connectionString.settingOptions(int32: [
                "serverSelectionTimeoutMS": 5000, "socketTimeoutMS": Int32(clamping: max(1, socketTimeout)),
            ])
            client = try MongoClient(options, appName: "rsinit-tail", logger: logger)
        }
        guard let client else { return }
        var stage = BSONDocument()
        if configuration.fullDocument && !lookupSuspended { stage.append("fullDocument", "updateLookup") }
        if let token {
            stage.append(reopenAfterInvalidate ? "startAfter" : "resumeAfter", .document(token))
        } else {
            switch configuration.start {
            case .end, .checkpoint: break
            case .at(let time): stage.append("startAtOperationTime", .timestamp(time))
            case .after(let position): stage.append("startAtOperationTime", .timestamp(oneTickAfter(position)))
            case .stored(let checkpoint):
                stage.append("startAtOperationTime", .timestamp(oneTickAfter(checkpoint.timestamp)))
            }
        }
        let aggregate: BSONValue
        switch configuration.scope {
        case .cluster:
            stage.append("allChangesForCluster", true)
            aggregate = .int32(1)
        case .database:
            aggregate = .int32(1)
        case .collection(_, let collection):
            aggregate = .string(collection)
        }
        let reply = try await client.runCommand(
            [
                "aggregate": aggregate, "pipeline": [["$changeStream": .document(stage)]],
                "cursor": ["batchSize": .int32(lookupSuspended ? 1 : Int32(clamping: configuration.batchSize))],
            ],
            database: database
        )
        reopenAfterInvalidate = false
        let (events, postBatchToken, invalidated) = try read(reply, batch: "firstBatch")
        if events.isEmpty && cursorID == 0 && !invalidated {
            // A server that closes the stream at once would otherwise be asked again in a tight loop.
            throw MongoError(code: .cursorNotFound, message: "the change stream cursor closed at once")
        }
        if let postBatchToken {
            token = postBatchToken
        } else if token == nil, let first = events.first {
            token = first.documentValue?["_id"]?.documentValue
        }
        pendingFirstBatch = events
        if invalidated { cursorID = 0 }
    }

    private func getMore() async throws -> (events: [BSONValue], token: BSONDocument?, invalidated: Bool) {
        guard let client, cursorID != 0 else {
            throw MongoError(code: .cursorNotFound, message: "no open change stream cursor")
        }
        let reply = try await client.runCommand(
            [
                "getMore": .int64(cursorID), "collection": .string(getMoreCollection),
                "batchSize": .int64(lookupSuspended ? 1 : Int64(clamping: configuration.batchSize)),
                "maxTimeMS": .int64(configuration.maxAwaitTime.milliseconds),
            ],
            database: database
        )
        return try read(reply, batch: "nextBatch")
    }

    private func read(_ reply: BSONDocument, batch: String) throws(MongoError) -> ([BSONValue], BSONDocument?, Bool) {
        guard let cursor = reply["cursor"]?.documentValue, case .array(let documents)? = cursor[batch] else {
            // libmongoc treats an unparsable cursor reply as resumable (§2.2): so does the tailer, after a backoff.
            throw MongoError(code: .protocolError, message: "the change stream reply has no cursor.\(batch) array")
        }
        cursorID = cursor["id"]?.int64Value ?? cursorID
        if let ns = cursor["ns"]?.stringValue, let dot = ns.firstIndex(of: ".") {
            getMoreCollection = String(ns[ns.index(after: dot)...])
        }
        return (documents, cursor["postBatchResumeToken"]?.documentValue, cursor["invalidated"]?.isTruthy ?? false)
    }

    /// Maps a server batch into an ``OplogBatch``; every batch is returned (empty ones are heartbeats, or carry a
    /// moved position).
    private func process(_ documents: [BSONValue], postBatchToken: BSONDocument?) throws -> OplogBatch {
        var events: [ChangeEvent] = []
        events.reserveCapacity(documents.count)
        var skipped: [OplogEventMapper.Skip: Int] = [:]
        var lastWall: Int64?
        var lastEventToken: BSONDocument?
        for value in documents {
            guard case .document(let document) = value else {
                skipped[.malformed, default: 0] += 1
                continue
            }
            guard let eventToken = document["_id"]?.documentValue else {
                // libmongoc's rule (§6.2): an event without a token cannot be resumed past; stop here.
                throw MongoError(
                    code: .invalidBSON,
                    message:
                        "Cannot provide resume functionality when the resume token is missing (an event without _id)"
                )
            }
            lastEventToken = eventToken
            if case .datetime(let millis)? = document["wallTime"] { lastWall = millis }
            switch mapper.map(document) {
            case .emitted(let event): events.append(event)
            case .skipped(let reason): skipped[reason, default: 0] += 1
            case .invalidated:
                // Database and collection streams end here; the next open starts after the invalidate.
                reopenAfterInvalidate = true
                cursorID = 0
                logger.info(
                    "change stream invalidated (its database or collection was dropped or renamed); reopening after it",
                    metadata: ["rsinit.scope": "\(configuration.scope)"]
                )
            }
        }
        let newest = postBatchToken ?? lastEventToken ?? token
        if reopenAfterInvalidate, let lastEventToken {
            token = lastEventToken
        } else if let newest {
            token = newest
        }
        let previous = lastPosition
        if let time = token.flatMap(ChangeStreamResumeToken.decode)?.clusterTime {
            let position = oneTickBefore(time)
            if previous.map({ position > $0 }) ?? true { lastPosition = position }
        }
        let advanced = lastPosition != previous
        // Format v2: the token itself is the checkpoint (a restart resumes after it, not at its clusterTime).
        let checkpoint = token.flatMap { StoredCheckpoint.changeStream(token: $0, fallback: nil) }
        return OplogBatch(
            events: events,
            resumePosition: lastPosition,
            lastRead: lastPosition,
            entriesRead: documents.isEmpty ? (advanced ? 1 : 0) : documents.count,
            skipped: skipped,
            lastWallTime: lastWall,
            unexpressed: mapper.takeUnexpressed(),
            checkpoint: lastPosition == nil ? nil : checkpoint
        )
    }
}
