public import BSON
import FoundationEssentials
public import Logging
public import MongoCWrapper
import RSInitSupport

/// History the tail needed is gone: the oplog rolled over past the position (or the position is not in this
/// oplog at all). Never silently skipped; callers must decide (fail, or restart from the end knowingly).
public struct OplogHistoryLost: Error, Sendable, Equatable, CustomStringConvertible {
    /// The position the tail needed.
    public var position: BSONTimestamp
    /// The oldest entry still in the oplog, when known.
    public var oldestAvailable: BSONTimestamp?
    /// The server's or the tailer's explanation.
    public var reason: String

    public var description: String {
        "oplog history lost: \(reason) (needed \(position)\(oldestAvailable.map { ", oldest available \($0)" } ?? ""))"
    }
}

/// One oplog batch turned into events, with the positions after it.
public struct OplogBatch: Sendable {
    /// Events in oplog order.
    public var events: [ChangeEvent]
    /// Where a restart must resume (checkpoint this after the events are delivered).
    public var resumePosition: BSONTimestamp?
    /// The newest entry read.
    public var lastRead: BSONTimestamp?
    /// Entries read in this batch (skipped ones included).
    public var entriesRead: Int
    /// Entries that produced no event, by reason.
    public var skipped: [OplogEventMapper.Skip: Int]
    /// `wall` of the newest entry read (ms since the epoch), for lag.
    public var lastWallTime: Int64?
    /// Entries the format cannot fully express (skipped or published on the collection channel only), in order:
    /// to be logged and counted, never dropped silently.
    public var unexpressed: [UnexpressedEntry]
    /// The checkpoint to store for `resumePosition` when the source knows more than the timestamp (the oplog
    /// entry's term, the change stream's resume token); nil: `resumePosition` alone (format v1).
    public var checkpoint: StoredCheckpoint?

    /// What the publisher stores after the batch: ``checkpoint``, else `resumePosition` (term unknown).
    public var storedCheckpoint: StoredCheckpoint? {
        checkpoint ?? resumePosition.map(StoredCheckpoint.legacyTimestamp)
    }

    /// A batch of `events` read up to `lastRead`, resumable after `resumePosition`.
    public init(
        events: [ChangeEvent],
        resumePosition: BSONTimestamp?,
        lastRead: BSONTimestamp?,
        entriesRead: Int,
        skipped: [OplogEventMapper.Skip: Int] = [:],
        lastWallTime: Int64? = nil,
        unexpressed: [UnexpressedEntry] = [],
        checkpoint: StoredCheckpoint? = nil
    ) {
        self.checkpoint = checkpoint
        self.events = events
        self.resumePosition = resumePosition
        self.lastRead = lastRead
        self.entriesRead = entriesRead
        self.skipped = skipped
        self.lastWallTime = lastWallTime
        self.unexpressed = unexpressed
    }
}

/// How the tailer reads.
public struct OplogTailerConfiguration: Sendable {
    /// The deployment to tail (a replica set member or the set; the tailer reads `local.oplog.rs`).
    public var connectionString: MongoConnectionString
    /// Where the first cursor starts. A ``StartPosition/stored(_:)`` checkpoint's term (format v2) makes the
    /// majority-gated anchor check (replication-ha.md §9.2) tell a rolled-back entry from one rolled off after a
    /// restart; ``StartPosition/checkpoint`` (no store here) starts at the end.
    public var start: StartPosition
    /// How entries become ``ChangeEvent``s (changed-fields mode, namespace filter).
    public var mapping: OplogEventMapper.Configuration
    /// Entries per find/getMore.
    public var batchSize: Int
    /// How long a getMore waits for new entries (`maxTimeMS` on getMore); bounds how fast cancellation acts.
    public var maxAwaitTime: Duration
    /// Backoff between re-establish attempts after errors.
    public var backoff: Backoff
    /// Deliver only majority-committed entries (shared/spec/replication-ha.md §9.2); by default on for a replica
    /// set with more than one member.
    public var majority: MajorityMode
    /// While entries wait for the majority, how often the pinned node's committed snapshot is read (a short
    /// `getMore` then a `hello` on that node).
    public var majorityPollInterval: Duration
    /// How long a reply may take beyond ``maxAwaitTime`` before the connection counts as dead and the cursor is
    /// re-established (libmongoc's `socketTimeoutMS` is set to their sum; its default, 5 minutes, would let a
    /// mongod that stops answering — a half-open connection, a frozen host — stall the tail silently).
    public var replyMargin: Duration = .seconds(10)

