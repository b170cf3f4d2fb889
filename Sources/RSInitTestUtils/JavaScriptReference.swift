import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// JavaScript itself as the reference for number formatting: one `node` process turns a stream of numbers into
/// `JSON.stringify` texts (what Meteor's `idStringify` and `EJSON.stringify` write).
public enum JavaScriptReference {
    /// A JavaScript number source: a double's bit pattern, or an int64 (which Meteor sees as the nearest double).
    public enum Input: Sendable {
        case double(UInt64)
        case int64(Int64)
    }

    /// `node` (or Debian's `nodejs`) from `RSINIT_NODE` or `PATH`; nil when neither exists.
    public static func nodePath() -> String? {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["RSINIT_NODE"], FileManager.default.isExecutableFile(atPath: explicit) {
            return explicit
        }
        for directory in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            for name in ["node", "nodejs"] {
                let path = "\(directory)/\(name)"
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
        }
        return nil
    }

    private static let script = #"""
        const lines = require('fs').readFileSync(0, 'latin1').split('\n');
        const view = new DataView(new ArrayBuffer(8));
        const out = [];
        for (const line of lines) {
          if (line.length === 0) continue;
          if (line[0] === 'd') {
            view.setBigUint64(0, BigInt('0x' + line.slice(1)));
            out.push(JSON.stringify(view.getFloat64(0)));
          } else {
            out.push(JSON.stringify(Number(BigInt(line.slice(1)))));
          }
        }
        process.stdout.write(out.join('\n') + '\n');
        """#

    /// `JSON.stringify(x)` for each input, computed by `node` in one process; nil when node could not be run.
    public static func stringify(_ inputs: [Input], node: String) throws -> [String]? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-js-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let scriptURL = directory.appendingPathComponent("stringify.js")
        let inputURL = directory.appendingPathComponent("in.txt")
        let outputURL = directory.appendingPathComponent("out.txt")
        try script.write(to: scriptURL, atomically: true, encoding: .utf8)
        var text = ""
        text.reserveCapacity(inputs.count * 18)
        for input in inputs {
            switch input {
            case .double(let bits): text += "d" + String(bits, radix: 16) + "\n"
            case .int64(let value): text += "i" + String(value) + "\n"
            }
        }
        try text.write(to: inputURL, atomically: true, encoding: .utf8)
        let status = runAndWait(
            "/bin/sh",
            ["-c", "exec \"$0\" \"$1\" < \"$2\" > \"$3\"", node, scriptURL.path, inputURL.path, outputURL.path]
        )
        guard status == 0 else { return nil }
        let output = try String(contentsOf: outputURL, encoding: .utf8)
        var lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// Runs `path` and waits for it (posix_spawn + waitpid, no Foundation.Process); the exit status, or -1.
    static func runAndWait(_ path: String, _ arguments: [String]) -> Int32 {
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, path, nil, nil, argv, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { return -1 }
        }
        // WIFEXITED / WEXITSTATUS
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : -1
    }
}
