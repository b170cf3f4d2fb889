import BSON
import MongoCWrapper
public import RedisClient

extension BootstrapFailure {
    /// The failure that ends `rsinit tail`, with its fix and exit code: the core decides, the CLI only prints it.
    /// Nil for an error that is not a known outcome of a run (the CLI then reports it as it is).
    ///
    /// History lost with `--on-history-lost fail` exits 9; a delivered, majority-committed entry missing exits 11; a transaction too large to hold, a stored checkpoint of the other source, bad flags and a Redis
    /// that refuses the configuration exit 2; wrong credentials (MongoDB or Redis) exit 6; a mongod that is not a
    /// replica set member exits 4.
    public init?(tailError error: any Error) {
        switch error {
        case let failure as BootstrapFailure:
            self = failure
        case let lost as OplogHistoryLost:
            self.init(
                .historyLost,
                "\(lost)",
                fix: "events were lost to the consumer; restart with --from end (or --on-history-lost from-end) after "
                    + "consumers reload, and size the oplog for the longest bridge outage"
            )
        case let missing as OplogCommittedEntryMissing:
            self.init(
                .committedEntryMissing,
                "\(missing)",
                fix: "consumers were told about a change the database no longer has; check the replica set "
                    + "(rs.status(), rollback files), let consumers reload, then restart with --from end"
            )
        case let tooLarge as OplogTransactionTooLarge:
            self.init(
                .usage,
                "\(tooLarge)",
                fix:
                    "split such transactions in the application (MongoDB advises at most 1,000 documents each); to get "
                    + "past this one, restart with --from end (its events are lost to consumers)"
            )
        case let checkpoint as StoredCheckpointError:
            self.init(.usage, checkpoint.message, fix: checkpoint.fix)
        case let redis as RedisError:
            self.init(redis: redis)
        case let mongo as MongoError:
            switch mongo.code {
            case .noReplicationEnabled:
                self.init(
                    .notReplicaSet,
                    "MongoDB: \(mongo)",
                    fix: "start mongod with --replSet <name> and bootstrap the set first "
                        + "(rsinit --host <host> --set-name <name>)"
                )
            case .authenticationFailed, .unauthorized:
                self.init(
                    .auth,
                    "MongoDB: \(mongo)",
                    fix: "check --username/--password-file (or the credentials in --uri)"
                )
            default:
                self.init(.usage, "MongoDB: \(mongo)", fix: "check --host/--port or --uri")
            }
        default:
            return nil
        }
    }

    /// A Redis failure that ends the run (not transient): usage (exit 2) or authentication (exit 6), with its fix.
    public init(redis error: RedisError) {
        switch error.category {
        case .authentication:
            self.init(
                .auth,
                error.message,
                fix: "check the user and password in --redis (redis://user:password@host) and the user's ACL"
            )
        case .usage:
            self.init(
                .usage,
                error.message,
                fix: error.kind == .tlsFailed
                    ? "check the ca=, cert=, key= and verify= options of --redis and the server's certificate"
                    : "check --redis and the Redis server's configuration (databases, commands allowed)"
            )
        case .transient, .server:
            self.init(.usage, error.message, fix: "check the Redis server named in --redis")
        }
    }
}
