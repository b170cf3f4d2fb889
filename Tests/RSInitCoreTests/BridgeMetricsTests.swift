import BSON
import MetricsTestKit
import MongoCWrapper
import Testing

@testable import RSInitCore

@Suite struct BridgeMetricsTests {
    /// Events are counted per (namespace, op) whatever the order: runs of one key, interleaved keys, a key that
    /// comes back after others, across batches.
    @Test func eventsAreCountedByNamespaceAndOpInAnyOrder() throws {
        let factory = TestMetrics()
        let metrics = BridgeMetrics(factory: factory)
        func make(_ ns: String, _ kind: ChangeEvent.Kind) -> ChangeEvent {
            ChangeEvent(
                kind: kind,
                namespace: Namespace(ns),
                documentID: .int32(1),
                changedFields: [],
                timestamp: BSONTimestamp(seconds: 1, increment: 1)
            )
        }
        let batch = OplogBatch(
            events: [
                make("a.x", .insert), make("a.x", .insert), make("b.y", .update), make("a.x", .insert),
                make("a.x", .delete), make("b.y", .update), make("a.x", .insert),
            ],
            resumePosition: BSONTimestamp(seconds: 7, increment: 0),
            lastRead: nil,
            entriesRead: 9
        )
        metrics.recordDelivered(batch, receipt: PublishReceipt(published: 7), publishNanoseconds: 1000)
        metrics.recordDelivered(
            OplogBatch(events: [make("a.x", .insert)], resumePosition: nil, lastRead: nil, entriesRead: 1),
            receipt: PublishReceipt(published: 1),
            publishNanoseconds: 1000
        )
        func count(_ ns: String, _ op: String) throws -> Int64 {
            try factory.expectCounter(BridgeMetrics.Name.events, [("namespace", ns), ("op", op)]).totalValue
        }
        #expect(try count("a.x", "insert") == 5)
        #expect(try count("b.y", "update") == 2)
        #expect(try count("a.x", "delete") == 1)
        #expect(try factory.expectCounter(BridgeMetrics.Name.oplogEntries).totalValue == 10)
        #expect(try factory.expectGauge(BridgeMetrics.Name.checkpoint).lastValue == 7)
    }
}
