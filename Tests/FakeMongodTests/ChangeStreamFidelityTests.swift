import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

/// The double's change streams (change-streams.md §9) through libmongoc 1.23's own `mongoc_*_watch`.
@Suite struct ChangeStreamFidelityTests {
    static let specUUID: [UInt8] = Array(
        HexBytes("5F9B8C3E1A2B4C3D8E4F0123456789AB")
    )

    // §9.7, §5, Appendix A: the spec's own vectors, byte for byte.
    @Test func tokenEncoderReproducesTheSpecVectors() throws {
        let hwm = ChangeStreamResumeToken.highWaterMark(BSONTimestamp(seconds: 1_700_000_000, increment: 18))
        #expect(hwm.data == "826553F100000000122B0429296E1404")
        let id = try #require(BSONObjectID(hex: "6553f1000000000000000001"))
        let insert = ChangeStreamResumeToken(
            clusterTime: BSONTimestamp(seconds: 1_700_000_000, increment: 10),
            tokenType: .event,
            collectionUUID: Self.specUUID,
            eventIdentifier: ["operationType": "insert", "documentKey": ["_id": .objectID(id)]]
        )
        #expect(
            insert.data
                == "826553F1000000000A2B042C0100296E5A10045F9B8C3E1A2B4C3D8E4F0123456789AB463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F696400646553F1000000000000000001000004"
        )
        var drop = ChangeStreamResumeToken(
            clusterTime: BSONTimestamp(seconds: 1_700_000_000, increment: 15),
            tokenType: .event,
            collectionUUID: Self.specUUID,
            eventIdentifier: ["operationType": "drop"]
        )
        #expect(
            drop.data
                == "826553F1000000000F2B042C0100296E5A10045F9B8C3E1A2B4C3D8E4F0123456789AB463C6F7065726174696F6E54797065003C64726F70000004"
        )
        drop.fromInvalidate = true
        #expect(
            drop.data
                == "826553F1000000000F2B042C0100296F5A10045F9B8C3E1A2B4C3D8E4F0123456789AB463C6F7065726174696F6E54797065003C64726F70000004"
        )
        let dropDatabase = ChangeStreamResumeToken(
            clusterTime: BSONTimestamp(seconds: 1_700_000_000, increment: 17),
            tokenType: .event,
            eventIdentifier: ["operationType": "dropDatabase"]
        )
        #expect(
            dropDatabase.data
                == "826553F100000000112B042C0100296E14463C6F7065726174696F6E54797065003C64726F704461746162617365000004"
        )
        // The prefix decodes back; garbage does not.
        let decoded = try #require(ChangeStreamResumeToken.decode(data: drop.data))
        #expect(decoded.clusterTime == drop.clusterTime)
        #expect(decoded.fromInvalidate && decoded.tokenType == .event && decoded.collectionUUID == Self.specUUID)
        #expect(ChangeStreamResumeToken.decode(hwm.document)?.tokenType == .highWaterMark)
        // A large txnOpIndex and a long event identifier: the prefix and the UUID still decode.
        let deep = ChangeStreamResumeToken(
            clusterTime: BSONTimestamp(seconds: 1, increment: 2),
            tokenType: .event,
            txnOpIndex: 1 << 40,
            collectionUUID: Self.specUUID,
            eventIdentifier: [
                "operationType": "insert", "documentKey": ["_id": .string(String(repeating: "k", count: 300))],
            ]
        )
        let decodedDeep = try #require(ChangeStreamResumeToken.decode(data: deep.data))
        #expect(decodedDeep.txnOpIndex == 1 << 40 && decodedDeep.collectionUUID == Self.specUUID)
        for bad in ["", "82", "zz", "826553F100000000122B", "016553F100000000122B0429296E1404"] {
            #expect(ChangeStreamResumeToken.decode(data: bad) == nil, "\(bad)")
        }
        // Ordering (§5): delete@13 < HWM@14 < txn op0@14 < op1@14 < drop@15 < invalidate@15.
        func event(_ i: UInt32, _ op: Int = 0) -> String {
            ChangeStreamResumeToken(
                clusterTime: BSONTimestamp(seconds: 1_700_000_000, increment: i),
                tokenType: .event,
                txnOpIndex: op,
                collectionUUID: Self.specUUID,
                eventIdentifier: ["operationType": "insert"]
            ).data
        }
        let hwm14 = ChangeStreamResumeToken.highWaterMark(BSONTimestamp(seconds: 1_700_000_000, increment: 14)).data
        #expect(event(13) < hwm14 && hwm14 < event(14) && event(14) < event(14, 1) && event(14, 127) < event(14, 128))
    }

    @Test func collectionStreamDeliversEveryEventKindThenInvalidates() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in try await Self.collectionScenario(client) }
    }

    static func collectionScenario(_ client: MongoClient) async throws {
        _ = try await client.runCommand(["insert": "coll", "documents": [["_id": 0]]], database: "db")
        let stream = try await client.watch(
            .collection(database: "db", collection: "coll"),
            options: ChangeStreamOptions(fullDocument: "updateLookup", maxAwaitTimeMS: 200)
        )
        _ = try await client.runCommand(["insert": "coll", "documents": [["_id": 1, "a": 1]]], database: "db")
        _ = try await client.runCommand(
            ["update": "coll", "updates": [["q": ["_id": 1], "u": ["$set": ["a": 2, "b.c": 3]]]]],
            database: "db"
        )
        _ = try await client.runCommand(
            ["update": "coll", "updates": [["q": ["_id": 1], "u": ["z": 1]]]],
            database: "db"
        )
        _ = try await client.runCommand(
            ["delete": "coll", "deletes": [["q": ["_id": 1], "limit": 1]]],
            database: "db"
        )
        _ = try await client.runCommand(["insert": "other", "documents": [["_id": 9]]], database: "db")
        _ = try await client.runCommand(["drop": "coll"], database: "db")
        let events = try await Self.drain(stream, count: 6)
        #expect(
            events.map { $0["operationType"]?.stringValue } == [
                "insert", "update", "replace", "delete", "drop", "invalidate",
            ]
        )
        #expect(events[0]["fullDocument"] == ["_id": 1, "a": 1])
        #expect(events[0]["ns"] == ["db": "db", "coll": "coll"])
        #expect(events[0]["documentKey"] == ["_id": 1])
        let description = try #require(events[1]["updateDescription"]?.documentValue)
        #expect(description["updatedFields"]?.documentValue?.keys.sorted() == ["a", "b"])
        #expect(description["removedFields"] == .array([]))
        #expect(description["truncatedArrays"] == .array([]))
        #expect(description["disambiguatedPaths"] == nil)
        #expect(events[1]["collectionUUID"] == nil)
        // updateLookup: the current document (already replaced, so `z`), null once deleted (§3.2).
        #expect(events[1]["fullDocument"] != nil)
        #expect(events[2]["fullDocument"] == ["_id": 1, "z": 1])
        #expect(events[3]["fullDocument"] == nil)
        #expect(events[4]["ns"] == ["db": "db", "coll": "coll"])
        #expect(events[5]["ns"] == nil)
        // Tokens are v2, increase, and the invalidate is the drop's token with fromInvalidate.
        let tokens = events.compactMap { $0[path: "_id._data"]?.stringValue }
        #expect(tokens == tokens.sorted() && Set(tokens).count == tokens.count)
        let drop = try #require(ChangeStreamResumeToken.decode(data: tokens[4]))
        let invalidate = try #require(ChangeStreamResumeToken.decode(data: tokens[5]))
        #expect(!drop.fromInvalidate && invalidate.fromInvalidate && drop.clusterTime == invalidate.clusterTime)
        // §6.3: after the invalidate, the next call ends quietly; the one after resumes with resumeAfter, which
        // the server refuses (260).
        #expect(try await stream.next() == nil)
        let refused1 = await failure {
            _ = try await stream.next()
        }
        #expect(refused1?.serverCode == 260)
        await stream.close()
        // startAfter the invalidate opens a new stream past it.
        let after = try await client.watch(
            .collection(database: "db", collection: "coll"),
            options: ChangeStreamOptions(startAfter: ["_data": .string(tokens[5])], maxAwaitTimeMS: 200)
        )
        _ = try await client.runCommand(["insert": "coll", "documents": [["_id": 2]]], database: "db")
        let again = try await Self.drain(after, count: 1)
        #expect(again.first?["documentKey"] == ["_id": 2])
        await after.close()
    }

    @Test func databaseAndClusterScopes() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let database = try await client.watch(.database("db"), options: ChangeStreamOptions(maxAwaitTimeMS: 200))
            let cluster = try await client.watch(.cluster, options: ChangeStreamOptions(maxAwaitTimeMS: 200))
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 1]]], database: "db")
            _ = try await client.runCommand(["insert": "b", "documents": [["_id": 2]]], database: "db2")
            _ = try await client.runCommand(["insert": "c", "documents": [["_id": 3]]], database: "admin")
            _ = try await client.runCommand(["dropDatabase": 1], database: "db")
            _ = try await client.runCommand(["insert": "d", "documents": [["_id": 4]]], database: "db2")
            let databaseEvents = try await Self.drain(database, count: 4)
            #expect(
                databaseEvents.map { $0["operationType"]?.stringValue } == [
                    "insert", "drop", "dropDatabase", "invalidate",
                ]
            )
            #expect(databaseEvents[2]["ns"] == ["db": "db"])
            let clusterEvents = try await Self.drain(cluster, count: 5)
            #expect(
                clusterEvents.map { $0["operationType"]?.stringValue }
                    == ["insert", "insert", "drop", "dropDatabase", "insert"]
            )
            #expect(clusterEvents.map { $0[path: "ns.db"]?.stringValue } == ["db", "db2", "db", "db", "db2"])
            await database.close()
            await cluster.close()
        }
    }

    // §9.2, §9.1, §9.3: ns, PBRT in every reply, awaitData expiry is an empty ok:1 batch; HWM moves on no-ops.
    @Test func repliesCarryNamespaceAndPostBatchResumeToken() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let reply = try await client.runCommand(
                ["aggregate": 1, "pipeline": [["$changeStream": ["allChangesForCluster": true]]], "cursor": [:]]
            )
            #expect(reply[path: "cursor.ns"] == "admin.$cmd.aggregate")
            let initial = try #require(reply[path: "cursor.postBatchResumeToken"]?.documentValue)
            let decoded = try #require(ChangeStreamResumeToken.decode(initial))
            #expect(decoded.tokenType == .highWaterMark)
            #expect(decoded.clusterTime > server.lastOplogTimestamp)
            let id = try #require(reply[path: "cursor.id"]?.int64Value)
            server.appendOplogEntry(["op": "n", "ns": "", "o": ["msg": "periodic noop"]])
            let started = ContinuousClock.now
            let more = try await client.runCommand(
                ["getMore": .int64(id), "collection": "$cmd.aggregate", "maxTimeMS": .int64(300)]
            )
            #expect(ContinuousClock.now - started >= .milliseconds(250))  // the no-op did not end the wait
            #expect(more[path: "cursor.nextBatch"] == .array([]))
            let moved = try #require(more[path: "cursor.postBatchResumeToken"]?.documentValue)
            #expect(ChangeStreamResumeToken.decode(moved)?.clusterTime == server.lastOplogTimestamp)
            let collection = try await client.runCommand(
                ["aggregate": "coll", "pipeline": [["$changeStream": [:]]], "cursor": [:]],
                database: "db"
            )
            #expect(collection[path: "cursor.ns"] == "db.coll")
            // §9.9, §9.5: strict IDL and option conflicts.
            let unknown = await commandError(
                client,
                ["aggregate": "coll", "pipeline": [["$changeStream": [:]]], "cursor": [:], "showExpandedEvents": true],
                database: "db"
            )
            #expect(unknown?.serverCode == 40415)
            let both = await commandError(
                client,
                [
                    "aggregate": "coll",
                    "pipeline": [
                        ["$changeStream": ["resumeAfter": .document(initial), "startAfter": .document(initial)]]
                    ],
                    "cursor": [:],
                ],
                database: "db"
            )
            #expect(both?.serverCode == 50865)
            let mixed = await commandError(
                client,
                [
                    "aggregate": "coll",
                    "pipeline": [
                        [
                            "$changeStream": [
                                "resumeAfter": .document(initial),
                                "startAtOperationTime": .timestamp(decoded.clusterTime),
                            ]
                        ]
                    ],
                    "cursor": [:],
                ],
                database: "db"
            )
            #expect(mixed?.serverCode == 40674)
        }
    }

    // §3.2: without updateLookup an update carries only updateDescription.
    @Test func updatesCarryNoDocumentWithoutUpdateLookup() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let stream = try await client.watch(.database("db"), options: ChangeStreamOptions(maxAwaitTimeMS: 200))
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 1, "x": 1]]], database: "db")
            _ = try await client.runCommand(
                ["update": "a", "updates": [["q": ["_id": 1], "u": ["$inc": ["x": 1]]]]],
                database: "db"
            )
            let events = try await Self.drain(stream, count: 2)
            #expect(events.map { $0["operationType"] } == ["insert", "update"])
            #expect(events.last?["fullDocument"] == nil)
            #expect(events.last?[path: "updateDescription.updatedFields"] == ["x": 2])
            await stream.close()
        }
    }

    @Test func standaloneRefusesChangeStreams() async throws {
        let server = try startDouble(.standalone)
        defer { server.stop() }
        _ = try await withClient(server) { client in
            let refused2 = await failure {
                _ = try await client.watch(.collection(database: "db", collection: "coll"))
            }
            #expect(refused2?.serverCode == 40573)
        }
    }

    // §9.4, §6.2: a labelled error and a hang-up are resumed by libmongoc without loss or repeat; an unlabelled
    // one reaches the caller.
    @Test func resumableErrorsResumeAndOthersSurface() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let stream = try await client.watch(.database("db"), options: ChangeStreamOptions(maxAwaitTimeMS: 200))
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 1]]], database: "db")
            #expect(try await Self.drain(stream, count: 1).count == 1)
            server.hangUpNextGetMore()
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 2]]], database: "db")
            server.failNextChangeStreamGetMore(code: 10107, message: "not primary", resumable: true)
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 3]]], database: "db")
            let resumed = try await Self.drain(stream, count: 2)
            #expect(resumed.map { $0[path: "documentKey._id"] } == [2, 3])
            server.failNextChangeStreamGetMore(code: 10107, message: "not primary", resumable: false)
            let refused3 = await failure {
                _ = try await Self.drain(stream, count: 1)
            }
            #expect(refused3?.serverCode == 10107)
            await stream.close()
        }
    }

    // §9.5: 286 when the oplog no longer reaches back, 280 for an event that is not there, 260 for resumeAfter an
    // invalidate.
    @Test func unresumablePositions() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let stream = try await client.watch(.database("db"), options: ChangeStreamOptions(maxAwaitTimeMS: 200))
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 1]]], database: "db")
            let first = try #require(try await Self.drain(stream, count: 1).first?["_id"]?.documentValue)
            await stream.close()
            // Resuming from the event itself works (and starts after it).
            _ = try await client.runCommand(["insert": "a", "documents": [["_id": 2]]], database: "db")
            let resumed = try await client.watch(
                .database("db"),
                options: ChangeStreamOptions(resumeAfter: first, maxAwaitTimeMS: 200)
            )
            #expect(try await Self.drain(resumed, count: 1).first?[path: "documentKey._id"] == 2)
            await resumed.close()
            // A token naming an event that never happened: 280.
            var forged = try #require(ChangeStreamResumeToken.decode(first))
            forged.eventIdentifier = ["operationType": "insert", "documentKey": ["_id": 42]]
            let forgedToken = forged.document
            let refused4 = await failure {
                _ = try await client.watch(.database("db"), options: ChangeStreamOptions(resumeAfter: forgedToken))
            }
            #expect(refused4?.serverCode == 280)
            server.truncateOplog(keepingLast: 1)
            let lost = await failure {
                _ = try await client.watch(.database("db"), options: ChangeStreamOptions(resumeAfter: first))
            }
            #expect(lost?.serverCode == 286 && lost?.code == .changeStreamHistoryLost)
        }
    }

    // §9.8, §7.4: one clusterTime (the commit's) for every operation, txnOpIndex counting up, lsid and txnNumber.
    @Test func transactionsShareTheCommitClusterTime() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let stream = try await client.watch(.cluster, options: ChangeStreamOptions(maxAwaitTimeMS: 200))
            let uuid = BSONBinary(subtype: 4, data: Array(repeating: 7, count: 16))
            let lsid: BSONDocument = ["id": .binary(BSONBinary(subtype: 4, data: Array(repeating: 1, count: 16)))]
            let commit = server.appendOplogEntry([
                "lsid": .document(lsid), "txnNumber": .int64(5), "op": "c", "ns": "admin.$cmd",
                "o": [
                    "applyOps": [
                        ["op": "i", "ns": "db.a", "ui": .binary(uuid), "o": ["_id": 1]],
                        ["op": "i", "ns": "local.x", "ui": .binary(uuid), "o": ["_id": 2]],
                        ["op": "d", "ns": "db.a", "ui": .binary(uuid), "o": ["_id": 1]],
                    ]
                ],
            ])
            let events = try await Self.drain(stream, count: 2)
            #expect(events.map { $0["clusterTime"]?.timestampValue } == [commit, commit])
            #expect(events.map { $0["txnNumber"] } == [.int64(5), .int64(5)])
            #expect(events.map { $0["lsid"] } == [.document(lsid), .document(lsid)])
            let indexes = events.compactMap { $0[path: "_id._data"]?.stringValue }.compactMap {
                ChangeStreamResumeToken.decode(data: $0)?.txnOpIndex
            }
            #expect(indexes == [0, 2])  // the filtered-out local operation still counts
            await stream.close()
        }
    }

    /// Reads `count` events, calling `next()` through empty getMores, for at most 10 s.
    static func drain(_ stream: MongoChangeStream, count: Int) async throws -> [BSONDocument] {
        var events: [BSONDocument] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while events.count < count && ContinuousClock.now < deadline {
            if let event = try await stream.next() { events.append(event) }
        }
        return events
    }
}

/// The MongoError `body` throws, or nil.
private func failure(_ body: @Sendable () async throws -> Void) async -> MongoError? {
    do {
        try await body()
        return nil
    } catch {
        return error as? MongoError
    }
}

private func HexBytes(_ hex: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return bytes
}
