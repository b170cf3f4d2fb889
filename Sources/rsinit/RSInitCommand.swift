import ArgumentParser
import RSInitCore

@main
struct RSInitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rsinit",
        abstract: "Bootstrap and verify a MongoDB replica set, and bridge its oplog to Redis.",
        version: RSInitVersion.current
    )

    func run() async throws {
        print(Self.helpMessage())
    }
}
