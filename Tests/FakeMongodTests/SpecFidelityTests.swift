import BSON
import Foundation
import MongoCWrapper
import RSInitTestUtils
import Testing

/// Issue 15: every field the spec lists, per reply and state, through libmongoc.
@Suite struct SpecFidelityTests {
    /// The shared shape checks (also run against a real mongod) find nothing on any scenario of the double.
    @Test(
        arguments: [
            FakeMongodConfiguration.Scenario.standalone, .uninitialized(setName: "steedos"),
            .primary(setName: "steedos"), .removed(setName: "steedos", storedHosts: ["old-hostname:27017"]),
        ]
    )
    func theSpecShapeHoldsOnEveryScenario(_ scenario: FakeMongodConfiguration.Scenario) async throws {
        let server = try startDouble(scenario)
        defer { server.stop() }
        try await withClient(server) { client in
            let differences = await SpecShape.probe(client)
            #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
        }
    }

    // Item 1 / §4: replSetGetStatus in every state that answers it, after a real initiate.
    @Test func replSetGetStatusInEveryStateAfterInitiate() async throws {
        let timings = FakeMongodConfiguration.Timings(
            startup2: .seconds(4),
            secondary: .seconds(3),
            drain: .seconds(3),
            initiate: .zero
        )
        let server = try startDouble(.uninitialized(setName: "steedos"), timings: timings) {
            $0.reachablePeers = ["127.0.0.1:1", "127.0.0.1:2"]
        }
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand([
                "replSetInitiate": [
                    "_id": "steedos",
                    "members": [
                        ["_id": 0, "host": .string(server.hostAndPort)], ["_id": 1, "host": "127.0.0.1:1"],
                        ["_id": 2, "host": "127.0.0.1:2", "votes": 0, "priority": 0],
                    ],
                ]
            ])
            var seen: Set<Int64> = []
            var configTerms: [Int64: Int64] = [:]
            var sawDrainWithoutDates = false
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                // hello first: a node writable then is still writable (with the drain's dates) when status answers.
                let hello = try await client.runCommand(["hello": 1])
                let status = try await client.runCommand(["replSetGetStatus": 1])
                let state = try #require(status["myState"]?.int64Value)
                let differences = SpecShape.statusDifferences(status)
                #expect(differences.isEmpty, "state \(state): \(differences)")
                let metrics = status["electionCandidateMetrics"]?.documentValue
                if state == 1 {
                    #expect(metrics?["lastElectionReason"] == "electionTimeout")
                    #expect(metrics?["electionTerm"] == .int64(1))
                    #expect(metrics?["numVotesNeeded"] == .int32(2))
                    #expect(metrics?["priorityAtElection"] == .double(1))
                    #expect(metrics?[path: "lastCommittedOpTimeAtElection.t"] == .int64(-1))
                    #expect(metrics?[path: "lastSeenOpTimeAtElection.t"] == .int64(-1))
                    // newTermStartDate and wMajorityWriteAvailabilityDate exist once the drain is over.
                    if hello["isWritablePrimary"] == true {
                        #expect(metrics?["newTermStartDate"] != nil)
                        #expect(metrics?["wMajorityWriteAvailabilityDate"] != nil)
                    } else if hello["secondary"] == true && hello["primary"] != nil {
                        sawDrainWithoutDates = sawDrainWithoutDates || metrics?["newTermStartDate"] == nil
                    }
                } else {
                    #expect(metrics == nil)
                }
                #expect(status["votingMembersCount"] == .int32(2))
                #expect(status["majorityVoteCount"] == .int32(2))
                let members = status["members"]?.arrayValue?.compactMap(\.documentValue) ?? []
                #expect(members.count == 3)
                #expect(members.last?["stateStr"] == "SECONDARY")
                #expect(members.last?["optimeDurable"] == members.last?["optime"])
                configTerms[state] = try await client.runCommand(["replSetGetConfig": 1])[path: "config.term"]?
                    .int64Value
                seen.insert(state)
                if hello["isWritablePrimary"] == true { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(seen == [5, 2, 1])
            // In drain mode (hello: secondary, with a primary) the new term has not started yet.
            #expect(sawDrainWithoutDates)
            // Item 2 / §5: the config's term is 0 before the first election and 1 after it.
            #expect(configTerms[5] == 0)
            #expect(configTerms[1] == 1)
            let status = try await client.runCommand(["replSetGetStatus": 1])
            let me = try #require(status["members"]?.arrayValue?.first?.documentValue)
            // The optimes and the member's op time are the newest entry's; the wall times its `wall`.
            let newest = try #require(server.oplogEntries.last)
            #expect(me["optime"] == ["ts": newest["ts"]!, "t": newest["t"]!])
            #expect(me["lastAppliedWallTime"] == newest["wall"])
            #expect(status[path: "optimes.lastAppliedWallTime"] == newest["wall"])
            #expect(status[path: "optimes.appliedOpTime"] == me["optime"])
            #expect(me["electionDate"] == status[path: "electionCandidateMetrics.lastElectionDate"])
        }
    }

