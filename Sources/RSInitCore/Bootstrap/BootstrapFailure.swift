/// Why a run failed — bootstrap, `wait`, `status` or `tail` (``init(tailError:)``): a cause, the fix, and the
/// documented exit code. The one failure model of the core; the CLI only prints it and exits with its code.
///
/// ``description`` is one or two lines a user can act on; it never contains a password.
public struct BootstrapFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The failure category; each maps to one exit code.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// Bad flags or input (exit 2).
        case usage
        /// mongod could not be reached before the deadline (exit 3).
        case unreachable
        /// mongod runs without `--replSet` (exit 4).
        case notReplicaSet
        /// Invalid config, set-name mismatch, member host not mapping to the node, REMOVED (exit 5).
        case invalidConfig
        /// Authentication or authorization failed (exit 6).
        case auth
        /// No writable primary before the deadline (exit 7).
        case noWritablePrimary
        /// The oplog does not advance (exit 8).
        case oplogNotAdvancing
        /// `rsinit tail`: the checkpoint rolled out of the oplog and `--on-history-lost fail` (exit 9).
        case historyLost
        /// `rsinit tail`: an entry the bridge delivered as majority-committed is gone from the oplog — a majority
        /// data loss or a forced reconfig; never retried (exit 11).
        case committedEntryMissing
    }

    /// The category, which decides the exit code.
    public var kind: Kind
    /// What went wrong.
    public var message: String
    /// What to change; nil when the message says it all.
    public var fix: String?

    /// A failure of `kind` with a message safe to show (no credentials) and, when useful, a fix.
    public init(_ kind: Kind, _ message: String, fix: String? = nil) {
        self.kind = kind
        self.message = message
        self.fix = fix
    }

    /// The process exit code for this failure.
    public var exitCode: Int32 { Self.exitCode(for: kind) }

    /// The process exit code for a failure of `kind` (the table in the README's "Exit codes").
    public static func exitCode(for kind: Kind) -> Int32 {
        switch kind {
        case .usage: return 2
        case .unreachable: return 3
        case .notReplicaSet: return 4
        case .invalidConfig: return 5
        case .auth: return 6
        case .noWritablePrimary: return 7
        case .oplogNotAdvancing: return 8
        case .historyLost: return 9
        case .committedEntryMissing: return 11
        }
    }

    public var description: String {
        guard let fix else { return message }
        return "\(message)\nfix: \(fix)"
    }
}
