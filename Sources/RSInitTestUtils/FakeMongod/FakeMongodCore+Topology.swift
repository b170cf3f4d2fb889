import BSON
import Foundation

/// `topologyVersion` and awaitable `hello` for replica-set members (spec replication-ha §1.3, §6.1, §9.1 items 3,
/// 4 and 19). Only set members (`setMember`) carry them: the lone double keeps leaving `topologyVersion` out, as
/// mongod-behaviour §11.5 advises for a double without awaitable hello.
extension FakeMongodCore {
    /// The NotPrimaryError category (S:EC): replies with these codes carry `topologyVersion` in a set.
    static let notPrimaryErrorCodes: Set<Int32> = [189, 10107, 11602, 13435, 13436]

    /// An awaitable hello never waits longer than this, whatever the client asks (mongod caps nothing, but a
    /// double must not hold a test thread for minutes).
    static let maxHelloAwait: TimeInterval = 60

    /// `{processId, counter}`: one ObjectId per process start, the counter bumped on every state change.
    var topologyVersionDocument: BSONDocument {
        ["processId": .objectID(processId), "counter": .int64(topologyCounter)]
    }

    /// Whether the request's `topologyVersion` is the current one (same process, same counter).
    private func isCurrentTopologyVersion(_ version: BSONDocument) -> Bool {
        version["processId"]?.objectIDValue == processId && version["counter"]?.int64Value == topologyCounter
    }

    /// Awaitable hello (§9.1 item 4): with `topologyVersion` and `maxAwaitTimeMS` in the request, waits (lock
    /// released) until this member's counter moves, the time passes or the server stops. Returns false when the
    /// connection must be hung up (stop/restart). libmongoc's `exhaustAllowed` is honoured by answering without
    /// `moreToCome`: the monitor then sends the next awaitable hello itself (mongod-behaviour §11.5: "Delaying
    /// the reply by maxAwaitTimeMS works").
    func awaitTopologyChange(_ command: BSONDocument, context: FakeConnectionContext) -> Bool {
        guard setMember, let version = command["topologyVersion"]?.documentValue,
            let awaitMS = command["maxAwaitTimeMS"]?.int64Value, awaitMS > 0
        else { return true }
        let deadline = Date().addingTimeInterval(min(Double(awaitMS) / 1000, Self.maxHelloAwait))
        while isCurrentTopologyVersion(version) && Date() < deadline {
            // Short slices: a counter bump that is not followed by a broadcast is still seen within 20 ms.
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.02)))
            if generation != context.generation { return false }
        }
        return true
    }
}
