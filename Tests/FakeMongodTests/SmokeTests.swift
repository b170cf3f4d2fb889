import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

@Suite struct SmokeTests {
    @Test func pingThroughLibmongoc() async throws {
        let server = try FakeMongod.start(FakeMongodConfiguration(scenario: .primary(setName: "rs0")))
        defer { server.stop() }
        let client = try MongoClient(uri: server.uri, logger: Logger(label: "test"))
        let reply = try await client.runCommand(["ping": 1])
        #expect(reply["ok"]?.isTruthy == true)
        await client.close()
        #expect(server.receivedCommandNames.contains("endsessions"))
    }
}
