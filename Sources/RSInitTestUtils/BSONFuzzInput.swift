public import BSON

/// Random and mutated BSON byte strings for the validator's differential fuzz (the test suite and `rsinit-bench
/// fuzz`): well-formed documents with every element type, then byte flips, planted lengths (-1, 0, ±1 around the
/// true value, 2^31-1, -2^31), truncations, insertions, invalid UTF-8, bad booleans and type bytes, with the
/// top-level length prefix fixed up half of the time so the damage reaches the inner checks.
public struct BSONFuzzInput<G: RandomNumberGenerator> {
    public var generator: G
    /// Well-formed documents the mutations start from (built once; mutating copies is cheap).
    public private(set) var seeds: [[UInt8]] = []

    public init(generator: G, seedCount: Int = 512) {
        self.generator = generator
        for _ in 0..<seedCount { seeds.append(Self.bytes(of: randomDocument(depth: 0))) }
    }

    static func bytes(of document: BSONDocument) -> [UInt8] { document.bytes }

    private mutating func pick<T>(_ values: [T]) -> T {
        values[Int.random(in: 0..<values.count, using: &generator)]
    }

    mutating func randomValue(depth: Int) -> BSONValue {
        let limit = depth >= 3 ? 18 : 21
        switch Int.random(in: 0..<limit, using: &generator) {
        case 0: return .double(Double(bitPattern: UInt64.random(in: .min ... .max, using: &generator)))
        case 1: return .string(pick(BSONFuzzConstants.strings))
        case 2:
            let subtype = pick([0, 1, 2, 3, 4, 5, 6, 0x80] as [UInt8])
            let count = Int.random(in: 0...9, using: &generator)
            let data = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            return .binary(BSONBinary(subtype: subtype, data: data))
        case 3: return .undefined
        case 4:
            return .objectID(BSONObjectID(bytes: (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) })!)
        case 5: return .bool(Bool.random(using: &generator))
        case 6: return .datetime(Int64.random(in: .min ... .max, using: &generator))
        case 7: return .null
        case 8:
            return .regex(BSONRegularExpression(pattern: pick(["", "^a", "é+"]), options: pick(["", "i", "imsx"])))
        case 9:
            let id = BSONObjectID(bytes: (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) })!
            return .dbPointer(namespace: pick(["", "db.c", "ü.c"]), id: id)
        case 10: return .javascript(pick(BSONFuzzConstants.strings))
        case 11: return .symbol(pick(BSONFuzzConstants.strings))
        case 12: return .int32(Int32.random(in: .min ... .max, using: &generator))
        case 13: return .timestamp(BSONTimestamp(rawValue: UInt64.random(in: .min ... .max, using: &generator)))
        case 14: return .int64(Int64.random(in: .min ... .max, using: &generator))
        case 15:
            return .decimal128(
                BSONDecimal128(
                    low: UInt64.random(in: .min ... .max, using: &generator),
                    high: UInt64.random(in: .min ... .max, using: &generator)
                )
            )
        case 16: return .minKey
        case 17: return .maxKey
        case 18: return .document(randomDocument(depth: depth + 1))
        case 19:
            return .array((0..<Int.random(in: 0...3, using: &generator)).map { _ in randomValue(depth: depth + 1) })
        default:
            return .javascriptWithScope(code: pick(BSONFuzzConstants.strings), scope: randomDocument(depth: depth + 1))
        }
    }

    mutating func randomDocument(depth: Int) -> BSONDocument {
        var document = BSONDocument()
        for _ in 0..<Int.random(in: 0...(depth == 0 ? 6 : 3), using: &generator) {
            document.append(pick(["a", "_id", "ü", "", "x.y", "$k", "0"]), randomValue(depth: depth))
        }
        return document
    }

    /// A fresh case: a seed as is (1 in 16), or a seed with 1–3 mutations.
    public mutating func next() -> [UInt8] {
        var bytes = pick(seeds)
        if Int.random(in: 0..<16, using: &generator) == 0 { return bytes }
        for _ in 0..<Int.random(in: 1...3, using: &generator) { mutate(&bytes) }
        if Bool.random(using: &generator), bytes.count >= 4 {
            let length = UInt32(truncatingIfNeeded: bytes.count)
            for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
        }
        return bytes
    }

    private mutating func mutate(_ bytes: inout [UInt8]) {
        guard !bytes.isEmpty else {
            bytes.append(UInt8.random(in: 0...255, using: &generator))
            return
        }
        let position = Int.random(in: 0..<bytes.count, using: &generator)
        switch Int.random(in: 0..<8, using: &generator) {
        case 0:
            bytes[position] ^= UInt8(1) << UInt8.random(in: 0...7, using: &generator)
        case 1:
            bytes[position] = UInt8.random(in: 0...255, using: &generator)
        case 2, 3:
            // A length field: a planted value or the old one nudged by ±1.
            guard position + 4 <= bytes.count else { return }
            var value = Int32(bitPattern: UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8)
            value |= Int32(bitPattern: UInt32(bytes[position + 2]) << 16 | UInt32(bytes[position + 3]) << 24)
            let planted =
                Bool.random(using: &generator)
                ? pick(BSONFuzzConstants.plantedLengths) : value &+ Int32.random(in: -2...2, using: &generator)
            let raw = UInt32(bitPattern: planted)
            for i in 0..<4 { bytes[position + i] = UInt8(truncatingIfNeeded: raw >> (8 * UInt32(i))) }
        case 4:
            bytes.removeSubrange(position...)
        case 5:
            bytes.insert(pick([0x00, 0x80, 0xC0, 0xED, 0xF4, 0xFF, 0x01, 0x02]), at: position)
        case 6:
            bytes.remove(at: position)
        default:
            // Invalid or odd UTF-8 sequences: lone continuation, overlong, surrogate, beyond U+10FFFF.
            let sequence = pick(
                [[0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] as [[UInt8]]
            )
            for (i, byte) in sequence.enumerated() where position + i < bytes.count { bytes[position + i] = byte }
        }
    }
}

