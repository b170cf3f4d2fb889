import Foundation
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@Suite struct RedisTopologyURLTests {
    @Test func sentinelURLForms() throws {
        let url = try RedisURL("redis+sentinel://:s3cret@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=sp")
        guard case .sentinel(let sentinel) = url.topology else {
            Issue.record("not a Sentinel URL: \(url.topology)")
            return
        }
        #expect(sentinel.masterName == "mymaster")
        #expect(
            sentinel.sentinels == [
                RedisAddress(host: "s1", port: 26379), RedisAddress(host: "s2", port: 26379),
                RedisAddress(host: "::1", port: 26380),
            ]
        )
        #expect(sentinel.password == "sp")
        #expect(sentinel.username == nil)
        #expect(url.password == "s3cret")
        #expect(url.database == 2)
        #expect(!url.useTLS)
        #expect(url.description == "redis+sentinel://:***@s1:26379,s2:26379,[::1]:26380/mymaster/2")
        #expect(!url.description.contains("sp"))
        #expect(url.followsFailovers)

        let ioredis = try RedisURL(
            "redis://u:p@10.0.0.1:26379,10.0.0.2:26379/0?masterName=cache&sentinelPassword=x&sentinelUsername=su"
        )
        #expect(
            ioredis.topology
                == .sentinel(
                    .init(
                        masterName: "cache",
                        sentinels: [
                            RedisAddress(host: "10.0.0.1", port: 26379), RedisAddress(host: "10.0.0.2", port: 26379),
                        ],
                        username: "su",
                        password: "x"
                    )
                )
        )
        #expect(ioredis.username == "u" && ioredis.password == "p" && ioredis.database == 0)

        let celery = try RedisURL("sentinel://a:26379;sentinel://b:26380?master_name=m")
        #expect(
            celery.topology
                == .sentinel(
                    .init(
                        masterName: "m",
                        sentinels: [RedisAddress(host: "a", port: 26379), RedisAddress(host: "b", port: 26380)]
                    )
                )
        )

        let celeryWithPasswords = try RedisURL("sentinel://:pw@a:26379;sentinel://:pw@b:26380/m")
        #expect(celeryWithPasswords.password == "pw")
        #expect(
            celeryWithPasswords.topology
                == .sentinel(
                    .init(
                        masterName: "m",
                        sentinels: [RedisAddress(host: "a", port: 26379), RedisAddress(host: "b", port: 26380)]
                    )
                )
        )

        let tls = try RedisURL("rediss+sentinel://s1/m?ca=/ca.pem&verify=ca")
        #expect(tls.useTLS && tls.tls.caFile == "/ca.pem" && tls.tls.verify == .ca)
        #expect(tls.description == "rediss+sentinel://s1:26379/m/0")
    }

    @Test func clusterURLForms() throws {
        let url = try RedisURL("redis+cluster://user:pw@n1:7000,n2:7001,n3")
        #expect(
            url.topology
                == .cluster(seeds: [
                    RedisAddress(host: "n1", port: 7000), RedisAddress(host: "n2", port: 7001),
                    RedisAddress(host: "n3", port: 6379),
                ])
        )
        #expect(url.username == "user" && url.password == "pw")
        #expect(url.description == "redis+cluster://user:***@n1:7000,n2:7001,n3:6379")
        let option = try RedisURL("redis://n1:7000?cluster=true")
        #expect(option.topology == .cluster(seeds: [RedisAddress(host: "n1", port: 7000)]))
        #expect(try RedisURL("rediss+cluster://n1?verify=none").useTLS)
    }

    @Test(arguments: [
        "redis+sentinel://s1:26379", "redis+sentinel://s1:26379/", "redis+sentinel://s1,,s2/m",
        "redis+sentinel://s1:99999/m", "redis+sentinel://s1/m/x", "redis+sentinel://s1/m/0/extra",
        "redis+cluster://n1/1", "redis+cluster://n1?sentinel_password=x", "redis://a,b", "redis://a?cluster=maybe",
        "redis+sentinel://s1/m?cluster=true", "redis+sentinel://s1/m?bogus=1",
    ])
    func badTopologyURLsAreClearErrors(_ text: String) {
        #expect(throws: RedisError.self) { try RedisURL(text) }
        do { _ = try RedisURL(text) } catch {
            #expect(error.kind == .invalidURL)
            #expect(!error.message.isEmpty)
        }
    }

    @Test func plainURLsStayDirect() throws {
        #expect(try RedisURL("redis://h:6380/1").topology == .direct)
        #expect(try !RedisURL("rediss://:pw@h").followsFailovers)
    }

    @Test func connectingToATopologyURLDirectlyIsRefused() async throws {
        await #expect(throws: RedisError.self) {
            _ = try await RedisConnection.connect(try RedisURL("redis+sentinel://127.0.0.1:1/m"))
        }
    }
}

@Suite struct RedisClusterSlotTests {
    @Test func slotsMatchTheClusterSpecification() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        #expect(RedisClusterSlots.slot(of: "123456789") == 0x31C3 % 16384)
        #expect(RedisClusterSlots.slot(of: "foo") == 12182)
        #expect(RedisClusterSlots.slot(of: "bar") == 5061)
        #expect(
            RedisClusterSlots.slot(of: "{user1000}.following") == RedisClusterSlots.slot(of: "{user1000}.followers")
        )
        #expect(RedisClusterSlots.slot(of: "foo{}{bar}") == RedisClusterSlots.slot(of: "foo{}{bar}"))
        #expect(RedisClusterSlots.slot(of: "foo{{bar}}zap") == RedisClusterSlots.slot(of: "{bar"))
        #expect(RedisClusterSlots.slot(of: "{rsinit::}checkpoint") == RedisClusterSlots.slot(of: "rsinit::"))
        #expect(
            RedisClusterSlots.slot(of: "{rsinit::}processed::7000000000000000001::3")
                == RedisClusterSlots.slot(of: "{rsinit::}checkpoint")
        )
        #expect(RedisClusterSlots.hasHashTag("{app}:"))
        #expect(!RedisClusterSlots.hasHashTag("rsinit::"))
        #expect(!RedisClusterSlots.hasHashTag("a{}b"))
    }

    @Test func slotMapParsingIsCheckedNeverACrash() throws {
        let reply = RESPValue.array([
            .array([.integer(0), .integer(5460), .array([.bulk("10.0.0.1"), .integer(7000), .bulk("id")])]),
            .array([.integer(5461), .integer(16383), .array([.bulk(""), .integer(7001)]), .array([])]),
        ])
        let ranges = try RedisClusterSlots.parse(reply, fallbackHost: "seed")
        #expect(RedisClusterSlots.master(of: 0, in: ranges) == RedisAddress(host: "10.0.0.1", port: 7000))
        #expect(RedisClusterSlots.master(of: 16383, in: ranges) == RedisAddress(host: "seed", port: 7001))
        let bad: [RESPValue] = [
            .integer(1), .array(nil),
            .array([.array([.integer(5), .integer(1), .array([.bulk("h"), .integer(1)])])]),
            .array([.array([.integer(0), .integer(16384), .array([.bulk("h"), .integer(1)])])]),
            .array([.array([.integer(0), .integer(1), .array([.bulk("h"), .integer(70000)])])]),
            .array([.array([.integer(0), .integer(1), .bulk("h")])]),
            .array([.array([.integer(0)])]),
        ]
        for value in bad {
            #expect(throws: RedisError.self) { try RedisClusterSlots.parse(value, fallbackHost: "x") }
        }
    }
}
