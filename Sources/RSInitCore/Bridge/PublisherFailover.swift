/// The node that stores the checkpoint and receives the PUBLISHes changed under the bridge (a Sentinel failover,
/// a Cluster slot moved or failed over, or any reconnection when the topology can fail over): what the old node
/// acknowledged may never have reached the new one (replication is asynchronous).
///
/// Thrown by an ``EventPublisher`` until its ``EventPublisher/loadCheckpoint()`` is called again; the bridge then
/// drops what it has in flight, reads the checkpoint the new node holds and tails from there. Events after that
/// checkpoint are delivered again (duplicates), never skipped: a checkpoint write that did not replicate is simply
/// not there.
public struct PublisherFailover: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}
