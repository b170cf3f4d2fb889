import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

let logger = Logger(label: "rsinit.test.fakemongod")

func startDouble(
    _ scenario: FakeMongodConfiguration.Scenario,
    timings: FakeMongodConfiguration.Timings = .immediate,
    configure: (inout FakeMongodConfiguration) -> Void = { _ in }
) throws -> FakeMongod {
    var configuration = FakeMongodConfiguration(scenario: scenario, timings: timings, periodicNoopInterval: nil)
    configure(&configuration)
    return try FakeMongod.start(configuration)
}

/// Runs `body` with a libmongoc client on a direct connection to `server`, closing it afterwards.
func withClient<T>(
    _ server: FakeMongod,
    uri: String? = nil,
    _ body: (MongoClient) async throws -> T
) async throws -> T {
    try await withClient(uri: uri ?? server.uri, body)
}

/// Runs `body` with a libmongoc client for `uri`, closing it afterwards.
func withClient<T>(uri: String, _ body: (MongoClient) async throws -> T) async throws -> T {
    let client = try MongoClient(uri: uri, logger: logger)
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch {
        await client.close()
        throw error
    }
}

/// The MongoError a command fails with (through libmongoc), or nil when it succeeds.
func commandError(_ client: MongoClient, _ command: BSONDocument, database: String = "admin") async -> MongoError? {
    do {
        _ = try await client.runCommand(command, database: database)
        return nil
    } catch let error as MongoError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}
