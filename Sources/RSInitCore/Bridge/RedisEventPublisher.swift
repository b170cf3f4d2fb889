import BSON
import Crypto
import FoundationEssentials
public import Logging
import NIOConcurrencyHelpers
import RESP
public import RedisClient

/// Publishes events to Redis Pub/Sub in the redis-oplog format and keeps the checkpoint in Redis.
///
/// Plain mode pipelines a batch's PUBLISHes, and ``send(_:checkpoint:on:)`` returns before Redis answers, so the
/// next batch is encoded while Redis publishes this one. The checkpoint is never written before Redis acknowledged
/// every PUBLISH up to it: a batch carries the position of an earlier, *confirmed* batch (the bridge's
/// ``DeliveryStateMachine`` decides which). (Writing a batch's own position behind its PUBLISHes would let a
/// PUBLISH refused with BUSY — while another client's script runs — be followed by a successful SET, and a restart
/// would skip that event.) The publisher never reconnects behind the bridge's back: ``connect()`` opens a connection
/// with a new ``ConnectionGeneration``, and a send for an older generation fails without writing. HA mode runs one atomic Lua script per chunk that, per event, sets a dedupe key
/// (`<meta>processed::<ts>::<txIdx>`, SET NX EX) and publishes only if it was not set yet, then moves the
/// checkpoint forward only: several bridges on one oplog publish each event exactly once.
///
/// The node written to is found through a `RedisConnector` (one server, the Sentinels' master, the Cluster slot's
/// master). On a topology that can fail over, a new connection after the first may reach another node, which may
/// not hold what the old one acknowledged: ``connect()`` then throws ``PublisherFailover`` until
/// ``loadStoredCheckpoint()`` reads the checkpoint the node now written to holds (the bridge restarts its tail from it).
///
/// Thread-safe: the connection, its generation, the encoder's buffers and the counters are behind a lock
/// (`NIOLockedValueBox`: a pthread mutex, which ThreadSanitizer understands; `Synchronization.Mutex` it does not).
public final class RedisEventPublisher: EventPublisher, Sendable {
    public struct Configuration: Sendable {
        public var url: RedisURL
        /// Prepended to collection channels (redis-oplog's `globalRedisPrefix`).
        public var channelPrefix: String
        /// Command events (drop, dropDatabase, renameCollection, create) go here.
        public var controlChannel: String
        /// Prefix of the checkpoint and dedupe keys.
        public var metadataPrefix: String
        public var highAvailability: Bool
        public var dedupeTTLSeconds: Int
        /// Extra channels per namespace (redis-oplog `namespace:`/`channel:` subscriptions).
        public var fanOut: [FanOutRule]

        public init(
            url: RedisURL,
            channelPrefix: String = "",
            controlChannel: String = "rsinit.commands",
            metadataPrefix: String = "rsinit::",
            highAvailability: Bool = false,
            dedupeTTLSeconds: Int = 150,
            fanOut: [FanOutRule] = []
        ) {
            self.fanOut = fanOut
            self.url = url
            self.channelPrefix = channelPrefix
            self.controlChannel = controlChannel
            self.metadataPrefix = metadataPrefix
            self.highAvailability = highAvailability
            self.dedupeTTLSeconds = dedupeTTLSeconds
        }

        public var checkpointKey: String { metadataPrefix + "checkpoint" }

        /// `<meta>processed::<(t<<32)|i>::<txIdx>` (event-format.md E08 with our prefix).
        /// `processed::<ts>::<txIdx>` for an oplog event; `processed::<clusterTime>::cs:<SHA-1 of the resume token>`
        /// for a change-stream event (two shards may write at one clusterTime with the same index; the token,
        /// which holds the collection and document key, tells them apart).
        public func dedupeKey(_ event: ChangeEvent) -> String {
            if let token = event.resumeToken {
                return "\(metadataPrefix)processed::\(event.timestamp.rawValue)::cs:\(SHA1.hex(Array(token.utf8)))"
            }
            return "\(metadataPrefix)processed::\(event.timestamp.rawValue)::\(event.transactionIndex)"
        }
    }

