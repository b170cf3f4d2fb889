#if canImport(Glibc)
import Glibc
#endif

/// Reads local files (secrets, TLS material) with POSIX calls: FoundationEssentials has no `FileHandle`, and the
/// shipped binary does not link full Foundation.
package enum LocalFile {
    package enum Failure: Error, Equatable {
        case missing
        case directory
        case notReadable
        case tooLarge
    }

    /// Whether `path` names a regular file this process may read.
    package static func isReadableRegularFile(_ path: String) -> Bool {
        guard !path.isEmpty else { return false }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        return access(path, R_OK) == 0
    }

    /// The bytes of the file at `path` (a regular file, or a pipe such as `<(echo …)`), at most `maximumSize` of
    /// them (more is ``Failure/tooLarge``).
    package static func read(_ path: String, maximumSize: Int) throws(Failure) -> [UInt8] {
        var info = stat()
        guard !path.isEmpty, stat(path, &info) == 0 else { throw .missing }
        guard info.st_mode & S_IFMT != S_IFDIR else { throw .directory }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .notReadable }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .notReadable
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[..<count])
            if bytes.count > maximumSize { throw .tooLarge }
        }
    }
}
