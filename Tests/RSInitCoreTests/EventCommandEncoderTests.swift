import BSON
import MongoCWrapper
import RESP
import RedisClient
import Testing

@testable import RSInitCore

/// The publisher's byte-level encoder against the plain definition: RedisOplogFormat's channels and messages,
/// each command encoded argument by argument with `RESPCodec.encodeCommand`.
@Suite struct EventCommandEncoderTests {
    static let ids: [BSONValue?] = [
        .string("someid"), .objectID(BSONObjectID(hex: "deadbeefdeadbeefdeadbeef")!),
        .string("deadbeefdeadbeefdeadbeef"), .string("-x"), .string("~y"), .string("{z"), .string(""),
        .string("ünï\"cödé\n"), .int32(7), .int64(-5), .double(1.5), .double(100), .bool(false), .null, .undefined,
        .document(["a": 1]), .array([1, 2]), .datetime(5), .binary(BSONBinary(subtype: 0, data: [1, 2, 3])), nil,
    ]

    /// Events of every id shape over three namespaces (the collection channel is cached per namespace run),
    /// command events between them, transaction indexes and a timestamp past 2038.
    static func events() -> [ChangeEvent] {
        var events: [ChangeEvent] = []
        for (index, id) in ids.enumerated() {
            let namespace = ["app.tasks", "app.users", "other.x"][index % 3]
            events.append(
                ChangeEvent(
                    kind: [.insert, .update, .replace, .delete][index % 4],
                    namespace: Namespace(namespace),
                    documentID: id,
                    changedFields: index % 4 == 3 ? [] : ["_id", "a.b", "q\"uote"],
                    timestamp: BSONTimestamp(seconds: index == 5 ? 3_000_000_000 : 1_700_000_000, increment: 1),
                    transactionIndex: index % 5
                )
            )
            if index % 7 == 6 {
                events.append(
                    ChangeEvent(
                        kind: .command,
                        namespace: Namespace(namespace),
                        documentID: nil,
                        changedFields: [],
                        timestamp: BSONTimestamp(seconds: 1_700_000_001, increment: 2),
                        command: .init(name: "renameCollection", renamedTo: Namespace("app.renamed"))
                    )
                )
            }
        }
        return events
    }

    static func reference(_ event: ChangeEvent, prefix: String, fanOut: [FanOutRule]) -> ([String], String) {
        event.kind == .command
            ? (["control"], RedisOplogFormat.commandMessage(for: event))
            : (
                RedisOplogFormat.channels(for: event, prefix: prefix, fanOut: fanOut),
                RedisOplogFormat.message(for: event)
            )
    }

    /// Failures print readable RESP rather than byte arrays (every byte here is valid UTF-8, so this is lossless).
    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    static let fanOutCases: [[FanOutRule]] = [[], [try! FanOutRule("app.tasks=namespace:company")]]

    @Test(arguments: fanOutCases)
    func publishesMatchTheFormatCommandByCommand(fanOut: [FanOutRule]) {
        for prefix in ["", "p:"] {
            for checkpoint in [nil, ("rsinit::checkpoint", "00000000000000000042")] as [(String, String)?] {
                var expected: [UInt8] = []
                var expectedCount = 0
                for event in Self.events() {
                    let (channels, message) = Self.reference(event, prefix: prefix, fanOut: fanOut)
                    for channel in channels {
                        RESPCodec.encodeCommand(
                            ["PUBLISH", channel, message].map { Array($0.utf8) },
                            into: &expected
                        )
                        expectedCount += 1
                    }
                }
                if let checkpoint {
                    RESPCodec.encodeCommand(
                        ["SET", checkpoint.0, checkpoint.1].map { Array($0.utf8) },
                        into: &expected
                    )
                    expectedCount += 1
                }
                var encoder = EventCommandEncoder(channelPrefix: prefix, controlChannel: "control", fanOut: fanOut)
                var encoded: [UInt8] = []
                let count = encoder.appendPublishes(Self.events(), checkpoint: checkpoint, to: &encoded)
                #expect(count == expectedCount)
                #expect(Self.text(encoded) == Self.text(expected))
                // Reusing the encoder (its scratch buffers and namespace cache) gives the same bytes.
                var again: [UInt8] = []
                _ = encoder.appendPublishes(Self.events(), checkpoint: checkpoint, to: &again)
                #expect(Self.text(again) == Self.text(expected))
            }
        }
    }

