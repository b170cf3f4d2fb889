import ArgumentParser
import BSON
import FoundationEssentials
import MongoCWrapper
import RSInitCore
import RSInitSupport

/// How to reach mongod, shared by every command.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "mongod's host name, as clients reach it (env RSINIT_HOST).")
    var host: String?

    @Option(help: "mongod's port, 1-65535 (env RSINIT_PORT).")
    var port = RawArgument("27017")

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
            "Overall deadline: seconds, or with a unit (500ms, 90s, 2m), 1ms to 7d (env RSINIT_TIMEOUT).",
            valueName: "duration"
        )
    )
    var timeout = RawArgument("120s")

    /// `--timeout`, validated.
    func timeoutDuration() throws(BootstrapFailure) -> Duration {
        do { return try InputValue.duration(timeout.text, from: InputSource("--timeout")) } catch {
            throw error.failure
        }
    }

    /// `--set-name`: what mongod accepts for `--replSet` (not empty, no `/`, no control characters, at most 128
    /// bytes).
    func validateSetName() throws(BootstrapFailure) {
        let fix = "pass the name mongod runs with (--replSet), e.g. --set-name steedos"
        guard !setName.isEmpty else { throw BootstrapFailure(.usage, "--set-name is empty", fix: fix) }
        guard setName.utf8.count <= 128, !setName.contains("/"),
            !setName.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw BootstrapFailure(.usage, "invalid --set-name \"\(InputValue.shown(setName))\"", fix: fix)
        }
    }

    /// The node to talk to, as a libmongoc connection string.
    func connectionString() throws(BootstrapFailure) -> MongoConnectionString {
        let port: Int
        do { port = try InputValue.port(self.port.text, from: InputSource("--port")) } catch { throw error.failure }
        return try Self.connectionString(host: host, port: port, uri: uri, credentials: credentials())
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
        guard !username.isEmpty else {
            throw BootstrapFailure(.usage, "--username is empty", fix: "pass the user name, e.g. --username root")
        }
        let password: String
        do { password = try SecretFile.read(passwordFile) } catch {
            throw BootstrapFailure(
                .usage,
                "cannot use --password-file \(InputValue.shown(passwordFile)): \(error.reason)",
                fix:
                    "mount the secret there (a non-empty UTF-8 text file of at most 64 KiB) and make it readable by this user"
            )
        }
        Redaction.registerSecret(password)
        guard !password.isEmpty else {
            throw BootstrapFailure(
                .usage,
                "--password-file \(InputValue.shown(passwordFile)) is empty",
                fix: "write the password into the file (a trailing newline is dropped)"
            )
        }
        return (username, password)
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
                "invalid --host \"\(InputValue.shown(host))\"",
                fix:
                    "pass a host name or IP address (optionally host:port, [IPv6]:port); credentials go in --uri or --username"
            )
        }
        guard (1...65535).contains(port) else {
            throw BootstrapFailure(.usage, "invalid --port \(port): out of range", fix: "use a port from 1 to 65535")
        }
        var userInfo = ""
        var options = ""
        if let credentials {
            userInfo = "\(percentEncoded(credentials.username)):\(percentEncoded(credentials.password))@"
            options = "?authSource=admin"
        }
        do { return try MongoConnectionString("mongodb://\(userInfo)\(seed.description)/\(options)") } catch {
            throw BootstrapFailure(.usage, error.message, fix: "pass a host name or IP address with --host")
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

/// A flag's text as given, validated by ``InputValue`` when the command runs, so that a bad value gets a message
/// naming the flag, the value and the accepted range (not the argument parser's generic "invalid value").
struct RawArgument: ExpressibleByArgument, Sendable {
    var text: String

    init(_ text: String) { self.text = text }
    init?(argument: String) { text = argument }

    var defaultValueDescription: String { text }
}

/// A secret file (`--password-file`, `RSINIT_*_FILE`): at most 64 KiB of UTF-8, trailing newlines dropped.
enum SecretFile {
    struct Failure: Error {
        var reason: String
    }

    static let maximumSize = 64 << 10

    static func read(_ path: String) throws(Failure) -> String {
        guard !path.isEmpty else { throw Failure(reason: "no path given") }
        let bytes: [UInt8]
        do { bytes = try LocalFile.read(path, maximumSize: maximumSize) } catch {
            switch error {
            case .missing: throw Failure(reason: "no such file")
            case .directory: throw Failure(reason: "a directory, not a file")
            case .notReadable: throw Failure(reason: "not readable")
            case .tooLarge: throw Failure(reason: "larger than 64 KiB")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Failure(reason: "not UTF-8 text") }
        var trimmed = Substring(text)
        while trimmed.last == "\n" || trimmed.last == "\r" || trimmed.last == "\r\n" { trimmed.removeLast() }
        return String(trimmed)
    }
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
