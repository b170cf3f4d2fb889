import ArgumentParser
import MongoCWrapper
import RSInitCore

/// How to reach mongod, shared by every command.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "mongod's host name, as clients reach it (env RSINIT_HOST).")
    var host: String?

    @Option(help: "mongod's port (env RSINIT_PORT).")
    var port: Int = 27017

    @Option(
        help: ArgumentHelp(
            "A full MongoDB URI instead of --host/--port: credentials, TLS and other options pass to libmongoc "
                + "(env RSINIT_URI).",
            valueName: "uri"
        )
    )
    var uri: String?

    @Option(
        name: .customLong("set-name"),
        help: "The replica set name mongod runs with (--replSet) (env RSINIT_SET_NAME)."
    )
    var setName = "steedos"

    @Option(
        help: ArgumentHelp(
            "Overall deadline: seconds, or with a unit (500ms, 90s, 2m) (env RSINIT_TIMEOUT).",
            valueName: "duration"
        )
    )
    var timeout: TimeoutValue = TimeoutValue(duration: .seconds(120))

    /// The node to talk to, as a libmongoc connection string.
    func connectionString() throws(BootstrapFailure) -> MongoConnectionString {
        try Self.connectionString(host: host, port: port, uri: uri)
    }

    /// `--uri`, or `mongodb://<host>:<port>/` built from a validated host.
    static func connectionString(
        host: String?,
        port: Int,
        uri: String?
    ) throws(BootstrapFailure) -> MongoConnectionString {
        if let uri {
            do { return try MongoConnectionString(uri) } catch {
                throw BootstrapFailure(
                    .usage,
                    error.message,
                    fix: "check --uri (mongodb://[user:pass@]host[:port]/?options)"
                )
            }
        }
        guard let host else {
            throw BootstrapFailure(.usage, "no mongod given", fix: "pass --host (e.g. --host mongodb) or --uri")
        }
        guard let seed = HostAndPort(parsing: host, defaultPort: port) else {
            throw BootstrapFailure(
                .usage,
                "invalid --host \"\(host)\"",
                fix: "pass a host name or IP address (optionally host:port)"
            )
        }
        guard (1...65535).contains(port) else { throw BootstrapFailure(.usage, "invalid --port \(port)") }
        do { return try MongoConnectionString("mongodb://\(seed.description)/") } catch {
            throw BootstrapFailure(.usage, error.message)
        }
    }
}

/// Output switches, shared by every command.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print one JSON object with the outcome on stdout (env RSINIT_JSON).")
    var json = false

    @Flag(name: .shortAndLong, help: "Print only errors (env RSINIT_QUIET).")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Print debug logs, including libmongoc's (env RSINIT_VERBOSE).")
    var verbose = false
}

/// `--timeout 120`, `--timeout 90s`, `--timeout 500ms`, `--timeout 2m`.
struct TimeoutValue: ExpressibleByArgument, Sendable {
    var duration: Duration

    init(duration: Duration) { self.duration = duration }

    init?(argument: String) {
        let text = argument.lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value > 0, value.isFinite else { return nil }
            duration = .milliseconds(Int64(value * scale * 1000))
            return
        }
        guard let seconds = Double(text), seconds > 0, seconds.isFinite else { return nil }
        duration = .milliseconds(Int64(seconds * 1000))
    }

    var defaultValueDescription: String { duration.formattedSeconds }
}
