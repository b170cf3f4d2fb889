public import RESP

/// Redis Cluster's key → slot mapping and the slot map from `CLUSTER SLOTS` (pure; no I/O).
public enum RedisClusterSlots {
    public static let count = 16384

    /// The slot of a key: CRC16 (XMODEM) of its hash tag (the part between the first `{` and the next `}`, when
    /// not empty) or of the whole key, modulo 16384 — the Cluster specification's `HASH_SLOT`.
    public static func slot(of key: String) -> Int {
        // trap-checked: 16384 fits UInt16; UInt16 to Int widens
        Int(crc16(hashTag(of: Array(key.utf8))) % UInt16(count))
    }

    static func hashTag(of key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    /// Whether a key prefix already contains a hash tag (then every key made from it shares one slot).
    public static func hasHashTag(_ prefix: String) -> Bool {
        let bytes = Array(prefix.utf8)
        return hashTag(of: bytes).count != bytes.count
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as in the Cluster specification's `crc16.c`.
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8  // trap-checked: UInt8 to UInt16 widens
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }

    /// One range of slots and the master serving it (replicas left out: the bridge only writes).
    public struct Range: Sendable, Equatable {
        public var slots: ClosedRange<Int>
        public var master: RedisAddress
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replica…], …]`. An empty host means
    /// "the node you asked" (`fallbackHost`). Malformed entries are an error, never a crash.
    public static func parse(_ reply: RESPValue, fallbackHost: String) throws(RedisError) -> [Range] {
        guard case .array(let entries?) = reply else {
            throw RedisError(.protocolError, "CLUSTER SLOTS did not answer with an array")
        }
        var ranges: [Range] = []
        for entry in entries {
            guard case .array(let fields?) = entry, fields.count >= 3,
                let start = fields[0].integer, let end = fields[1].integer,
                start >= 0, start <= end, end < Int64(count),  // trap-checked: Int to Int64 widens
                case .array(let node?) = fields[2], node.count >= 2,
                let port = node[1].integer, (1...65535).contains(port)
            else {
                throw RedisError(.protocolError, "CLUSTER SLOTS sent an entry this client cannot read")
            }
            var host = node[0].string ?? ""
            if host.isEmpty || host == "?" { host = fallbackHost }
            // trap-checked: 0..<16384 and 1...65535 (checked above)
            ranges.append(Range(slots: Int(start)...Int(end), master: RedisAddress(host: host, port: Int(port))))
        }
        return ranges
    }

    /// The master serving `slot`, if the map covers it.
    public static func master(of slot: Int, in ranges: [Range]) -> RedisAddress? {
        ranges.first { $0.slots.contains(slot) }?.master
    }
}
