import BSON
import MongoCWrapper
import RESP

/// Encodes a batch's events as Redis commands straight into one RESP buffer: PUBLISHes (plain mode) or calls of
/// the dedupe script (HA mode). Pure; the bytes are those of ``RedisOplogFormat``'s channels and messages.
///
/// This is the publisher's hot path: each event's message and channels are written once into scratch buffers that
/// live as long as the encoder, no `String` or array is made per channel or argument, and the collection channel
/// is built once per run of events in the same namespace.
struct EventCommandEncoder {
    let channelPrefix: String
    let controlChannel: String
    let fanOut: [FanOutRule]

    /// The loaded event's message and channels (`channels` holds them back to back, ending at `channelEnds`).
    private var message: [UInt8] = []
    private var channels: [UInt8] = []
    private var channelEnds: [Int] = []
    /// `<prefix><db>.<coll>` (`collectionChannel`) of the last namespace seen (`channelNamespace`; nil before
    /// the first). Plain variables: compared and appended in place, where an optional tuple was copied per event.
    private var channelNamespace: Namespace?
    private var collectionChannel: [UInt8] = []
    /// HA: the script's arguments, written apart because its keys come first in the command.
    private var scriptArguments: [UInt8] = []
    /// The last changed-fields array's JSON (same-shape inserts share their array).
    private var fieldsJSON = RedisOplogFormat.ChangedFieldsJSON()

    /// `*3\r\n$7\r\nPUBLISH\r\n`: the start of every PUBLISH, written at once.
    private static let publishHeader = Array("*3\r\n$7\r\nPUBLISH\r\n".utf8)
    private static let evalsha = Array("EVALSHA".utf8)
    private static let set = Array("SET".utf8)

    init(channelPrefix: String, controlChannel: String, fanOut: [FanOutRule]) {
        self.channelPrefix = channelPrefix
        self.controlChannel = controlChannel
        self.fanOut = fanOut
    }

    /// `PUBLISH <channel> <message>` for every channel of every event, then `SET <checkpointKey> <checkpoint>` when
    /// a checkpoint is given. Returns the number of commands (= replies to expect).
    mutating func appendPublishes(
        _ events: some Collection<ChangeEvent>,
        checkpoint: (key: String, value: String)?,
        to out: inout [UInt8]
    ) -> Int {
        var commands = 0
        // By index, not `for event in`: the iterator hands out a copy of each event (a retain and a release of
        // its fields); the subscript lends it.
        for index in events.indices {
            load(events[index])
            commands += channelEnds.count
            message.withUnsafeBufferPointer { message in
                channels.withUnsafeBufferPointer { channels in
                    var start = 0
                    for end in channelEnds {
                        out.append(contentsOf: Self.publishHeader)
                        RESPCodec.appendBulkString(UnsafeBufferPointer(rebasing: channels[start..<end]), into: &out)
                        RESPCodec.appendBulkString(message, into: &out)
                        start = end
                    }
                }
            }
        }
        if let checkpoint {
            RESPCodec.appendArrayHeader(3, into: &out)
            RESPCodec.appendBulkString(Self.set, into: &out)
            RESPCodec.appendBulkString(checkpoint.key, into: &out)
            RESPCodec.appendBulkString(checkpoint.value, into: &out)
            commands += 1
        }
        return commands
    }

