import BSON
import MongoCWrapper
import RSInitCore
import Testing

func hello(_ document: BSONDocument) -> HelloSummary { HelloSummary(document) }

let ghostHello = hello([
    "isWritablePrimary": false, "secondary": false, "isreplicaset": true,
    "info": "Does not have a valid replica set config",
])
let standaloneHello = hello(["isWritablePrimary": true, "maxWireVersion": 21])
let mongosHello = hello(["ismaster": true, "msg": "isdbgrid"])
let primaryHello = hello([
    "isWritablePrimary": true, "secondary": false, "setName": "steedos", "hosts": ["mongodb:27017"],
    "primary": "mongodb:27017",
])
let drainHello = hello([
    "isWritablePrimary": false, "secondary": true, "setName": "steedos", "hosts": ["mongodb:27017"],
])
let startup2Hello = hello([
    "isWritablePrimary": false, "secondary": false, "setName": "steedos", "hosts": ["mongodb:27017"],
])

func serverError(_ code: Int32, _ message: String = "m") -> MongoError {
    MongoError(code: MongoError.classify(serverCode: code), message: message, serverCode: code)
}

let networkError = MongoError(code: .serverSelection, message: "No suitable servers found: connection refused")

func status(set: String = "steedos", myState: Int32 = 1, members: [BSONValue]? = nil) -> StatusSummary {
    StatusSummary([
        "set": .string(set), "myState": .int32(myState),
        "members": .array(
            members ?? [
                [
                    "_id": 0, "name": "mongodb:27017", "health": 1.0, "state": .int32(myState), "stateStr": "X",
                    "self": true,
                ]
            ]
        ),
    ])
}

func machine(
    _ mode: BootstrapStateMachine.Mode = .bootstrap,
    members: [String] = ["mongodb:27017"],
    force: Bool = false
)
    -> BootstrapStateMachine
{
    BootstrapStateMachine(
        mode: mode,
        setName: "steedos",
        members: members.compactMap { HostAndPort(parsing: $0) },
        forceReconfig: force
    )
}

func failureKind(_ action: BootstrapStateMachine.Action) -> BootstrapFailure.Kind? {
    if case .fail(let failure) = action { return failure.kind }
    return nil
}

func failureText(_ action: BootstrapStateMachine.Action) -> String {
    if case .fail(let failure) = action { return failure.description }
    return ""
}

@Suite struct BootstrapStateMachineTests {
    @Test func startsByProbing() {
        var sm = machine()
        #expect(sm.start() == .probe(attempt: 0))
        #expect(sm.phase == .waitingForMongod)
    }

