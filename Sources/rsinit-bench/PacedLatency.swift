import Dispatch
import Foundation
import RESP
import RSInitTestUtils
import RedisClient
import Synchronization

extension Bench {
    /// The measuring half of the latency reports (``latency(_:perSecond:seconds:source:)`` and
    /// ``majorityLatency(_:mode:perSecond:seconds:lag:)``), whose bridges differ: a subscriber on `channel`, `warmUp`
    /// for the bridge to reach its tail, then `perSecond × seconds` writes at a steady pace (`write(i)` appends the
    /// entry of `_id` "lat<i>"), then one second for the last ones to arrive. Returns each event's write → message
    /// latency in milliseconds.
    static func pacedLatency(
        _ redis: RedisServerProcess,
        channel: String,
        perSecond: Int,
        seconds duration: Int,
        warmUp: Duration,
        write: (Int) -> Void
    ) async throws -> [Double] {
        let sent = Mutex<[Int: UInt64]>([:])
        let received = Mutex<[Double]>([])
        let subscriber = try await RedisConnection.connect(try RedisURL(redis.url()))
        _ = try await subscriber.command(["SUBSCRIBE", channel])
        let listening = Task {
            while !Task.isCancelled {
                guard let value = try? await subscriber.readPushed(wait: .milliseconds(200)) else { continue }
                let now = DispatchTime.now().uptimeNanoseconds
                guard case .array(let parts?) = value, parts.count == 3, let message = parts[2].string,
                    let range = message.range(of: #""_id":"lat"#)
                else { continue }
                let id = Int(message[range.upperBound...].prefix { $0.isNumber }) ?? -1
                if let at = sent.withLock({ $0[id] }) { received.withLock { $0.append(Double(now - at) / 1e6) } }
            }
        }
        try await Task.sleep(for: warmUp)
        // One event every 1/perSecond s, in small steps so the pace holds.
        let total = perSecond * duration
        let began = ContinuousClock.now
        for i in 0..<total {
            let due = began + .nanoseconds(Int64(i) * 1_000_000_000 / Int64(perSecond))
            if due > .now { try await Task.sleep(until: due, tolerance: .microseconds(50)) }
            sent.withLock { $0[i] = DispatchTime.now().uptimeNanoseconds }
            write(i)
        }
        try await Task.sleep(for: .seconds(1))
        listening.cancel()
        await subscriber.close()
        return received.withLock { $0 }
    }
}
