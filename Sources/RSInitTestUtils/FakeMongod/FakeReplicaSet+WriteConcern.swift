import Foundation

extension FakeReplicaSet {
    /// Holds (or releases) writes on member `index`: they block before applying, as if waiting for a lock, and a
    /// stepdown that starts meanwhile kills them with 11602 (§4.4 point 2).
    public func holdWrites(_ index: Int, _ hold: Bool) {
        let core = members[index].core
        core.locked {
            core.writesHeld = hold
            core.condition.broadcast()
        }
    }
}