    /// KEYS[1] checkpoint, KEYS[2] fence, KEYS[3…] dedupe keys; ARGV[1] TTL, ARGV[2] checkpoint ('' leaves it),
    /// ARGV[3] '1' when fenced, then per event: the channel count, the channels, the message. Returns the number
    /// of events published (not duplicates), or -1 without doing anything when fenced and the fence key is missing.
    ///
    /// The fence keeps a batch's chunks in order although they are pipelined: a chunk runs only if the dedupe key
    /// of the previous chunk's last event exists, i.e. that chunk ran (here or in another bridge). A chunk refused
    /// by Redis (BUSY, OOM, NOSCRIPT, …) therefore stops the ones after it, and the checkpoint, which moves with
    /// the last chunk, never passes an event that was not published.
    /// The HA script (public for benchmarks and for operators who want to read what runs in their Redis).
    public static var deduplicationScript: String { script }
    /// Its SHA-1, the EVALSHA id.
    public static var deduplicationScriptSHA: String { scriptSHA }

    static let script = """
        local ttl = tonumber(ARGV[1])
        if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
        local position = 4
        local published = 0
        for i = 3, #KEYS do
          local count = tonumber(ARGV[position])
          local message = ARGV[position + count + 1]
          if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
            for c = 1, count do redis.call('PUBLISH', ARGV[position + c], message) end
            published = published + 1
          end
          position = position + count + 2
        end
        if ARGV[2] ~= '' then
          local current = redis.call('GET', KEYS[1])
          if (not current) or current < ARGV[2] then redis.call('SET', KEYS[1], ARGV[2]) end
        end
        return published
        """
    static let scriptSHA = SHA1.hex(Array(script.utf8))

    public let configuration: Configuration
    private let logger: Logger

    private struct State {
        var connection: RedisConnection?
        /// The open connection's generation (counts connections opened).
        var generation: UInt64 = 0
        var encoder: EventCommandEncoder
        /// Sentinel/Cluster: a connection was made again, so the node may be another one; ``connect()`` throws
        /// ``PublisherFailover`` until ``loadCheckpoint()`` reads the checkpoint it holds.
        var mustReloadCheckpoint = false
        var connectedBefore = false
        var dedupeHits = 0
        var publishedEvents = 0
    }

    private let state: NIOLockedValueBox<State>
    /// Finds the node to write to (one server, the Sentinels' master, the Cluster slot's master); see
    /// RedisTopology.swift.
    private let connector: RedisConnector

    /// Duplicates skipped in HA mode (another bridge published them), for metrics and tests.
    public var dedupeHits: Int { state.withLockedValue { $0.dedupeHits } }
    public var publishedEvents: Int { state.withLockedValue { $0.publishedEvents } }

    /// A plain batch written to Redis and not yet confirmed.
    public struct PendingPublishes: Sendable {
        let connection: RedisConnection
        let replies: [RedisConnection.PendingIntegerReplies]
        let commands: Int
        /// Whether a checkpoint SET follows the PUBLISHes.
        let checkpoint: Bool
        let events: Int
    }

    public init(configuration: Configuration, logger: Logger) {
        var configuration = configuration
        if case .cluster = configuration.url.topology, !RedisClusterSlots.hasHashTag(configuration.metadataPrefix) {
            // One slot for the checkpoint and every dedupe key (a script's keys must share one): `{rsinit::}…`.
            configuration.metadataPrefix = "{\(configuration.metadataPrefix)}"
        }
        self.configuration = configuration
        self.logger = logger
        self.connector = RedisConnector(url: configuration.url, logger: logger)
        self.state = NIOLockedValueBox(
            State(
                encoder: EventCommandEncoder(
                    channelPrefix: configuration.channelPrefix,
                    controlChannel: configuration.controlChannel,
                    fanOut: configuration.fanOut
                )
            )
        )
    }

    /// The open connection's generation; opens a new connection (a new generation) through the connector when
    /// there is none or it failed. The only place the publisher (re)connects.
    ///
    /// On a topology that can fail over (Sentinel, Cluster), a new connection after the first throws
    /// ``PublisherFailover`` (and so does every call until ``loadCheckpoint()`` read the checkpoint again): what the
    /// old node acknowledged may not be on this one, so nothing is sent on it before the bridge re-read the
    /// checkpoint and restarted its tail from there.
    public func connect() async throws -> ConnectionGeneration {
        try await connect(reloading: false)
    }

