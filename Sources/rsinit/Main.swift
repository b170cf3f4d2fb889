import ArgumentParser
import BSON
import FoundationEssentials
import Logging
import MongoCWrapper
import RSInitCore
import RSInitSupport

#if canImport(Glibc)
import Glibc
#endif

/// Entry point: applies RSINIT_* environment variables, parses, runs, and maps every failure to a documented exit
/// code without a stack trace (usage errors exit 2, not ArgumentParser's 64).
@main
enum Main {
    static func main() async {
        LoggingSystem.bootstrap { label in RedactingLogHandler(label: label) }
        for argument in CommandLine.arguments.dropFirst() { Redaction.registerCredentials(in: argument) }
        let arguments: [String]
        do {
            arguments = try EnvironmentArguments.merge(
                Array(CommandLine.arguments.dropFirst()),
                environment: ProcessInfo.processInfo.environment
            )
        } catch {
            Console.writeError("rsinit: error: \(error.message)")
            Console.writeError("rsinit: fix: \(error.fix)")
            Glibc.exit(2)
        }
        for argument in arguments { Redaction.registerCredentials(in: argument) }
        do {
            var command = try RSInitCommand.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Glibc.exit(exit.rawValue)
        } catch {
            let code = RSInitCommand.exitCode(for: error)
            if code == .success {
                print(RSInitCommand.fullMessage(for: error))
                Glibc.exit(0)
            }
            // The argument parser's own errors (unknown flag, missing value, bad enum value): same two lines as
            // every other failure, exit 2.
            let message = RSInitCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            let command = arguments.first.flatMap { ["status", "wait", "tail"].contains($0) ? " \($0)" : nil } ?? ""
            Console.writeError("rsinit: error: \(message)")
            Console.writeError("rsinit: fix: see rsinit\(command) --help for the flags and their values")
            Glibc.exit(2)
        }
    }
}

/// Maps `RSINIT_*` environment variables to flags that are not already on the command line. Every valued variable
/// may instead be given as `<VARIABLE>_FILE`, a file holding the value (Docker/Kubernetes secrets).
enum EnvironmentArguments {
    typealias UnreadableFile = InputError

    /// How a variable's value is checked before it becomes a flag (so the message names the variable).
    enum ValueKind {
        case text, boolean, duration, port
    }

    struct Entry {
        let variable: String
        let flag: String
        let kind: ValueKind
        /// Commands that accept the flag ("" is the root bootstrap command).
        let commands: Set<String>

        init(variable: String, flag: String, isBoolean: Bool, commands: Set<String>, kind: ValueKind? = nil) {
            self.variable = variable
            self.flag = flag
            self.kind = kind ?? (isBoolean ? .boolean : .text)
            self.commands = commands
        }

        var isBoolean: Bool { kind == .boolean }
    }