enum BSONFuzzConstants {
    static let strings = [
        "", "a", "_id", "héllo", "日本", "🎉", "x\u{0}y", "$set", "a.b", "0123456789abcdef01234567", "\u{7F}",
    ]
    static let plantedLengths: [Int32] = [-1, -5, 0, 1, 4, 5, 0x7FFF_FFFF, Int32.min]
}

/// Decodes every value of a validated document, recursively (the fuzz checks that nothing valid traps).
public func decodeEverything(_ document: BSONDocument) -> Int {
    var count = 0
    for (_, value) in document.elements { count += decodeEverything(value) }
    return count
}

private func decodeEverything(_ value: BSONValue) -> Int {
    switch value {
    case .document(let d): return 1 + decodeEverything(d)
    case .array(let values): return values.reduce(1) { $0 + decodeEverything($1) }
    case .javascriptWithScope(_, let scope): return 1 + decodeEverything(scope)
    default: return 1
    }
}

/// SplitMix64: a deterministic generator, so that a failing fuzz case can be replayed from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The BSON validator's differential fuzz against libbson (test suite: 1M cases; `rsinit-bench fuzz`: 20M).
public enum BSONDifferentialFuzz {
    public struct Result: Sendable, CustomStringConvertible {
        public var cases = 0
        /// Accepted by rsinit's strict validator (``BSONDocument/init(bytes:)``).
        public var strictValid = 0
        /// Accepted by libbson 1.23 (`bson_init_static` + `bson_validate`).
        public var libbsonValid = 0
        /// libbson accepts, rsinit rejects, and the emulation of libbson 1.23's known leniencies
        /// (``BSONValidationOptions/libbson123``) accepts too: explained.
        public var explainedByLibBSONLeniency = 0
        /// libbson accepts, rsinit rejects, for a reason the emulation does not model (reported, not a failure:
        /// rsinit being stricter than libbson is safe; the reverse is ``strictAcceptedLibBSONRejected``).
        public var unexplained = 0
        /// rsinit accepts strictly what libbson rejects (must be 0: rsinit is never more lenient).
        public var strictAcceptedLibBSONRejected = 0
        /// Values decoded from accepted documents (each fully walked: no trap).
        public var valuesDecoded = 0
        /// Hex dumps of the first unexplained cases.
        public var examples: [String] = []

        public var description: String {
            "\(cases) cases, \(strictValid) valid for rsinit, \(libbsonValid) for libbson, "
                + "\(strictAcceptedLibBSONRejected) accepted by rsinit only, \(explainedByLibBSONLeniency) accepted by "
                + "libbson only through its known leniencies, \(unexplained) accepted by libbson only otherwise, "
                + "\(valuesDecoded) values decoded"
        }
    }

    /// `libbson` is the reference verdict (`LibBSONVerdict.isValid` in MongoCWrapper), passed in so that this
    /// module, and the mongod double with it, need not link libmongoc.
    public static func run(cases: Int, seed: UInt64, libbson isValid: ([UInt8]) -> Bool) -> Result {
        var fuzz = BSONFuzzInput(generator: SeededGenerator(seed: seed))
        var result = Result()
        for _ in 0..<cases {
            let bytes = fuzz.next()
            result.cases += 1
            let strictDocument = try? BSONDocument(bytes: bytes)
            let strict = strictDocument != nil
            let libbson = isValid(bytes)
            if strict { result.strictValid += 1 }
            if libbson { result.libbsonValid += 1 }
            if strict && !libbson { result.strictAcceptedLibBSONRejected += 1 }
            if !strict && libbson {
                // libbson is more lenient here: is it one of its known leniencies (the emulation agrees)?
                if (try? BSONDocument(bytes: bytes, options: .libbson123)) != nil {
                    result.explainedByLibBSONLeniency += 1
                } else {
                    result.unexplained += 1
                    if result.examples.count < 5 {
                        let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
                        result.examples.append("libbson accepts, rsinit rejects (not emulated): \(hex)")
                    }
                }
            }
            if let document = strictDocument ?? (try? BSONDocument(bytes: bytes, options: .structural)) {
                result.valuesDecoded += decodeEverything(document)
            }
        }
        return result
    }
}
