import BSON
import FoundationEssentials
import Logging
import MongoCWrapper
import RSInitCore
import RSInitSupport

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
            json.error = .init(
                kind: failure.kind.rawValue,
                message: Redaction.redact(failure.message),
                fix: failure.fix.map(Redaction.redact)
            )
            Self.writeError("rsinit: error: \(EnvironmentArguments.naming(failure.message))")
            Self.writeError("rsinit: fix: \(failure.fix ?? Self.defaultFix(for: failure.kind))")
        }
        if output.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            if let data = try? encoder.encode(json) { print(String(decoding: data, as: UTF8.self)) }
        }
    }

    /// Every line rsinit writes to stderr goes through here, redacted.
    static func writeError(_ line: String) {
        writeAll(Redaction.redact(line) + "\n", to: STDERR_FILENO)
    }

    /// A failure without its own fix still gets a `rsinit: fix:` line.
    static func defaultFix(for kind: BootstrapFailure.Kind) -> String {
        switch kind {
        case .usage: return "correct the flag or variable named above (see rsinit --help)"
        case .auth: return "check the user and password (--username/--password-file, or the credentials in --uri)"
        case .unreachable: return "check that mongod runs and that --host/--port (or --uri) reach it"
        case .notReplicaSet: return "start mongod with --replSet <name>"
        case .invalidConfig: return "check --set-name, --member-host and --members against the set's config"
        case .noWritablePrimary: return "check the members' health with rsinit status, or raise --timeout"
        case .oplogNotAdvancing: return "check that the primary accepts writes (rsinit status)"
        case .historyLost: return "restart with --from end after consumers reload, and size the oplog for the outage"
        case .committedEntryMissing:
            return "check the replica set (rs.status(), rollback files), let consumers reload, "
                + "then restart with --from end"
        }
    }
}

/// The process's log handler: swift-log's stream handler on stderr, with every message and metadata value
/// redacted first (libmongoc's lines and the bridge's errors included).
struct RedactingLogHandler: LogHandler {
    private var inner: StreamLogHandler

    init(label: String) { inner = StreamLogHandler.standardError(label: label) }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue.mapValues(Self.redact) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue.map(Self.redact) }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(Redaction.redact(event.message.description))"
        event.metadata = event.metadata?.mapValues(Self.redact)
        event.error = nil
        inner.log(event: event)
    }

    static func redact(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): return .string(Redaction.redact(text))
        case .stringConvertible(let value): return .string(Redaction.redact(value.description))
        case .array(let values): return .array(values.map(redact))
        case .dictionary(let values): return .dictionary(values.mapValues(redact))
        }
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
        if let majority = status.majority { lines.append("majority: \(majority)") }
        if let lastWrite = status.lastWrite { lines.append("last oplog write: \(lastWrite)") }
        if let committed = status.majorityCommitted, status.members.count > 1 {
            lines.append("last majority-committed write: \(committed)")
        }
        return lines.joined(separator: "\n")
    }
}
