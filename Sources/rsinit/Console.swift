import FoundationEssentials
import Logging
import MongoCWrapper
import RSInitCore

#if canImport(Glibc)
import Glibc
#endif

/// Human progress on stderr, one JSON object on stdout with --json; the logging backend of the process.
struct Console: Sendable {
    let output: OutputOptions
    let command: String
    let logger: Logger

    init(output: OutputOptions, command: String) {
        self.output = output
        self.command = command
        var logger = Logger(label: "rsinit")
        logger.logLevel = output.verbose ? .debug : (output.quiet ? .error : .warning)
        self.logger = logger
        MongoRuntime.setLogger(logger)
    }

    func info(_ text: String) {
        guard !output.quiet else { return }
        Self.writeError("rsinit: \(text)")
    }

    func warn(_ text: String) {
        guard !output.quiet else { return }
        Self.writeError("rsinit: warning: \(text)")
    }

    func phase(_ phase: BootstrapStateMachine.Phase) {
        switch phase {
        case .ready, .failed: return
        default: info(phase.description)
        }
    }

    enum Outcome {
        case success(report: BootstrapReport?, status: ReplicaSetStatusReport?)
        case failure(BootstrapFailure)
    }

    /// The final line(s): an error message on stderr, and the JSON object on stdout when asked for.
    func result(_ outcome: Outcome, elapsed: Duration) {
        var json = CommandResult(command: command, outcome: "ready", exitCode: 0, elapsedMs: elapsed.milliseconds)
        switch outcome {
        case .success(let report, let status):
            json.report = report
            json.status = status
            if command == "status" { json.outcome = "answered" }
        case .failure(let failure):
            json.outcome = "failed"
            json.exitCode = failure.exitCode
            json.error = .init(kind: failure.kind.rawValue, message: failure.message, fix: failure.fix)
            Self.writeError("rsinit: error: \(failure.message)")
            if let fix = failure.fix { Self.writeError("rsinit: fix: \(fix)") }
        }
        if output.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            if let data = try? encoder.encode(json) { print(String(decoding: data, as: UTF8.self)) }
        }
    }

    static func writeError(_ line: String) {
        writeAll(line + "\n", to: STDERR_FILENO)
    }
}

/// The `--json` schema (one object on stdout).
struct CommandResult: Codable {
    struct ErrorInfo: Codable {
        var kind: String
        var message: String
        var fix: String?
    }

    var command: String
    /// "ready", "answered" (status) or "failed".
    var outcome: String
    var exitCode: Int32
    var elapsedMs: Int64
    var error: ErrorInfo?
    var report: BootstrapReport?
    var status: ReplicaSetStatusReport?
}

enum StatusText {
    static func render(_ status: ReplicaSetStatusReport) -> String {
        var lines: [String] = []
        switch status.kind {
        case "standalone": lines.append("standalone mongod (not started with --replSet)")
        case "mongos": lines.append("mongos (not a replica set member)")
        case "uninitialized": lines.append("replica set member without a config (run rsinit to initiate)")
        case "removed": lines.append("REMOVED: this node is not in its stored replica set config")
        default:
            lines.append("replica set \(status.setName ?? "?"): this node is \(status.state ?? "?")")
            lines.append(
                "writable primary: \(status.writablePrimary ? "yes" : "no")\(status.primary.map { " (\($0))" } ?? "")"
            )
        }
        for member in status.members {
            lines.append(
                "  \(member.name)  \(member.stateStr)  health \(member.health)\(member.isSelf ? "  (self)" : "")"
            )
        }
        if let lastWrite = status.lastWrite { lines.append("last oplog write: \(lastWrite)") }
        return lines.joined(separator: "\n")
    }
}
