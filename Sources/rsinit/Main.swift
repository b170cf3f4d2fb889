import ArgumentParser
import FoundationEssentials
import RSInitCore

#if canImport(Glibc)
import Glibc
#endif

/// Entry point: applies RSINIT_* environment variables, parses, runs, and maps every failure to a documented exit
/// code without a stack trace (usage errors exit 2, not ArgumentParser's 64).
@main
enum Main {
    static func main() async {
        let arguments: [String]
        do {
            arguments = try EnvironmentArguments.merge(
                Array(CommandLine.arguments.dropFirst()),
                environment: ProcessInfo.processInfo.environment
            )
        } catch {
            writeAll("rsinit: error: \(error.message)\nrsinit: fix: \(error.fix)\n", to: STDERR_FILENO)
            Glibc.exit(2)
        }
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
            let message = RSInitCommand.fullMessage(for: error)
            if code == .success {
                print(message)
                Glibc.exit(0)
            }
            writeAll(message + "\n", to: STDERR_FILENO)
            Glibc.exit(2)
        }
    }
}

/// Maps `RSINIT_*` environment variables to flags that are not already on the command line. Every valued variable
/// may instead be given as `<VARIABLE>_FILE`, a file holding the value (Docker/Kubernetes secrets).
enum EnvironmentArguments {
    struct UnreadableFile: Error {
        let variable: String
        let path: String
        var message: String { "cannot read \(variable) (\(path))" }
        var fix: String { "mount the file there and make it readable by this user, or set the variable directly" }
    }

    struct Entry {
        let variable: String
        let flag: String
        let isBoolean: Bool
        /// Commands that accept the flag ("" is the root bootstrap command).
        let commands: Set<String>
    }

    static let all: Set<String> = ["", "status", "wait", "tail"]
    static let table: [Entry] = [
        Entry(variable: "RSINIT_HOST", flag: "--host", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_PORT", flag: "--port", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_URI", flag: "--uri", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_USERNAME", flag: "--username", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_PASSWORD_FILE", flag: "--password-file", isBoolean: false, commands: all),
        Entry(variable: "RSINIT_SET_NAME", flag: "--set-name", isBoolean: false, commands: ["", "status", "wait"]),
        Entry(variable: "RSINIT_TIMEOUT", flag: "--timeout", isBoolean: false, commands: ["", "status", "wait"]),
        Entry(variable: "RSINIT_REDIS", flag: "--redis", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_PREFIX", flag: "--prefix", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_CONTROL_CHANNEL", flag: "--control-channel", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FIELDS", flag: "--fields", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FROM", flag: "--from", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_ON_HISTORY_LOST", flag: "--on-history-lost", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_HA", flag: "--ha", isBoolean: true, commands: ["tail"]),
        Entry(variable: "RSINIT_METADATA_PREFIX", flag: "--metadata-prefix", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_INCLUDE", flag: "--include", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_EXCLUDE", flag: "--exclude", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_FAN_OUT", flag: "--fan-out", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_HTTP", flag: "--http", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_STALL_TIMEOUT", flag: "--stall-timeout", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_MAX_LAG", flag: "--max-lag", isBoolean: false, commands: ["tail"]),
        Entry(variable: "RSINIT_MEMBER_HOST", flag: "--member-host", isBoolean: false, commands: [""]),
        Entry(variable: "RSINIT_MEMBERS", flag: "--members", isBoolean: false, commands: [""]),
        Entry(
            variable: "RSINIT_ALLOW_LOCALHOST_MEMBER",
            flag: "--allow-localhost-member",
            isBoolean: true,
            commands: [""]
        ),
        Entry(variable: "RSINIT_FORCE_RECONFIG", flag: "--force-reconfig", isBoolean: true, commands: [""]),
        Entry(variable: "RSINIT_JSON", flag: "--json", isBoolean: true, commands: all),
        Entry(variable: "RSINIT_QUIET", flag: "--quiet", isBoolean: true, commands: all),
        Entry(variable: "RSINIT_VERBOSE", flag: "--verbose", isBoolean: true, commands: all),
    ]

    static func merge(_ arguments: [String], environment: [String: String]) throws(UnreadableFile) -> [String] {
        let subcommands: Set<String> = ["status", "wait", "tail"]
        let command = arguments.first.flatMap { subcommands.contains($0) ? $0 : nil } ?? ""
        if arguments.contains("--help") || arguments.contains("-h") || arguments.contains("--version") {
            return arguments
        }
        var merged = arguments
        for entry in table where entry.commands.contains(command) {
            let present = arguments.contains { $0 == entry.flag || $0.hasPrefix(entry.flag + "=") }
            guard !present, let value = try value(of: entry, in: environment) else { continue }
            if entry.isBoolean {
                if ["1", "true", "yes", "on"].contains(value.lowercased()) { merged.append(entry.flag) }
            } else {
                merged.append(entry.flag)
                merged.append(value)
            }
        }
        return merged
    }

    /// `VARIABLE`, else the contents of `VARIABLE_FILE` without trailing newlines; nil when neither is set.
    static func value(of entry: Entry, in environment: [String: String]) throws(UnreadableFile) -> String? {
        if let value = environment[entry.variable], !value.isEmpty { return value }
        let fileVariable = entry.variable + "_FILE"
        guard !entry.isBoolean, let path = environment[fileVariable], !path.isEmpty else { return nil }
        guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw UnreadableFile(variable: fileVariable, path: path)
        }
        var trimmed = Substring(contents)
        while trimmed.last == "\n" || trimmed.last == "\r" { trimmed.removeLast() }
        return trimmed.isEmpty ? nil : String(trimmed)
    }
}
