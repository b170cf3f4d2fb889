import ArgumentParser
import FoundationEssentials
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

    @Option(help: "User for SCRAM authentication with --host, against authSource admin (env RSINIT_USERNAME).")
    var username: String?

    @Option(
        name: .customLong("password-file"),
        help: ArgumentHelp(
            "File holding the password for --username (a Docker/Kubernetes secret; never on the command line) "
                + "(env RSINIT_PASSWORD_FILE).",
            valueName: "path"
        )
    )
    var passwordFile: String?

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
        try Self.connectionString(host: host, port: port, uri: uri, credentials: credentials())
    }

    /// `--username` with the password read from `--password-file` (trailing newlines dropped, as secrets often
    /// carry one).
    func credentials() throws(BootstrapFailure) -> (username: String, password: String)? {
        guard let username else {
            if passwordFile != nil {
                throw BootstrapFailure(.usage, "--password-file needs --username", fix: "add --username <user>")
            }
            return nil
        }
        guard let passwordFile else {
            throw BootstrapFailure(
                .usage,
                "--username needs --password-file",
                fix: "put the password in a file (a secret) and pass --password-file <path>"
            )
        }
        let password: String
        do { password = try String(contentsOfFile: passwordFile, encoding: .utf8) } catch {
            throw BootstrapFailure(
                .usage,
                "cannot read --password-file \(passwordFile)",
                fix: "mount the secret there and make it readable by this user"
            )
        }
        var trimmed = Substring(password)
        while trimmed.last == "\n" || trimmed.last == "\r" { trimmed.removeLast() }
        guard !trimmed.isEmpty else { throw BootstrapFailure(.usage, "--password-file \(passwordFile) is empty") }
        return (username, String(trimmed))
    }

    /// `--uri`, or `mongodb://<host>:<port>/` built from a validated host.
    static func connectionString(
        host: String?,
        port: Int,
        uri: String?,
        credentials: (username: String, password: String)? = nil
    ) throws(BootstrapFailure) -> MongoConnectionString {
        if let uri {
            if credentials != nil {
                throw BootstrapFailure(
                    .usage,
                    "--username/--password-file go with --host, not --uri",
                    fix: "put the credentials in --uri (or RSINIT_URI_FILE), or use --host"
                )
            }
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
        var userInfo = ""
        var options = ""
        if let credentials {
            userInfo = "\(percentEncoded(credentials.username)):\(percentEncoded(credentials.password))@"
            options = "?authSource=admin"
        }
        do { return try MongoConnectionString("mongodb://\(userInfo)\(seed.description)/\(options)") } catch {
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

/// RFC 3986 percent-encoding of everything but unreserved characters, for user names and passwords in a URI.
func percentEncoded(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            out += "%" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return out
}
