public import BSON

/// Which connection of a publisher a batch was written on. A publisher gives each new connection a new
/// generation, so a batch cannot silently land on a connection opened after the one it was meant for.
public struct ConnectionGeneration: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "#\(rawValue)" }
}

/// The delivery decisions of the bridge, without I/O: which batch to send on which connection, when to wait for
/// an answer, when to write the checkpoint, when to reconnect. ``OplogBridge`` executes the actions.
///
/// Guarantees (checked exhaustively by `DeliveryStateMachineTests`):
/// - Batches are sent in oplog order on one connection at a time: every batch in flight carries the generation of
///   the connection it was written on, and nothing is written on a new connection while an older batch is
///   unconfirmed. When a connection fails, everything unconfirmed is sent again, in order, before anything new —
///   so a subscriber sees each event's first appearance in oplog order, whatever prefix the lost connection
///   delivered.
/// - The checkpoint only ever names a confirmed prefix (a batch and every batch before it were confirmed).
/// - At most `window` batches are held (sent or waiting to be sent); nothing more is read until one is confirmed.
///
/// Positions are opaque to the machine (it only compares them for equality): the bridge uses ``StoredCheckpoint``
/// (an oplog `(ts, t)` or a change-stream token), the tests plain timestamps (``DeliveryStateMachine``).
public typealias DeliveryStateMachine = DeliveryStateMachineOf<BSONTimestamp>

/// ``DeliveryStateMachine`` over any kind of position.
public struct DeliveryStateMachineOf<Position: Hashable & Sendable>: Sendable {
    /// Batches are numbered by the shell, 1, 2, 3… in oplog order.
    public typealias BatchID = Int

    /// What the shell must do next; it reports the outcome with the matching event.
    public enum Action: Sendable, Equatable {
        /// Wait for the tail's next item: ``batchRead(_:position:full:)``, ``caughtUp()``, ``answered(_:on:)``,
        /// ``tailEnded()``.
        case read
        /// Take the publisher's open connection or open one: ``connected(_:)`` or ``connectFailed()``.
        case connect
        /// Write the batch on that connection only (never another), with the checkpoint behind it if one is given:
        /// ``sent(_:on:delivered:)`` or ``failed(on:)``.
        case send(BatchID, on: ConnectionGeneration, checkpoint: Position?)
        /// Wait for the answer to this batch: ``confirmed(_:on:)`` or ``failed(on:)``.
        case confirm(BatchID, on: ConnectionGeneration)
        /// Write this position as the checkpoint: ``checkpointWritten(_:on:)`` or ``failed(on:)``.
        case writeCheckpoint(Position, on: ConnectionGeneration)
        /// Wait out the retry backoff for this attempt (1, 2, …), then ``pauseEnded()`` (or ``stop()``).
        case pause(attempt: Int)
        /// Done: everything read was confirmed and checkpointed, or the bridge is stopping and what is left is
        /// abandoned unconfirmed (a restart resumes before it: at least once).
        case finish
    }

    private enum Connection: Sendable, Equatable {
        /// None yet, or the last one failed and its backoff is over.
        case closed
        case open(ConnectionGeneration)
        /// The last operation failed; waiting for ``pauseEnded()``.
        case backingOff
    }

    private enum Mode: Sendable, Equatable {
        /// Read, send, confirm as the tail delivers.
        case running
        /// The tail ended (or lost its history): settle everything, retrying as long as it takes, then finish.
        case draining
        /// Settle what the open connection can; on a failure, give up what is left unconfirmed and finish.
        case stopping
    }

    private struct Entry: Sendable {
        var id: BatchID
        var position: Position?
        /// The connection it was written on; nil until it is (again) written.
        var sentOn: ConnectionGeneration?
        /// The checkpoint written behind it.
        var carries: Position?
    }

    /// Batches held at most (sent and not yet confirmed, or waiting to be sent).
    public let window: Int
    private var connection = Connection.closed
    private var mode = Mode.running
    /// Read and not yet confirmed, oldest first; the sent ones are a prefix.
    private var queue: [Entry] = []
    private var lastRead: BatchID = 0
    /// The position of the newest batch confirmed with every batch before it.
    public private(set) var confirmedPosition: Position?
    /// The checkpoint the sink acknowledged last.
    public private(set) var storedCheckpoint: Position?
    /// The newest checkpoint written behind a batch still in flight.
    private var checkpointInFlight: Position?
    /// The tail caught up (a short batch, an idle heartbeat or the newest batch answered): confirm and checkpoint
    /// now instead of waiting for the next batch to push the window.
    private var caughtUpFlag = false
    /// Consecutive failures, for the backoff.
    private var failures = 0

    public init(window: Int) {
        // trap-checked: the bridge's own invariant, not outside data
        precondition(window >= 1, "the delivery window holds at least one batch")
        self.window = window
    }

    /// Batches sent and not yet confirmed.
    public var inFlight: Int { queue.count(where: { $0.sentOn != nil }) }
    /// Batches held (in flight or waiting to be sent).
    public var held: Int { queue.count }
    /// Whether batch `id` is held (read and not yet confirmed).
    public func isHolding(_ id: BatchID) -> Bool { queue.contains { $0.id == id } }

    // MARK: - Events

    /// The first action of a run (or of a run after a drain).
    public mutating func start() -> Action {
        mode = .running
        return nextAction()
    }

