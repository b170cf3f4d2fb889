import Foundation
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@Suite struct RedisURLTests {
    @Test(
        arguments: [
            ("redis://127.0.0.1:6390", "127.0.0.1", 6390, nil, nil, 0, false),
            ("redis://localhost", "localhost", 6379, nil, nil, 0, false),
            ("redis://:s3cret@cache:6380/2", "cache", 6380, nil, "s3cret", 2, false),
            ("redis://bridge:p%40ss@cache/1", "cache", 6379, "bridge", "p@ss", 1, false),
            ("redis://us%C3%A9r:p%2Bw%2fd@cache", "cache", 6379, "usér", "p+w/d", 0, false),
            ("redis://legacy@cache", "cache", 6379, nil, "legacy", 0, false),
            ("rediss://u:p@[::1]:6400/0", "::1", 6400, "u", "p", 0, true),
        ] as [(String, String, Int, String?, String?, Int, Bool)]
    )
    func parses(
        _ text: String,
        _ host: String,
        _ port: Int,
        _ user: String?,
        _ password: String?,
        _ db: Int,
        _ tls: Bool
    ) throws {
        let url = try RedisURL(text)
        #expect(url.host == host && url.port == port && url.username == user && url.password == password)
        #expect(url.database == db && url.useTLS == tls)
        if let password { #expect(!url.description.contains(password)) }
    }

    @Test(arguments: [
        "http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/db", "redis://:pw@",
        "redis://a%2:pw@cache",  // a malformed escape is an error, never a user name or password taken as typed
    ])
    func rejects(_ text: String) {
        do {
            _ = try RedisURL(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.kind == .invalidURL)
            #expect(!error.description.contains("pw"))
        }
    }
}

@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct RedisConnectionTests {
    @Test func pingSetGetAndPipelining() async throws {
        let server = try await RedisServerProcess.launch()
        let connection = try await RedisConnection.connect(try RedisURL(server.url()))
        #expect(try await connection.command(["PING"]) == .simpleString("PONG"))
        #expect(try await connection.command(["SET", "k", "v"]) == .simpleString("OK"))
        #expect(try await connection.command(["GET", "k"]) == .bulk("v"))
        #expect(try await connection.command(["GET", "missing"]) == .bulkString(nil))
        // 1,000 commands written before any reply is read, replies matched in order.
        let commands: [[[UInt8]]] = (0..<1000).map { _ in [Array("INCR".utf8), Array("counter".utf8)] }
        let replies = try await connection.pipeline(commands)
        #expect(replies == (1...1000).map { RESPValue.integer(Int64($0)) })
        #expect(try await connection.command(["NOSUCHCOMMAND"]).string == nil)
        await connection.close()
    }

    @Test func publishReachesASubscriber() async throws {
        let server = try await RedisServerProcess.launch()
        let subscriber = try await RedisConnection.connect(try RedisURL(server.url()))
        _ = try await subscriber.command(["SUBSCRIBE", "tests.Foo"])
        let publisher = try await RedisConnection.connect(try RedisURL(server.url()))
        #expect(try await publisher.command(["PUBLISH", "tests.Foo", "{\"e\":\"i\"}"]) == .integer(1))
        let message = try await subscriber.readPushed(wait: .seconds(2))
        #expect(message == .array([.bulk("message"), .bulk("tests.Foo"), .bulk("{\"e\":\"i\"}")]))
        await subscriber.close()
        await publisher.close()
    }

    @Test func passwordsAndACLUsers() async throws {
        let server = try await RedisServerProcess.launch(["--requirepass", "s3cret"])
        let ok = try await RedisConnection.connect(try RedisURL(server.url(password: "s3cret")))
        try await ok.require(["ACL", "SETUSER", "bridge", "on", ">bridgepw", "~*", "&*", "+@all"])
        await ok.close()
        let acl = try await RedisConnection.connect(
            try RedisURL(server.url(user: "bridge", password: "bridgepw", database: 3))
        )
        #expect(try await acl.command(["PING"]) == .simpleString("PONG"))
        await acl.close()
        for url in [server.url(password: "wrong"), server.url(user: "bridge", password: "nope")] {
            do {
                _ = try await RedisConnection.connect(try RedisURL(url))
                Issue.record("connected with bad credentials")
            } catch let error as RedisError {
                #expect(error.kind == .authenticationFailed)
                #expect(!error.description.contains("wrong") && !error.description.contains("nope"))
            }
        }
        let anonymous = try await RedisConnection.connect(try RedisURL(server.url()))
        do {
            try await anonymous.require(["PING"])
            Issue.record("NOAUTH not reported")
        } catch let error as RedisError {
            #expect(error.kind == .authenticationRequired)
        }
        await anonymous.close()
    }

    @Test func refusedAndOutage() async throws {
        let server = try await RedisServerProcess.launch()
        let url = try RedisURL(server.url())
        let connection = try await RedisConnection.connect(url)
        server.stop()
        do {
            _ = try await connection.command(["PING"])
            Issue.record("a dead server answered")
        } catch let error as RedisError {
            #expect(error.kind == .connectionLost)
            #expect(error.isTransient)
        }
        do {
            _ = try await RedisConnection.connect(url, timeout: .seconds(1))
            Issue.record("connected to a stopped server")
        } catch let error as RedisError {
            #expect(error.kind == .connectionRefused)
        }
        try await server.restart()
        let again = try await RedisConnection.connect(url)
        #expect(try await again.command(["PING"]) == .simpleString("PONG"))
        await again.close()
    }

    @Test func serverRepliesThatPassAreRetriedOthersAreNot() {
        for reply in ["LOADING Redis is loading", "BUSY script", "READONLY You can't write", "OOM command not allowed"]
        {
            #expect(RedisError.reply(reply, command: "SET").isTransient, "\(reply)")
            #expect(RedisError.reply(reply, command: "SET").kind == .serverBusy, "\(reply)")
        }
        for reply in ["ERR unknown command", "WRONGTYPE Operation against a key", "NOSCRIPT No matching script"] {
            #expect(!RedisError.reply(reply, command: "EVALSHA").isTransient, "\(reply)")
        }
        #expect(RedisError(.connectionRefused, "x").isTransient && !RedisError(.authenticationFailed, "x").isTransient)
        // The category comes from the kind alone, never from the message text.
        #expect(!RedisError(.server, "SET failed: LOADING Redis is loading").isTransient)
        #expect(RedisError(.serverBusy, "anything").isTransient)
    }

    @Test func tlsOptionsInTheURL() throws {
        let url = try RedisURL("rediss://u:p@cache:6380/2?ca=/etc/ca.pem&verify=ca&cert=/c.pem&key=/k.pem")
        #expect(url.useTLS && url.database == 2 && url.host == "cache" && url.port == 6380)
        #expect(url.tls.caFile == "/etc/ca.pem" && url.tls.verify == .ca)
        #expect(url.tls.certificateFile == "/c.pem" && url.tls.keyFile == "/k.pem")
        let redisPy = try RedisURL("rediss://cache?ssl_cert_reqs=none&ssl_ca_certs=%2Fca.pem")
        #expect(redisPy.tls.verify == .none && redisPy.tls.caFile == "/ca.pem" && redisPy.database == 0)
        for bad in [
            "redis://cache?ca=/ca.pem", "rediss://cache?verify=maybe", "rediss://cache?cert=/c.pem",
            "rediss://cache?sslmode=on",
        ] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisURL(bad) }
        }
    }
}
