import BSON
import FoundationEssentials
public import Logging
public import MongoCWrapper
import RSInitSupport

/// What `rsinit status` prints: the node's kind and the set's state, from one `hello` and `replSetGetStatus`.
public struct ReplicaSetStatusReport: Sendable, Codable, Equatable {
    /// "standalone", "uninitialized", "removed", "member" or "mongos".
    public var kind: String
    /// The replica set's name, when the node has one.
    public var setName: String?
    /// This node's state name (PRIMARY, SECONDARY, STARTUP2, …).
    public var state: String?
    /// Whether this node is the writable primary.
    public var writablePrimary: Bool
    /// The primary as `hello` reports it.
    public var primary: String?
    /// The member hosts of the set's config (`hello.hosts`).
    public var hosts: [String]
    /// Each member's state from `replSetGetStatus`.
    public var members: [MemberStatus]
    /// The newest oplog write as "seconds.increment".
    public var lastWrite: String?
    /// The majority as this node sees it, e.g. "3 of 3 voting members healthy; a majority needs 2".
    public var majority: String?
    /// This node's newest majority-committed write (`lastWrite.majorityOpTime`), "secs.inc".
    public var majorityCommitted: String?
}

/// Reads the replica set's state for `rsinit status`.
public struct ReplicaSetStatusReader: Sendable {
    let connectionString: MongoConnectionString
    let attemptTimeout: Duration
    let logger: Logger

    /// A reader whose connect and server-selection timeouts are `attemptTimeout`.
    public init(connectionString: MongoConnectionString, attemptTimeout: Duration = .seconds(2), logger: Logger) {
        self.connectionString = connectionString
        self.attemptTimeout = attemptTimeout
        self.logger = logger
    }

    /// One look at the node.
    ///
    /// - Throws: ``BootstrapFailure`` (unreachable, auth, usage).
    public func read() async throws(BootstrapFailure) -> ReplicaSetStatusReport {
        let ms = Int32(clamping: attemptTimeout.milliseconds)
        let client: MongoClient
        do {
            let direct = try connectionString.settingOptions(
                int32: ["connectTimeoutMS": ms, "serverSelectionTimeoutMS": ms],
                bool: ["directConnection": true]
            )
            client = try MongoClient(direct, appName: "rsinit", logger: logger)
        } catch {
            throw BootstrapFailure(.usage, error.message)
        }
        let result = await Self.read(client)
        await client.close()
        return try result.get()
    }

    private static func read(_ client: MongoClient) async -> Result<ReplicaSetStatusReport, BootstrapFailure> {
        let hello: HelloSummary
        do {
            hello = HelloSummary(try await client.runCommand(["hello": 1]))
        } catch {
            return .failure(helloFailure(error))
        }
        var report = ReplicaSetStatusReport(
            kind: "member",
            setName: hello.setName,
            state: nil,
            writablePrimary: hello.isWritablePrimary && hello.setName != nil,
            primary: hello.primary,
            hosts: hello.hosts,
            members: [],
            lastWrite: hello.lastWrite.map { "\($0.seconds).\($0.increment)" },
            majorityCommitted: hello.majorityWrite.map { "\($0.seconds).\($0.increment)" }
        )
        if hello.isMongos {
            report.kind = "mongos"
            return .success(report)
        }
        if hello.isStandalone {
            report.kind = "standalone"
            return .success(report)
        }
        if let refused = await readMemberStatus(client, hello: hello, into: &report) { return .failure(refused) }
        return .success(report)
    }

    /// A failed `hello` as the failure the user acts on: refused credentials, or a mongod that does not answer.
    private static func helloFailure(_ error: any Error) -> BootstrapFailure {
        guard let error = error as? MongoError else { return BootstrapFailure(.unreachable, "\(error)") }
        if error.code == .authenticationFailed || error.code == .unauthorized {
            return BootstrapFailure(
                .auth,
                "authentication failed: \(error.message)",
                fix: "check the credentials in --uri"
            )
        }
        return BootstrapFailure(
            .unreachable,
            "mongod did not answer: \(error.message)",
            fix: "check that mongod runs and that --host/--port (or --uri) reach it from here"
        )
    }

    /// The node's own view of the set (`replSetGetStatus`) into `report`: set name, state, members, majority. A node
    /// not initiated or removed from its set is a kind of node, another error an unknown state; only a status
    /// refused for want of privileges is a failure (returned).
    private static func readMemberStatus(
        _ client: MongoClient,
        hello: HelloSummary,
        into report: inout ReplicaSetStatusReport
    ) async -> BootstrapFailure? {
        do {
            let status = StatusSummary(try await client.runCommand(["replSetGetStatus": 1]))
            report.setName = status.setName
            report.state = MemberStateName.name(status.myState)
            if status.myState == 1 && !hello.isWritablePrimary { report.state = "PRIMARY (draining)" }
            report.members = status.members
            report.majority = MajoritySummary.line(status)
        } catch let error as MongoError {
            switch error.code {
            case .notYetInitialized: report.kind = "uninitialized"
            case .invalidReplicaSetConfig:
                report.kind = "removed"
                report.state = "REMOVED"
            case .unauthorized, .authenticationFailed:
                return BootstrapFailure(
                    .auth,
                    "replSetGetStatus was refused: \(error.message)",
                    fix: "pass credentials of a user with the clusterMonitor role in --uri"
                )
            default:
                report.state = "unknown (\(error.message))"
            }
        } catch {
            report.state = "unknown"
        }
        return nil
    }
}
