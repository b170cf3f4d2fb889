import BSON
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Testing

/// §7.3 "add the missing members, one voter per reconfig": the pure step, then the bootstrapper on the 3-member
/// double through libmongoc.
struct MemberReconcilerTests {
    static func config(_ hosts: [String], version: Int32 = 1, votes: [Int] = []) -> BSONDocument {
        let members = hosts.enumerated().map { index, host -> BSONValue in
            var member: BSONDocument = ["_id": .int32(Int32(index)), "host": .string(host)]
            if index < votes.count { member.append("votes", .int32(Int32(votes[index]))) }
            return .document(member)
        }
        return ["_id": "rs0", "version": .int32(version), "members": .array(members)]
    }

    static func hosts(_ step: MemberReconcileStep) -> [String] {
        guard case .reconfig(let config, _) = step else { return [] }
        return config["members"]?.arrayValue?.compactMap { $0.documentValue?["host"]?.stringValue } ?? []
    }

    /// From every subset of the wanted hosts already configured (in every order), repeated steps add the missing
    /// ones one per reconfig, in `wanted` order, with version + 1 and a fresh `_id`, then say done.
    @Test func addsOneMissingMemberPerStepUntilDone() {
        let wanted = ["a:1", "b:1", "c:1", "d:1"]
        for mask in 1..<(1 << wanted.count) {
            var current = Self.config(
                wanted.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element).reversed()
            )
            var steps = 0
            while true {
                let voters = current["members"]?.arrayValue?.count ?? 0
                let step = MemberReconciler.next(config: current, votingMembersCount: voters, wanted: wanted)
                guard case .reconfig(let updated, let adding) = step else {
                    #expect(step == .done)
                    break
                }
                steps += 1
                let before = Set(
                    current["members"]?.arrayValue?.compactMap { $0.documentValue?["host"]?.stringValue } ?? []
                )
                let after = Self.hosts(step)
                #expect(Set(after) == before.union([adding]))
                #expect(after.count == before.count + 1)
                #expect(adding == wanted.first { !before.contains($0) })
                #expect(updated["version"]?.int64Value == (current["version"]?.int64Value ?? 0) + 1)
                let ids = updated["members"]?.arrayValue?.compactMap { $0.documentValue?["_id"]?.int64Value } ?? []
                #expect(Set(ids).count == ids.count)
                current = updated
            }
            #expect(steps == wanted.count - mask.nonzeroBitCount)
        }
    }

    /// A newly added member still catching up (fewer counted voters than configured) blocks the next add.
    @Test func waitsWhileANewMemberIsNotYetAVoter() {
        let config = Self.config(["a:1", "b:1"])
        #expect(
            MemberReconciler.next(config: config, votingMembersCount: 1, wanted: ["a:1", "b:1", "c:1"])
                == .waitForNewVoter
        )
        #expect(
            MemberReconciler.next(config: config, votingMembersCount: 1, wanted: ["a:1", "b:1"]) == .waitForNewVoter
        )
        #expect(MemberReconciler.next(config: config, votingMembersCount: 2, wanted: ["a:1", "b:1"]) == .done)
        // A non-voting member (votes 0) is not waited for.
        let withPassive = Self.config(["a:1", "b:1"], votes: [1, 0])
        #expect(MemberReconciler.next(config: withPassive, votingMembersCount: 1, wanted: ["a:1"]) == .done)
    }

    /// Hosts are compared exactly: a differently spelled host is another member to mongod.
    @Test func hostsCompareExactly() {
        let config = Self.config(["db-1:27017"])
        let step = MemberReconciler.next(config: config, votingMembersCount: 1, wanted: ["DB-1:27017"])
        #expect(Self.hosts(step) == ["db-1:27017", "DB-1:27017"])
    }
}

@Suite(.serialized) struct MultiMemberBootstrapTests {
    static let logger = Logger(label: "rsinit.test.members")

    func bootstrap(_ set: FakeReplicaSet, timeout: Duration = .seconds(20)) async throws -> BootstrapReport {
        let configuration = BootstrapConfiguration(
            connectionString: try MongoConnectionString(set.directURI(0)),
            setName: set.setName,
            members: set.hosts.compactMap { HostAndPort(parsing: $0) },
            allowLocalhostMember: true,
            timeout: timeout,
            noopProofTimeout: .seconds(5)
        )
        return try await ReplicaSetBootstrapper(configuration: configuration, logger: Self.logger).run()
    }