    static let all: Set<String> = ["", "status", "wait", "tail", "doctor"]
    /// Commands that check one replica set (set name, deadline).
    static let sets: Set<String> = ["", "status", "wait", "doctor"]
    /// Commands that use the bridge's Redis.
    static let redis: Set<String> = ["tail", "doctor"]
    static let table: [Entry] = [
        Entry(variable: "RSINIT_HOST", flag: "--host", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_PORT", flag: "--port", isBoolean: false, commands: all, kind: .port),
        Entry(variable: "RSINIT_URI", flag: "--uri", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_USERNAME", flag: "--username", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_PASSWORD_FILE", flag: "--password-file", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_SET_NAME", flag: "--set-name", isBoolean: false, commands: sets),
        Entry(variable: "RSINIT_TIMEOUT", flag: "--timeout", isBoolean: false, commands: sets, kind: .duration),
        Entry(variable: "RSINIT_REDIS", flag: "--redis", isBoolean: false, commands: redis),
        Entry(variable: "RSINIT_PREFIX", flag: "--prefix", isBoolean: false, commands: redis),
        Entry(variable: "RSINIT_CONTROL_CHANNEL", flag: "--control-channel", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FIELDS", flag: "--fields", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FROM", flag: "--from", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_ON_HISTORY_LOST", flag: "--on-history-lost", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_MAJORITY", flag: "--majority", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_HA", flag: "--ha", isBoolean: true, commands: ["tail"]),
        Entry(variable: "RSINIT_SOURCE", flag: "--source", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FULL_DOCUMENT", flag: "--full-document", isBoolean: true, commands: ["tail"]),
        Entry(variable: "RSINIT_METADATA_PREFIX", flag: "--metadata-prefix", isBoolean: false, commands: redis),
        Entry(variable: "RSINIT_INCLUDE", flag: "--include", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_EXCLUDE", flag: "--exclude", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FAN_OUT", flag: "--fan-out", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_HTTP", flag: "--http", isBoolean: false, commands: ["tail"]),
        Entry(
            variable: "RSINIT_STALL_TIMEOUT",
            flag: "--stall-timeout",
            isBoolean: false,
            commands: ["tail"],
            kind: .duration
        ),
        Entry(variable: "RSINIT_MAX_LAG", flag: "--max-lag", isBoolean: false, commands: ["tail"], kind: .duration),
        Entry(variable: "RSINIT_MEMBER_HOST", flag: "--member-host", isBoolean: false, commands: [""]),
        Entry(variable: "RSINIT_MEMBERS", flag: "--members", isBoolean: false, commands: [""]),
        Entry(
            variable: "RSINIT_ALLOW_LOCALHOST_MEMBER",
            flag: "--allow-localhost-member",
            isBoolean: true,
            commands: ["", "doctor"]
        ),
        Entry(variable: "RSINIT_FORCE_RECONFIG", flag: "--force-reconfig", isBoolean: true, commands: [""]),
        Entry(variable: "RSINIT_JSON", flag: "--json", isBoolean: true, commands: all),
        Entry(variable: "RSINIT_QUIET", flag: "--quiet", isBoolean: true, commands: all),
        Entry(variable: "RSINIT_VERBOSE", flag: "--verbose", isBoolean: true, commands: all),
    ]

    /// Flags that came from a variable (`--http` → `RSINIT_HTTP`), so later messages can name the variable. Written
    /// once by `merge` before anything runs concurrently.
    nonisolated(unsafe) static var origins: [String: String] = [:]

    /// `message`, naming the variable when the flag it mentions came from one.
    static func naming(_ message: String) -> String {
        guard
            let (flag, variable) = origins.sorted(by: { $0.key.count > $1.key.count }).first(where: {
                message.contains($0.key)
            })
        else { return message }
        _ = flag
        return "\(message) (from \(variable))"
    }

    static func merge(_ arguments: [String], environment: [String: String]) throws(InputError) -> [String] {
        let subcommands: Set<String> = ["status", "wait", "tail", "doctor"]
        let command = arguments.first.flatMap { subcommands.contains($0) ? $0 : nil } ?? ""
        if arguments.contains("--help") || arguments.contains("-h") || arguments.contains("--version") {
            return arguments
        }
        var merged = arguments
        for entry in table where entry.commands.contains(command) {
            let present = arguments.contains { $0 == entry.flag || $0.hasPrefix(entry.flag + "=") }
            guard !present, let (value, source) = try value(of: entry, in: environment) else { continue }
            origins[entry.flag] = source.name
            switch entry.kind {
            case .boolean:
                if try InputValue.boolean(value, from: source) { merged.append(entry.flag) }
                continue
            case .duration: _ = try InputValue.duration(value, from: source)
            case .port: _ = try InputValue.port(value, from: source)
            case .text: break
            }
            merged.append(entry.flag)
            merged.append(value)
        }
        return merged
    }

    /// `VARIABLE`, else the contents of `VARIABLE_FILE` without trailing newlines; nil when neither is set (or
    /// set empty). Both set is an error: which one wins would be a guess.
    static func value(
        of entry: Entry,
        in environment: [String: String]
    ) throws(InputError) -> (String, InputSource)? {
        let fileVariable = entry.variable + "_FILE"
        let direct = environment[entry.variable].flatMap { $0.isEmpty ? nil : $0 }
        let path = entry.isBoolean ? nil : environment[fileVariable].flatMap { $0.isEmpty ? nil : $0 }
        if direct != nil, path != nil {
            throw InputError(
                "both \(entry.variable) and \(fileVariable) are set",
                fix: "set only one of them"
            )
        }
        if let direct { return (direct, InputSource(entry.variable)) }
        guard let path else { return nil }
        let contents: String
        do { contents = try SecretFile.read(path) } catch {
            throw InputError(
                "cannot read \(fileVariable) (\(InputValue.shown(path))): \(error.reason)",
                fix: "mount the file there (UTF-8 text, at most 64 KiB) and make it readable by this user, or set "
                    + "\(entry.variable) directly"
            )
        }
        // A file is how secrets are mounted: its contents are never echoed, whatever variable names it (a password
        // mounted at RSINIT_HOST_FILE must not come back in "invalid --host …").
        Redaction.registerCredentials(in: contents)
        Redaction.registerSecret(contents)
        Redaction.registerSecret(contents.lowercased())  // host names come back lower-cased from libmongoc
        return contents.isEmpty ? nil : (contents, InputSource(fileVariable, isFile: true))
    }
}