    /// One `EVALSHA <sha> <2 + n> <checkpointKey> <fence key> <dedupe key>… <ttl> <checkpoint> <fenced>
    /// (<count> <channel>… <message>)…` for the events (the layout ``RedisEventPublisher/deduplicationScript``
    /// reads). The dedupe key of an event is `<metadataPrefix>processed::<ts as 64-bit>::<txIdx>` (a change-stream
    /// event: `…::cs:<SHA-1 hex of its resume token>`, see ``RedisEventPublisher/Configuration/dedupeKey(_:)``); the fence key is
    /// that of `fence` (the call runs only if it exists), or the checkpoint key with `<fenced>` empty.
    mutating func appendScriptCall(
        _ events: some Collection<ChangeEvent>,
        sha: String,
        checkpointKey: String,
        metadataPrefix: String,
        ttlSeconds: Int,
        checkpoint: String,
        fence: ChangeEvent?,
        to out: inout [UInt8]
    ) {
        scriptArguments.removeAll(keepingCapacity: true)
        RESPCodec.appendBulkString(String(ttlSeconds), into: &scriptArguments)
        RESPCodec.appendBulkString(checkpoint, into: &scriptArguments)
        RESPCodec.appendBulkString(fence == nil ? "" : "1", into: &scriptArguments)
        var argumentCount = 3
        var count: [UInt8] = []
        for index in events.indices {
            load(events[index])
            count.removeAll(keepingCapacity: true)
            RedisOplogFormat.appendDecimal(UInt64(channelEnds.count), to: &count)  // trap-checked: a count
            RESPCodec.appendBulkString(count, into: &scriptArguments)
            channels.withUnsafeBufferPointer { channels in
                var start = 0
                for end in channelEnds {
                    RESPCodec.appendBulkString(
                        UnsafeBufferPointer(rebasing: channels[start..<end]),
                        into: &scriptArguments
                    )
                    start = end
                }
            }
            RESPCodec.appendBulkString(message, into: &scriptArguments)
            argumentCount += channelEnds.count + 2
        }

        RESPCodec.appendArrayHeader(3 + 2 + events.count + argumentCount, into: &out)
        RESPCodec.appendBulkString(Self.evalsha, into: &out)
        RESPCodec.appendBulkString(sha, into: &out)
        RESPCodec.appendBulkString(String(2 + events.count), into: &out)
        RESPCodec.appendBulkString(checkpointKey, into: &out)
        var key = Array(metadataPrefix.utf8) + Array("processed::".utf8)
        let keyStem = key.count
        func appendDedupeKey(_ event: ChangeEvent) {
            key.removeSubrange(keyStem...)
            RedisOplogFormat.appendDecimal(event.timestamp.rawValue, to: &key)
            key.append(UInt8(ascii: ":"))
            key.append(UInt8(ascii: ":"))
            if let token = event.resumeToken {
                // A change-stream event: its token (unique across shards sharing a clusterTime), hashed to a
                // bounded length.
                key.append(contentsOf: "cs:".utf8)
                key.append(contentsOf: SHA1.hex(Array(token.utf8)).utf8)
            } else {
                RedisOplogFormat.appendDecimal(Int64(event.transactionIndex), to: &key)  // trap-checked: Int → Int64
            }
            RESPCodec.appendBulkString(key, into: &out)
        }
        if let fence { appendDedupeKey(fence) } else { RESPCodec.appendBulkString(checkpointKey, into: &out) }
        for index in events.indices { appendDedupeKey(events[index]) }
        out.append(contentsOf: scriptArguments)
    }

    /// Writes the event's message and channels into the scratch buffers.
    private mutating func load(_ event: ChangeEvent) {
        message.removeAll(keepingCapacity: true)
        channels.removeAll(keepingCapacity: true)
        channelEnds.removeAll(keepingCapacity: true)
        if event.kind == .command {
            RedisOplogFormat.appendCommandMessage(for: event, to: &message)
            channels.append(contentsOf: controlChannel.utf8)
            channelEnds.append(channels.count)
            return
        }
        RedisOplogFormat.appendMessage(for: event, to: &message, fields: &fieldsJSON)
        guard fanOut.isEmpty else {
            for channel in RedisOplogFormat.channels(for: event, prefix: channelPrefix, fanOut: fanOut) {
                channels.append(contentsOf: channel.utf8)
                channelEnds.append(channels.count)
            }
            return
        }
        if channelNamespace != event.namespace {
            let name = channelPrefix + event.namespace.database + "." + event.namespace.collection
            channelNamespace = event.namespace
            collectionChannel = Array(name.utf8)
        }
        channels.append(contentsOf: collectionChannel)
        channelEnds.append(channels.count)
        guard let id = event.documentID else { return }
        channels.append(contentsOf: collectionChannel)
        channels.append(UInt8(ascii: ":"))
        channels.append(UInt8(ascii: ":"))
        if RedisOplogFormat.appendIDStringify(id, to: &channels) {
            channelEnds.append(channels.count)
        } else {
            channels.removeSubrange(channelEnds[0]...)
        }
    }
}
