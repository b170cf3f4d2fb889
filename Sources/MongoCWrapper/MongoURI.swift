import FoundationEssentials
import RSInitSupport

/// Helpers for MongoDB connection strings. Parsing is libmongoc's job; this only makes URIs safe to print.
public enum MongoURI {
    /// The URI with the password (and secret options) replaced by `***`: ``Redaction/redact(_:)``, which also
    /// handles text that is not a URI (the scheme-less `root:PASSWORD@mongodb:27017` typo).
    public static func redacted(_ uri: String) -> String { Redaction.redact(uri) }

    /// Removes every occurrence of each secret (and its percent-encoded form) from `text`, then redacts it.
    public static func scrub(_ text: String, secrets: [String]) -> String {
        Redaction.redact(text, secrets: secrets)
    }
}
