import Foundation
public import MongoCWrapper

/// Prints one JSON object per event on stdout (debugging, piping); keeps no checkpoint.
public struct NDJSONPublisher: EventPublisher {
    public let channelPrefix: String
    private let write: @Sendable (String) -> Void

    public init(channelPrefix: String = "", write: @escaping @Sendable (String) -> Void = { print($0) }) {
        self.channelPrefix = channelPrefix
        self.write = write
    }

    public func publish(_ batch: OplogBatch) async throws {
        for event in batch.events {
            var line =
                "{\"ts\":{\"t\":\(event.timestamp.seconds),\"i\":\(event.timestamp.increment)},\"txIdx\":\(event.transactionIndex),"
            if event.kind == .command {
                line += "\"command\":" + RedisOplogFormat.commandMessage(for: event)
            } else {
                line += "\"channels\":["
                line += RedisOplogFormat.channels(for: event, prefix: channelPrefix).map { channel -> String in
                    var quoted = ""
                    RedisOplogFormat.appendJSONString(channel, to: &quoted)
                    return quoted
                }.joined(separator: ",")
                line += "],\"message\":" + RedisOplogFormat.message(for: event)
            }
            write(line + "}")
        }
    }

    public func loadCheckpoint() async throws -> BSONTimestamp? { nil }
    public func close() async {}
}