    /// The tail produced batch `id` (numbered 1, 2, … in order); `full` when it filled the batch size, i.e. more
    /// is waiting in the oplog.
    public mutating func batchRead(_ id: BatchID, position: Position?, full: Bool) -> Action {
        // trap-checked: the bridge's own invariant, not outside data
        precondition(id == lastRead + 1, "batches are numbered in order")
        // trap-checked: the bridge's own invariant, not outside data
        precondition(queue.count < window, "read only when the machine asked for it")
        lastRead = id
        queue.append(Entry(id: id, position: position))
        caughtUpFlag = !full
        return nextAction()
    }

    /// The tail is idle and caught up (a heartbeat without entries).
    public mutating func caughtUp() -> Action {
        caughtUpFlag = true
        return nextAction()
    }

    /// The sink answered (or failed) the newest batch sent: no batch follows it, so settle now.
    public mutating func answered(_ id: BatchID, on generation: ConnectionGeneration) -> Action {
        if connection == .open(generation), let newest = queue.last(where: { $0.sentOn != nil }),
            newest.id == id, newest.sentOn == generation
        {
            caughtUpFlag = true
        }
        return nextAction()
    }

    /// The tail ended: settle everything, then ``Action/finish``.
    public mutating func tailEnded() -> Action {
        if mode == .running { mode = .draining }
        return nextAction()
    }

    /// Like ``tailEnded()`` (the tail lost its history and must restart after a drain).
    public mutating func drain() -> Action { tailEnded() }

    /// Stop: finish what the open connection can, give up the rest on a failure.
    public mutating func stop() -> Action {
        mode = .stopping
        return nextAction()
    }

    /// The publisher's connection is open.
    public mutating func connected(_ generation: ConnectionGeneration) -> Action {
        if connection == .closed { connection = .open(generation) }
        return nextAction()
    }

    /// Opening a connection failed (transiently).
    public mutating func connectFailed() -> Action {
        if connection == .closed { return lose() }
        return nextAction()
    }

    /// The batch was written on that connection; `delivered` when the sink finished it while sending (nothing to
    /// confirm).
    public mutating func sent(_ id: BatchID, on generation: ConnectionGeneration, delivered: Bool) -> Action {
        guard connection == .open(generation), let index = queue.firstIndex(where: { $0.sentOn == nil }),
            queue[index].id == id
        else { return nextAction() }
        let checkpoint = pendingCheckpoint
        queue[index].sentOn = generation
        queue[index].carries = checkpoint
        if let checkpoint { checkpointInFlight = checkpoint }
        if delivered, index == 0 { return confirmed(id, on: generation) }
        return nextAction()
    }

    /// The sink accepted the batch (and the checkpoint written behind it).
    public mutating func confirmed(_ id: BatchID, on generation: ConnectionGeneration) -> Action {
        guard connection == .open(generation), let first = queue.first, first.id == id, first.sentOn == generation
        else { return nextAction() }
        if let carried = first.carries {
            storedCheckpoint = carried
            if checkpointInFlight == carried { checkpointInFlight = nil }
        }
        confirmFirst()
        return nextAction()
    }

    /// The checkpoint was written.
    public mutating func checkpointWritten(_ position: Position, on generation: ConnectionGeneration) -> Action {
        if connection == .open(generation) {
            storedCheckpoint = position
            failures = 0
        }
        return nextAction()
    }

    /// A send, confirmation or checkpoint write on that connection failed (transiently): the connection is lost,
    /// and whatever it carried counts as not delivered.
    public mutating func failed(on generation: ConnectionGeneration) -> Action {
        guard connection == .open(generation) else { return nextAction() }
        return lose()
    }

    /// The backoff is over: reconnect when there is work.
    public mutating func pauseEnded() -> Action {
        if connection == .backingOff { connection = .closed }
        return nextAction()
    }

    // MARK: - Decisions

    private mutating func confirmFirst() {
        let first = queue.removeFirst()
        if let position = first.position { confirmedPosition = position }
        failures = 0
    }

    private mutating func lose() -> Action {
        connection = .backingOff
        for index in queue.indices {
            queue[index].sentOn = nil
            queue[index].carries = nil
        }
        checkpointInFlight = nil
        failures += 1
        return nextAction()
    }

    /// The confirmed position, if the sink does not hold it (nor will once a batch in flight is confirmed).
    private var pendingCheckpoint: Position? {
        guard let confirmedPosition, confirmedPosition != (checkpointInFlight ?? storedCheckpoint) else { return nil }
        return confirmedPosition
    }

    private var settling: Bool { caughtUpFlag || mode != .running }

    private func nextAction() -> Action {
        let inFlight = self.inFlight
        let unsent = queue.first(where: { $0.sentOn == nil })
        let checkpointDue =
            queue.isEmpty && settling && confirmedPosition != nil
            && confirmedPosition != storedCheckpoint
        switch connection {
        case .backingOff:
            if mode == .stopping { return .finish }
            return .pause(attempt: failures)
        case .closed:
            if unsent != nil || checkpointDue { return mode == .stopping ? .finish : .connect }
        case .open(let generation):
            if let unsent, inFlight < window {
                return .send(unsent.id, on: generation, checkpoint: pendingCheckpoint)
            }
            if let oldest = queue.first, oldest.sentOn != nil, inFlight >= window || settling || unsent != nil {
                return .confirm(oldest.id, on: generation)
            }
            if checkpointDue, let confirmedPosition { return .writeCheckpoint(confirmedPosition, on: generation) }
        }
        if mode != .running && queue.isEmpty && !checkpointDue { return .finish }
        return .read
    }
}
