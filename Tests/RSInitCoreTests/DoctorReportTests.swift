import BSON
import MongoCWrapper
import Testing

@testable import RSInitCore

/// `DoctorReport`: one test per rule, from facts alone (no I/O).
@Suite struct DoctorReportTests {
    static let now: Double = 1_800_000_000

    static func member(_ name: String, state: Int = 2, health: Double = 1, isSelf: Bool = false) -> MemberStatus {
        MemberStatus(
            name: name,
            state: state,
            stateStr: MemberStateName.name(state),
            health: health,
            isSelf: isSelf
        )
    }

    static func node(
        kind: String = "member",
        setName: String? = "steedos",
        writable: Bool = true,
        primary: String? = "mongodb:27017",
        members: [MemberStatus] = [member("mongodb:27017", state: 1, isSelf: true)]
    ) -> DoctorFacts.NodeFacts {
        DoctorFacts.NodeFacts(
            version: "7.0.14",
            kind: kind,
            setName: setName,
            state: writable ? "PRIMARY" : "SECONDARY",
            isWritablePrimary: writable,
            primary: primary,
            members: members
        )
    }

    static func host(
        _ name: String = "mongodb:27017",
        addresses: [String] = ["10.0.0.5"],
        loopback: Bool = false,
        thisMachine: Bool = false,
        answer: DoctorFacts.MemberHost.Answer = .answered(setName: "steedos", isWritablePrimary: true, state: "PRIMARY")
    ) -> DoctorFacts.MemberHost {
        DoctorFacts.MemberHost(
            host: name,
            addresses: .success(addresses),
            isLoopback: loopback,
            isThisMachine: thisMachine,
            answer: answer
        )
    }

    static let healthyOplog = DoctorFacts.Oplog(
        first: BSONTimestamp(seconds: UInt32(now) - 86_400 * 3, increment: 1),
        last: BSONTimestamp(seconds: UInt32(now) - 1, increment: 1),
        sizeBytes: 500_000_000,
        maxSizeBytes: 1_000_000_000,
        sampleEntries: 50,
        sampleBytes: 10_000,
        sampleSeconds: 5
    )

    static func redis(
        persistence: DoctorFacts.Redis.Persistence? = .configured(appendOnly: true, rdbSave: ""),
        checkpoint: BSONTimestamp? = BSONTimestamp(seconds: UInt32(now) - 2, increment: 3),
        dedupeKeys: Int = 0
    ) -> DoctorFacts.Redis {
        DoctorFacts.Redis(
            url: "redis://redis:6379/0",
            connection: .connected,
            persistence: persistence,
            checkpointValue: checkpoint.map(CheckpointEncoding.encode),
            dedupeKeys: dedupeKeys
        )
    }

    static func facts(
        node: DoctorFacts.Node = .answered(node()),
        hosts: [DoctorFacts.MemberHost] = [host()],
        oplog: DoctorFacts.Oplog? = healthyOplog,
        redis: DoctorFacts.Redis? = redis(),
        probe: DoctorFacts.Probe? = nil,
        seedIsThisMachine: Bool = false
    ) -> DoctorFacts {
        DoctorFacts(
            seed: "mongodb:27017",
            seedIsThisMachine: seedIsThisMachine,
            expectedSetName: "steedos",
            node: node,
            memberHosts: hosts,
            oplog: oplog,
            redis: redis,
            probe: probe,
            now: now
        )
    }

    func finding(_ report: DoctorReport, _ check: String) -> DoctorFinding? {
        report.findings.first { $0.check == check }
    }