    // §2.2 D: hosts / passives / arbiters (hidden members in none), and self's member options.
    @Test func helloListsMembersByKindAndSelfsOptions() async throws {
        let server = try startDouble(.uninitialized(setName: "steedos")) {
            $0.reachablePeers = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        }
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand([
                "replSetInitiate": [
                    "_id": "steedos",
                    "members": [
                        ["_id": 0, "host": .string(server.hostAndPort)],
                        ["_id": 1, "host": "127.0.0.1:1", "priority": 0],
                        ["_id": 2, "host": "127.0.0.1:2", "arbiterOnly": true],
                        ["_id": 3, "host": "127.0.0.1:3", "priority": 0, "hidden": true],
                    ],
                ]
            ])
            #expect(await server.waitForPhase(.primary))
            let hello = try await client.runCommand(["hello": 1])
            #expect(hello["hosts"] == [.string(server.hostAndPort)])
            #expect(hello["passives"] == ["127.0.0.1:1"])
            #expect(hello["arbiters"] == ["127.0.0.1:2"])
            for absent in ["passive", "hidden", "tags", "secondaryDelaySecs"] { #expect(hello[absent] == nil) }
            // A forced reconfig gives self tags, a delay and priority 0 (not electable: the double keeps serving;
            // only the hello fields are checked).
            _ = try await client.runCommand([
                "replSetReconfig": [
                    "_id": "steedos", "version": 2,
                    "members": [
                        [
                            "_id": 0, "host": .string(server.hostAndPort), "priority": 0, "hidden": true,
                            "secondaryDelaySecs": .int64(5), "tags": ["dc": "east"],
                        ]
                    ],
                ],
                "force": true,
            ])
            let options = try await client.runCommand(["hello": 1])
            #expect(options["passive"] == true)
            #expect(options["hidden"] == true)
            #expect(options["secondaryDelaySecs"] == .int64(5))
            #expect(options["tags"] == ["dc": "east"])
            let legacy = try await client.runCommand(["isMaster": 1])
            #expect(legacy["slaveDelay"] == .int64(5))
            #expect(legacy["secondaryDelaySecs"] == nil)
        }
    }

    // §5: commitmentStatus only on a writable primary.
    @Test func commitmentStatusOnlyOnAWritablePrimary() async throws {
        let primary = try startDouble(.primary(setName: "rs0"))
        defer { primary.stop() }
        try await withClient(primary) { client in
            let reply = try await client.runCommand(["replSetGetConfig": 1, "commitmentStatus": true])
            #expect(reply["commitmentStatus"] == true)
            #expect(reply[path: "config.term"] == .int32(1))
        }
        let starting = try startDouble(
            .uninitialized(setName: "steedos"),
            timings: .init(startup2: .seconds(30), initiate: .zero)
        )
        defer { starting.stop() }
        try await withClient(starting) { client in
            _ = try await client.runCommand([
                "replSetInitiate": ["_id": "steedos", "members": [["_id": 0, "host": .string(starting.hostAndPort)]]]
            ])
            let error = await commandError(client, ["replSetGetConfig": 1, "commitmentStatus": true])
            #expect(error?.serverCode == 10107)
            #expect(error?.message == "commitmentStatus is only supported on primary.")
            let plain = try await client.runCommand(["replSetGetConfig": 1])
            #expect(plain["commitmentStatus"] == nil)
            #expect(plain[path: "config.term"] == .int32(0))
        }
    }

