import BSON
import MongoCWrapper
import RSInitCore
import Testing

/// The delivery rules without Redis: one expectation per transition, then a model checker that walks every
/// interleaving of a few batches with sends, confirmations, connection losses (delivering any prefix of what the
/// lost connection carried), reconnects, heartbeats, answers and stops, checking the guarantees at every step.
@Suite struct DeliveryStateMachineTests {
    static func position(_ batch: Int) -> BSONTimestamp { BSONTimestamp(seconds: 100, increment: UInt32(batch)) }
    static let g1 = ConnectionGeneration(1)
    static let g2 = ConnectionGeneration(2)

    /// Started, batch 1 read (at ``position(_:)`` 1) and a connection (``g1``) up: the set-up most tests share.
    static func batchOneReadAndConnected(window: Int = 2, full: Bool = true) -> DeliveryStateMachine {
        var sm = DeliveryStateMachine(window: window)
        _ = sm.start()
        _ = sm.batchRead(1, position: position(1), full: full)
        _ = sm.connected(g1)
        return sm
    }

    /// ``batchOneReadAndConnected(window:full:)``, then batch 1 sent on ``g1`` and not yet answered.
    static func batchOneSent(window: Int = 2, full: Bool = true) -> DeliveryStateMachine {
        var sm = batchOneReadAndConnected(window: window, full: full)
        _ = sm.sent(1, on: g1, delivered: false)
        return sm
    }

    // MARK: - One expectation per transition

    @Test func readsUntilABatchComesThenConnectsAndSends() {
        var sm = DeliveryStateMachine(window: 2)
        #expect(sm.start() == .read)
        #expect(sm.caughtUp() == .read)  // nothing to settle: no connection opened for a heartbeat
        #expect(sm.batchRead(1, position: Self.position(1), full: true) == .connect)
        #expect(sm.connected(Self.g1) == .send(1, on: Self.g1, checkpoint: nil))
        #expect(sm.sent(1, on: Self.g1, delivered: false) == .read)
        #expect(sm.inFlight == 1)
    }