    private func connect(reloading: Bool) async throws -> ConnectionGeneration {
        let current = state.withLockedValue { state -> (ConnectionGeneration, mustReload: Bool)? in
            guard let connection = state.connection, connection.isOpen else { return nil }
            return (ConnectionGeneration(state.generation), state.mustReloadCheckpoint)
        }
        if let current {
            if current.mustReload && !reloading { throw failover }
            return current.0
        }
        let fresh = try await connector.connect(forKey: configuration.checkpointKey)
        let followsFailovers = connector.followsFailovers
        let (generation, replaced, mustReload) = state.withLockedValue { state in
            let replaced = state.connection
            state.connection = fresh
            state.generation += 1
            if state.connectedBefore && followsFailovers { state.mustReloadCheckpoint = true }
            state.connectedBefore = true
            return (ConnectionGeneration(state.generation), replaced, state.mustReloadCheckpoint)
        }
        if let replaced { await replaced.close() }
        logger.debug("connected to Redis", metadata: ["rsinit.generation": "\(generation)"])
        if mustReload && !reloading { throw failover }
        return generation
    }

    private var failover: PublisherFailover {
        PublisherFailover(
            "reconnected to Redis through \(configuration.url): resuming from the checkpoint that node holds"
        )
    }

    /// The connection of that generation, if it is still open; never another one.
    private func connection(for generation: ConnectionGeneration) throws -> RedisConnection {
        let connection = state.withLockedValue { state in
            state.generation == generation.rawValue ? state.connection : nil
        }
        guard let connection, connection.isOpen else {
            throw RedisError(
                .connectionLost,
                "the connection to Redis at \(configuration.url) (\(generation)) is gone; the batch is sent again on a new one"
            )
        }
        return connection
    }

    /// The checkpoint the node written to holds (after a failover: the node now written to; clears the
    /// ``PublisherFailover`` state). An unparseable checkpoint throws `RedisError.Kind.unexpectedReply` and drops
    /// the connection.
    public func loadStoredCheckpoint() async throws -> StoredCheckpoint? {
        let connection = try connection(for: try await connect(reloading: true))
        do {
            let text = try RedisConnection.optionalString(
                try await connection.command(["GET", configuration.checkpointKey]),
                command: "GET \(configuration.checkpointKey)"
            )
            var position: StoredCheckpoint?
            if let text {
                do {
                    position = try StoredCheckpoint.decode(text)
                } catch {
                    throw RedisError(
                        .unexpectedReply,
                        "\(configuration.checkpointKey): \(error.message); fix: \(error.fix)"
                    )
                }
            }
            // Read on this connection: what the old node confirmed no longer counts, the bridge starts from this.
            state.withLockedValue { state in
                if state.connection === connection { state.mustReloadCheckpoint = false }
            }
            return position
        } catch {
            await dropConnection(connection)
            throw error
        }
    }

    /// The whole batch: its events, then its checkpoint (plain mode: a second round trip once Redis acknowledged
    /// the PUBLISHes).
    @discardableResult public func publish(_ batch: OplogBatch) async throws -> PublishReceipt {
        let generation = try await connect()
        switch try await send(batch, checkpoint: nil, on: generation) {
        case .delivered(let receipt):
            return receipt
        case .pending(let pending):
            let receipt = try await confirm(pending)
            if let position = batch.storedCheckpoint { try await writeCheckpoint(position, on: generation) }
            return receipt
        }
    }

