import Logging
import NIOConcurrencyHelpers

extension OplogBridge {
    /// Entries the format cannot fully express: one warning each, with the `ts` and the reason (never document
    /// contents), and `rsinit_oplog_skipped_total{reason}`. Called once per batch read from the oplog, so a batch
    /// sent again after a Redis failure is not reported twice.
    func reportUnexpressed(_ entries: [UnexpressedEntry]) {
        for entry in entries {
            metrics.recordUnexpressed(entry.reason)
            let outcome = entry.reason == .idNotStringifiable ? "published on the collection channel only" : "skipped"
            var level = Logger.Level.warning
            if entry.reason == .idNotStringifiable {
                // A collection keyed by documents would otherwise log every write: warn once per namespace (the
                // metric still counts each), then at debug.
                let first = idWarnedNamespaces.withLockedValue { warned in
                    guard warned.count < 10_000 else { return false }
                    return warned.insert(entry.namespace).inserted
                }
                if !first { level = .debug }
            }
            logger.log(
                level: level,
                "oplog entry \(outcome): \(Self.printable(entry.detail))",
                metadata: [
                    "rsinit.ts": "\(entry.timestamp.map { "\($0)" } ?? "none")",
                    "rsinit.reason": "\(entry.reason.rawValue)",
                    "rsinit.namespace": "\(Self.printable(entry.namespace))",
                ]
            )
        }
    }

    /// Outside text (an `op`, a namespace) as one log line: printable ASCII kept, anything else `?`, at most 200
    /// characters (no forged log lines, no megabyte namespaces).
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(200) {
            out.unicodeScalars.append(scalar.value >= 0x20 && scalar.value < 0x7F ? scalar : "?")
        }
        return out
    }
}
