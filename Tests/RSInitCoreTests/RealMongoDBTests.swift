import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitCore
import Testing

/// The same checks against a real replica set, when `RSINIT_TEST_MONGODB_URI` names one (e.g.
/// `mongodb://127.0.0.1:27017/?directConnection=true`, a set named by `RSINIT_TEST_MONGODB_SET`, default steedos).
/// Skipped with that reason otherwise. Non-destructive: it never initiates or reconfigures.
@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["RSINIT_TEST_MONGODB_URI"] != nil,
        "RSINIT_TEST_MONGODB_URI is not set"
    )
)
struct RealMongoDBTests {
    let uri = ProcessInfo.processInfo.environment["RSINIT_TEST_MONGODB_URI"] ?? ""
    let setName = ProcessInfo.processInfo.environment["RSINIT_TEST_MONGODB_SET"] ?? "steedos"

    @Test func commandRoundTripAndErrorMapping() async throws {
        let client = try MongoClient(uri: uri, logger: Logger(label: "real"))
        let hello = try await client.runCommand(["hello": 1])
        #expect(hello["ok"]?.isTruthy == true)
        do {
            _ = try await client.runCommand(["frobnicate": 1])
            Issue.record("an unknown command succeeded")
        } catch let error as MongoError {
            #expect(error.code == .commandNotFound)
        }
        await client.close()
    }

    @Test func waitAndStatus() async throws {
        let connection = try MongoConnectionString(uri)
        let seed = connection.hosts.first.flatMap { HostAndPort(parsing: $0) } ?? HostAndPort(host: "?", port: 27017)
        let configuration = BootstrapConfiguration(
            connectionString: connection,
            setName: setName,
            members: [seed],
            allowLocalhostMember: true,
            timeout: .seconds(60)
        )
        let report = try await ReplicaSetBootstrapper(configuration: configuration, logger: Logger(label: "real"))
            .waitUntilReady()
        #expect(report.primary != nil)
        let status = try await ReplicaSetStatusReader(connectionString: connection, logger: Logger(label: "real"))
            .read()
        #expect(status.setName == setName)
    }
}
