import Logging
import RESP
import RSInitTestUtils
import Testing

@testable import RedisClient

/// Right after a failover a Sentinel that has not learnt it yet still names the old master, and that node answers
/// `ROLE` as a master until Sentinel reconfigures it: writes there are lost when it resyncs from the new master.
/// The connector must not go back to a master a `+switch-master` replaced.
@Suite struct RedisSentinelStaleMasterTests {
    @Test func aMasterAFailoverReplacedIsNotTakenFromAStaleSentinel() async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        let connector = RedisConnector(url: try RedisURL(set.url()), logger: Logger(label: "rsinit.test.connector"))
        let oldPort = set.servers[0].port
        let first = try await connector.connect(forKey: "k")
        #expect(first.url.port == Int(oldPort))

        try await set.failover()
        let newPort = try await set.waitForNewMaster(other: oldPort)
        // The connector's watcher reads +switch-master and closes the connection to the old master.
        #expect(
            await eventually(within: .seconds(20)) { !first.isOpen },
            "the switch did not close the old master's connection"
        )
        let second = try await connector.connect(forKey: "k")
        #expect(second.url.port == Int(newPort))
        await second.close()

        // Once Sentinel has made the old master a replica, make it a master again and every Sentinel monitor it
        // afresh: each now names the replaced master (as a Sentinel that missed the switch does), and ROLE there
        // says master. Only the memory of the switch can keep the connector away.
        let demoted = await eventually(within: .seconds(30), every: .milliseconds(100)) {
            guard case .array(let role?)? = try? redisAdminCommand(port: oldPort, ["ROLE"]) else { return false }
            return role.first?.string == "slave"
        }
        #expect(demoted, "Sentinel did not reconfigure the old master as a replica")
        _ = try redisAdminCommand(port: oldPort, ["REPLICAOF", "NO", "ONE"])
        for sentinel in set.sentinels {
            _ = try redisAdminCommand(port: sentinel.port, ["SENTINEL", "REMOVE", set.masterName])
            let reply = try redisAdminCommand(
                port: sentinel.port,
                ["SENTINEL", "MONITOR", set.masterName, "127.0.0.1", "\(oldPort)", "2"]
            )
            #expect(reply.string == "OK", "SENTINEL MONITOR: \(reply)")
        }
        do {
            let wrong = try await connector.connect(forKey: "k")
            Issue.record("connected to \(wrong.url.port) (the replaced master is \(oldPort))")
            await wrong.close()
        } catch let error as RedisError {
            #expect(error.message.contains("a failover replaced"), "\(error.message)")
        }
        await connector.close()
    }

    /// A failover right after the first connection must be heard: the `+switch-master` subscription is live
    /// (a Sentinel lists it) before ``RedisConnector/connect(forKey:)`` returns, not started beside it.
    @Test func theSwitchSubscriptionIsLiveWhenTheFirstConnectionIsReturned() async throws {
        let set = try await RedisSentinelSet.launch()
        defer { set.stop() }
        // Without a delay, then with the watcher's subscription slower than the discovery (a Sentinel slow to
        // answer it), then slower than the connector waits for it (the connection is then handed out anyway).
        for (delay, live) in [(Duration.zero, true), (.milliseconds(600), true), (.seconds(3), false)] {
            let connector = RedisConnector(
                url: try RedisURL(set.url()),
                logger: Logger(label: "rsinit.test.connector"),
                timeout: .seconds(5),
                watcherDelay: delay
            )
            let connection = try await connector.connect(forKey: "k")
            var subscribers = 0
            for sentinel in set.sentinels {
                let clients = try redisAdminCommand(port: sentinel.port, ["CLIENT", "LIST"]).string ?? ""
                subscribers += clients.split(separator: "\n").filter { $0.contains(" sub=1 ") }.count
            }
            #expect(subscribers == (live ? 1 : 0), "+switch-master subscriptions on the Sentinels: \(subscribers)")
            await connection.close()
            await connector.close()
            // Gone with the connector (the next round counts its own).
            #expect(
                await eventually(within: .seconds(5)) {
                    set.sentinels.allSatisfy { sentinel in
                        let clients = (try? redisAdminCommand(port: sentinel.port, ["CLIENT", "LIST"]).string) ?? ""
                        return !clients.contains(" sub=1 ")
                    }
                }
            )
        }
    }
}
