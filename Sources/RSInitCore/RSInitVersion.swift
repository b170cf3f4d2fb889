import BSON
import MongoCWrapper

/// rsinit's version and the libmongoc it runs against.
public enum RSInitVersion {
    /// The release version of rsinit.
    public static let number = "0.1.0"
    /// `--version` text: rsinit's version and the linked libmongoc.
    public static var current: String { "\(number) (libmongoc \(MongoRuntime.libmongocVersion))" }
}