    @Test func healthyDeploymentHasNoFailuresAndExitsZero() {
        let report = DoctorReport(facts: Self.facts(probe: .delivered(channel: "c", milliseconds: 1.5)))
        #expect(report.findings.allSatisfy { $0.severity == .ok }, "\(report.findings)")
        #expect(report.exitCode == 0)
        #expect(
            report.findings.map(\.check) == [
                "mongod", "replica set", "member mongodb:27017", "primary", "oplog", "redis", "redis persistence",
                "checkpoint", "ha bridges", "probe",
            ]
        )
    }

    @Test func figuresForMonitoring() {
        let report = DoctorReport(facts: Self.facts(probe: .delivered(channel: "c", milliseconds: 1.5)))
        #expect(report.figures["oplogWindowSeconds"] == Double(86_400 * 3 - 1))
        #expect(report.figures["oplogEntriesPerSecond"] == 10)
        #expect(report.figures["oplogToleranceSeconds"] == 500_000)
        #expect(report.figures["checkpointLagSeconds"] == 1)
        #expect(report.figures["dedupeKeys"] == 0)
        #expect(report.figures["probeMilliseconds"] == 1.5)
        #expect(DoctorReport(facts: Self.facts(node: .unreachable("x"), oplog: nil, redis: nil)).figures.isEmpty)
    }

    @Test func unreachableMongodExits3() {
        let report = DoctorReport(facts: Self.facts(node: .unreachable("connection refused"), redis: nil))
        #expect(report.exitCode == 3)
        #expect(report.findings.count == 1)
        #expect(report.findings[0].severity == .failure)
        #expect(report.findings[0].fix != nil)
    }

    @Test func refusedCredentialsExit6() {
        #expect(DoctorReport(facts: Self.facts(node: .authenticationFailed("bad"))).exitCode == 6)
        var redis = Self.redis()
        redis.connection = .authenticationFailed("WRONGPASS")
        let report = DoctorReport(facts: Self.facts(redis: redis))
        #expect(report.exitCode == 6)
        #expect(finding(report, "redis")?.severity == .failure)
    }

    @Test(arguments: [
        ("standalone", "--replSet"), ("uninitialized", "initiate"), ("removed", "--force-reconfig"),
    ])
    func nodeKindsWithoutASetAreFailures(kind: String, fixMentions: String) {
        let report = DoctorReport(facts: Self.facts(node: .answered(Self.node(kind: kind))))
        let set = finding(report, "replica set")
        #expect(set?.severity == .failure)
        #expect(set?.fix?.contains(fixMentions) == true, "\(set?.fix ?? "")")
        #expect(report.exitCode == 10)
        #expect(finding(report, "oplog") == nil)
    }

    /// mongos has no oplog, but the bridge serves it through a change stream: a warning naming that source, not a
    /// failure telling the user to point elsewhere.
    @Test func mongosIsAWarningThatNamesTheChangeStreamSource() {
        let report = DoctorReport(facts: Self.facts(node: .answered(Self.node(kind: "mongos"))))
        let set = finding(report, "replica set")
        #expect(set?.severity == .warning)
        #expect(set?.fix?.contains("--source") == true, "\(set?.fix ?? "")")
        #expect(report.exitCode == 0)
        #expect(finding(report, "oplog") == nil)
    }

    @Test func setNameMismatchIsAFailure() {
        let report = DoctorReport(facts: Self.facts(node: .answered(Self.node(setName: "rs0"))))
        #expect(finding(report, "replica set")?.severity == .failure)
    }

    @Test func loopbackMemberHostIsAFailureUnlessAllowed() {
        let loopback = Self.host("localhost:27017", addresses: ["127.0.0.1", "::1"], loopback: true, thisMachine: true)
        let facts = Self.facts(hosts: [loopback], seedIsThisMachine: true)
        let member = finding(DoctorReport(facts: facts), "member localhost:27017")
        #expect(member?.severity == .failure)
        #expect(member?.message.contains("localhost:27017 trap") == true)
        let allowed = DoctorReport(facts: facts, policy: .init(allowLoopbackMembers: true))
        #expect(finding(allowed, "member localhost:27017")?.severity == .warning)
        // Allowed, but not answering: still a failure.
        var silent = loopback
        silent.answer = .unreachable("connection refused")
        let down = DoctorReport(
            facts: Self.facts(hosts: [silent], seedIsThisMachine: true),
            policy: .init(allowLoopbackMembers: true)
        )
        #expect(finding(down, "member localhost:27017")?.severity == .failure)
    }

    @Test func memberHostPointingToThisMachineWhileMongodRunsElsewhereIsAFailure() {
        let here = Self.host("abc123:27017", addresses: ["172.17.0.4"], thisMachine: true)
        let elsewhere = DoctorReport(facts: Self.facts(hosts: [here], seedIsThisMachine: false))
        #expect(finding(elsewhere, "member abc123:27017")?.severity == .failure)
        let sameMachine = DoctorReport(facts: Self.facts(hosts: [here], seedIsThisMachine: true))
        #expect(finding(sameMachine, "member abc123:27017")?.severity == .ok)
        #expect(finding(sameMachine, "member abc123:27017")?.message.contains("this machine") == true)
    }

    @Test func memberHostThatDoesNotResolveIsAFailure() {
        var host = Self.host("gone:27017")
        host.addresses = .failure(.init("Name or service not known"))
        let member = finding(DoctorReport(facts: Self.facts(hosts: [host])), "member gone:27017")
        #expect(member?.severity == .failure)
        #expect(member?.message.contains("Name or service not known") == true)
    }

    @Test func unreachableMemberIsAFailure() {
        let host = Self.host("mongo2:27017", answer: .unreachable("connection refused"))
        let report = DoctorReport(facts: Self.facts(hosts: [Self.host(), host]))
        #expect(finding(report, "member mongo2:27017")?.severity == .failure)
        #expect(finding(report, "member mongodb:27017")?.severity == .ok)
        #expect(report.exitCode == 10)
    }

    @Test func memberAnsweringForAnotherSetIsAFailure() {
        let host = Self.host(answer: .answered(setName: "other", isWritablePrimary: true, state: "PRIMARY"))
        #expect(finding(DoctorReport(facts: Self.facts(hosts: [host])), "member mongodb:27017")?.severity == .failure)
    }

    @Test func noWritablePrimaryIsAFailure() {
        let node = Self.node(writable: false, primary: nil)
        let host = Self.host(answer: .answered(setName: "steedos", isWritablePrimary: false, state: "SECONDARY"))
        let report = DoctorReport(facts: Self.facts(node: .answered(node), hosts: [host]))
        #expect(finding(report, "primary")?.severity == .failure)
        #expect(report.exitCode == 10)
    }

    @Test func primaryReachedThroughAnotherMemberIsOk() {
        let node = Self.node(writable: false, primary: "mongo2:27017")
        let hosts = [
            Self.host(answer: .answered(setName: "steedos", isWritablePrimary: false, state: "SECONDARY")),
            Self.host("mongo2:27017"),
        ]
        #expect(
            finding(DoctorReport(facts: Self.facts(node: .answered(node), hosts: hosts)), "primary")?.severity == .ok
        )
    }

    @Test func namedPrimaryNotReachableFromHereIsAFailure() {
        let node = Self.node(writable: false, primary: "mongo2:27017")
        let hosts = [
            Self.host(answer: .answered(setName: "steedos", isWritablePrimary: false, state: "SECONDARY")),
            Self.host("mongo2:27017", answer: .unreachable("timeout")),
        ]
        let primary = finding(DoctorReport(facts: Self.facts(node: .answered(node), hosts: hosts)), "primary")
        #expect(primary?.severity == .failure)
        #expect(primary?.message.contains("mongo2:27017") == true)
    }

    @Test func majorityRules() {
        let three = [
            Self.member("a:1", state: 1, isSelf: true), Self.member("b:1"), Self.member("c:1", state: 8, health: 0),
        ]
        let oneDown = DoctorReport(facts: Self.facts(node: .answered(Self.node(members: three))))
        #expect(finding(oneDown, "majority")?.severity == .warning)
        #expect(finding(oneDown, "majority")?.message.contains("c:1") == true)
        let twoDown = [
            Self.member("a:1", state: 2, isSelf: true), Self.member("b:1", state: 8, health: 0),
            Self.member("c:1", state: 8, health: 0),
        ]
        let lost = DoctorReport(facts: Self.facts(node: .answered(Self.node(writable: false, members: twoDown))))
        #expect(finding(lost, "majority")?.severity == .failure)
        let allUp = [Self.member("a:1", state: 1, isSelf: true), Self.member("b:1"), Self.member("c:1")]
        #expect(
            finding(DoctorReport(facts: Self.facts(node: .answered(Self.node(members: allUp)))), "majority")?.severity
                == .ok
        )
        #expect(finding(DoctorReport(facts: Self.facts()), "majority") == nil)
        // PSA: the arbiter keeps the election majority, but with the secondary down nothing commits.
        let psaSecondaryDown = [
            Self.member("a:1", state: 1, isSelf: true), Self.member("b:1", state: 8, health: 0),
            Self.member("c:1", state: 7),
        ]
        let stalled = DoctorReport(facts: Self.facts(node: .answered(Self.node(members: psaSecondaryDown))))
        #expect(finding(stalled, "majority")?.severity == .failure)
        #expect(finding(stalled, "majority")?.message.contains("1 of 2 data-bearing members healthy") == true)
        let psaArbiterDown = [
            Self.member("a:1", state: 1, isSelf: true), Self.member("b:1"), Self.member("c:1", state: 8, health: 0),
        ]
        let degraded = DoctorReport(facts: Self.facts(node: .answered(Self.node(members: psaArbiterDown))))
        #expect(finding(degraded, "majority")?.severity == .warning)
        let psaUp = [Self.member("a:1", state: 1, isSelf: true), Self.member("b:1"), Self.member("c:1", state: 7)]
        #expect(
            finding(DoctorReport(facts: Self.facts(node: .answered(Self.node(members: psaUp)))), "majority")?.severity
                == .ok
        )
    }

    @Test func outageToleranceFromTheSampledRate() {
        // 1 GB at 2,000 B/s: 500,000 s.
        #expect(DoctorReport.outageTolerance(Self.healthyOplog) == 500_000)
        var byEntries = Self.healthyOplog
        byEntries.maxSizeBytes = nil
        byEntries.maxEntries = 1_000
        // 1,000 entries at 10 entries/s.
        #expect(DoctorReport.outageTolerance(byEntries) == 100)
        var idle = Self.healthyOplog
        idle.sampleEntries = 0
        idle.sampleBytes = 0
        #expect(DoctorReport.outageTolerance(idle) == nil)
    }

    @Test(arguments: [
        (Int64(1_000_000_000), DoctorFinding.Severity.ok),  // 500,000 s
        (Int64(100_000_000), .warning),  // 50,000 s < 24 h
        (Int64(4_000_000), .failure),  // 2,000 s < 1 h
    ])
    func oplogToleranceThresholds(maxSize: Int64, severity: DoctorFinding.Severity) {
        var oplog = Self.healthyOplog
        oplog.maxSizeBytes = maxSize
        let finding = finding(DoctorReport(facts: Self.facts(oplog: oplog)), "oplog")
        #expect(finding?.severity == severity, "\(finding?.message ?? "")")
    }

    @Test func oplogWithoutConfiguredSizeIsJudgedByItsWindow() {
        var oplog = Self.healthyOplog
        oplog.maxSizeBytes = nil
        oplog.sizeBytes = nil
        let long = finding(DoctorReport(facts: Self.facts(oplog: oplog)), "oplog")
        #expect(long?.severity == .warning)
        #expect(long?.message.contains("configured size unknown") == true)
        oplog.first = BSONTimestamp(seconds: oplog.last.seconds - 600, increment: 1)
        #expect(finding(DoctorReport(facts: Self.facts(oplog: oplog)), "oplog")?.severity == .failure)
    }

    @Test func unreadableOplogIsAFailure() {
        var facts = Self.facts(oplog: nil)
        facts.oplogError = "not authorized on local"
        let oplog = finding(DoctorReport(facts: facts), "oplog")
        #expect(oplog?.severity == .failure)
        #expect(oplog?.message.contains("not authorized") == true)
    }

    @Test func redisPersistenceRules() {
        let none = DoctorReport(
            facts: Self.facts(redis: Self.redis(persistence: .configured(appendOnly: false, rdbSave: "")))
        )
        #expect(finding(none, "redis persistence")?.severity == .failure)
        #expect(none.exitCode == 10)
        let rdb = DoctorReport(
            facts: Self.facts(redis: Self.redis(persistence: .configured(appendOnly: false, rdbSave: "3600 1 300 100")))
        )
        #expect(finding(rdb, "redis persistence")?.severity == .ok)
        let managedAOF = DoctorReport(
            facts: Self.facts(redis: Self.redis(persistence: .fromInfo(appendOnly: true, reason: "CONFIG disabled")))
        )
        #expect(finding(managedAOF, "redis persistence")?.severity == .ok)
        let unknown = DoctorReport(
            facts: Self.facts(redis: Self.redis(persistence: .fromInfo(appendOnly: nil, reason: "CONFIG disabled")))
        )
        #expect(finding(unknown, "redis persistence")?.severity == .warning)
    }

    @Test func unreachableRedisIsAFailureAndSkipsTheRedisChecks() {
        var redis = Self.redis()
        redis.connection = .unreachable("connection refused")
        let report = DoctorReport(facts: Self.facts(redis: redis))
        #expect(finding(report, "redis")?.severity == .failure)
        #expect(finding(report, "checkpoint") == nil)
        #expect(report.exitCode == 10)
    }

    @Test func checkpointRules() {
        let absent = DoctorReport(facts: Self.facts(redis: Self.redis(checkpoint: nil)))
        #expect(finding(absent, "checkpoint")?.severity == .warning)
        let lost = DoctorReport(
            facts: Self.facts(
                redis: Self.redis(checkpoint: BSONTimestamp(seconds: UInt32(Self.now) - 86_400 * 4, increment: 1))
            )
        )
        #expect(finding(lost, "checkpoint")?.severity == .failure)
        #expect(finding(lost, "checkpoint")?.message.contains("history lost") == true)
        let stale = DoctorReport(
            facts: Self.facts(
                redis: Self.redis(checkpoint: BSONTimestamp(seconds: UInt32(Self.now) - 3_600, increment: 1))
            )
        )
        #expect(finding(stale, "checkpoint")?.severity == .warning)
        let future = DoctorReport(
            facts: Self.facts(
                redis: Self.redis(checkpoint: BSONTimestamp(seconds: UInt32(Self.now) + 3_600, increment: 1))
            )
        )
        #expect(finding(future, "checkpoint")?.severity == .failure)
        var garbage = Self.redis()
        garbage.checkpointValue = "not-a-number"
        #expect(finding(DoctorReport(facts: Self.facts(redis: garbage)), "checkpoint")?.severity == .failure)
    }

    /// Format v2 values (oplog `(ts, t)`, change-stream token) are read and shown; v1 is shown as such; a damaged
    /// v2 value is a failure naming why.
    @Test func checkpointFormats() throws {
        let ts = BSONTimestamp(seconds: UInt32(Self.now) - 2, increment: 3)
        func judged(_ value: String) -> DoctorFinding? {
            var redis = Self.redis()
            redis.checkpointValue = value
            return finding(DoctorReport(facts: Self.facts(redis: redis)), "checkpoint")
        }
        let v1 = try #require(judged(CheckpointEncoding.encode(ts)))
        #expect(v1.severity == .ok && v1.message.contains("format v1"))
        let oplog = try #require(judged(StoredCheckpoint.oplog(ts: ts, t: 7).encoded))
        #expect(oplog.severity == .ok && oplog.message.contains("t=7") && oplog.message.contains("format v2"))
        let token = ChangeStreamResumeToken(clusterTime: ts, tokenType: .event).data
        let stream = try #require(judged(StoredCheckpoint.changeStream(token: token, clusterTime: ts).encoded))
        #expect(stream.severity == .ok && stream.message.contains("change-stream source"))
        let report = DoctorReport(
            facts: Self.facts(
                redis: {
                    var r = Self.redis()
                    r.checkpointValue = StoredCheckpoint.oplog(ts: ts, t: 7).encoded
                    return r
                }()
            )
        )
        #expect(report.figures["checkpointLagSeconds"] != nil)
        let damaged = try #require(judged(CheckpointEncoding.encode(ts) + ":v2:oplog:x"))
        #expect(damaged.severity == .failure && damaged.message.contains("term"))
    }

    @Test func dedupeKeysAreReportedNotJudged() {
        let report = DoctorReport(facts: Self.facts(redis: Self.redis(dedupeKeys: 42)))
        #expect(finding(report, "ha bridges")?.severity == .ok)
        #expect(finding(report, "ha bridges")?.message.hasPrefix("42 dedupe keys") == true)
    }

    @Test func probeRules() {
        let silent = DoctorReport(
            facts: Self.facts(probe: .noMessage(channel: "rsinit_doctor.probe::x", waitedSeconds: 5))
        )
        #expect(finding(silent, "probe")?.severity == .failure)
        #expect(silent.exitCode == 10)
        let failed = DoctorReport(facts: Self.facts(probe: .failed("not primary")))
        #expect(finding(failed, "probe")?.severity == .failure)
    }

    @Test func everyNonOkFindingCarriesAFix() {
        var redis = Self.redis(persistence: .configured(appendOnly: false, rdbSave: ""), checkpoint: nil)
        redis.dedupeKeys = 0
        let facts = Self.facts(
            node: .answered(Self.node(writable: false, primary: nil)),
            hosts: [Self.host("localhost:1", addresses: ["127.0.0.1"], loopback: true, answer: .unreachable("x"))],
            oplog: nil,
            redis: redis,
            probe: .noMessage(channel: "c", waitedSeconds: 1)
        )
        let report = DoctorReport(facts: facts)
        #expect(report.failures >= 4)
        for finding in report.findings where finding.severity != .ok {
            #expect(finding.fix?.isEmpty == false, "\(finding.check)")
        }
    }
}