    @Test func aFullWindowConfirmsTheOldestAndLaterBatchesCarryTheConfirmedCheckpoint() {
        var sm = Self.batchOneSent()
        #expect(sm.batchRead(2, position: Self.position(2), full: true) == .send(2, on: Self.g1, checkpoint: nil))
        #expect(sm.sent(2, on: Self.g1, delivered: false) == .confirm(1, on: Self.g1))
        #expect(sm.confirmed(1, on: Self.g1) == .read)
        #expect(sm.confirmedPosition == Self.position(1))
        #expect(
            sm.batchRead(3, position: Self.position(3), full: true)
                == .send(3, on: Self.g1, checkpoint: Self.position(1))
        )
        #expect(sm.sent(3, on: Self.g1, delivered: false) == .confirm(2, on: Self.g1))
        #expect(sm.confirmed(2, on: Self.g1) == .read)
        // Batch 3 carries checkpoint 1; batch 4 carries 2 (newer than the one in flight).
        #expect(
            sm.batchRead(4, position: Self.position(4), full: true)
                == .send(4, on: Self.g1, checkpoint: Self.position(2))
        )
        #expect(sm.sent(4, on: Self.g1, delivered: false) == .confirm(3, on: Self.g1))
        #expect(sm.confirmed(3, on: Self.g1) == .read)
        #expect(sm.storedCheckpoint == Self.position(1))
    }

    @Test func aShortBatchIsSettledAtOnce() {
        var sm = DeliveryStateMachine(window: 2)
        _ = sm.start()
        _ = sm.batchRead(1, position: Self.position(1), full: false)
        #expect(sm.connected(Self.g1) == .send(1, on: Self.g1, checkpoint: nil))
        #expect(sm.sent(1, on: Self.g1, delivered: false) == .confirm(1, on: Self.g1))
        #expect(sm.confirmed(1, on: Self.g1) == .writeCheckpoint(Self.position(1), on: Self.g1))
        #expect(sm.checkpointWritten(Self.position(1), on: Self.g1) == .read)
        #expect(sm.storedCheckpoint == Self.position(1))
    }

    @Test func theNewestBatchAnsweredSettlesLikeACaughtUpTail() {
        var sm = Self.batchOneReadAndConnected()
        #expect(sm.sent(1, on: Self.g1, delivered: false) == .read)
        #expect(sm.answered(1, on: Self.g2) == .read)  // another connection's answer: stale
        #expect(sm.answered(1, on: Self.g1) == .confirm(1, on: Self.g1))
    }

    @Test func aHeartbeatSettlesWhatIsInFlight() {
        var sm = Self.batchOneSent()
        #expect(sm.caughtUp() == .confirm(1, on: Self.g1))
    }

    @Test func aDeliveredSendIsConfirmedAtOnce() {
        var sm = Self.batchOneReadAndConnected()
        #expect(sm.sent(1, on: Self.g1, delivered: true) == .read)
        #expect(sm.held == 0)
        #expect(sm.confirmedPosition == Self.position(1))
        #expect(sm.caughtUp() == .writeCheckpoint(Self.position(1), on: Self.g1))
    }

    /// The hole of issue 17: batch 2 must not go out on a new connection before batch 1, lost with the old one.
    @Test func aLostConnectionSendsEverythingUnconfirmedAgainInOrderOnTheNextOne() {
        var sm = Self.batchOneSent()
        _ = sm.batchRead(2, position: Self.position(2), full: true)
        #expect(sm.sent(2, on: Self.g1, delivered: false) == .confirm(1, on: Self.g1))
        #expect(sm.failed(on: Self.g1) == .pause(attempt: 1))
        #expect(sm.inFlight == 0)
        #expect(sm.held == 2)
        #expect(sm.pauseEnded() == .connect)
        #expect(sm.connectFailed() == .pause(attempt: 2))
        #expect(sm.pauseEnded() == .connect)
        #expect(sm.connected(Self.g2) == .send(1, on: Self.g2, checkpoint: nil))
        // Out of order: ignored.
        #expect(sm.sent(2, on: Self.g2, delivered: false) == .send(1, on: Self.g2, checkpoint: nil))
        #expect(sm.sent(1, on: Self.g1, delivered: false) == .send(1, on: Self.g2, checkpoint: nil))  // old generation
        #expect(sm.sent(1, on: Self.g2, delivered: false) == .send(2, on: Self.g2, checkpoint: nil))
        #expect(sm.sent(2, on: Self.g2, delivered: false) == .confirm(1, on: Self.g2))
        #expect(sm.confirmed(1, on: Self.g1) == .confirm(1, on: Self.g2))  // old generation: ignored
        #expect(sm.failed(on: Self.g1) == .confirm(1, on: Self.g2))  // old generation: ignored
        #expect(sm.confirmed(1, on: Self.g2) == .read)
    }

    @Test func aFailedCheckpointWriteReconnectsAndWritesItAgain() {
        var sm = Self.batchOneSent(window: 1, full: false)
        #expect(sm.confirmed(1, on: Self.g1) == .writeCheckpoint(Self.position(1), on: Self.g1))
        #expect(sm.failed(on: Self.g1) == .pause(attempt: 1))
        #expect(sm.pauseEnded() == .connect)
        #expect(sm.connected(Self.g2) == .writeCheckpoint(Self.position(1), on: Self.g2))
    }

    @Test func aCheckpointCarriedByALostBatchIsWrittenAgain() {
        var sm = Self.batchOneSent()
        _ = sm.batchRead(2, position: Self.position(2), full: true)
        _ = sm.sent(2, on: Self.g1, delivered: false)
        _ = sm.confirmed(1, on: Self.g1)
        #expect(
            sm.batchRead(3, position: Self.position(3), full: true)
                == .send(3, on: Self.g1, checkpoint: Self.position(1))
        )
        _ = sm.sent(3, on: Self.g1, delivered: false)
        #expect(sm.failed(on: Self.g1) == .pause(attempt: 1))
        _ = sm.pauseEnded()
        // Batch 2 goes first again, carrying the checkpoint lost with batch 3.
        #expect(sm.connected(Self.g2) == .send(2, on: Self.g2, checkpoint: Self.position(1)))
    }

    @Test func stoppingSettlesWhatTheConnectionCanAndAbandonsTheRestOnAFailure() {
        var sm = Self.batchOneSent()
        #expect(sm.stop() == .confirm(1, on: Self.g1))
        #expect(sm.confirmed(1, on: Self.g1) == .writeCheckpoint(Self.position(1), on: Self.g1))
        #expect(sm.checkpointWritten(Self.position(1), on: Self.g1) == .finish)

        var failing = DeliveryStateMachine(window: 2)
        _ = failing.start()
        _ = failing.batchRead(1, position: Self.position(1), full: true)
        _ = failing.connected(Self.g1)
        _ = failing.sent(1, on: Self.g1, delivered: false)
        #expect(failing.stop() == .confirm(1, on: Self.g1))
        #expect(failing.failed(on: Self.g1) == .finish)  // unconfirmed, no checkpoint: a restart sends it again
        #expect(failing.storedCheckpoint == nil)

        var pausing = DeliveryStateMachine(window: 2)
        _ = pausing.start()
        _ = pausing.batchRead(1, position: Self.position(1), full: true)
        #expect(pausing.connectFailed() == .pause(attempt: 1))
        #expect(pausing.stop() == .finish)
    }

    @Test func aDrainRetriesUntilEverythingIsCheckpointedThenARunStartsAgain() {
        var sm = Self.batchOneSent()
        #expect(sm.drain() == .confirm(1, on: Self.g1))
        #expect(sm.failed(on: Self.g1) == .pause(attempt: 1))
        #expect(sm.pauseEnded() == .connect)
        #expect(sm.connected(Self.g2) == .send(1, on: Self.g2, checkpoint: nil))
        #expect(sm.sent(1, on: Self.g2, delivered: false) == .confirm(1, on: Self.g2))
        #expect(sm.confirmed(1, on: Self.g2) == .writeCheckpoint(Self.position(1), on: Self.g2))
        #expect(sm.checkpointWritten(Self.position(1), on: Self.g2) == .finish)
        #expect(sm.start() == .read)
        #expect(sm.tailEnded() == .finish)
    }

    @Test func consecutiveFailuresGrowTheBackoffAndAConfirmationResetsIt() {
        var sm = DeliveryStateMachine(window: 1)
        _ = sm.start()
        _ = sm.batchRead(1, position: Self.position(1), full: true)
        #expect(sm.connectFailed() == .pause(attempt: 1))
        _ = sm.pauseEnded()
        #expect(sm.connectFailed() == .pause(attempt: 2))
        _ = sm.pauseEnded()
        _ = sm.connected(Self.g1)
        _ = sm.sent(1, on: Self.g1, delivered: false)
        #expect(sm.confirmed(1, on: Self.g1) == .read)
        _ = sm.batchRead(2, position: Self.position(2), full: true)
        #expect(sm.failed(on: Self.g1) == .pause(attempt: 1))
    }

    // MARK: - Every interleaving

    /// What a subscriber and Redis see, and what the model checker may still inject.
    struct World {
        enum Unit: Hashable, CustomStringConvertible {
            case event(Int)
            case checkpoint(Int)
            case endOfBatch(Int)
            var description: String {
                switch self {
                case .event(let e): "e\(e)"
                case .checkpoint(let b): "c\(b)"
                case .endOfBatch(let b): "|\(b)"
                }
            }
        }

        var machine: DeliveryStateMachine
        var action: DeliveryStateMachine.Action
        var batchesRead = 0
        var tailEnded = false
        var stopped = false
        var failuresLeft: Int
        /// The connection's generation and whether it is open.
        var generation: UInt64 = 0
        var open = false
        /// Written on the open connection and not yet processed by Redis, in order.
        var unprocessed: [Unit] = []
        /// Batches written on the open connection (for "nothing new on a new connection").
        var writtenOnThisConnection: Set<Int> = []
        /// Every event up to this one appeared (first appearances in order: checked as they come).
        var seenUpTo = 0
        /// The checkpoint Redis holds (a batch number).
        var checkpoint = 0
        var batchesConfirmed = 0
        var lastSentNewest: (Int, UInt64)?

        var fingerprint: String {
            "\(machine)|\(action)|\(batchesRead)|\(tailEnded)|\(stopped)|\(failuresLeft)|\(generation)|\(open)|"
                + "\(unprocessed)|\(writtenOnThisConnection.sorted())|\(seenUpTo)|\(checkpoint)|\(batchesConfirmed)|"
                + "\(lastSentNewest.map { "\($0.0)@\($0.1)" } ?? "-")"
        }
    }

    struct Violation: Error, CustomStringConvertible {
        var description: String
    }

    struct Model {
        var batches: Int
        var eventsPerBatch = 2
        var window: Int
        var failures: Int
        /// The sink finishes each batch while sending it (HA, NDJSON) instead of pipelining.
        var delivering: Bool

        func events(of batch: Int) -> [Int] {
            ((batch - 1) * eventsPerBatch + 1...batch * eventsPerBatch).map { $0 }
        }

        /// Redis runs what it received, in order.
        func process(_ world: inout World, count: Int) throws {
            for unit in world.unprocessed.prefix(count) {
                switch unit {
                case .event(let e):
                    if e > world.seenUpTo + 1 {
                        throw Violation(description: "event \(e) appeared before event \(world.seenUpTo + 1)")
                    }
                    world.seenUpTo = max(world.seenUpTo, e)
                case .checkpoint(let batch):
                    if world.seenUpTo < batch * eventsPerBatch {
                        throw Violation(description: "checkpoint \(batch) written before its events appeared")
                    }
                    world.checkpoint = batch
                case .endOfBatch: break
                }
            }
            world.unprocessed.removeFirst(min(count, world.unprocessed.count))
        }

        /// The connection dies after Redis processed any prefix of what it carried.
        func losses(
            _ world: World,
            _ event: (inout DeliveryStateMachine) -> DeliveryStateMachine.Action
        ) throws
            -> [World]
        {
            guard world.failuresLeft > 0 else { return [] }
            var next: [World] = []
            for processed in 0...world.unprocessed.count {
                var lost = world
                try process(&lost, count: processed)
                lost.unprocessed = []
                lost.writtenOnThisConnection = []
                lost.open = false
                lost.failuresLeft -= 1
                lost.action = event(&lost.machine)
                next.append(lost)
            }
            return next
        }

        func successors(_ world: World) throws -> [World] {
            var next: [World] = []
            func step(_ change: (inout World) throws -> Void) rethrows {
                var copy = world
                try change(&copy)
                next.append(copy)
            }
            switch world.action {
            case .finish:
                return []
            case .read:
                if world.tailEnded || world.stopped {
                    throw Violation(description: "asked to read after the tail ended or a stop")
                }
                if world.batchesRead < batches {
                    for full in [true, false] {
                        step {
                            $0.batchesRead += 1
                            $0.action = $0.machine.batchRead(
                                $0.batchesRead,
                                position: DeliveryStateMachineTests.position($0.batchesRead),
                                full: full
                            )
                        }
                    }
                } else {
                    step {
                        $0.tailEnded = true
                        $0.action = $0.machine.tailEnded()
                    }
                }
                step { $0.action = $0.machine.caughtUp() }
                if let (id, generation) = world.lastSentNewest {
                    step { $0.action = $0.machine.answered(id, on: ConnectionGeneration(generation)) }
                }
                step {
                    $0.stopped = true
                    $0.action = $0.machine.stop()
                }
            case .connect:
                step {
                    if !$0.open {
                        $0.generation += 1
                        $0.open = true
                    }
                    $0.action = $0.machine.connected(ConnectionGeneration($0.generation))
                }
                if world.failuresLeft > 0 {
                    step {
                        $0.failuresLeft -= 1
                        $0.action = $0.machine.connectFailed()
                    }
                }
            case .send(let id, let generation, let checkpoint):
                guard world.open, generation.rawValue == world.generation else {
                    // The publisher refuses a send for a connection that is gone, without writing.
                    step { $0.action = $0.machine.failed(on: generation) }
                    break
                }
                for earlier in 1..<id where earlier > world.batchesConfirmed {
                    if !world.writtenOnThisConnection.contains(earlier) {
                        throw Violation(
                            description: "batch \(id) sent on \(generation) while batch \(earlier) is unconfirmed"
                                + " and not sent on it"
                        )
                    }
                }
                if let checkpoint, Int(checkpoint.increment) > world.batchesConfirmed {
                    throw Violation(description: "batch \(id) carries checkpoint \(checkpoint.increment), unconfirmed")
                }
                var written = world
                written.unprocessed += events(of: id).map(World.Unit.event)
                if let checkpoint { written.unprocessed.append(.checkpoint(Int(checkpoint.increment))) }
                written.unprocessed.append(.endOfBatch(id))
                written.writtenOnThisConnection.insert(id)
                if delivering {
                    var done = written
                    try process(&done, count: done.unprocessed.count)
                    done.batchesConfirmed = max(done.batchesConfirmed, id)
                    done.action = done.machine.sent(id, on: generation, delivered: true)
                    next.append(done)
                } else {
                    var sent = written
                    sent.lastSentNewest = (id, generation.rawValue)
                    sent.action = sent.machine.sent(id, on: generation, delivered: false)
                    next.append(sent)
                }
                next += try losses(written) { $0.failed(on: generation) }
            case .confirm(let id, let generation):
                guard world.open, generation.rawValue == world.generation,
                    let end = world.unprocessed.firstIndex(of: .endOfBatch(id))
                else {
                    throw Violation(description: "confirming batch \(id), not in flight on \(generation)")
                }
                if id != world.batchesConfirmed + 1 {
                    throw Violation(description: "confirming batch \(id) after \(world.batchesConfirmed)")
                }
                var confirmed = world
                try process(&confirmed, count: end + 1)
                confirmed.batchesConfirmed = id
                confirmed.action = confirmed.machine.confirmed(id, on: generation)
                next.append(confirmed)
                next += try losses(world) { $0.failed(on: generation) }
            case .writeCheckpoint(let position, let generation):
                let batch = Int(position.increment)
                if batch > world.batchesConfirmed {
                    throw Violation(
                        description: "checkpoint \(batch) written, only \(world.batchesConfirmed) confirmed"
                    )
                }
                guard world.open, generation.rawValue == world.generation else {
                    step { $0.action = $0.machine.failed(on: generation) }
                    break
                }
                var written = world
                written.unprocessed.append(.checkpoint(batch))
                try step {
                    $0 = written
                    try process(&$0, count: $0.unprocessed.count)
                    $0.action = $0.machine.checkpointWritten(position, on: generation)
                }
                next += try losses(written) { $0.failed(on: generation) }
            case .pause:
                step { $0.action = $0.machine.pauseEnded() }
                if !world.stopped {
                    step {
                        $0.stopped = true
                        $0.action = $0.machine.stop()
                    }
                }
            }
            for successor in next {
                if successor.machine.held > window || successor.machine.inFlight > window {
                    throw Violation(description: "holds \(successor.machine.held) batches, window \(window)")
                }
            }
            return next
        }

        /// Depth-first over every choice; returns the states and the finished runs.
        func check() throws -> (states: Int, finished: Int) {
            var machine = DeliveryStateMachine(window: window)
            let first = machine.start()
            var stack = [World(machine: machine, action: first, failuresLeft: failures)]
            var visited: Set<String> = []
            var finished = 0
            while let world = stack.popLast() {
                guard visited.insert(world.fingerprint).inserted else { continue }
                if world.action == .finish {
                    finished += 1
                    try checkFinished(world)
                }
                stack += try successors(world)
            }
            return (visited.count, finished)
        }

        func checkFinished(_ world: World) throws {
            if world.checkpoint > world.seenUpTo / eventsPerBatch {
                throw Violation(description: "finished with checkpoint \(world.checkpoint) past the events seen")
            }
            guard !world.stopped else { return }
            // Not stopped: the tail ended and everything read was delivered and checkpointed.
            if world.seenUpTo != batches * eventsPerBatch || world.checkpoint != batches {
                throw Violation(
                    description: "finished a drain with \(world.seenUpTo) events seen, checkpoint \(world.checkpoint)"
                )
            }
        }
    }

    @Test(arguments: [1, 2, 3])
    func everyInterleavingOfPipelinedBatchesKeepsTheGuarantees(window: Int) throws {
        let model = Model(batches: 3, window: window, failures: 2, delivering: false)
        let result = try model.check()
        #expect(result.finished > 0)
        #expect(result.states > 1000)
    }

    @Test func everyInterleavingOfDeliveredBatchesKeepsTheGuarantees() throws {
        let model = Model(batches: 3, window: 2, failures: 3, delivering: true)
        let result = try model.check()
        #expect(result.finished > 0)
    }

    /// The checker is not vacuous: a machine that sent new batches on a new connection before the lost ones
    /// (the behaviour before issue 17) is caught — here simulated by a model whose Redis reorders a connection.
    @Test func theCheckerCatchesAnOutOfOrderDelivery() throws {
        var world = World(machine: DeliveryStateMachine(window: 2), action: .read, failuresLeft: 0)
        world.unprocessed = [.event(2), .event(1)]
        let model = Model(batches: 1, window: 2, failures: 0, delivering: false)
        #expect(throws: Violation.self) { try model.process(&world, count: 2) }
        var early = World(machine: DeliveryStateMachine(window: 2), action: .read, failuresLeft: 0)
        early.unprocessed = [.event(1), .checkpoint(1)]
        #expect(throws: Violation.self) { try model.process(&early, count: 2) }
    }
}