    func configAndVoters(_ set: FakeReplicaSet) async throws -> (hosts: [String], version: Int64, voters: Int64) {
        let client = try MongoClient(uri: set.directURI(0), logger: Self.logger)
        let config = try await client.runCommand(["replSetGetConfig": 1])["config"]?.documentValue ?? [:]
        let status = try await client.runCommand(["replSetGetStatus": 1])
        await client.close()
        return (
            config["members"]?.arrayValue?.compactMap { $0.documentValue?["host"]?.stringValue } ?? [],
            config["version"]?.int64Value ?? 0,
            status["votingMembersCount"]?.int64Value ?? 0
        )
    }

    @Test func aMemberAddedLaterBecomesAVoterAndARerunChangesNothing() async throws {
        let set = try FakeReplicaSet.start(memberCount: 3, configuredCount: 2, periodicNoopInterval: nil)
        defer { set.stop() }
        _ = try await bootstrap(set)
        let after = try await configAndVoters(set)
        #expect(after.hosts == set.hosts)
        #expect(after.voters == 3)
        #expect(set.phase(2) == .secondary)
        #expect(set.lastApplied(2) != nil)
        // Idempotent: a second run adds nothing.
        _ = try await bootstrap(set)
        let again = try await configAndVoters(set)
        #expect(again.hosts == set.hosts)
        #expect(again.version == after.version)
    }

    @Test func twoBootstrappersRacingConverge() async throws {
        let set = try FakeReplicaSet.start(memberCount: 3, configuredCount: 1, periodicNoopInterval: nil)
        defer { set.stop() }
        async let first = bootstrap(set)
        async let second = bootstrap(set)
        _ = try await (first, second)
        let after = try await configAndVoters(set)
        #expect(after.hosts.sorted() == set.hosts.sorted())
        #expect(Set(after.hosts).count == 3)
        #expect(after.voters == 3)
    }

    @Test func aListedMemberThatIsDownFailsAtTheDeadlineNamingTheCause() async throws {
        let set = try FakeReplicaSet.start(memberCount: 3, configuredCount: 2, periodicNoopInterval: nil)
        defer { set.stop() }
        set.kill(2)
        do {
            _ = try await bootstrap(set, timeout: .seconds(3))
            Issue.record("the bootstrap succeeded with a member down")
        } catch let failure as BootstrapFailure {
            #expect(failure.exitCode == 3)
            #expect(failure.message.contains("not every --members host is a voting member"))
        }
        // The reconfig itself went through (a majority of voters answered): the member is listed, not yet voting.
        let after = try await configAndVoters(set)
        #expect(after.hosts == set.hosts)
        #expect(after.voters == 2)
    }
}

@Suite(.serialized) struct MultiMemberInitiateTests {
    func bootstrap(_ set: FakeReplicaSet, timeout: Duration) async throws -> BootstrapReport {
        let configuration = BootstrapConfiguration(
            connectionString: try MongoConnectionString(set.directURI(0)),
            setName: set.setName,
            members: set.hosts.compactMap { HostAndPort(parsing: $0) },
            allowLocalhostMember: true,
            timeout: timeout,
            noopProofTimeout: .seconds(5)
        )
        return try await ReplicaSetBootstrapper(configuration: configuration, logger: MultiMemberBootstrapTests.logger)
            .run()
    }

    /// A fresh 3-member set: replSetInitiate with all members, an election, every member a voter.
    @Test func initiatesAThreeMemberSet() async throws {
        let set = try FakeReplicaSet.start(memberCount: 3, configuredCount: 0, periodicNoopInterval: nil)
        defer { set.stop() }
        let report = try await bootstrap(set, timeout: .seconds(20))
        #expect(report.initiated)
        #expect(set.writablePrimary == 0)
        let client = try MongoClient(uri: set.directURI(0), logger: MultiMemberBootstrapTests.logger)
        let status = try await client.runCommand(["replSetGetStatus": 1])
        await client.close()
        #expect(status["votingMembersCount"] == .int32(3))
        #expect(set.phase(1) == .secondary && set.phase(2) == .secondary)
    }

    /// One member down at initiate: 74 NodeNotFound until the deadline (nothing initiated), then, with the member
    /// back, a rerun initiates all three.
    @Test func oneMemberDownAtInitiate() async throws {
        let set = try FakeReplicaSet.start(memberCount: 3, configuredCount: 0, periodicNoopInterval: nil)
        defer { set.stop() }
        set.kill(2)
        do {
            _ = try await bootstrap(set, timeout: .seconds(3))
            Issue.record("initiated with a member down")
        } catch let failure as BootstrapFailure {
            #expect(failure.message.contains(set.hosts[2]))
            #expect(set.members[0].replicaSetConfig == nil)
        }
        set.restart(2)
        let report = try await bootstrap(set, timeout: .seconds(20))
        #expect(report.initiated)
        #expect(set.writablePrimary == 0)
    }
}
