import Foundation
public import MongoCWrapper

/// Prints one JSON object per event on stdout (debugging, piping); keeps no checkpoint.
///
/// Each batch is written with one unbuffered write, so `rsinit tail | jq` sees events as they happen (stdout to a
/// pipe or file is otherwise block-buffered).
public struct NDJSONPublisher: EventPublisher {
    public let channelPrefix: String
    public let fanOut: [FanOutRule]
    private let write: @Sendable (String) -> Void

    /// Writes to stdout.
    public init(channelPrefix: String = "", fanOut: [FanOutRule] = []) {
        self.init(channelPrefix: channelPrefix, fanOut: fanOut) { FileHandle.standardOutput.write(Data($0.utf8)) }
    }

    /// Writes each batch's lines through `write` (tests, other sinks).
    public init(channelPrefix: String, fanOut: [FanOutRule] = [], write: @escaping @Sendable (String) -> Void) {
        self.channelPrefix = channelPrefix
        self.fanOut = fanOut
        self.write = write
    }

    @discardableResult public func publish(_ batch: OplogBatch) async throws -> PublishReceipt {
        var text = ""
        // Entries the format cannot fully express are reported in oplog order among the events.
        var unexpressed = batch.unexpressed[...]
        func appendUnexpressed(before timestamp: BSONTimestamp?) {
            while let entry = unexpressed.first {
                if let timestamp, let entryTimestamp = entry.timestamp, entryTimestamp >= timestamp { break }
                text += Self.line(for: entry)
                unexpressed.removeFirst()
            }
        }
        for event in batch.events {
            appendUnexpressed(before: event.timestamp)
            var line =
                "{\"ts\":{\"t\":\(event.timestamp.seconds),\"i\":\(event.timestamp.increment)},\"txIdx\":\(event.transactionIndex),"
            if event.kind == .command {
                line += "\"command\":" + RedisOplogFormat.commandMessage(for: event)
            } else {
                line += "\"channels\":["
                line += RedisOplogFormat.channels(for: event, prefix: channelPrefix, fanOut: fanOut)
                    .map(RedisOplogFormat.jsonString).joined(separator: ",")
                line += "],\"message\":" + RedisOplogFormat.message(for: event)
            }
            text += line + "}\n"
        }
        appendUnexpressed(before: nil)
        if !text.isEmpty { write(text) }
        return PublishReceipt(published: batch.events.count)
    }

    /// `{"ts":{"t":…,"i":…},"skipped":{"reason":"malformed","ns":"app.tasks","detail":"…"}}` (`ts` null when the
    /// entry has none).
    static func line(for entry: UnexpressedEntry) -> String {
        var line = "{\"ts\":"
        if let ts = entry.timestamp {
            line += "{\"t\":\(ts.seconds),\"i\":\(ts.increment)}"
        } else {
            line += "null"
        }
        line += ",\"skipped\":{\"reason\":" + RedisOplogFormat.jsonString(entry.reason.rawValue)
        line += ",\"ns\":" + RedisOplogFormat.jsonString(entry.namespace)
        line += ",\"detail\":" + RedisOplogFormat.jsonString(entry.detail) + "}}\n"
        return line
    }

    public func loadCheckpoint() async throws -> BSONTimestamp? { nil }
    public func close() async {}
}
