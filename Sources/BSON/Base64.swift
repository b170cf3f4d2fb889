/// Standard base64 (RFC 4648, with padding): Extended JSON `$binary` and the redis-oplog format's binary values.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    package static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    package static func append(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + (bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            // trap-checked: 6-bit indexes, bytes widen
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18)])  // trap-checked: 6-bit indexes, bytes widen
            out.append(alphabet[Int(n >> 12 & 63)])  // trap-checked: 6-bit indexes, bytes widen
            out.append(alphabet[Int(n >> 6 & 63)])  // trap-checked: 6-bit indexes, bytes widen
            out.append(alphabet[Int(n & 63)])  // trap-checked: 6-bit indexes, bytes widen
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16  // trap-checked: 6-bit indexes, bytes widen
            // trap-checked: 6-bit indexes, bytes widen
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], 61, 61]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8  // trap-checked: 6-bit indexes, bytes widen
            // trap-checked: 6-bit indexes, bytes widen
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], 61]
        }
    }
}