    @Test func probeOutcomes() {
        var sm = machine()
        _ = sm.start()
        #expect(sm.probeFailed(networkError) == .probe(attempt: 1))
        #expect(sm.probeFailed(networkError) == .probe(attempt: 2))
        #expect(sm.probeSucceeded(ghostHello) == .fetchStatus)
        #expect(sm.phase == .checkingState)

        var standalone = machine()
        #expect(failureKind(standalone.probeSucceeded(standaloneHello)) == .notReplicaSet)
        var mongos = machine()
        #expect(failureKind(mongos.probeSucceeded(mongosHello)) == .usage)
        var otherSet = machine()
        let mismatch = otherSet.probeSucceeded(hello(["isWritablePrimary": true, "setName": "rs0"]))
        #expect(failureKind(mismatch) == .invalidConfig)
        #expect(failureText(mismatch).contains("\"rs0\""))
        var auth = machine()
        #expect(
            failureKind(auth.probeFailed(MongoError(code: .authenticationFailed, message: "Authentication failed.")))
                == .auth
        )
        var wire = machine()
        #expect(failureKind(wire.probeFailed(MongoError(code: .incompatibleServer, message: "wire"))) == .unreachable)
        var waitOnly = machine(.waitOnly)
        #expect(waitOnly.probeSucceeded(primaryHello) == .proveOplog)
        var bootstrapOnPrimary = machine()
        #expect(bootstrapOnPrimary.probeSucceeded(primaryHello) == .fetchStatus)
    }

    @Test func statusDecides() {
        var uninitialized = machine()
        _ = uninitialized.probeSucceeded(ghostHello)
        #expect(uninitialized.statusFailed(serverError(94)) == .initiate(attempt: 0))
        #expect(uninitialized.phase == .initiating)

        var waitOnly = machine(.waitOnly)
        _ = waitOnly.probeSucceeded(ghostHello)
        #expect(waitOnly.statusFailed(serverError(94)) == .pollPrimary(attempt: 1))

        var removed = machine()
        #expect(removed.statusFailed(serverError(93)) == .fetchStoredConfig)
        var standalone = machine()
        #expect(failureKind(standalone.statusFailed(serverError(76))) == .notReplicaSet)
        var unauthorized = machine()
        #expect(failureKind(unauthorized.statusFailed(serverError(13))) == .auth)
        var flaky = machine()
        #expect(flaky.statusFailed(MongoError(code: .network, message: "reset")) == .probe(attempt: 1))

        var existing = machine()
        _ = existing.probeSucceeded(primaryHello)
        #expect(existing.statusReplied(status()) == .pollPrimary(attempt: 0))
        #expect(existing.foundExistingSet)
        var wrongSet = machine()
        #expect(failureKind(wrongSet.statusReplied(status(set: "rs0"))) == .invalidConfig)
        var notSelf = machine()
        let noSelf = status(members: [["_id": 0, "name": "x:1", "health": 1.0, "state": 1, "stateStr": "PRIMARY"]])
        #expect(failureKind(notSelf.statusReplied(noSelf)) == .invalidConfig)
    }

    @Test func initiateOutcomes() {
        var accepted = machine()
        #expect(accepted.initiateSucceeded() == .pollPrimary(attempt: 0))
        #expect(accepted.initiatedByUs)

        var concurrent = machine()
        #expect(concurrent.initiateFailed(serverError(23, "already initialized")) == .fetchStatus)
        #expect(concurrent.phase == .verifying)
        #expect(!concurrent.initiatedByUs)
        // The winner's config is still being installed: wait instead of initiating again.
        #expect(concurrent.statusFailed(serverError(94)) == .pollPrimary(attempt: 1))

        var noSelf = machine()
        let rejected = noSelf.initiateFailed(
            serverError(
                93,
                "No host described in new configuration with {version: 1, term: 0} for replica set steedos maps to this node"
            )
        )
        #expect(failureKind(rejected) == .invalidConfig)
        #expect(failureText(rejected).contains("mongodb:27017"))
        #expect(failureText(rejected).contains("does not resolve to this mongod"))

        var peersStarting = machine(members: ["db1:27017", "db2:27017"])
        #expect(peersStarting.initiateFailed(serverError(74)) == .initiate(attempt: 1))
        #expect(peersStarting.initiateFailed(serverError(74)) == .initiate(attempt: 2))
        #expect(failureKind(peersStarting.deadlinePassed(after: .seconds(5))) == .invalidConfig)

        var auth = machine()
        let unauthorized = auth.initiateFailed(serverError(13, "command replSetInitiate requires authentication"))
        #expect(failureKind(unauthorized) == .auth)
        #expect(failureText(unauthorized).contains("localhost exception"))

        var standalone = machine()
        #expect(failureKind(standalone.initiateFailed(serverError(76))) == .notReplicaSet)
        var lost = machine()
        #expect(lost.initiateFailed(MongoError(code: .network, message: "reset")) == .probe(attempt: 1))
    }

    @Test func removedNodeIsDiagnosedAndOnlyRepairedWhenForced() {
        let stored: BSONDocument = [
            "config": ["_id": "steedos", "version": 1, "members": [["_id": 0, "host": "c57886d0a663:27017"]]]
        ]
        var diagnose = machine()
        let failed = diagnose.storedConfigFetched(stored)
        #expect(failureKind(failed) == .invalidConfig)
        #expect(failureText(failed).contains("c57886d0a663:27017"))
        #expect(failureText(failed).contains("mongodb:27017"))
        #expect(failureText(failed).contains("--force-reconfig"))

        var repair = machine(force: true)
        #expect(repair.storedConfigFetched(stored) == .forceReconfig(storedConfig: stored["config"]!.documentValue!))
        #expect(repair.phase == .repairing)
        #expect(repair.forceReconfigSucceeded() == .pollPrimary(attempt: 0))
        var rejected = machine(force: true)
        #expect(failureKind(rejected.forceReconfigFailed(serverError(74))) == .invalidConfig)
    }

    @Test func waitingForAWritablePrimary() {
        var sm = machine()
        _ = sm.initiateSucceeded()
        #expect(sm.primaryPolled(startup2Hello, status: status(myState: 5)) == .pollPrimary(attempt: 1))
        #expect(sm.phase == .waitingForPrimary("STARTUP2"))
        // Drain: PRIMARY in replSetGetStatus but hello not writable is not ready.
        #expect(sm.primaryPolled(drainHello, status: status(myState: 1)) == .pollPrimary(attempt: 2))
        #expect(sm.phase == .waitingForPrimary("PRIMARY, draining"))
        #expect(sm.primaryPollFailed(MongoError(code: .network, message: "stepdown")) == .pollPrimary(attempt: 3))
        // Writable but another set's name is not ready either.
        var other = machine()
        #expect(
            failureKind(other.primaryPolled(hello(["isWritablePrimary": true, "setName": "x"]), status: nil))
                == .invalidConfig
        )
        #expect(sm.primaryPolled(primaryHello, status: nil) == .proveOplog)
        #expect(sm.oplogProved() == .finish)
        #expect(sm.phase == .ready)
    }

    @Test func legacyIsMasterCountsAsWritable() {
        var sm = machine()
        _ = sm.initiateSucceeded()
        #expect(sm.primaryPolled(hello(["ismaster": true, "setName": "steedos"]), status: nil) == .proveOplog)
    }

    @Test func ghostWhileWaitingRechecksTheState() {
        var sm = machine()
        _ = sm.initiateSucceeded()
        #expect(sm.primaryPolled(ghostHello, status: nil) == .fetchStatus)
        var waitOnly = machine(.waitOnly)
        #expect(waitOnly.primaryPolled(ghostHello, status: nil) == .pollPrimary(attempt: 1))
    }

    @Test func unhealthyMembersAreReported() {
        var sm = machine(members: ["db1:27017", "db2:27017"])
        _ = sm.initiateSucceeded()
        let members: [BSONValue] = [
            ["name": "db1:27017", "health": 1.0, "state": 2, "stateStr": "SECONDARY", "self": true],
            ["name": "db2:27017", "health": 0.0, "state": 8, "stateStr": "(not reachable/healthy)"],
        ]
        _ = sm.primaryPolled(drainHello, status: status(myState: 2, members: members))
        #expect(sm.phase == .waitingForPrimary("SECONDARY; not yet healthy: db2:27017 ((not reachable/healthy))"))
    }

    @Test func deadlinesPerPhase() {
        var probing = machine()
        _ = probing.start()
        _ = probing.probeFailed(networkError)
        let unreachable = probing.deadlinePassed(after: .seconds(120))
        #expect(failureKind(unreachable) == .unreachable)
        #expect(failureText(unreachable).contains("120 s"))
        #expect(failureText(unreachable).contains("connection refused"))
        var waiting = machine()
        _ = waiting.initiateSucceeded()
        #expect(failureKind(waiting.deadlinePassed(after: .seconds(1))) == .noWritablePrimary)
        var proving = machine(.waitOnly)
        _ = proving.probeSucceeded(primaryHello)
        #expect(failureKind(proving.deadlinePassed(after: .seconds(1))) == .oplogNotAdvancing)
        var oplog = machine()
        #expect(failureKind(oplog.oplogProofFailed("no note")) == .oplogNotAdvancing)
    }

    @Test func initiateConfigShape() {
        #expect(
            machine().initiateConfig == [
                "_id": "steedos", "version": 1, "members": [["_id": 0, "host": "mongodb:27017"]],
            ]
        )
        let multi = machine(members: ["db1:27017", "db2:27018"]).initiateConfig
        #expect(
            multi == [
                "_id": "steedos", "version": 1,
                "members": [
                    ["_id": 0, "host": "db1:27017", "priority": 2.0], ["_id": 1, "host": "db2:27018", "priority": 1.0],
                ],
            ]
        )
    }

    @Test func exitCodes() {
        let expected: [BootstrapFailure.Kind: Int32] = [
            .usage: 2, .unreachable: 3, .notReplicaSet: 4, .invalidConfig: 5, .auth: 6, .noWritablePrimary: 7,
            .oplogNotAdvancing: 8, .historyLost: 9, .committedEntryMissing: 11,
        ]
        for kind in BootstrapFailure.Kind.allCases { #expect(BootstrapFailure.exitCode(for: kind) == expected[kind]) }
    }
}

