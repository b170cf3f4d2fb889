import BSON
import Foundation
import Logging
import MongoCWrapper
import RSInitTestUtils
import Testing

/// One test per row of `mongod-behaviour.md` §14, asserting codes and texts through libmongoc 1.23.
@Suite struct ServerSemanticsFidelityTests {
    // §14.1
    @Test func standalone() async throws {
        let server = try startDouble(.standalone)
        defer { server.stop() }
        try await withClient(server) { client in
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["isWritablePrimary"] == true)
            #expect(hello["setName"] == nil)
            #expect(hello["isreplicaset"] == nil)
            let initiate = await commandError(client, ["replSetInitiate": [:]])
            #expect(initiate?.serverCode == 76)
            #expect(initiate?.codeName == "NoReplicationEnabled")
            #expect(initiate?.message == "This node was not started with replication enabled.")
            let status = await commandError(client, ["replSetGetStatus": 1])
            #expect(status?.serverCode == 76)
            #expect(status?.message == "not running with --replSet")
            #expect(await commandError(client, ["replSetGetConfig": 1])?.serverCode == 76)
        }
    }

    // §14.2
    @Test func uninitializedReplSetMember() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos"))
        defer { server.stop() }
        try await withClient(server) { client in
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["isWritablePrimary"] == false)
            #expect(hello["secondary"] == false)
            #expect(hello["info"] == "Does not have a valid replica set config")
            #expect(hello["isreplicaset"] == true)
            for absent in ["setName", "setVersion", "hosts", "me", "lastWrite", "topologyVersion"] {
                #expect(hello[absent] == nil, "\(absent)")
            }
            let legacy = try await client.runCommand(["isMaster": 1])
            #expect(legacy["ismaster"] == false)
            #expect(legacy["isWritablePrimary"] == nil)
            for name in ["replSetGetStatus", "replSetGetConfig"] {
                let error = await commandError(client, [name: 1])
                #expect(error?.serverCode == 94)
                #expect(error?.code == .notYetInitialized)
                #expect(error?.message == "no replset config has been received")
            }
            let write = await commandError(client, ["insert": "c", "documents": [["_id": 1]]], database: "app")
            #expect(write?.serverCode == 10107)
            #expect(write?.message == "not primary")
            // libmongoc adds $readPreference primaryPreferred in Single topology: a secondaryOk read → 13436.
            let read = await commandError(client, ["find": "c"], database: "app")
            #expect(read?.serverCode == 13436)
            #expect(read?.message == "node is not in primary or recovering state")
            for name in ["listDatabases", "dbStats"] {
                #expect(await commandError(client, [name: 1])?.serverCode == 13436)
            }
            _ = try await client.runCommand(["ping": 1])
        }
        // A primary read (no $readPreference) → 13435, which libmongoc never sends here: use the raw client.
        let port = server.port
        let reply = try await onDedicatedThread { try RawWireClient(port: port).command(["find": "c", "$db": "app"]) }
        #expect(reply?["code"] == .int32(13435))
        #expect(reply?["errmsg"] == "not primary and secondaryOk=false")
        #expect(reply?["codeName"] == "NotPrimaryNoSecondaryOk")
        #expect(reply?[path: "$clusterTime.clusterTime"] == .timestamp(BSONTimestamp(seconds: 0, increment: 0)))
    }

    // §14.3
    @Test func initiateWithAnEmptyConfigBuildsTheDefault() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) {
            $0.hostName = "c57886d0a663"
            $0.selfHostNames.append("c57886d0a663")
        }
        defer { server.stop() }
        try await withClient(server) { client in
            let reply = try await client.runCommand(["replSetInitiate": [:]])
            #expect(reply["info2"] == "no configuration specified. Using a default configuration for the set")
            #expect(reply["me"] == .string("c57886d0a663:\(server.port)"))
        }
        #expect(
            server.replicaSetConfig?["members"]?.arrayValue?.first?.documentValue?["host"]
                == .string("c57886d0a663:\(server.port)")
        )
    }

    struct InitiateRejection: Sendable, CustomTestStringConvertible {
        let name: String
        let config: @Sendable (UInt16) -> BSONDocument
        let code: Int32
        let message: @Sendable (UInt16) -> String
        var testDescription: String { name }
    }

    static let rejections: [InitiateRejection] = [
        .init(
            name: "set-name mismatch",
            config: { ["_id": "other", "members": [["_id": 0, "host": .string("127.0.0.1:\($0)")]]] },
            code: 93,
            message: { _ in
                "Rejecting initiate with a set name that differs from command line set name, initiate set name: other, command line set name: steedos"
            }
        ),
        .init(
            name: "version not 1",
            config: { ["_id": "steedos", "version": 2, "members": [["_id": 0, "host": .string("127.0.0.1:\($0)")]]] },
            code: 93,
            message: { _ in "Configuration used to initiate a replica set must  have version 1, but found 2" }
        ),
        .init(
            name: "no member maps to self",
            config: { _ in ["_id": "steedos", "members": [["_id": 0, "host": "mongodb:27017"]]] },
            code: 93,
            message: { _ in
                "No host described in new configuration with {version: 1, term: 0} for replica set steedos maps to this node"
            }
        ),
        .init(
            name: "two members map to self",
            config: {
                [
                    "_id": "steedos",
                    "members": [
                        ["_id": 0, "host": .string("127.0.0.1:\($0)")], ["_id": 1, "host": .string("localhost:\($0)")],
                    ],
                ]
            },
            code: 93,
            message: {
                "The hosts 127.0.0.1:\($0) and localhost:\($0) all map to this node in new configuration with {version: 1, term: 0} for replica set steedos"
            }
        ),
        .init(
            name: "mixed localhost and real hosts",
            config: {
                [
                    "_id": "steedos",
                    "members": [["_id": 0, "host": .string("127.0.0.1:\($0)")], ["_id": 1, "host": "mongo2:27017"]],
                ]
            },
            code: 93,
            message: { _ in
                "Either all host names in a replica set configuration must be localhost references, or none must be; found 1 out of 2"
            }
        ),
        .init(
            name: "self not electable",
            config: {
                ["_id": "steedos", "members": [["_id": 0, "host": .string("127.0.0.1:\($0)"), "priority": 0]]]
            },
            code: 93,
            message: {
                "This node, 127.0.0.1:\($0), with _id 0 is not electable under the new configuration with {version: 1, term: 0} for replica set steedos"
            }
        ),
        .init(
            name: "unreachable member",
            config: {
                [
                    "_id": "steedos",
                    "members": [["_id": 0, "host": .string("db1:\($0)")], ["_id": 1, "host": "db2:27017"]],
                ]
            },
            code: 74,
            message: { _ in
                "replSetInitiate quorum check failed because not all proposed set members responded affirmatively: db2:27017 failed with Error connecting to db2:27017 :: caused by :: Connection refused"
            }
        ),
        .init(
            name: "member not an object",
            config: { _ in ["_id": "steedos", "members": [.null]] },
            code: 93,
            message: { _ in "Expected type of members.0 to be Object, but found null" }
        ),
    ]

    @Test(arguments: rejections)
    func initiateValidation(_ rejection: InitiateRejection) async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) { $0.selfHostNames.append("db1") }
        defer { server.stop() }
        try await withClient(server) { client in
            let error = await commandError(client, ["replSetInitiate": .document(rejection.config(server.port))])
            #expect(error?.serverCode == rejection.code)
            #expect(error?.message == rejection.message(server.port))
        }
        #expect(server.phase == .uninitialized)
        #expect(server.acceptedInitiateCount == 0)
    }

    @Test func selfNotFoundIsDelayedLikeTheIsSelfSlowPath() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) { $0.selfNotFoundDelay = .milliseconds(300) }
        defer { server.stop() }
        try await withClient(server) { client in
            let start = ContinuousClock.now
            let error = await commandError(
                client,
                ["replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": "mongodb:27017"]]]]
            )
            #expect(error?.serverCode == 93)
            #expect(ContinuousClock.now - start >= .milliseconds(300))
        }
    }

    @Test func secondAndConcurrentInitiatesGet23() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos"), timings: .init(initiate: .milliseconds(200)))
        defer { server.stop() }
        let config: BSONDocument = [
            "replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": .string(server.hostAndPort)]]]
        ]
        async let first: MongoError? = withClient(server) { await commandError($0, config) }
        async let second: MongoError? = withClient(server) { client in
            try await Task.sleep(for: .milliseconds(50))
            return await commandError(client, config)
        }
        let results = try await [first, second]
        #expect(results.compactMap { $0 }.count == 1)
        let rejected = try #require(results.compactMap { $0 }.first)
        #expect(rejected.serverCode == 23)
        #expect(rejected.message == "already initialized")
        #expect(rejected.reply?["info"] == "try querying local.system.replset to see current configuration")
        #expect(server.acceptedInitiateCount == 1)
        try await withClient(server) { client in
            #expect(await commandError(client, config)?.code == .alreadyInitialized)
        }
    }

    // §14.4
    @Test func afterInitiateTheNodeWalksToAWritablePrimary() async throws {
        // Windows long enough for the polling below to see each state on a loaded machine (the suite runs tests in
        // parallel on two cores).
        let timings = FakeMongodConfiguration.Timings(
            startup2: .seconds(3),
            secondary: .seconds(2),
            drain: .seconds(3),
            initiate: .zero
        )
        let server = try startDouble(.uninitialized(setName: "steedos"), timings: timings)
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand([
                "replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": .string(server.hostAndPort)]]]
            ])
            // hello and replSetGetStatus are separate calls, so record each one's own sequence of states.
            var states: [Int64] = []
            var helloStates: [String] = []
            var drainHello: BSONDocument?
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let status = try await client.runCommand(["replSetGetStatus": 1])
                let hello = try await client.runCommand(["hello": 1])
                let state = status["myState"]!.int64Value!
                if states.last != state { states.append(state) }
                let label = "writable:\(hello["isWritablePrimary"] == true) secondary:\(hello["secondary"] == true)"
                if helloStates.last != label { helloStates.append(label) }
                if state == 1 && hello["isWritablePrimary"] == false {
                    drainHello = hello
                    let write = await commandError(client, ["insert": "c", "documents": [["a": 1]]], database: "app")
                    #expect(write?.serverCode == 10107)
                }
                if hello["isWritablePrimary"] == true { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            // STARTUP2 (5) → SECONDARY (2) → PRIMARY (1); hello: not writable → secondary (SECONDARY, then drain)
            // → writable.
            #expect(states == [5, 2, 1])
            #expect(
                helloStates == [
                    "writable:false secondary:false", "writable:false secondary:true", "writable:true secondary:false",
                ]
            )
            #expect(drainHello?["secondary"] == true)
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["setName"] == "steedos")
            #expect(hello["setVersion"] == .int32(1))
            #expect(hello["me"] == .string(server.hostAndPort))
            #expect(hello["primary"] == .string(server.hostAndPort))
            #expect(hello["hosts"] == .array([.string(server.hostAndPort)]))
            #expect(hello["electionId"] == .objectID(BSONObjectID(hex: "7fffffff0000000000000001")!))
            #expect(hello["topologyVersion"] == nil)
            let status = try await client.runCommand(["replSetGetStatus": 1])
            let me = status["members"]?.arrayValue?.first?.documentValue
            #expect(me?["self"] == true)
            #expect(me?["stateStr"] == "PRIMARY")
            #expect(status["term"] == .int64(1))
            let before = hello[path: "lastWrite.opTime.ts"]?.timestampValue
            _ = try await client.runCommand(["appendOplogNote": 1, "data": ["x": 1]])
            let after = try await client.runCommand(["hello": 1])[path: "lastWrite.opTime.ts"]?.timestampValue
            #expect(before != nil && after != nil && after! > before!)
        }
    }

    // §14.5
    @Test func oplogLifecycle() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) {
            $0.periodicNoopInterval = .milliseconds(100)
        }
        defer { server.stop() }
        try await withClient(server) { client in
            let cursor = try await client.find(database: "local", collection: "oplog.rs")
            #expect(try await cursor.next() == nil)
            await cursor.close()
            _ = try await client.runCommand([
                "replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": .string(server.hostAndPort)]]]
            ])
            #expect(await server.waitForPhase(.primary))
        }
        let entries = server.oplogEntries
        #expect(entries.first?[path: "o.msg"] == "initiating set")
        #expect(entries.first?["t"] == nil)
        #expect(entries.first?["v"] == .int64(2))
        #expect(entries[1][path: "o.msg"] == "new primary")
        #expect(entries[1]["t"] == .int64(1))
        #expect(entries.contains { $0["ns"] == "config.$cmd" && $0[path: "o.create"] == "transactions" })
        #expect(entries.contains { $0["ns"] == "admin.system.keys" && $0["op"] == "i" })
        // Idle primary: periodic no-ops, ~100 ms apart.
        _ = await eventually(within: .seconds(10)) {
            server.oplogEntries.filter { $0[path: "o.msg"] == "periodic noop" }.count >= 2
        }
        let noops = server.oplogEntries.filter { $0[path: "o.msg"] == "periodic noop" }
        #expect(noops.count >= 2)
        #expect(noops.allSatisfy { $0["op"] == "n" && $0["ns"] == "" && $0["t"] == .int64(1) })
    }

    @Test func periodicNoopOnlyWhenIdle() async throws {
        let server = try startDouble(.primary(setName: "rs0")) { $0.periodicNoopInterval = .seconds(1) }
        defer { server.stop() }
        try await withClient(server) { client in
            let deadline = ContinuousClock.now + .milliseconds(2500)
            var i: Int32 = 0
            while ContinuousClock.now < deadline {
                _ = try await client.runCommand(["insert": "busy", "documents": [["_id": .int32(i)]]], database: "app")
                i += 1
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(!server.oplogEntries.contains { $0[path: "o.msg"] == "periodic noop" }, "none while busy")
        // ... and one once idle (the name's other half): within a few intervals of the last write.
        let idleNoop = await eventually(within: .seconds(10), every: .milliseconds(100)) {
            server.oplogEntries.contains { $0[path: "o.msg"] == "periodic noop" }
        }
        #expect(idleNoop, "a periodic no-op once idle")
    }

    @Test func appendOplogNoteWritesData() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(["appendOplogNote": 1, "data": ["rsinit": "marker", "n": 7]])
        }
        let note = try #require(server.oplogEntries.last)
        #expect(note["op"] == "n")
        #expect(note["ns"] == "")
        #expect(note["o"] == ["rsinit": "marker", "n": 7])
        #expect(note["t"] == .int64(1))
    }

    @Test func userWritesProduceOplogEntriesWithSessionFields() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        let sessionID = BSONValue.binary(BSONBinary(subtype: 4, data: Array(repeating: 9, count: 16)))
        try await withClient(server) { client in
            _ = try await client.runCommand(
                [
                    "insert": "users", "documents": [["_id": "a", "n": 1], ["_id": "b", "n": 2]],
                    "lsid": ["id": sessionID],
                    "txnNumber": .int64(3),
                ],
                database: "company"
            )
            _ = try await client.runCommand(
                [
                    "update": "users",
                    "updates": [["q": ["_id": "a"], "u": ["$set": ["n": 5, "tags": ["x"]], "$unset": ["gone": 1]]]],
                ],
                database: "company"
            )
            _ = try await client.runCommand(
                ["update": "users", "updates": [["q": ["_id": "a"], "u": ["$push": ["tags": "y"]]]]],
                database: "company"
            )
            _ = try await client.runCommand(
                ["update": "users", "updates": [["q": ["_id": "b"], "u": ["fresh": true]]]],
                database: "company"
            )
            _ = try await client.runCommand(
                ["delete": "users", "deletes": [["q": ["_id": "b"], "limit": 1]]],
                database: "company"
            )
        }
        let entries = server.oplogEntries.filter { $0["ns"] == "company.users" }
        #expect(entries.map { $0["op"]!.stringValue! } == ["i", "i", "u", "u", "u", "d"])
        let first = entries[0]
        #expect(
            first.keys == [
                "lsid", "txnNumber", "op", "ns", "ui", "o", "o2", "stmtId", "ts", "t", "v", "wall", "prevOpTime",
            ]
        )
        #expect(first[path: "lsid.id"] == sessionID)
        #expect(first["txnNumber"] == .int64(3))
        #expect(first["stmtId"] == .int32(0))
        #expect(first["o2"] == ["_id": "a"])
        #expect(first["prevOpTime"] == ["ts": .timestamp(BSONTimestamp(seconds: 0, increment: 0)), "t": .int64(-1)])
        #expect(entries[1]["stmtId"] == .int32(1))
        #expect(entries[1][path: "prevOpTime.ts"] == first["ts"])
        #expect(entries[2]["lsid"] == nil)
        #expect(entries[2]["o"] == ["$v": 2, "diff": ["u": ["n": 5], "i": ["tags": ["x"]]]])
        #expect(entries[2]["o2"] == ["_id": "a"])
        #expect(entries[3]["o"] == ["$v": 2, "diff": ["stags": ["a": true, "u1": "y"]]])
        #expect(entries[4]["o"] == ["_id": "b", "fresh": true])
        #expect(entries[5]["o"] == ["_id": "b"])
        #expect(entries.allSatisfy { $0["ui"] == entries[0]["ui"] && $0["v"] == .int64(2) })
    }

    @Test func arrayDiffsCarryTruncationAndElementSubDiffs() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(
                ["insert": "c", "documents": [["_id": 1, "a": [["v": 1], ["v": 2], 3, 4]]]],
                database: "d"
            )
            _ = try await client.runCommand(
                ["update": "c", "updates": [["q": ["_id": 1], "u": ["_id": 1, "a": [["v": 1], ["v": 9], 30]]]]],
                database: "d"
            )
            _ = try await client.runCommand(
                ["update": "c", "updates": [["q": ["_id": 1], "u": ["$set": ["a.1.v": 10, "a.2": 31]]]]],
                database: "d"
            )
        }
        let updates = server.oplogEntries.filter { $0["op"] == "u" }
        #expect(updates[0]["o"] == ["_id": 1, "a": [["v": 1], ["v": 9], 30]])
        #expect(updates[1]["o"] == ["$v": 2, "diff": ["sa": ["a": true, "s1": ["u": ["v": 10]], "u2": 31]]])
        // A shrinking array through $set of the whole field: an `l` section.
        try await withClient(server) { client in
            _ = try await client.runCommand(
                ["update": "c", "updates": [["q": ["_id": 1], "u": ["$set": ["a": [["v": 1]]]]]]],
                database: "d"
            )
        }
        #expect(server.oplogEntries.last?["o"] == ["$v": 2, "diff": ["sa": ["a": true, "l": 1]]])
    }

    // §14.6
    @Test func removedMember() async throws {
        let server = try startDouble(.removed(setName: "steedos", storedHosts: ["old-host:27017"]))
        defer { server.stop() }
        try await withClient(server) { client in
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["isWritablePrimary"] == false)
            #expect(hello["isreplicaset"] == true)
            #expect(hello["info"] == "Does not have a valid replica set config")
            #expect(hello["setName"] == nil)
            let status = await commandError(client, ["replSetGetStatus": 1])
            #expect(status?.serverCode == 93)
            #expect(status?.message == "Our replica set config is invalid or we are not a member of it")
            #expect(status?.reply?["state"] == .int32(10))
            #expect(status?.reply?["stateStr"] == "REMOVED")
            let initiate = await commandError(
                client,
                ["replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": .string(server.hostAndPort)]]]]
            )
            #expect(initiate?.serverCode == 23)
            let config = try await client.runCommand(["replSetGetConfig": 1])
            #expect(config[path: "config.members"]?.arrayValue?.first?.documentValue?["host"] == "old-host:27017")
        }
    }

    @Test func restartWithAChangedHostnameGoesRemovedAndForceReconfigRepairs() async throws {
        let server = try startDouble(.primary(setName: "steedos", memberHost: "mongodb:27017")) {
            $0.selfHostNames = ["mongodb"]
            $0.port = 0
        }
        defer { server.stop() }
        // The stored host "mongodb:27017" only maps to self if the port matches; use the bound port instead.
        try await withClient(server) { client in
            _ = try await client.runCommand([
                "replSetReconfig": [
                    "_id": "steedos", "version": 2, "members": [["_id": 0, "host": .string("mongodb:\(server.port)")]],
                ], "force": true,
            ])
        }
        #expect(await server.waitForPhase(.primary))
        server.restart(selfHostNames: ["c57886d0a663"])
        #expect(server.phase == .removed)
        #expect(await server.waitUntilListening())
        try await withClient(server) { client in
            #expect(await commandError(client, ["replSetGetStatus": 1])?.serverCode == 93)
            _ = try await client.runCommand(
                [
                    "replSetReconfig": [
                        "_id": "steedos", "version": 3,
                        "members": [["_id": 0, "host": .string("c57886d0a663:\(server.port)")]],
                    ], "force": true,
                ])
        }
        #expect(await server.waitForPhase(.primary))
        let version = server.replicaSetConfig?["version"]?.int64Value ?? 0
        #expect(version > 10_000)
    }

    // §14.7
    @Test func authRequired() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) { $0.auth = .required }
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(["ping": 1])
            let error = await commandError(
                client,
                ["replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": .string(server.hostAndPort)]]]]
            )
            #expect(error?.serverCode == 13)
            #expect(error?.code == .unauthorized)
            #expect(error?.message == "command replSetInitiate requires authentication")
        }
        let uri = "mongodb://admin:wrong@127.0.0.1:\(server.port)/?directConnection=true&serverSelectionTimeoutMS=2000"
        try await withClient(server, uri: uri) { client in
            let error = await commandError(client, ["ping": 1])
            #expect(error?.code == .authenticationFailed)
            #expect(error?.description.contains("wrong") == false)
        }
    }

    // §14.8
    @Test func restartKeepsDataAndComesBackPrimary() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(["insert": "c", "documents": [["_id": 1]]], database: "app")
            server.restart(downtime: .milliseconds(100))
            #expect(await server.waitUntilListening())
            // The old socket is gone: the next command fails or reconnects; keep trying briefly.
            var reply: BSONDocument?
            for _ in 0..<50 {
                if let r = try? await client.runCommand(["hello": 1]), r["isWritablePrimary"] == true {
                    reply = r
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(reply?["isWritablePrimary"] == true)
            #expect(reply?["electionId"] == .objectID(BSONObjectID(hex: "7fffffff0000000000000002")!))
            let legacy = try await client.runCommand(["isMaster": 1])
            #expect(legacy["ismaster"] == true)
        }
        #expect(server.documents(in: "app.c").count == 1)
    }

    // §14.9
    @Test func cursorFailuresOnDemand() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let cursor = try await client.find(
                database: "local",
                collection: "oplog.rs",
                filter: [:],
                options: ["tailable": true, "awaitData": true, "maxAwaitTimeMS": 100]
            )
            while try await cursor.next() != nil {}
            server.failNextGetMore(
                code: 136,
                message: "CollectionScan died due to position in capped collection being deleted."
            )
            let error = await #expect(throws: MongoError.self) { _ = try await cursor.next() }
            #expect(error?.code == .cappedPositionLost)
            await cursor.close()
            let second = try await client.find(
                database: "local",
                collection: "oplog.rs",
                filter: [:],
                options: ["tailable": true, "awaitData": true, "maxAwaitTimeMS": 2000]
            )
            while try await second.next() != nil {}
            server.hangUpNextGetMore()
            let hangUp = await #expect(throws: MongoError.self) { _ = try await second.next() }
            #expect(hangUp?.code == .network)
            await second.close()
        }
    }

    @Test func realTruncationPastATailingCursorGives136() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let cursor = try await client.find(
                database: "local",
                collection: "oplog.rs",
                filter: [:],
                options: ["tailable": true, "awaitData": true, "maxAwaitTimeMS": 100, "batchSize": 1]
            )
            _ = try await cursor.next()
            for i in 0..<5 { server.appendOplogEntry(["op": "n", "ns": "", "o": ["i": .int32(Int32(i))]]) }
            server.truncateOplog(keepingLast: 2)
            var failure: MongoError?
            do { while try await cursor.next() != nil {} } catch let error as MongoError { failure = error }
            #expect(failure?.serverCode == 136)
            #expect(
                failure?.message.hasPrefix("CollectionScan died due to position in capped collection being deleted.")
                    == true
            )
            // A find from before the oldest entry starts at the oldest entry.
            let fresh = try await client.find(
                database: "local",
                collection: "oplog.rs",
                filter: ["ts": ["$gte": .timestamp(BSONTimestamp(seconds: 0, increment: 0))]]
            )
            let first = try await fresh.next()
            #expect(first?["ts"] == server.oplogEntries.first?["ts"])
            await fresh.close()
            await cursor.close()
        }
    }
}
