import RESP

extension Bench {
    /// `rsinit-bench resp-fuzz`: millions of random and mutated RESP frames through the decoder — no crash, no hang,
    /// no unbounded allocation (limits) — and, for every input, decoding it whole and byte by byte (as a socket
    /// might deliver it) must give the same values and stop at the same place: a partial frame is never consumed.
    static func respFuzz(count: Int) {
        let seeds: [[UInt8]] = [
            "+OK\r\n", "-ERR unknown command\r\n", ":123\r\n", ":-9223372036854775808\r\n", "$5\r\nhello\r\n",
            "$-1\r\n", "$0\r\n\r\n", "*-1\r\n", "*0\r\n", "*2\r\n$3\r\nfoo\r\n:1\r\n",
            "*3\r\n$7\r\nmessage\r\n$9\r\ntests.Foo\r\n$20\r\n{\"e\":\"i\",\"d\":{},\"f\":[]}\r\n",
            "*2\r\n*1\r\n+a\r\n*2\r\n:1\r\n$-1\r\n",
        ].map { Array($0.utf8) }
        let alphabet: [UInt8] = Array("+-:$*\r\n0123456789-abc".utf8)
        let limits = RESPLimits()
        var generator = SystemRandomNumberGenerator()
        var values = 0
        var errors = 0
        var mismatches = 0
        let start = ContinuousClock.now
        for round in 0..<count {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = seeds.randomElement(using: &generator)! + seeds.randomElement(using: &generator)!
                for _ in 0..<Int.random(in: 1...3, using: &generator) where !bytes.isEmpty {
                    let position = Int.random(in: 0..<bytes.count, using: &generator)
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0: bytes[position] = alphabet.randomElement(using: &generator)!
                    case 1: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                    default: bytes.remove(at: position)
                    }
                }
            } else {
                bytes = (0..<Int.random(in: 0...32, using: &generator)).map { _ in
                    alphabet.randomElement(using: &generator)!
                }
            }
            // Whole.
            var index = 0
            var whole: [RESPValue] = []
            var failedWhole = false
            do {
                while let value = try RESPCodec.decode(bytes, at: &index, limits: limits) { whole.append(value) }
            } catch { failedWhole = true }
            values += whole.count
            if failedWhole { errors += 1 }
            // Byte by byte: grow the buffer one byte at a time, decode whatever is complete.
            if round % 8 == 0 {
                var buffer: [UInt8] = []
                var cursor = 0
                var incremental: [RESPValue] = []
                var failed = false
                for byte in bytes where !failed {
                    buffer.append(byte)
                    do {
                        while let value = try RESPCodec.decode(buffer, at: &cursor, limits: limits) {
                            incremental.append(value)
                        }
                    } catch { failed = true }
                }
                let consistent =
                    failed == failedWhole && incremental == whole && (failed || cursor == index)
                if !consistent { mismatches += 1 }
            }
        }
        let elapsed = Int(seconds(ContinuousClock.now - start) * 1000)
        print(
            "resp-fuzz: \(count) random/mutated inputs in \(elapsed) ms: \(values) values, \(errors) rejected, \(mismatches) whole/byte-by-byte mismatches (must be 0)"
        )
    }
}
