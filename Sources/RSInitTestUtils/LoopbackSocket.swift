#if canImport(Glibc)
import Glibc
#endif

/// Calls `body` with `127.0.0.1:<port>` as a `sockaddr` (for `connect` and `bind`).
func withLoopbackAddress<T>(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// A TCP socket connected to `127.0.0.1:<port>`, or nil with `errno` set (test clients and port probes).
public func connectLoopback(port: UInt16) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    let result = withLoopbackAddress(port: port) { connect(fd, $0, $1) }
    guard result == 0 else {
        let code = errno
        close(fd)
        errno = code
        return nil
    }
    return fd
}

/// A loopback port that refuses connections for as long as the returned socket stays open: bound but not
/// listening, so no other test can take the port meanwhile (a port freed by stopping a server can be reused by a
/// parallel test at once). Close `fd` when done.
public func refusingLoopbackPort() -> (port: UInt16, fd: Int32)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withLoopbackAddress(port: 0) { bind(fd, $0, $1) } == 0
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard bound, named == 0 else {
        close(fd)
        return nil
    }
    return (UInt16(bigEndian: address.sin_port), fd)
}