    /// Plain mode: every PUBLISH, written in slices as they are encoded (Redis publishes one slice while the next
    /// is prepared), then a SET of `checkpoint` if given. Returns without waiting for Redis. HA mode: the whole
    /// batch (its script calls are fenced on one another, see above; the script moves the checkpoint to the
    /// batch's own position).
    public func send(
        _ batch: OplogBatch,
        checkpoint: StoredCheckpoint?,
        on generation: ConnectionGeneration
    ) async throws -> PublishTicket<PendingPublishes> {
        let connection = try connection(for: generation)
        guard !configuration.highAvailability else {
            do {
                return .delivered(try await publishDeduplicated(batch, connection))
            } catch {
                await dropConnection(connection)
                throw error
            }
        }
        let checkpointKey = configuration.checkpointKey
        let (pending, commands) = state.withLockedValue { state in
            var pending: [RedisConnection.PendingIntegerReplies] = []
            var commands = 0
            var start = batch.events.startIndex
            repeat {
                let end = min(start + Self.chunkSize, batch.events.endIndex)
                let last = end == batch.events.endIndex
                var encoded: [UInt8] = []
                encoded.reserveCapacity((end - start) * 200 + 100)
                let count = state.encoder.appendPublishes(
                    batch.events[start..<end],
                    checkpoint: last ? checkpoint.map { (checkpointKey, $0.encoded) } : nil,
                    to: &encoded
                )
                pending.append(connection.submitCounted(encoded: encoded, replies: count))
                commands += count
                start = end
            } while start < batch.events.endIndex
            return (pending, commands)
        }
        return .pending(
            PendingPublishes(
                connection: connection,
                replies: pending,
                commands: commands,
                checkpoint: checkpoint != nil,
                events: batch.events.count
            )
        )
    }

    /// Checks every reply of a plain batch; on any error the connection is closed, so that batches sent after
    /// this one fail too and are all sent again in order.
    public func confirm(_ sent: PendingPublishes) async throws -> PublishReceipt {
        do {
            // PUBLISH answers the number of subscribers that got the message: only a reply that is not an integer
            // matters (an error such as BUSY), or the checkpoint SET's, which comes last.
            var before = 0
            for call in sent.replies {
                let tally = try await call.tally()
                if let reply = tally.firstOther, let index = tally.firstOtherIndex {
                    if sent.checkpoint && before + index == sent.commands - 1 {
                        _ = try RedisConnection.check(reply, command: "SET")
                    } else {
                        _ = try RedisConnection.integer(reply, command: "PUBLISH")
                    }
                }
                before += tally.count
            }
        } catch {
            await dropConnection(sent.connection)
            throw error
        }
        state.withLockedValue { $0.publishedEvents += sent.events }
        return PublishReceipt(published: sent.events)
    }

    /// Replies come in order, so the last write's replies mean the batch's are all in. Touches no state.
    public func answered(_ sent: PendingPublishes) async {
        _ = try? await sent.replies.last?.tally()
    }

    /// Plain mode: writes `position` as the checkpoint (HA mode writes it with each batch).
    public func writeCheckpoint(_ position: StoredCheckpoint, on generation: ConnectionGeneration) async throws {
        guard !configuration.highAvailability else { return }
        let connection = try connection(for: generation)
        do {
            _ = try RedisConnection.check(
                try await connection.command(["SET", configuration.checkpointKey, position.encoded]),
                command: "SET"
            )
        } catch {
            await dropConnection(connection)
            throw error
        }
    }

    /// After a failure: nothing in flight on that connection counts, and the next ``connect()`` opens a new one.
    private func dropConnection(_ failed: RedisConnection) async {
        await failed.close()
        state.withLockedValue { state in
            if state.connection === failed { state.connection = nil }
        }
    }

    /// Events per script call (HA) or per write (plain): long enough to amortise the call, short enough that
    /// Redis starts on the first chunk while the next is encoded.
    static let chunkSize = 500