    /// A configuration; by default the tail starts at the end of the oplog (``StartPosition/end``).
    public init(
        connectionString: MongoConnectionString,
        start: StartPosition = .end,
        mapping: OplogEventMapper.Configuration = .init(),
        batchSize: Int = 1000,
        maxAwaitTime: Duration = .seconds(1),
        backoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5)),
        majority: MajorityMode = .auto,
        majorityPollInterval: Duration = .milliseconds(20)
    ) {
        self.connectionString = connectionString
        self.start = start
        self.mapping = mapping
        self.batchSize = batchSize
        self.maxAwaitTime = maxAwaitTime
        self.backoff = backoff
        self.majority = majority
        self.majorityPollInterval = majorityPollInterval
    }
}

/// Tails `local.oplog.rs` with a tailable awaitData cursor and yields ``OplogBatch``es in order; on an idle
/// stream it yields an empty batch (`entriesRead == 0`) after each `maxAwaitTime`.
///
/// Pull-based: no getMore is sent until the consumer asks for the next batch, so a slow consumer holds the
/// oplog read (bounded memory). The cursor is re-established after network errors, cursor loss, stepdowns and
/// restarts, continuing after the last entry read (nothing lost, nothing repeated). A position the oplog no longer
/// holds throws ``OplogHistoryLost``. Iteration ends (returns nil) when the task is cancelled, within one
/// `maxAwaitTime`.
public struct OplogTailer: AsyncSequence, Sendable {
    public typealias Element = OplogBatch

    /// What to tail and how.
    public let configuration: OplogTailerConfiguration
    let logger: Logger

    /// A tailer; nothing connects until the first batch is requested.
    public init(configuration: OplogTailerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// An iterator that ends when its task is cancelled.
    public func makeAsyncIterator() -> Iterator {
        Iterator(session: TailSession(configuration: configuration, logger: logger, shouldStop: { false }))
    }

    /// An iterator that also ends (returns nil) once `shouldStop` returns true — checked between getMores and
    /// during the backoff after errors, so a stop works even while mongod is unreachable.
    public func makeAsyncIterator(stoppingWhen shouldStop: @escaping @Sendable () -> Bool) -> Iterator {
        Iterator(session: TailSession(configuration: configuration, logger: logger, shouldStop: shouldStop))
    }

    /// Pulls one ``OplogBatch`` per `next()`; each iterator has its own client and cursor.
    public struct Iterator: AsyncIteratorProtocol {
        let session: TailSession

        public mutating func next() async throws -> OplogBatch? {
            try await session.next()
        }

        /// Closes the connection now (otherwise it closes when iteration ends).
        public func close() async { await session.close() }
    }
}

/// The state of one tail; used by one task at a time (the iterator's owner), hence `@unchecked Sendable`.
public final class TailSession: @unchecked Sendable {
    let configuration: OplogTailerConfiguration
    let logger: Logger
    private var client: MongoClient?
    private var cursorID: Int64 = 0
    private var mapper: OplogEventMapper
    /// The first batch of a freshly established cursor starts with the already-handled entry: skip it.
    private var skipFirstEntry: BSONTimestamp?
    private var pendingFirstBatch: [BSONValue] = []
    private var failures = 0
    private var finished = false

