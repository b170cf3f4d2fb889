import BSON
import MongoCWrapper
import RedisClient
import Testing

@testable import RSInitCore

/// `rsinit tail`'s failures are decided in the core (kind, message, fix, exit code); the CLI only prints them.
struct TailFailureTests {
    @Test func everyTailOutcomeHasAKindAFixAndItsExitCode() throws {
        let cases: [(any Error, BootstrapFailure.Kind, Int32)] = [
            (
                OplogHistoryLost(
                    position: BSONTimestamp(seconds: 5, increment: 1),
                    oldestAvailable: nil,
                    reason: "rolled over"
                ), .historyLost, 9
            ),
            (
                OplogCommittedEntryMissing(
                    checkpoint: OplogOpTime(ts: BSONTimestamp(seconds: 7, increment: 2), t: 3),
                    host: "db1:27017"
                ), .committedEntryMissing, 11
            ),
            (OplogTransactionTooLarge(operations: 2_000_000, maximum: 1_000_000), .usage, 2),
            (
                StoredCheckpointError.wrongSource(
                    .changeStream(token: "82AB", clusterTime: BSONTimestamp(seconds: 7, increment: 2))
                ), .usage, 2
            ),
            (RedisError(.authenticationFailed, "Redis rejected the credentials"), .auth, 6),
            (RedisError(.tlsFailed, "no TLS"), .usage, 2),
            (MongoError(code: .noReplicationEnabled, message: "no oplog"), .notReplicaSet, 4),
            (MongoError(code: .authenticationFailed, message: "bad password"), .auth, 6),
            (MongoError(code: .serverSelection, message: "no server"), .usage, 2),
            (BootstrapFailure(.usage, "invalid --http", fix: "use host:port"), .usage, 2),
        ]
        for (error, kind, code) in cases {
            let failure = try #require(BootstrapFailure(tailError: error), "\(error)")
            #expect(failure.kind == kind, "\(error)")
            #expect(failure.exitCode == code, "\(error)")
            #expect(failure.fix?.isEmpty == false, "\(error) has a fix")
        }
        #expect(BootstrapFailure(tailError: CancellationError()) == nil, "not an outcome: the CLI reports it as it is")
    }
}
