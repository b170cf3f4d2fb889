import Foundation
import RESP
import Testing

func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

func frame(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Decodes every frame in `bytes`; nil when the tail is incomplete.
func decodeAll(_ bytes: [UInt8], limits: RESPLimits = RESPLimits()) throws -> (values: [RESPValue], consumed: Int) {
    var index = 0
    var values: [RESPValue] = []
    while let value = try RESPCodec.decode(bytes, at: &index, limits: limits) { values.append(value) }
    return (values, index)
}

@Suite struct RESPCodecTests {
    static let complete: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString("OK")),
        ("-ERR unknown command\r\n", .error("ERR unknown command")),
        (":0\r\n", .integer(0)),
        (":-42\r\n", .integer(-42)),
        (":9223372036854775807\r\n", .integer(.max)),
        (":-9223372036854775808\r\n", .integer(.min)),
        ("$5\r\nhello\r\n", .bulkString(Array("hello".utf8))),
        ("$0\r\n\r\n", .bulkString([])),
        ("$-1\r\n", .bulkString(nil)),
        ("$4\r\na\r\nb\r\n", .bulkString(Array("a\r\nb".utf8))),
        ("*0\r\n", .array([])),
        ("*-1\r\n", .array(nil)),
        ("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n", .array([.bulk("message"), .bulk("ch"), .bulkString(nil)])),
        ("*2\r\n*1\r\n:1\r\n+x\r\n", .array([.array([.integer(1)]), .simpleString("x")])),
    ]

    @Test func completeFrames() throws {
        for (text, expected) in Self.complete {
            let (values, consumed) = try decodeAll(frame(text))
            #expect(values == [expected], "\(text.debugDescription)")
            #expect(consumed == text.utf8.count)
        }
    }

    @Test func nullAndEmptyStayDistinct() {
        #expect(RESPValue.bulkString(nil) != .bulkString([]))
        #expect(RESPValue.array(nil) != .array([]))
        for value in [RESPValue.bulkString(nil), .bulkString([]), .array(nil), .array([])] {
            var out: [UInt8] = []
            RESPCodec.encode(value, into: &out)
            #expect(try! decodeAll(out).values == [value])
        }
    }

    /// Every prefix of every frame is incomplete and consumes nothing (never a partial frame).
    @Test func byteByByte() throws {
        for (text, expected) in Self.complete {
            let bytes = frame(text)
            for cut in 0..<bytes.count {
                var index = 0
                #expect(
                    try RESPCodec.decode(Array(bytes[0..<cut]), at: &index) == nil,
                    "\(text.debugDescription) cut \(cut)"
                )
                #expect(index == 0)
            }
            var index = 0
            #expect(try RESPCodec.decode(bytes, at: &index) == expected)
        }
    }

    @Test func multipleFramesInOneBuffer() throws {
        let text = Self.complete.map(\.0).joined()
        let (values, consumed) = try decodeAll(frame(text))
        #expect(values == Self.complete.map(\.1))
        #expect(consumed == text.utf8.count)
        // Followed by half a frame: the complete ones decode, the half stays.
        let (partial, used) = try decodeAll(frame("+OK\r\n$5\r\nhel"))
        #expect(partial == [.simpleString("OK")])
        #expect(used == 5)
    }

    @Test(arguments: [
        "!oops\r\n", "+OK\rX", ":12a\r\n", ":\r\n", ":-\r\n", ":99999999999999999999\r\n", "$-2\r\n", "$3\r\nabcde\r\n",
        "*-5\r\n", ":--1\r\n", "$99999999999\r\n",
    ])
    func malformed(_ text: String) {
        #expect(throws: RESPError.self) { _ = try decodeAll(frame(text)) }
    }

    @Test func limits() throws {
        let limits = RESPLimits(maximumBulkLength: 10, maximumArrayCount: 3, maximumDepth: 2, maximumLineLength: 16)
        #expect(throws: RESPError.self) { _ = try decodeAll(frame("$11\r\n"), limits: limits) }
        #expect(throws: RESPError.self) { _ = try decodeAll(frame("*4\r\n"), limits: limits) }
        #expect(throws: RESPError.self) { _ = try decodeAll(frame("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"), limits: limits) }
        #expect(throws: RESPError.self) {
            _ = try decodeAll(frame("+" + String(repeating: "a", count: 40)), limits: limits)
        }
        // A huge claimed array that never arrives allocates nothing up front and stays incomplete.
        var index = 0
        #expect(try RESPCodec.decode(frame("*1000000\r\n:1\r\n"), at: &index) == nil)
    }

    @Test func commandEncoding() {
        var out: [UInt8] = []
        RESPCodec.encodeCommand(
            [Array("PUBLISH".utf8), Array("tests.Foo".utf8), Array("{\"e\":\"i\"}".utf8)],
            into: &out
        )
        #expect(
            String(decoding: out, as: UTF8.self) == "*3\r\n$7\r\nPUBLISH\r\n$9\r\ntests.Foo\r\n$9\r\n{\"e\":\"i\"}\r\n"
        )
    }

    /// Lengths and numbers are written without a String; every digit count, both fast paths and the limits.
    @Test func digitsAndBulkStrings() {
        var values: [UInt64] = [0, 9, 10, 99, 100, 101, 999, 1000, UInt64(Int64.max), .max]
        var power: UInt64 = 1
        while power <= UInt64.max / 10 {
            power *= 10
            values += [power - 1, power, power + 1]
        }
        for value in values {
            var out: [UInt8] = [UInt8(ascii: "x")]
            RESPCodec.appendDigits(value, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == "x" + String(value))
        }
        let payload = Array("{\"e\":\"i\"}".utf8)
        var fromArray: [UInt8] = []
        var fromSlice: [UInt8] = []
        var fromPointer: [UInt8] = []
        RESPCodec.appendBulkString(payload, into: &fromArray)
        RESPCodec.appendBulkString(([0] + payload + [0])[1...payload.count], into: &fromSlice)
        payload.withUnsafeBufferPointer { RESPCodec.appendBulkString($0, into: &fromPointer) }
        #expect(String(decoding: fromArray, as: UTF8.self) == "$9\r\n{\"e\":\"i\"}\r\n")
        #expect(fromSlice == fromArray)
        #expect(fromPointer == fromArray)
    }

    /// Random and mutated frames: no crash, no hang, no unbounded allocation (limits), every result consistent.
    @Test func fuzz() async throws {
        try await onDedicatedThread { Self.fuzzRounds() }
    }

    static func fuzzRounds() {
        var generator = SystemRandomNumberGenerator()
        let seeds = Self.complete.map { frame($0.0) }
        let alphabet: [UInt8] = Array("+-:$*\r\n0123456789-abc".utf8)
        for round in 0..<300_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = seeds.randomElement(using: &generator)! + seeds.randomElement(using: &generator)!
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    let position = Int.random(in: 0..<bytes.count, using: &generator)
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0: bytes[position] = alphabet.randomElement(using: &generator)!
                    case 1: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                    default: bytes.remove(at: position)
                    }
                    if bytes.isEmpty { break }
                }
            } else {
                bytes = (0..<Int.random(in: 0...24, using: &generator)).map { _ in
                    alphabet.randomElement(using: &generator)!
                }
            }
            var index = 0
            do {
                while let _ = try RESPCodec.decode(bytes, at: &index) {}
                #expect(index <= bytes.count)
            } catch {}
        }
    }
}