    // Majority gating (§9.2): every command of one cursor goes to the node it was opened on.
    /// The node the cursor lives on.
    private var server: MongoServer?
    /// Whether entries wait for the pinned node's committed snapshot.
    public private(set) var isGated = false
    /// The pinned node was the writable primary when the cursor opened: reopen on the new one once it is not.
    private var pinnedToPrimary = false
    private var gate = MajorityGate()
    /// The pinned node's `lastWrite.majorityOpTime.ts`, as last read.
    private var knownMajority: BSONTimestamp?
    /// `t` of the last delivered entry (the checkpoint is `(mapper.lastRead, lastDeliveredTerm)`).
    private var lastDeliveredTerm: Int64?
    private var lastYield = ContinuousClock.now
    /// Since when entries have waited for the majority without any being released (rule 9's stall alert).
    private var heldSince: ContinuousClock.Instant?
    private var stallReported = false

    private let shouldStop: @Sendable () -> Bool

    init(configuration: OplogTailerConfiguration, logger: Logger, shouldStop: @escaping @Sendable () -> Bool) {
        self.configuration = configuration
        self.logger = logger
        self.shouldStop = shouldStop
        let after = configuration.start.oplogAfter
        self.mapper = OplogEventMapper(configuration: configuration.mapping, startPosition: after?.ts)
        if let term = after?.t { lastDeliveredTerm = term }
    }

