import BSON
import FoundationEssentials
public import Logging
public import MongoCWrapper

/// Which source `rsinit tail` reads, and why (said at start).
public struct SourceChoice: Sendable, Equatable {
    public var source: OplogBridge.Source
    /// One line for the operator: the source and the reason.
    public var reason: String

    /// What the probe found.
    public struct Facts: Sendable, Equatable {
        /// `hello` said `msg: "isdbgrid"`.
        public var isMongos: Bool
        /// A `find` on `local.oplog.rs` succeeded (nil: MongoDB could not be asked).
        public var oplogReadable: Bool?

        public init(isMongos: Bool, oplogReadable: Bool?) {
            self.isMongos = isMongos
            self.oplogReadable = oplogReadable
        }
    }

    /// The watch scope for `--include`: one database (no wildcard in its name) → that database; else the cluster.
    public static func scope(include: [String]) -> ChangeStreamScope {
        let databases = Set(include.map { Namespace($0).database })
        if databases.count == 1, let database = databases.first, !database.contains("*") {
            return .database(database)
        }
        return .cluster
    }

    /// The rule of `--source`: an explicit choice stands (`--full-document` needs a change stream); `auto` takes
    /// the oplog on a member whose `local` is readable, a change stream on mongos, without that privilege, or with
    /// `--full-document`.
    public static func decide(
        requested changeStream: Bool?,
        fullDocument: Bool,
        include: [String],
        facts: Facts?
    ) throws(InputError) -> SourceChoice {
        let scope = scope(include: include)
        let stream = OplogBridge.Source.changeStream(scope: scope, fullDocument: fullDocument)
        switch changeStream {
        case true?:
            return SourceChoice(source: stream, reason: "change stream (\(scope)), as --source asks")
        case false?:
            if fullDocument {
                throw InputError(
                    "--full-document needs the change-stream source (an oplog update entry carries no document)",
                    fix: "use --source change-stream (or auto), or drop --full-document"
                )
            }
            return SourceChoice(source: .oplog, reason: "oplog, as --source asks")
        case nil:
            if fullDocument {
                return SourceChoice(source: stream, reason: "change stream (\(scope)): --full-document needs one")
            }
            guard let facts else {
                return SourceChoice(
                    source: .oplog,
                    reason: "oplog: MongoDB could not be asked which source fits (unreachable at start)"
                )
            }
            if facts.isMongos {
                return SourceChoice(source: stream, reason: "change stream (\(scope)): this is mongos (no oplog)")
            }
            if facts.oplogReadable == false {
                return SourceChoice(
                    source: stream,
                    reason: "change stream (\(scope)): the user cannot read local.oplog.rs"
                )
            }
            return SourceChoice(source: .oplog, reason: "oplog: local.oplog.rs is readable on this member")
        }
    }

    /// Asks MongoDB (`hello`, then a one-entry `find` on `local.oplog.rs`); nil when it cannot be reached.
    public static func probe(_ connectionString: MongoConnectionString, logger: Logger) async -> Facts? {
        guard
            let options = try? connectionString.settingOptions(int32: ["serverSelectionTimeoutMS": 5000]),
            let client = try? MongoClient(options, appName: "rsinit-tail", logger: logger)
        else { return nil }
        let facts = await probe(client)
        await client.close()
        return facts
    }

    private static func probe(_ client: MongoClient) async -> Facts? {
        guard let hello = try? await client.runCommand(["hello": 1]) else { return nil }
        if hello["msg"]?.stringValue == "isdbgrid" { return Facts(isMongos: true, oplogReadable: nil) }
        do {
            _ = try await client.runCommand(
                ["find": "oplog.rs", "filter": [:], "limit": 1, "projection": ["ts": 1]],
                database: "local"
            )
            return Facts(isMongos: false, oplogReadable: true)
        } catch let error as MongoError where error.code == .unauthorized {
            return Facts(isMongos: false, oplogReadable: false)
        } catch {
            return Facts(isMongos: false, oplogReadable: nil)
        }
    }
}