@Suite struct BootstrapInputTests {
    @Test(arguments: [
        ("mongodb", "mongodb:27017"), ("mongodb:27018", "mongodb:27018"), ("[::1]:27019", "[::1]:27019"),
        ("10.0.0.5", "10.0.0.5:27017"), (" db:1 ", "db:1"),
    ])
    func parsesHosts(_ input: String, _ expected: String) {
        #expect(HostAndPort(parsing: input)?.description == expected)
    }

    @Test(arguments: ["", "db:0", "db:70000", "db:x", "a:b:c", "user@db", "db/x", "[::1", "db name"])
    func rejectsBadHosts(_ input: String) {
        #expect(HostAndPort(parsing: input) == nil)
    }

    @Test(arguments: [
        ("localhost", true), ("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("LOCALHOST", true),
        ("mongodb", false), ("10.0.0.1", false), ("localhost.example.com", false),
    ])
    func loopbackDetection(_ host: String, _ loopback: Bool) {
        #expect(HostAndPort(host: host, port: 27017).isLoopback == loopback)
    }

    @Test func validationRefusesLoopbackUnlessAllowed() throws {
        let uri = try MongoConnectionString("mongodb://127.0.0.1:27017/")
        var configuration = BootstrapConfiguration(
            connectionString: uri,
            members: [HostAndPort(host: "localhost", port: 27017)]
        )
        #expect(throws: BootstrapFailure.self) { try configuration.validate() }
        do { try configuration.validate() } catch {
            #expect(error.kind == .usage)
            #expect(error.message.contains("localhost"))
            #expect(error.fix?.contains("--member-host") == true)
        }
        configuration.allowLocalhostMember = true
        try configuration.validate()
        configuration.members = [HostAndPort(host: "a", port: 1), HostAndPort(host: "a", port: 1)]
        #expect(throws: BootstrapFailure.self) { try configuration.validate() }
        configuration.members = [HostAndPort(host: "a", port: 1)]
        configuration.setName = ""
        #expect(throws: BootstrapFailure.self) { try configuration.validate() }
    }

    @Test func backoffGrowsCapsAndJitters() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(backoff.delay(attempt: 0, jitter: 0.5) == .milliseconds(100))
        #expect(backoff.delay(attempt: 3, jitter: 0.5) == .milliseconds(800))
        #expect(backoff.delay(attempt: 10, jitter: 0.5) == .seconds(2))
        #expect(backoff.delay(attempt: 100, jitter: 0.5) == .seconds(2))
        #expect(backoff.delay(attempt: 0, jitter: 0) == .milliseconds(80))
        #expect(backoff.delay(attempt: 0, jitter: 1) == .milliseconds(120))
    }
}