    // Item 3 / §9.1, §9.2: the history a primary or REMOVED node starts with.
    @Test(
        arguments: [
            FakeMongodConfiguration.Scenario.primary(setName: "steedos"),
            .removed(setName: "steedos", storedHosts: ["old-hostname:27017"]),
        ]
    )
    func startingOplogHistory(_ scenario: FakeMongodConfiguration.Scenario) async throws {
        let server = try startDouble(scenario)
        defer { server.stop() }
        let entries = try await withClient(server) { client -> [BSONDocument] in
            let cursor = try await client.find(database: "local", collection: "oplog.rs")
            var entries: [BSONDocument] = []
            while let entry = try await cursor.next() { entries.append(entry) }
            await cursor.close()
            return entries
        }
        #expect(entries == server.oplogEntries)
        try #require(entries.count == 13)
        #expect(entries[0]["op"] == "n" && entries[0][path: "o.msg"] == "initiating set")
        #expect(entries[0]["t"] == nil)
        #expect(entries[1][path: "o.msg"] == "new primary")
        #expect(entries[1]["t"] == .int64(1))
        let configCreates = entries.filter { $0["ns"] == "config.$cmd" && $0[path: "o.create"] != nil }
        #expect(
            configCreates.compactMap { $0[path: "o.create"]?.stringValue } == [
                "transactions", "image_collection", "system.indexBuilds", "system.preimages",
                "analyzeShardKeySplitPoints", "sampledQueries", "sampledQueriesDiff",
            ]
        )
        let index = try #require(entries.first { $0[path: "o.createIndexes"] == "transactions" })
        #expect(index["ns"] == "config.$cmd")
        #expect(index[path: "o.name"] == "parent_lsid")
        #expect(index["ui"] == configCreates.first?["ui"])
        let keys = entries.suffix(3)
        #expect(keys.first?["ns"] == "admin.$cmd" && keys.first?[path: "o.create"] == "system.keys")
        #expect(keys.dropFirst().allSatisfy { $0["ns"] == "admin.system.keys" && $0["op"] == "i" })
        #expect(keys.dropFirst().allSatisfy { $0[path: "o.purpose"] == "HMAC" && $0["ui"] == keys.first?["ui"] })
        #expect(entries.dropFirst().allSatisfy { $0["t"] == .int64(1) && $0["v"] == .int64(2) && $0["wall"] != nil })
        let timestamps = entries.compactMap { $0["ts"]?.timestampValue }
        #expect(timestamps == timestamps.sorted() && Set(timestamps).count == timestamps.count)
    }

    // Item 4 / §11.2: write replies on a member carry opTime and electionId; a standalone's do not.
    @Test func writeRepliesCarryOpTimeAndElectionId() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let insert = try await client.runCommand(["insert": "c", "documents": [["_id": 1]]], database: "app")
            #expect(insert["n"] == .int32(1))
            #expect(insert["electionId"] == .objectID(BSONObjectID(hex: "7fffffff0000000000000001")!))
            #expect(insert["opTime"] == ["ts": .timestamp(server.lastOplogTimestamp), "t": .int64(1)])
            let update = try await client.runCommand(
                ["update": "c", "updates": [["q": ["_id": 1], "u": ["$set": ["a": 1]]]]],
                database: "app"
            )
            #expect(update["nModified"] == .int32(1))
            #expect(update["opTime"] == ["ts": .timestamp(server.lastOplogTimestamp), "t": .int64(1)])
            #expect(update["electionId"] != nil)
            let delete = try await client.runCommand(
                ["delete": "c", "deletes": [["q": ["_id": 1], "limit": 1]]],
                database: "app"
            )
            #expect(delete["n"] == .int32(1))
            #expect(delete["opTime"] == ["ts": .timestamp(server.lastOplogTimestamp), "t": .int64(1)])
        }
        let standalone = try startDouble(.standalone)
        defer { standalone.stop() }
        try await withClient(standalone) { client in
            let insert = try await client.runCommand(["insert": "c", "documents": [["_id": 1]]], database: "app")
            #expect(insert["opTime"] == nil)
            #expect(insert["electionId"] == nil)
        }
    }

    // Item 5 / §14.12 through libmongoc.
    @Test func commandNamesAreMatchedExactly() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            let isMaster = try await client.runCommand(["isMaster": 1])
            #expect(isMaster["ismaster"] == true)
            let ismaster = try await client.runCommand(["ismaster": 1])
            #expect(ismaster["ismaster"] == true)
            let buildinfo = try await client.runCommand(["buildinfo": 1])
            #expect(buildinfo["version"] != nil)
            for name in ["PING", "Hello", "replsetgetstatus", "INSERT"] {
                let error = await commandError(client, [name: 1])
                #expect(error?.serverCode == 59)
                #expect(error?.message == "no such command: '\(name)'")
            }
        }
    }

    // Item 6: cursor ids are int64 in every cursor reply (first batch, next batch, exhausted, empty).
    @Test func cursorIdsAreInt64() async throws {
        let server = try startDouble(.primary(setName: "rs0"))
        defer { server.stop() }
        try await withClient(server) { client in
            _ = try await client.runCommand(
                ["insert": "c", "documents": [["_id": 1], ["_id": 2], ["_id": 3]]],
                database: "app"
            )
            let first = try await client.runCommand(["find": "c", "batchSize": 1], database: "app")
            #expect(first[path: "cursor.id"]?.typeByte == 0x12)
            let id = try #require(first[path: "cursor.id"]?.int64Value)
            #expect(id != 0)
            let more = try await client.runCommand(
                ["getMore": .int64(id), "collection": "c", "batchSize": 1],
                database: "app"
            )
            #expect(more[path: "cursor.id"] == .int64(id))
            let last = try await client.runCommand(["getMore": .int64(id), "collection": "c"], database: "app")
            #expect(last[path: "cursor.id"] == .int64(0))
            for (collection, database) in [("missing", "app"), ("c", "app"), ("oplog.rs", "local")] {
                let reply = try await client.runCommand(["find": .string(collection)], database: database)
                #expect(reply[path: "cursor.id"]?.typeByte == 0x12, "\(database).\(collection)")
            }
            let tailable = try await client.runCommand(
                ["find": "oplog.rs", "tailable": true, "awaitData": true, "batchSize": 1],
                database: "local"
            )
            let tailId = try #require(tailable[path: "cursor.id"]?.int64Value)
            #expect(tailable[path: "cursor.id"]?.typeByte == 0x12)
            let next = try await client.runCommand(
                ["getMore": .int64(tailId), "collection": "oplog.rs", "maxTimeMS": .int64(10)],
                database: "local"
            )
            #expect(next[path: "cursor.id"] == .int64(tailId))
        }
    }
}
