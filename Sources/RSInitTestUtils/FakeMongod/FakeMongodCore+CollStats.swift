import BSON

extension FakeMongodCore {
    /// `collStats` (what `db.getReplicationInfo()` and `rsinit doctor` read): `ns`, `count`, `size` (bytes of the
    /// documents), `avgObjSize`, `capped`; the oplog also reports `max`, its capacity in entries, because the double
    /// caps its oplog by entry count (a real oplog is capped by bytes and reports `maxSize`). A missing collection is
    /// 26 NamespaceNotFound.
    func collStats(_ command: BSONDocument, database: String) -> Result<BSONDocument, CommandFailure> {
        guard let key = command.firstKey, let name = command[key]?.stringValue else {
            return .failure(CommandFailure(code: 2, message: "collection name has invalid type"))
        }
        let namespace = "\(database).\(name)"
        let documents: [BSONDocument]
        if namespace == "local.oplog.rs" && oplogExists {
            documents = liveOplog.map(\.document)
        } else if let collection = collections[namespace] {
            documents = collection.documents
        } else {
            return .failure(CommandFailure(code: 26, message: "Collection [\(namespace)] not found."))
        }
        let size = documents.reduce(0) { $0 + $1.byteCount }
        var reply: BSONDocument = [
            "ns": .string(namespace), "size": .int64(Int64(size)), "count": .int64(Int64(documents.count)),
            "avgObjSize": .int64(documents.isEmpty ? 0 : Int64(size / documents.count)),
            "capped": .bool(namespace == "local.oplog.rs"),
        ]
        if namespace == "local.oplog.rs" { reply.append("max", .int64(Int64(configuration.oplogCapacity))) }
        return .success(reply)
    }
}
