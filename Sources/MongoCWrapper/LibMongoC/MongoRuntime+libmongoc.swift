internal import CLibMongoC
public import Logging
import RSInitSupport
import Synchronization

/// Process-wide libmongoc set-up: `mongoc_init` exactly once, and libmongoc's own log lines routed to swift-log.
public enum MongoRuntime {
    /// The logger libmongoc's messages go to, plus secrets to scrub from them. Written rarely, read per log line.
    private static let sink = Mutex<(logger: Logger?, secrets: [String])>((nil, []))

    private static let initialized: Void = {
        mongoc_init()
        mongoc_log_set_handler(
            { level, domain, message, _ in
                MongoRuntime.forward(level: level, domain: domain, message: message)
            },
            nil
        )
    }()

    /// Runs `mongoc_init` once (idempotent, thread-safe); every libmongoc entry point calls this first.
    static func ensureInitialized() { initialized }

    /// Sends libmongoc's log output to `logger` (the default is to drop it; libmongoc never writes to stderr).
    public static func setLogger(_ logger: Logger) {
        ensureInitialized()
        sink.withLock { $0.logger = logger }
    }

    /// Registers a secret (e.g. a password from a URI) that must never appear in forwarded log lines.
    static func registerSecret(_ secret: String) {
        guard !secret.isEmpty else { return }
        sink.withLock { if !$0.secrets.contains(secret) { $0.secrets.append(secret) } }
        Redaction.registerSecret(secret)
    }

    /// Collects libmongoc's warnings while a URI is parsed on this task (unsupported options and values are only
    /// logged by libmongoc; ``MongoConnectionString`` turns them into errors).
    final class WarningCollector: Sendable {
        private let storage = Mutex<[String]>([])
        func append(_ message: String) { storage.withLock { $0.append(message) } }
        var messages: [String] { storage.withLock { $0 } }
    }

    @TaskLocal static var uriWarnings: WarningCollector?

    /// The libmongoc version linked at run time, e.g. "1.23.1".
    public static var libmongocVersion: String {
        String(cString: mongoc_get_version())
    }

    private static func forward(
        level: mongoc_log_level_t,
        domain: UnsafePointer<CChar>?,
        message: UnsafePointer<CChar>?
    ) {
        if let collector = uriWarnings, level.rawValue <= MONGOC_LOG_LEVEL_WARNING.rawValue {
            collector.append(message.map { String(cString: $0) } ?? "")
            return
        }
        let (logger, secrets) = sink.withLock { ($0.logger, $0.secrets) }
        guard let logger else { return }
        let text = MongoURI.scrub(message.map { String(cString: $0) } ?? "", secrets: secrets)
        let swiftLevel: Logger.Level
        switch level {
        case MONGOC_LOG_LEVEL_ERROR, MONGOC_LOG_LEVEL_CRITICAL: swiftLevel = .error
        case MONGOC_LOG_LEVEL_WARNING: swiftLevel = .warning
        case MONGOC_LOG_LEVEL_MESSAGE, MONGOC_LOG_LEVEL_INFO: swiftLevel = .info
        case MONGOC_LOG_LEVEL_DEBUG: swiftLevel = .debug
        default: swiftLevel = .trace
        }
        logger.log(
            level: swiftLevel,
            "\(text)",
            metadata: ["rsinit.mongoc.domain": "\(domain.map { String(cString: $0) } ?? "")"]
        )
    }
}
