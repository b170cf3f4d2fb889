import BSON
import Logging
import MongoCWrapper
import NIOConcurrencyHelpers
import RSInitTestUtils
import Testing

@testable import RSInitCore

/// The position a bridge reports after a Redis failover (CI caught it: `gracefulFailoverWithTwoHABridges` waited
/// in vain for one of the two HA bridges). When the HA partner delivered everything while this bridge reconnected,
/// the new master's checkpoint is the newest entry and this bridge reads nothing new after it: its position must
/// still be that checkpoint, not its own last batch's from before the failover.
struct FailoverPositionTests {
    /// A sink whose node "fails over" on the second batch to one whose checkpoint the HA partner moved to `moved`.
    private final class PartnerMovedCheckpoint: EventPublisher, Sendable {
        let moved: StoredCheckpoint
        private let state = NIOLockedValueBox((batches: 0, failedOver: false))

        init(moved: StoredCheckpoint) { self.moved = moved }

        func publish(_ batch: OplogBatch) async throws -> PublishReceipt {
            let failOver = state.withLockedValue { state in
                state.batches += 1
                guard state.batches == 2, !state.failedOver else { return false }
                state.failedOver = true
                return true
            }
            if failOver { throw PublisherFailover("Redis failed over to a node the HA partner kept up to date") }
            return PublishReceipt(published: batch.events.count)
        }

        func loadStoredCheckpoint() async throws -> StoredCheckpoint? {
            state.withLockedValue { $0.failedOver } ? moved : nil
        }

        var failedOver: Bool { state.withLockedValue { $0.failedOver } }

        func close() async {}
    }

    @Test func afterAFailoverThePositionIsTheCheckpointTheBridgeResumedFrom() async throws {
        let mongo = try quietPrimary()
        defer { mongo.stop() }
        let first = BSONTimestamp(rawValue: mongo.lastOplogTimestamp.rawValue + 1)
        appendInsertEntries(mongo, 0..<500)
        let newest = mongo.lastOplogTimestamp
        let publisher = PartnerMovedCheckpoint(moved: .legacyTimestamp(newest))
        let bridge = OplogBridge(
            configuration: OplogBridge.Configuration(
                tailer: OplogTailerConfiguration(
                    connectionString: try MongoConnectionString(mongo.uri),
                    batchSize: 100,
                    maxAwaitTime: .milliseconds(200)
                ),
                start: .at(first)
            ),
            publisher: publisher,
            logger: Logger(label: "rsinit.test.bridge")
        )
        let running = Task { try await bridge.run() }
        let moved = await eventually(within: .seconds(20)) { bridge.statistics.lastPosition == newest }
        bridge.stop()
        try await running.value
        #expect(publisher.failedOver)
        #expect(bridge.statistics.batches == 1, "only the batch before the failover is this bridge's own")
        #expect(moved, "position \(bridge.statistics.lastPosition.map { "\($0)" } ?? "none"), expected \(newest)")
    }
}
