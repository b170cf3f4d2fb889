/// The bytes a hexadecimal string spells (either case; spaces between bytes are ignored), or nil for an odd
/// number of digits or a character that is not one.
public func bytes(hex: String) -> [UInt8]? {
    var result: [UInt8] = []
    var iterator = hex.utf8.lazy.filter { $0 != UInt8(ascii: " ") }.makeIterator()
    while let high = iterator.next() {
        guard let low = iterator.next(), let h = nibble(high), let l = nibble(low) else { return nil }
        result.append(h << 4 | l)
    }
    return result
}

private func nibble(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
}