    func close() async {
        finished = true
        if let client {
            if cursorID != 0 {
                _ = try? await command(
                    client,
                    ["killCursors": "oplog.rs", "cursors": [.int64(cursorID)]],
                    database: "local"
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
                if client == nil || (cursorID == 0 && pendingFirstBatch.isEmpty) {
                    try await establish()
                }
                let documents: [BSONValue]
                let fromGetMore: Bool
                if !pendingFirstBatch.isEmpty {
                    documents = pendingFirstBatch
                    pendingFirstBatch = []
                    fromGetMore = false
                } else {
                    documents = try await getMore(
                        maxTime: gate.isEmpty ? configuration.maxAwaitTime : configuration.majorityPollInterval
                    )
                    fromGetMore = true
                }
                failures = 0
                let deliverable = isGated ? try await passGate(documents) : documents
                if !isGated, let term = deliverable.last?.documentValue?["t"]?.int64Value { lastDeliveredTerm = term }
                if let batch = try process(deliverable) {
                    lastYield = .now
                    return batch
                }
                if fromGetMore && (gate.isEmpty || ContinuousClock.now - lastYield >= configuration.maxAwaitTime) {
                    if isGated && pinnedToPrimary && gate.isEmpty { try await refreshMajority() }
                    lastYield = .now
                    // An idle stream still yields (an empty batch every maxAwaitTime): consumers can stop between
                    // batches and see that the tail is alive.
                    return OplogBatch(
                        events: [],
                        resumePosition: mapper.resumePosition,
                        lastRead: mapper.lastRead,
                        entriesRead: 0
                    )
                }
            } catch let lost as OplogHistoryLost {
                await close()
                throw lost
            } catch let tooLarge as OplogTransactionTooLarge {
                await close()
                throw tooLarge
            } catch let refused as StoredCheckpointError {
                await close()
                throw refused
            } catch let missing as OplogCommittedEntryMissing {
                logger.critical(
                    "a delivered majority-committed oplog entry is missing",
                    metadata: ["rsinit.error": "\(missing)"]
                )
                await close()
                throw missing
            } catch let moving as PinnedNodeNotReady {
                failures += 1
                let level: Logger.Level = failures == 1 || failures % 20 == 0 ? .warning : .debug
                logger.log(
                    level: level,
                    Logger.Message(stringLiteral: moving.reason),
                    metadata: ["rsinit.attempt": "\(failures)"]
                )
                await dropConnection(keepClient: false)
                try await backOff()
            } catch is CancellationError {
                await close()
                return nil
            } catch let error as MongoError {
                guard isRecoverable(error) else {
                    await close()
                    throw error
                }
                failures += 1
                // Once, then every 20th attempt: an operator must see that the tail is stuck, without a flood.
                let level: Logger.Level = failures == 1 || failures % 20 == 0 ? .warning : .debug
                logger.log(
                    level: level,
                    "oplog cursor lost; re-establishing with backoff",
                    metadata: ["rsinit.error": "\(error)", "rsinit.attempt": "\(failures)"]
                )
                await dropConnection(keepClient: error.code == .cursorNotFound || error.code == .cappedPositionLost)
                try await backOff()
            }
        }
        return nil
    }

    private func backOff() async throws {
        let delay = configuration.backoff.delay(attempt: failures - 1, jitter: Double.random(in: 0...1))
        let until = ContinuousClock.now + delay
        while ContinuousClock.now < until && !shouldStop() && !Task.isCancelled {
            try? await Task.sleep(for: min(.milliseconds(100), until - .now))
        }
    }

    /// Holds what the cursor returned and releases what the pinned node has majority-committed (§9.2 rule 4).
    private func passGate(_ documents: [BSONValue]) async throws -> [BSONValue] {
        gate.hold(documents.compactMap(\.documentValue))
        guard !gate.isEmpty else { return [] }
        if let newest = gate.newestHeld, let known = knownMajority, newest <= known {
            // Already covered: no round trip.
        } else {
            try await refreshMajority()
        }
        let released = gate.release(upTo: knownMajority)
        if let term = released.last(where: { $0["t"] != nil })?["t"]?.int64Value { lastDeliveredTerm = term }
        if released.isEmpty {
            let since = heldSince ?? .now
            heldSince = since
            if !stallReported && ContinuousClock.now - since >= .seconds(30) {
                stallReported = true
                logger.warning(
                    """
                    oplog entries have waited 30 s for a majority of the replica set to have them; nothing is \
                    published until a majority of data-bearing members is reachable again
                    """,
                    metadata: ["rsinit.host": "\(server?.host ?? "?")"]
                )
            }
        } else {
            heldSince = gate.isEmpty ? nil : .now
            stallReported = false
        }
        return released.map { .document($0) }
    }

    /// Reads the pinned node's committed snapshot; a pinned ex-primary is left for the new primary (rule 8).
    private func refreshMajority() async throws {
        guard let client, let server else { throw MongoError(code: .cursorNotFound, message: "no open cursor") }
        let hello = try await client.runCommand(["hello": 1], on: server)
        if let majority = hello[path: "lastWrite.majorityOpTime.ts"]?.timestampValue {
            knownMajority = max(knownMajority ?? majority, majority)
        }
        if pinnedToPrimary && hello["isWritablePrimary"]?.isTruthy != true {
            throw PinnedNodeNotReady(
                reason: "\(server.host) is no longer the primary; reopening the oplog cursor on the new primary "
                    + "from the last delivered entry"
            )
        }
    }

    /// Runs a command on the pinned node (or on the selected one before a cursor exists).
    private func command(
        _ client: MongoClient,
        _ command: BSONDocument,
        database: String
    ) async throws
        -> BSONDocument
    {
        if let server { return try await client.runCommand(command, database: database, on: server) }
        return try await client.runCommand(command, database: database)
    }

    private func isRecoverable(_ error: MongoError) -> Bool {
        switch error.code {
        case .network, .timeout, .serverSelection, .cursorNotFound, .cappedPositionLost, .notWritablePrimary,
            .notPrimaryNoSecondaryOk, .notPrimaryOrSecondary, .stateChangeInterrupted, .shutdownInProgress,
            .maxTimeExpired, .cancelled:
            return true
        default:
            return error.isTransient
        }
    }

    private func dropConnection(keepClient: Bool) async {
        cursorID = 0
        pendingFirstBatch = []
        gate.discard()
        knownMajority = nil
        heldSince = nil
        server = nil
        if !keepClient, let client {
            // A single-threaded libmongoc client keeps a failed server in a 5 s cooldown; start afresh.
            await client.close()
            self.client = nil
        }
    }

    private func makeClient() throws -> MongoClient {
        let socketTimeout = (configuration.maxAwaitTime + configuration.replyMargin).milliseconds
        let options = try configuration.connectionString.settingOptions(int32: [
            "serverSelectionTimeoutMS": 5000, "socketTimeoutMS": Int32(clamping: max(1, socketTimeout)),
        ])
        return try MongoClient(options, appName: "rsinit-tail", logger: logger)
    }

    /// Opens the cursor at the right place and verifies that the resume entry is still there.
    private func establish() async throws {
        if client == nil { client = try makeClient() }
        guard let client else { return }
        skipFirstEntry = nil
        gate.discard()
        knownMajority = nil
        server = nil
        let server = try await client.selectServer()
        self.server = server
        let hello = try await client.runCommand(["hello": 1], on: server)
        let memberCount = ["hosts", "passives", "arbiters"].reduce(0) { $0 + (hello[$1]?.arrayValue?.count ?? 0) }
        isGated = configuration.majority.isGated(memberCount: memberCount)
        pinnedToPrimary = hello["isWritablePrimary"]?.isTruthy == true
        let majority = hello[path: "lastWrite.majorityOpTime.ts"]?.timestampValue
        if isGated { knownMajority = majority }
        let (filter, checkpoint) = try await startFilter(client, server, majority: majority)
        if isGated, let checkpoint, majority.map({ $0 < checkpoint.ts }) ?? true {
            // Rule 3: judge nothing on a node that has not committed C (it lags, or will roll back).
            throw PinnedNodeNotReady(
                reason: "\(server.host) has not majority-committed the last delivered entry \(checkpoint) yet (it "
                    + "lags, or holds a branch that will roll back); waiting"
            )
        }
        let reply = try await command(
            client,
            [
                "find": "oplog.rs", "filter": .document(withServerFilter(filter)), "tailable": true,
                "awaitData": true, "batchSize": .int32(Int32(clamping: configuration.batchSize)),
            ],
            database: "local"
        )
        cursorID = reply[path: "cursor.id"]?.int64Value ?? 0
        var batch = reply[path: "cursor.firstBatch"]?.arrayValue ?? []
        if isGated, let checkpoint {
            try await checkCommittedAnchor(&batch, checkpoint, majority: majority, client, server)
        } else if let expected = skipFirstEntry {
            try await checkResumeEntry(&batch, expected, checkpoint: checkpoint, client)
        }
        pendingFirstBatch = batch
        if batch.isEmpty && cursorID == 0 {
            throw MongoError(code: .cursorNotFound, message: "the oplog cursor closed at once")
        }
    }

    /// The `find` filter for where this cursor starts (after the last entry read, else the configured start), the
    /// entry it must find first (``skipFirstEntry``) and the delivered optime the anchor check judges.
    private func startFilter(
        _ client: MongoClient,
        _ server: MongoServer,
        majority: BSONTimestamp?
    ) async throws -> (BSONDocument, OplogOpTime?) {
        var filter: BSONDocument
        var checkpoint: OplogOpTime?
        if let position = mapper.lastRead {
            filter = ["ts": ["$gte": .timestamp(position)]]
            skipFirstEntry = position
            checkpoint = OplogOpTime(ts: position, t: lastDeliveredTerm)
        } else {
            switch configuration.start {
            case .end where isGated, .checkpoint where isGated:
                // The newest committed entry: what is newer is delivered once committed.
                guard let majority else {
                    throw PinnedNodeNotReady(
                        reason: "\(server.host) has no majority-committed oplog entry yet; waiting"
                    )
                }
                filter = ["ts": ["$gte": .timestamp(majority)]]
                skipFirstEntry = majority
                checkpoint = OplogOpTime(ts: majority, t: nil)
                mapper = OplogEventMapper(configuration: configuration.mapping, startPosition: majority)
            case .end, .checkpoint:
                guard let newest = try await boundary(client, newest: true) else {
                    throw MongoError(
                        code: .noReplicationEnabled,
                        message: "local.oplog.rs is missing or empty: mongod is not an initiated replica set member"
                    )
                }
                filter = ["ts": ["$gte": .timestamp(newest)]]
                skipFirstEntry = newest
                mapper = OplogEventMapper(configuration: configuration.mapping, startPosition: newest)
            case .at(let position):
                if let oldest = try await boundary(client, newest: false), oldest > position {
                    throw OplogHistoryLost(
                        position: position,
                        oldestAvailable: oldest,
                        reason: "the oplog no longer reaches back to the requested timestamp"
                    )
                }
                filter = ["ts": ["$gte": .timestamp(position)]]
            case .after(let position):
                filter = ["ts": ["$gte": .timestamp(position)]]
                skipFirstEntry = position
                checkpoint = OplogOpTime(ts: position, t: nil)
            case .stored(let stored):
                guard let after = stored.opTime else { throw StoredCheckpointError.wrongSource(stored) }
                filter = ["ts": ["$gte": .timestamp(after.ts)]]
                skipFirstEntry = after.ts
                checkpoint = after
            }
        }
        return (filter, checkpoint)
    }

    /// With `--include` of whole databases, the server filters the namespaces (no-ops, commands and the resume
    /// entry still come back).
    private func withServerFilter(_ filter: BSONDocument) -> BSONDocument {
        if let databases = configuration.mapping.filter.serverFilter {
            let pattern = "^(" + databases.map(Glob.regex).joined(separator: "|") + ")\\."
            var alternatives: [BSONValue] = [
                ["ns": ["$regex": .regex(BSONRegularExpression(pattern: pattern, options: ""))]],
                ["op": "n"], ["ns": "admin.$cmd"],
            ]
            // The entry we resume after must come back whatever its namespace, or the continuity check would
            // mistake a filtered-out entry for lost history.
            if let expected = skipFirstEntry { alternatives.append(["ts": .timestamp(expected)]) }
            return ["$and": [.document(filter), ["$or": .array(alternatives)]]]
        }
        return filter
    }

    /// Majority-gated (replication-ha.md §9.2): the first entry must be the delivered one, `(ts, t)` alike; else
    /// the verdict says whether to wait, or the history is lost or rolled back.
    private func checkCommittedAnchor(
        _ batch: inout [BSONValue],
        _ checkpoint: OplogOpTime,
        majority: BSONTimestamp?,
        _ client: MongoClient,
        _ server: MongoServer
    ) async throws {
        let first = OplogOpTime(batch.first?.documentValue)
        if first?.isSameEntry(as: checkpoint) == true {
            batch.removeFirst()
        } else {
            let oldest = try await boundary(client, newest: false)
            switch OplogResumeVerdict.classify(
                checkpoint: checkpoint,
                gated: true,
                majority: majority,
                first: first,
                oldest: oldest
            ) {
            case .anchorFound:
                batch.removeFirst()
            case .nodeBehind:
                throw PinnedNodeNotReady(reason: "\(server.host) has not committed \(checkpoint) yet; waiting")
            case .rolledOff(let oldest):
                throw OplogHistoryLost(
                    position: checkpoint.ts,
                    oldestAvailable: oldest,
                    reason: "the entry at the position is gone: the oplog rolled over past it"
                )
            case .missing:
                throw OplogCommittedEntryMissing(checkpoint: checkpoint, host: server.host)
            }
        }
    }

    /// Not gated: MongoDB's fetcher rule, the first entry returned must be the one the tail resumes after.
    private func checkResumeEntry(
        _ batch: inout [BSONValue],
        _ expected: BSONTimestamp,
        checkpoint: OplogOpTime?,
        _ client: MongoClient
    ) async throws {
        // MongoDB's own fetcher rule: the first entry returned must be the one we resume after.
        let firstEntry = OplogOpTime(batch.first?.documentValue)
        let first = firstEntry?.ts
        if first == expected, let firstEntry, let checkpoint, !firstEntry.isSameEntry(as: checkpoint) {
            throw OplogHistoryLost(
                position: expected,
                oldestAvailable: nil,
                reason: "the entry at the position was rolled back by a failover (it was published before a "
                    + "majority of the set had it; keep --majority on to publish only committed changes)"
            )
        }
        guard first == expected else {
            let oldest = try? await boundary(client, newest: false)
            let newest = try? await boundary(client, newest: true)
            let reason: String
            if let newest = newest ?? nil, newest < expected {
                reason =
                    "the position is newer than every entry in this oplog (another cluster, or a restored backup?)"
            } else if let oldest = oldest ?? nil, oldest <= expected {
                // Older entries are still there, so this one did not roll off: a failover rolled it back.
                reason =
                    "the entry at the position is no longer in the oplog although older ones are: it was "
                    + "rolled back by a failover (it was published before a majority of the set had it; keep "
                    + "--majority on to publish only committed changes)"
            } else {
                reason = "the entry at the position is gone: the oplog rolled over past it"
            }
            throw OplogHistoryLost(position: expected, oldestAvailable: oldest ?? nil, reason: reason)
        }
        batch.removeFirst()
    }

    private func boundary(_ client: MongoClient, newest: Bool) async throws -> BSONTimestamp? {
        let reply = try await command(
            client,
            [
                "find": "oplog.rs", "filter": [:], "sort": ["$natural": newest ? -1 : 1], "limit": 1,
                "projection": ["ts": 1],
            ],
            database: "local"
        )
        return reply[path: "cursor.firstBatch"]?.arrayValue?.first?.documentValue?["ts"]?.timestampValue
    }

    private func getMore(maxTime: Duration) async throws -> [BSONValue] {
        guard let client, cursorID != 0 else { throw MongoError(code: .cursorNotFound, message: "no open cursor") }
        let reply = try await command(
            client,
            [
                "getMore": .int64(cursorID), "collection": "oplog.rs",
                "batchSize": .int64(Int64(clamping: configuration.batchSize)),
                "maxTimeMS": .int64(max(maxTime.milliseconds, 1)),
            ],
            database: "local"
        )
        cursorID = reply[path: "cursor.id"]?.int64Value ?? 0
        return reply[path: "cursor.nextBatch"]?.arrayValue ?? []
    }

    /// Maps a batch; nil when it held no entries.
    private func process(_ documents: [BSONValue]) throws(OplogTransactionTooLarge) -> OplogBatch? {
        guard !documents.isEmpty else { return nil }
        var events: [ChangeEvent] = []
        events.reserveCapacity(documents.count)
        mapper.startBatch()
        var skipped: [OplogEventMapper.Skip: Int] = [:]
        // By index: `for value in` hands out a copy of each entry (a retain and a release).
        for index in documents.indices {
            guard case .document(let document) = documents[index] else { continue }
            if case .skipped(let reason) = mapper.map(document, into: &events) { skipped[reason, default: 0] += 1 }
            if mapper.pendingTransactionsExceedBound {
                throw OplogTransactionTooLarge(
                    operations: mapper.pendingOperationCount,
                    maximum: mapper.configuration.maximumPendingOperations
                )
            }
        }
        // Format v2 stores the entry's term with its ts when the resume position is the last entry read (not the
        // tick before an open transaction's first entry, which names no entry).
        var checkpoint: StoredCheckpoint?
        if let position = mapper.resumePosition, position == mapper.lastRead,
            let term = documents.last?.documentValue?["t"]?.int64Value,
            documents.last?.documentValue?["ts"]?.timestampValue == position
        {
            checkpoint = .oplog(ts: position, t: term)
        }
        return OplogBatch(
            events: events,
            resumePosition: mapper.resumePosition,
            lastRead: mapper.lastRead,
            entriesRead: documents.count,
            skipped: skipped,
            lastWallTime: mapper.lastWallTime,
            unexpressed: mapper.takeUnexpressed(),
            checkpoint: checkpoint
        )
    }
}

/// The pinned node cannot serve the tail right now (it has not committed the checkpoint, or it stopped being the
/// primary): reconnect with backoff and select a node again.
struct PinnedNodeNotReady: Error {
    var reason: String
}
