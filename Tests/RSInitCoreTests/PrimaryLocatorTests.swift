import BSON
import Logging
import MongoCWrapper
import RSInitCore
import RSInitTestUtils
import Testing

/// A bootstrap pointed at a non-primary member (issue 21 item 1): where the primary is (pure), and the bootstrapper
/// on the 3-member double through libmongoc.
struct PrimaryLocatorTests {
    static func hello(
        writable: Bool = false,
        primary: String? = nil,
        me: String = "b:27017",
        hosts: [String] = ["a:27017", "b:27017", "c:27017"]
    ) -> HelloSummary {
        var reply: BSONDocument = [
            "hosts": .array(hosts.map { .string($0) }), "setName": "rs0", "isWritablePrimary": .bool(writable),
            "secondary": .bool(!writable),
        ]
        if let primary { reply.append("primary", .string(primary)) }
        reply.append("me", .string(me))
        return HelloSummary(reply)
    }

    @Test func decidesFromHelloAlone() {
        #expect(PrimaryLocator.locate(Self.hello(writable: true, primary: "b:27017")) == .here)
        #expect(
            PrimaryLocator.locate(Self.hello(primary: "a:27017")) == .elsewhere(HostAndPort(host: "a", port: 27017))
        )
        // No primary known (election in progress).
        #expect(PrimaryLocator.locate(Self.hello()) == .unknown)
        // Leader-elect/drain: names itself, not writable yet: wait, do not move.
        #expect(PrimaryLocator.locate(Self.hello(primary: "b:27017")) == .unknown)
        // A primary that is not one of the set's electable hosts is not trusted.
        #expect(PrimaryLocator.locate(Self.hello(primary: "z:27017")) == .unknown)
        #expect(PrimaryLocator.locate(Self.hello(primary: "a:27017", hosts: [])) == .unknown)
        // An unparsable name is not followed.
        #expect(PrimaryLocator.locate(Self.hello(primary: "a:x", hosts: ["a:x", "b:27017"])) == .unknown)
    }

    @Test func replacesOnlyTheSeedList() {
        let a = HostAndPort(host: "a", port: 27018)
        #expect(PrimaryLocator.uri("mongodb://b:27017", withHost: a) == "mongodb://a:27018")
        #expect(
            PrimaryLocator.uri("mongodb://u:p%40ss@b:27017,c/admin?directConnection=true&tls=true", withHost: a)
                == "mongodb://u:p%40ss@a:27018/admin?directConnection=true&tls=true"
        )
        #expect(PrimaryLocator.uri("mongodb://b?authSource=admin", withHost: a) == "mongodb://a:27018?authSource=admin")
        #expect(
            PrimaryLocator.uri("mongodb://b/", withHost: HostAndPort(host: "::1", port: 1)) == "mongodb://[::1]:1/"
        )
        #expect(PrimaryLocator.uri("mongodb+srv://cluster.example.com/", withHost: a) == nil)
        #expect(PrimaryLocator.uri("mongodb://u:p@/x", withHost: a) == nil)
        #expect(PrimaryLocator.uri("mongodb:///x", withHost: a) == nil)
    }
}

@Suite(.serialized) struct BootstrapOnSecondaryTests {
    /// `rsinit --members a,b,c --host <secondary>` on an existing set that lacks c: the run moves to the primary
    /// named by the secondary's hello, adds c there (the secondary never gets a reconfig), and reports the primary.
    @Test func addsTheMissingMemberThroughThePrimary() async throws {
        let set = try FakeReplicaSet.start(memberCount: 3, configuredCount: 2, periodicNoopInterval: nil)
        defer { set.stop() }
        let configuration = BootstrapConfiguration(
            connectionString: try MongoConnectionString(set.directURI(1)),
            setName: set.setName,
            members: set.hosts.compactMap { HostAndPort(parsing: $0) },
            allowLocalhostMember: true,
            timeout: .seconds(20),
            noopProofTimeout: .seconds(5)
        )
        let report = try await ReplicaSetBootstrapper(configuration: configuration, logger: Logger(label: "test"))
            .run()
        #expect(report.primary == set.hosts[0])
        #expect(!set.members[1].receivedCommandNames.contains("replsetreconfig"))
        #expect(set.members[0].receivedCommandNames.contains("replsetreconfig"))
        let after = try await MultiMemberBootstrapTests().configAndVoters(set)
        #expect(after.hosts == set.hosts)
        #expect(after.voters == 3)
        // Idempotent from the secondary too: a rerun changes nothing.
        _ = try await ReplicaSetBootstrapper(configuration: configuration, logger: Logger(label: "test")).run()
        #expect(try await MultiMemberBootstrapTests().configAndVoters(set).version == after.version)
    }

    /// The primary the secondary names does not answer from here (killed; the election timeout is long, so the
    /// secondary still names it): the run fails at its deadline with exit 7, naming the primary and the fix.
    @Test func anUnreachablePrimaryFailsNamingIt() async throws {
        let set = try FakeReplicaSet.start(
            memberCount: 3,
            configuredCount: 2,
            timings: FakeReplicaSetTimings(electionTimeout: .seconds(60), livenessTimeout: .seconds(60)),
            periodicNoopInterval: nil
        )
        defer { set.stop() }
        set.kill(0)
        let configuration = BootstrapConfiguration(
            connectionString: try MongoConnectionString(set.directURI(1)),
            setName: set.setName,
            members: set.hosts.compactMap { HostAndPort(parsing: $0) },
            allowLocalhostMember: true,
            timeout: .seconds(3),
            noopProofTimeout: .seconds(2)
        )
        do {
            _ = try await ReplicaSetBootstrapper(configuration: configuration, logger: Logger(label: "test")).run()
            Issue.record("the bootstrap succeeded without a reachable primary")
        } catch let failure as BootstrapFailure {
            #expect(failure.exitCode == 7)
            #expect(failure.message.contains("its primary \(set.hosts[0]) did not answer"), "\(failure)")
            #expect(failure.fix?.contains("run rsinit against the primary") == true)
        }
    }
}
