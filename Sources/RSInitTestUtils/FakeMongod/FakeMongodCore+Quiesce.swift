import BSON
import Foundation

/// Quiesce mode and shutdown of a replica-set member (spec replication-ha §1.1 "Special states", §4.1 "Clean
/// SIGTERM", §4.5, §9.1 items 3 and 19), driven by ``FakeReplicaSet/shutDown(_:quiesce:)``.
///
/// - Quiesce: `hello` (awaitable ones too: the counter moved) fails with 91 `ShutdownInProgress` "The server is in
///   quiesce mode and will shut down", with `topologyVersion`; other commands are still served (open cursors keep
///   reading), so drivers move away before anything is cut.
/// - Shutdown: operations still waiting (awaitData getMores) end with 11600 `InterruptedAtShutdown`; then every
///   connection closes and the member is down until restarted.
extension FakeMongodCore {
    /// The ShutdownError category (S:EC): `topologyVersion` only in quiesce mode (§4.5).
    static let shutdownErrorCodes: Set<Int32> = [91, 11600]

    static var quiesceFailure: CommandFailure {
        CommandFailure(code: 91, message: "The server is in quiesce mode and will shut down")
    }

    /// mongod's `checkForInterrupt` text for a shutdown kill (the spec names the code, not the 7.0 text).
    static var shutdownInterruption: CommandFailure {
        CommandFailure(code: 11600, message: "interrupted at shutdown")
    }

    /// Enters quiesce mode: the counter moves (§9.1 item 3, "entering quiesce/shutdown"), waiting hellos wake up.
    func enterQuiesce() {
        quiescing = true
        topologyCounter += 1
        condition.broadcast()
    }

    /// Ends quiesce: waiting operations are interrupted (they answer 11600 on waking).
    func beginShutdown() {
        quiescing = false
        shuttingDown = true
        condition.broadcast()
    }

    /// After the restart: a new process, neither quiescing nor shutting down.
    func clearShutdown() {
        quiescing = false
        shuttingDown = false
    }
}