    /// The batch's script calls, one per chunk, each fenced on the one before; the checkpoint moves with the last.
    /// `each` sees every call as soon as it is encoded.
    private func scriptCalls(
        _ batch: OplogBatch,
        each: (_ encoded: [UInt8]) -> Void = { _ in }
    ) -> [(events: ArraySlice<ChangeEvent>, encoded: [UInt8])] {
        let checkpoint = batch.storedCheckpoint?.encoded ?? ""
        var chunks = stride(from: 0, to: batch.events.count, by: Self.chunkSize).map {
            batch.events[$0..<min($0 + Self.chunkSize, batch.events.count)]
        }
        if chunks.isEmpty { chunks = [[]] }
        return state.withLockedValue { state in
            chunks.indices.map { index in
                var encoded: [UInt8] = []
                encoded.reserveCapacity(chunks[index].count * 260 + 200)
                state.encoder.appendScriptCall(
                    chunks[index],
                    sha: Self.scriptSHA,
                    checkpointKey: configuration.checkpointKey,
                    metadataPrefix: configuration.metadataPrefix,
                    ttlSeconds: configuration.dedupeTTLSeconds,
                    checkpoint: index == chunks.count - 1 ? checkpoint : "",
                    fence: index == 0 ? nil : chunks[index - 1].last,
                    to: &encoded
                )
                each(encoded)
                return (chunks[index], encoded)
            }
        }
    }

    /// The script calls of a batch exactly as ``publish(_:)`` sends them in HA mode, back to back, and how many
    /// replies they get (for benchmarks that measure the script's own cost in Redis). Like ``publish(_:)``, not to
    /// be called while another call on this publisher runs (they share the encoder's buffers).
    public func encodedScriptCalls(_ batch: OplogBatch) -> (encoded: [UInt8], replies: Int) {
        let calls = scriptCalls(batch)
        return (calls.flatMap(\.encoded), calls.count)
    }

    /// Each chunk is written as soon as it is encoded (Redis runs one while the next is prepared); the fence
    /// keeps them in order.
    private func publishDeduplicated(_ batch: OplogBatch, _ connection: RedisConnection) async throws -> PublishReceipt
    {
        var pending: [RedisConnection.PendingReplies] = []
        let calls = scriptCalls(batch) { pending.append(connection.submit(encoded: $0, replies: 1)) }
        func collect(_ pending: [RedisConnection.PendingReplies]) async throws -> [RESPValue] {
            var replies: [RESPValue] = []
            for call in pending { replies += try await call.replies() }
            return replies
        }
        var replies = try await collect(pending)
        if replies.contains(where: { if case .error(let message) = $0 { message.hasPrefix("NOSCRIPT") } else { false } }
        ) {
            // Redis restarted or flushed its scripts: load it and send the batch again. Chunks that did run are
            // not published twice: their dedupe keys are set.
            let loaded = try RedisConnection.check(
                try await connection.command(["SCRIPT", "LOAD", Self.script]),
                command: "SCRIPT LOAD"
            )
            if loaded.string != Self.scriptSHA { logger.warning("Redis returned an unexpected script SHA") }
            replies = try await collect(calls.map { connection.submit(encoded: $0.encoded, replies: 1) })
        }
        var receipt = PublishReceipt(published: 0)
        for (call, reply) in zip(calls, replies) {
            let published = try RedisConnection.scriptCount(reply, events: call.events.count)
            guard published >= 0 else {
                // The chunk before ran but its last dedupe key is gone already (evicted or flushed): send again.
                throw RedisError(
                    .batchInterrupted,
                    "Redis dropped a dedupe key while a batch was being published (maxmemory eviction or FLUSHALL?);"
                        + " sending the batch again"
                )
            }
            receipt.published += published
            receipt.duplicates += call.events.count - published
        }
        state.withLockedValue { state in
            state.publishedEvents += receipt.published
            state.dedupeHits += receipt.duplicates
        }
        return receipt
    }

    public func close() async {
        let connection = state.withLockedValue { state in
            defer { state.connection = nil }
            return state.connection
        }
        await connection?.close()
        await connector.close()
    }
}

/// SHA-1 in lowercase hex, from swift-crypto: the EVALSHA id of the dedupe script (Redis names scripts by it) and
/// the bounded form of a change-stream resume token in a dedupe key. Not used for anything security-related.
enum SHA1 {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    static func hex(_ message: [UInt8]) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(2 * Insecure.SHA1.byteCount)
        for byte in Insecure.SHA1.hash(data: message) {
            text.append(digits[Int(byte >> 4)])  // trap-checked: a nibble indexes 16 digits
            text.append(digits[Int(byte & 0x0F)])  // trap-checked: a nibble indexes 16 digits
        }
        return String(decoding: text, as: UTF8.self)
    }
}
