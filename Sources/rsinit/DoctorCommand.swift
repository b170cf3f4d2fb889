import ArgumentParser
import BSON
import FoundationEssentials
import MongoCWrapper
import RSInitCore
import RSInitSupport
import RedisClient

/// `rsinit doctor`: read-only checks of a deployment for real-time push, each ok / warning / failure with a fix.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check a deployment for real-time push: member hosts, primary, oplog window, Redis, checkpoint.",
        discussion: """
            Read-only (except --probe). Checks: mongod reachable, version, replica set and set name; every stored \
            member host resolves and answers from here as a member of the set (a loopback host, or one pointing back \
            to this machine, is the localhost trap); a writable primary and a healthy majority; the oplog's size, \
            window and, at the write rate sampled for --sample, how long a bridge can be down before its checkpoint \
            falls off. With --redis: reachable, authenticated, persistence (AOF or RDB), the checkpoint \
            (<metadata-prefix>checkpoint) present, its age and whether it is still inside the oplog, recent HA \
            dedupe keys. --probe WRITES: it inserts a marker document in rsinit_doctor.probe, waits for the \
            bridge's message on Redis and removes the marker. Each connection attempt waits at most --timeout, capped at \
            3 s.

            EXIT CODES
              0   no failures (warnings may be printed)
              2   usage or bad input (flags, URIs)
              3   mongod not reachable
              6   authentication refused (MongoDB or Redis)
              10  failures found (each printed with its fix)

            ENVIRONMENT
              RSINIT_HOST, RSINIT_PORT, RSINIT_URI, RSINIT_USERNAME, RSINIT_PASSWORD_FILE, RSINIT_SET_NAME, \
            RSINIT_TIMEOUT, RSINIT_REDIS, RSINIT_PREFIX, RSINIT_METADATA_PREFIX, RSINIT_ALLOW_LOCALHOST_MEMBER, \
            RSINIT_JSON, RSINIT_QUIET, RSINIT_VERBOSE (and *_FILE variants).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(
        help: ArgumentHelp(
            "The bridge's Redis (redis:// or rediss://, as for tail): check persistence and the checkpoint "
                + "(env RSINIT_REDIS).",
            valueName: "url"
        )
    )
    var redis: String?

    @Option(help: "The bridge's channel prefix, for --probe (env RSINIT_PREFIX).") var prefix: String = ""

    @Option(
        name: .customLong("metadata-prefix"),
        help: "The bridge's prefix of the checkpoint and dedupe keys (env RSINIT_METADATA_PREFIX)."
    )
    var metadataPrefix = "rsinit::"

    @Option(
        help: ArgumentHelp(
            "How long to sample the oplog's write rate: seconds, or with a unit (500ms, 5s, 2m), 1ms to 7d.",
            valueName: "duration"
        )
    )
    var sample = RawArgument("5s")

    @Flag(
        help: "WRITES: insert a marker document in rsinit_doctor.probe, wait for the bridge's message, remove it."
    )
    var probe = false

    @Option(
        name: .customLong("probe-timeout"),
        help: ArgumentHelp(
            "How long --probe waits for the bridge's message: seconds, or with a unit, 1ms to 7d.",
            valueName: "duration"
        )
    )
    var probeTimeout = RawArgument("10s")

    /// A loopback member host is a warning instead of a failure.
    @OptionGroup var localhostMember: LocalhostMemberOption

    @OptionGroup var output: OutputOptions

    func run() async throws {
        let console = Console(output: output, command: "doctor")
        let report: DoctorReport
        do {
            let configuration = try inspectorConfiguration()
            if !output.json && !output.quiet {
                Console.writeError(
                    "rsinit: doctor: \(configuration.connectionString.redacted) (set \(configuration.setName))"
                        + (configuration.redis.map { ", redis \($0)" } ?? "") + "; sampling the oplog for "
                        + configuration.sampleDuration.formattedSeconds
                )
            }
            let facts = await DoctorInspector(configuration: configuration, logger: console.logger).gather()
            report = DoctorReport(
                facts: facts,
                policy: .init(allowLoopbackMembers: localhostMember.allowLocalhostMember)
            )
        } catch let failure as BootstrapFailure {
            console.result(.failure(failure), elapsed: .zero)
            throw ExitCode(failure.exitCode)
        }
        if output.json {
            print(DoctorText.json(report))
        } else {
            print(Redaction.redact(DoctorText.render(report, quiet: output.quiet)))
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }

    /// The flags, checked, as the inspector's configuration (a usage error names the flag and the fix).
    private func inspectorConfiguration() throws -> DoctorInspector.Configuration {
        let connectionString = try connection.connectionString()
        try connection.validateSetName()
        let timeout = try connection.timeoutDuration()
        let sampleDuration: Duration
        let probeTimeoutDuration: Duration
        do {
            sampleDuration = try InputValue.duration(sample.text, from: InputSource("--sample"))
            probeTimeoutDuration = try InputValue.duration(probeTimeout.text, from: InputSource("--probe-timeout"))
        } catch { throw error.failure }
        let redisURL = try checkedRedisURL()
        if probe && redisURL == nil {
            throw BootstrapFailure(.usage, "--probe needs --redis", fix: "pass the bridge's --redis URL")
        }
        return DoctorInspector.Configuration(
            connectionString: connectionString,
            setName: connection.setName,
            redis: redisURL,
            channelPrefix: prefix,
            metadataPrefix: metadataPrefix,
            sampleDuration: sampleDuration,
            probe: probe,
            probeTimeout: probeTimeoutDuration,
            attemptTimeout: min(timeout, .seconds(3))
        )
    }

    /// `--redis`, parsed, with its TLS files readable (nil without the flag).
    private func checkedRedisURL() throws -> RedisURL? {
        guard let redis else { return nil }
        do {
            let url = try RedisURL(redis)
            try url.checkTLSFiles()
            return url
        } catch {
            throw BootstrapFailure(
                .usage,
                error.message,
                fix:
                    "use redis[s]://[user:password@]host[:port][/db 0-\(RedisURL.maximumDatabase)][?ca=<pem>&verify=full|ca|none&cert=<pem>&key=<pem>]"
            )
        }
    }
}

/// The report as text (one line per finding, its fix indented below) and as JSON.
enum DoctorText {
    static func render(_ report: DoctorReport, quiet: Bool) -> String {
        var lines: [String] = []
        for finding in report.findings where !quiet || finding.severity != .ok {
            let label: String
            switch finding.severity {
            case .ok: label = "ok      "
            case .warning: label = "WARNING "
            case .failure: label = "FAILURE "
            }
            lines.append("\(label)\(finding.check): \(finding.message)")
            if let fix = finding.fix, finding.severity != .ok { lines.append("        fix: \(fix)") }
        }
        lines.append(
            "doctor: \(report.failures) failure(s), \(report.warnings) warning(s), "
                + "\(report.findings.count - report.failures - report.warnings) ok (exit \(report.exitCode))"
        )
        return lines.joined(separator: "\n")
    }

    struct JSONReport: Encodable {
        var command = "doctor"
        var exitCode: Int32
        var failures: Int
        var warnings: Int
        var findings: [DoctorFinding]
        var figures: [String: Double]
    }

    static func json(_ report: DoctorReport) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let value = JSONReport(
            exitCode: report.exitCode,
            failures: report.failures,
            warnings: report.warnings,
            // Each text redacted on its own: redacting the encoded JSON would read `"…":"redis://:***@…` as
            // user info spanning the punctuation between two fields.
            findings: report.findings.map {
                DoctorFinding(
                    Redaction.redact($0.check),
                    $0.severity,
                    Redaction.redact($0.message),
                    fix: $0.fix.map(Redaction.redact)
                )
            },
            figures: report.figures
        )
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
