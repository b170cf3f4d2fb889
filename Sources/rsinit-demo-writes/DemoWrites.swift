import ArgumentParser
import BSON
import Foundation
import Logging
import MongoCWrapper

/// The writes of `scripts/demo.sh`: an insert, an update and a delete on `steedos.tasks` through libmongoc (no mongosh
/// exists on our machines), each acknowledged by the primary before the next.
@main
struct DemoWrites: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rsinit-demo-writes",
        abstract: "Insert, update and delete one document in steedos.tasks (the demo's writes; not shipped)."
    )

    @Option(help: "The MongoDB URI of the primary.")
    var uri = "mongodb://127.0.0.1:27017/?directConnection=true"

    @Option(help: "Pause between the writes, in milliseconds (so a reader sees them one by one).")
    var pause: Int = 300

    func run() async throws {
        var logger = Logger(label: "rsinit-demo-writes")
        logger.logLevel = .error
        let client: MongoClient
        do {
            client = try MongoClient(try MongoConnectionString(uri), appName: "rsinit-demo", logger: logger)
        } catch {
            FileHandle.standardError.write(Data("rsinit-demo-writes: error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let writes: [(String, BSONDocument)] = [
            (
                "insert {_id: \"task-1\", title: \"Try rsinit\", done: false}",
                ["insert": "tasks", "documents": [["_id": "task-1", "title": "Try rsinit", "done": false]]]
            ),
            (
                "update {_id: \"task-1\"} {$set: {done: true}}",
                ["update": "tasks", "updates": [["q": ["_id": "task-1"], "u": ["$set": ["done": true]]]]]
            ),
            (
                "delete {_id: \"task-1\"}",
                ["delete": "tasks", "deletes": [["q": ["_id": "task-1"], "limit": 1]]]
            ),
        ]
        var failure: (any Error)?
        for (index, (description, command)) in writes.enumerated() {
            if index > 0, pause > 0 { try await Task.sleep(for: .milliseconds(pause)) }
            do {
                let reply = try await client.runCommand(command, database: "steedos")
                let count = reply["n"]?.int64Value ?? 0
                // Unbuffered, so the line appears before the subscriber's messages about it.
                FileHandle.standardOutput.write(Data("write: steedos.tasks \(description) (n: \(count))\n".utf8))
            } catch {
                failure = error
                break
            }
        }
        await client.close()
        if let failure {
            FileHandle.standardError.write(Data("rsinit-demo-writes: error: \(failure)\n".utf8))
            throw ExitCode(1)
        }
    }
}
