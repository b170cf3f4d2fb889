import FoundationEssentials
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Name resolution and this machine's own addresses, for `rsinit doctor`'s "does this member host point back to the
/// caller's machine" check. Blocking (getaddrinfo); call off the cooperative pool for names that may be slow.
public enum HostResolver {
    /// Every address `host` resolves to (numeric text, IPv4 and IPv6), as the system resolver answers it here.
    public static func resolve(_ host: String) -> Result<[String], DoctorFacts.ResolutionError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)  // trap-checked: a C constant
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let first = list else {
            return .failure(.init(String(cString: gai_strerror(status))))
        }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let address = current.pointee.ai_addr,
                let text = numericHost(address, length: current.pointee.ai_addrlen),
                !addresses.contains(text)
            {
                addresses.append(text)
            }
            node = current.pointee.ai_next
        }
        return addresses.isEmpty ? .failure(.init("no address")) : .success(addresses)
    }

    private static func numericHost(_ address: UnsafeMutablePointer<sockaddr>, length: socklen_t) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))  // trap-checked: a C constant
        let status = getnameinfo(address, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST)
        guard status == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The addresses of this machine's network interfaces (loopback included), as numeric text.
    public static func ownAddresses() -> Set<String> {
        guard let devices = try? System.enumerateDevices() else { return [] }
        return Set(devices.compactMap { $0.address?.ipAddress })
    }

    /// 127.0.0.0/8, ::1 and IPv4-mapped loopback.
    public static func isLoopback(address: String) -> Bool {
        let lower = address.lowercased()
        return lower.hasPrefix("127.") || lower == "::1" || lower.hasPrefix("::ffff:127.")
    }
}
