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
        for event in batch.events {
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
        if !text.isEmpty { write(text) }
        return PublishReceipt(published: batch.events.count)
    }

    public func loadCheckpoint() async throws -> BSONTimestamp? { nil }
    public func close() async {}
}
