import BSON

/// The streaming `hello` protocol (spec replication-ha §6.1, §9.1 item 4; mongod-behaviour §11.5): a pooled
/// driver's monitor (libmongoc's pool, the Node driver under Meteor/redis-oplog) sends an awaitable hello —
/// `topologyVersion` + `maxAwaitTimeMS` — as OP_MSG with `exhaustAllowed` (flag bit 16), then only reads. The
/// server answers with `moreToCome` (flag bit 1) set and keeps answering on its own: each further reply comes when
/// the member's topology changes or `maxAwaitTimeMS` passes, carries the `topologyVersion` it answers for, and has
/// `responseTo` = the previous reply's `requestID`. An error reply (e.g. 91 in quiesce mode) is sent without
/// `moreToCome` and ends the stream; the client then sends its next request. Set members only (the lone double has
/// no `topologyVersion`, so drivers never send it an awaitable hello).
extension FakeMongod {
    /// OP_MSG flag bits (OP_MSG spec).
    static let moreToComeFlag: UInt32 = 0x2
    static let exhaustAllowedFlag: UInt32 = 0x1_0000

    /// An awaitable `hello`/`isMaster` sent with `exhaustAllowed` to a set member.
    func isExhaustHello(_ request: WireRequest) -> Bool {
        guard case .message(let flags) = request.kind, flags & Self.exhaustAllowedFlag != 0 else { return false }
        let name = request.command.firstKey ?? ""
        guard name == "hello" || name == "isMaster" || name == "ismaster" else { return false }
        guard request.command["topologyVersion"]?.documentValue != nil,
            (request.command["maxAwaitTimeMS"]?.int64Value ?? 0) > 0
        else { return false }
        return core.locked { core.setMember }
    }

    /// Sends `first` and every further reply of the stream; false when the connection must close.
    func streamHello(_ fd: Int32, _ request: WireRequest, first: BSONDocument, context: FakeConnectionContext) -> Bool {
        var next = request
        var reply = first
        var responseTo = request.requestID
        while true {
            let more = reply["ok"]?.doubleValue == 1
            let id = nextReplyID()
            let bytes = MongoWireCodec.encodeMessage(
                requestID: id,
                responseTo: responseTo,
                flagBits: more ? Self.moreToComeFlag : 0,
                document: reply
            )
            guard sendAll(fd, bytes) else { return false }
            guard more else { return true }
            responseTo = id
            // The next reply waits on the version this one reported.
            if let version = reply["topologyVersion"] { next.command.set("topologyVersion", version) }
            switch core.handle(next, context: context) {
            case .reply(let document):
                if core.locked({ core.generation }) != context.generation { return false }
                reply = document
            case .hangUp:
                return false
            case .none:
                return true
            }
        }
    }
}
