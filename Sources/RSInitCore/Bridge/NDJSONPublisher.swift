import BSON
import Dispatch
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Prints one JSON object per event on stdout (debugging, piping); keeps no checkpoint.
///
/// Each batch is written with one unbuffered write, so `rsinit tail | jq` sees events as they happen (stdout to a
/// pipe or file is otherwise block-buffered).
///
/// The write runs on the publisher's own serial dispatch queue, never on Swift's cooperative pool: a stalled
/// reader (a paused `less`, a full pipe) blocks that queue's thread, and `publish` waits for it without occupying
/// a thread the rest of the process (the health endpoint, signal handling, the tail) needs.
public struct NDJSONPublisher: EventPublisher {
    public let channelPrefix: String
    public let fanOut: [FanOutRule]
    private let write: @Sendable (String) -> Void
    /// Where the (possibly blocking) writes run, one batch at a time, in order.
    private let queue = DispatchQueue(label: "rsinit.ndjson-writer")

    /// Writes to stdout.
    public init(channelPrefix: String = "", fanOut: [FanOutRule] = []) {
        self.init(channelPrefix: channelPrefix, fanOut: fanOut, descriptor: STDOUT_FILENO)
    }

    /// Writes to an open file descriptor (stdout in the CLI; a pipe in tests).
    package init(channelPrefix: String, fanOut: [FanOutRule] = [], descriptor: Int32) {
        self.init(channelPrefix: channelPrefix, fanOut: fanOut) { writeAll($0, to: descriptor) }
    }

    /// Writes each batch's lines through `write` (tests, other sinks). `write` may block: it runs on the
    /// publisher's own queue.
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
        if !text.isEmpty {
            let (write, queue, text) = (self.write, self.queue, text)
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                queue.async {
                    write(text)
                    done.resume()
                }
            }
        }
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

    public func loadStoredCheckpoint() async throws -> StoredCheckpoint? { nil }
    public func close() async {}
}

/// Writes all of `text` to `descriptor` (retrying short and interrupted writes; FoundationEssentials has no
/// FileHandle). Output that cannot be written (a closed pipe) is dropped, as FileHandle's write would lose it.
package func writeAll(_ text: String, to descriptor: Int32) {
    var text = text
    text.withUTF8 { buffer in
        guard let base = buffer.baseAddress else { return }  // empty text: nothing to write
        var offset = 0
        while offset < buffer.count {
            let written = write(descriptor, base + offset, buffer.count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}