    @Test(arguments: fanOutCases)
    func scriptCallsMatchTheFormatArgumentByArgument(fanOut: [FanOutRule]) {
        let configuration = RedisEventPublisher.Configuration(
            url: try! RedisURL("redis://127.0.0.1"),
            channelPrefix: "p.",
            controlChannel: "control",
            metadataPrefix: "meta::",
            highAvailability: true,
            dedupeTTLSeconds: 150,
            fanOut: fanOut
        )
        let events = Self.events()
        let cases: [(ArraySlice<ChangeEvent>, String, ChangeEvent?)] = [
            (events[...], "00000000000000000042", nil), (events[3..<9], "", events[2]), (events[0..<0], "1", nil),
            (events[0..<0], "", events[5]),
        ]
        for (chunk, checkpoint, fence) in cases {
            var command = ["EVALSHA", "abc", String(2 + chunk.count), configuration.checkpointKey]
            command.append(fence.map(configuration.dedupeKey) ?? configuration.checkpointKey)
            command += chunk.map(configuration.dedupeKey)
            command += ["150", checkpoint, fence == nil ? "" : "1"]
            for event in chunk {
                let (channels, message) = Self.reference(event, prefix: "p.", fanOut: fanOut)
                command += [String(channels.count)] + channels + [message]
            }
            var expected: [UInt8] = []
            RESPCodec.encodeCommand(command.map { Array($0.utf8) }, into: &expected)

            var encoder = EventCommandEncoder(channelPrefix: "p.", controlChannel: "control", fanOut: fanOut)
            var encoded: [UInt8] = []
            encoder.appendScriptCall(
                chunk,
                sha: "abc",
                checkpointKey: configuration.checkpointKey,
                metadataPrefix: "meta::",
                ttlSeconds: 150,
                checkpoint: checkpoint,
                fence: fence,
                to: &encoded
            )
            #expect(Self.text(encoded) == Self.text(expected))
        }
        // The dedupe key of a timestamp past 2038 is the unsigned 64-bit value (E08).
        #expect(configuration.dedupeKey(events[5]) == "meta::processed::\(UInt64(3_000_000_000) << 32 | 1)::0")
    }

    /// A change event's dedupe key ends in the SHA-1 of its resume token, spelled the same by the configuration and
    /// by the encoder. The digests are independent vectors (`sha1sum` of a token's text; FIPS 180's empty and
    /// two-block messages), so a wrong hash or a wrong hex spelling fails here.
    @Test func changeStreamDedupeKeysEndInTheTokensSHA1() {
        let configuration = RedisEventPublisher.Configuration(
            url: try! RedisURL("redis://127.0.0.1"),
            metadataPrefix: "meta::",
            highAvailability: true
        )
        let vectors = [
            ("8265A1B2C3000000042B042C0100296E5A1004", "151763114277f461b371403c69819500652a071d"),
            ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
            ),
        ]
        for (token, digest) in vectors {
            let event = ChangeEvent(
                kind: .insert,
                namespace: Namespace("app.tasks"),
                documentID: .string("a"),
                changedFields: ["_id"],
                timestamp: BSONTimestamp(seconds: 1_700_000_000, increment: 2),
                resumeToken: token
            )
            let key = "meta::processed::\(UInt64(1_700_000_000) << 32 | 2)::cs:\(digest)"
            #expect(configuration.dedupeKey(event) == key)
            var encoder = EventCommandEncoder(channelPrefix: "", controlChannel: "control", fanOut: [])
            var encoded: [UInt8] = []
            encoder.appendScriptCall(
                [event],
                sha: "abc",
                checkpointKey: configuration.checkpointKey,
                metadataPrefix: "meta::",
                ttlSeconds: 150,
                checkpoint: "",
                fence: nil,
                to: &encoded
            )
            #expect(Self.text(encoded).contains("$\(key.utf8.count)\r\n\(key)\r\n"))
        }
    }

    @Test func decimalsAreWrittenLikeStringDescribingThem() {
        var samples: [UInt64] = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, UInt64(Int64.max), .max, .max - 1]
        var power: UInt64 = 1
        while power <= UInt64.max / 10 {
            power *= 10
            samples += [power - 1, power, power + 1]
        }
        for value in samples {
            var out: [UInt8] = []
            RedisOplogFormat.appendDecimal(value, to: &out)
            #expect(Self.text(out) == String(value))
            if let signed = Int64(exactly: value) {
                for candidate in [signed, -signed] {
                    out = []
                    RedisOplogFormat.appendDecimal(candidate, to: &out)
                    #expect(Self.text(out) == String(candidate))
                }
            }
            if let count = Int(exactly: value) {
                out = []
                RESPCodec.appendArrayHeader(count, into: &out)
                #expect(Self.text(out) == "*\(count)\r\n")
            }
        }
        var minimum: [UInt8] = []
        RedisOplogFormat.appendDecimal(Int64.min, to: &minimum)
        #expect(Self.text(minimum) == String(Int64.min))
    }

    @Test func bulkStringAndHeaderHelpersMatchTheGenericEncoder() {
        for arguments in [[], [""], ["PUBLISH", "ch", String(repeating: "x", count: 1234)], ["ü", "\r\n"]] {
            var expected: [UInt8] = []
            RESPCodec.encodeCommand(arguments.map { Array($0.utf8) }, into: &expected)
            var viaText: [UInt8] = []
            var viaBytes: [UInt8] = []
            RESPCodec.appendArrayHeader(arguments.count, into: &viaText)
            RESPCodec.appendArrayHeader(arguments.count, into: &viaBytes)
            for argument in arguments {
                RESPCodec.appendBulkString(argument, into: &viaText)
                RESPCodec.appendBulkString(Array(argument.utf8), into: &viaBytes)
            }
            #expect(viaText == expected)
            #expect(viaBytes == expected)
        }
    }
}
