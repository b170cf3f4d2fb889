import BSON
import Foundation

/// Write concern on replica-set members (spec replication-ha §3.3, §4.4 points 2 and 7, §9.1 item 13):
/// `w:"majority"` waits for the commit point, `wtimeout` gives 64 in `writeConcernError`, a stepdown wakes waiters
/// with 189 in `writeConcernError` and kills writes still in flight with 11602. The lone double ignores write
/// concern as before.
extension FakeMongodCore {
    /// mongod's text for an operation killed by `killOp` with a state-change code (`checkForInterrupt`); the 7.0
    /// text is UNCONFIRMED in the spec (§11), the code and category are certain.
    static let interruptedMessage = "operation was interrupted"
    static let steppedDownWhileWaitingMessage = "Primary stepped down while waiting for replication"
    static let replicationTimedOutMessage = "waiting for replication timed out"

    /// Whether this node is (still) a writable primary that has not begun stepping down.
    private var writableForUsers: Bool { phase == .primary && !steppingDown }

    /// A write on a set member: waits while writes are held (killed with 11602 if a stepdown starts meanwhile),
    /// applies it, then honours `writeConcern.w: "majority"`.
    func writeWithConcern(
        _ name: String,
        _ command: BSONDocument,
        database: String
    ) -> Result<BSONDocument, CommandFailure> {
        // A kill, rollback, restart or stop bumps `generation` and closes the connection: stop waiting then.
        let generationAtStart = generation
        let connectionAlive = { self.generation == generationAtStart }
        if writesHeld && writableForUsers {
            while writesHeld && writableForUsers && connectionAlive() {
                _ = condition.wait(until: Date().addingTimeInterval(0.02))
            }
            if !writableForUsers || !connectionAlive() {
                return .failure(
                    CommandFailure(code: 11602, message: Self.interruptedMessage, extra: retryLabel(command))
                )
            }
        }
        let result = write(name, command, database: database)
        guard case .success(var body) = result,
            let concern = command["writeConcern"]?.documentValue, concern["w"]?.stringValue == "majority",
            let written = lastAppliedOpTime
        else { return result }
        let wtimeout = concern["wtimeout"]?.int64Value ?? 0
        let deadline = wtimeout > 0 ? Date().addingTimeInterval(Double(wtimeout) / 1000) : Date.distantFuture
        let committed = { FakeOpTime(self.lastCommittedOpTime).map { $0 >= written } ?? false }
        while writableForUsers && !committed() && Date() < deadline && connectionAlive() {
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.02)))
        }
        if committed() { return .success(body) }
        let error: BSONDocument
        if !writableForUsers {
            error = [
                "code": .int32(189), "codeName": .string(ServerCodeName.name(189)),
                "errmsg": .string(Self.steppedDownWhileWaitingMessage),
            ]
        } else {
            var supplied = concern
            supplied.append("provenance", "clientSupplied")
            error = [
                "code": .int32(64), "codeName": "WriteConcernFailed",
                "errmsg": .string(Self.replicationTimedOutMessage),
                "errInfo": ["wtimeout": true, "writeConcern": .document(supplied)],
            ]
        }
        body.append("writeConcernError", .document(error))
        // §4.5: a retryable write (txnNumber, outside a transaction) with a retriable write-concern error.
        if !writableForUsers { for (key, value) in retryLabel(command) { body.append(key, value) } }
        return .success(body)
    }

    /// `errorLabels: ["RetryableWriteError"]` for a retryable write (txnNumber present, no transaction), else none.
    private func retryLabel(_ command: BSONDocument) -> [(String, BSONValue)] {
        guard command["txnNumber"] != nil, command["autocommit"] == nil else { return [] }
        return [("errorLabels", .array(["RetryableWriteError"]))]
    }
}
