import Foundation
import RESP
import RSInitTestUtils
import RedisClient
import Testing

/// `rediss://` against a real redis-server configured for TLS (certificates made with openssl per test).
@Suite(.enabled(if: RedisServerProcess.isAvailable, "redis-server is not installed"))
struct RedisTLSTests {
    func expectTLSFailure(_ url: String, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            let connection = try await RedisConnection.connect(try RedisURL(url), timeout: .seconds(3))
            await connection.close()
            Issue.record("connected to \(url)", sourceLocation: sourceLocation)
        } catch let error as RedisError {
            #expect(error.kind == .tlsFailed, "\(error)", sourceLocation: sourceLocation)
            #expect(!error.isTransient, sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func verifiesTheServerAgainstTheGivenCA() async throws {
        let server = try await RedisServerProcess.launchTLS()
        let tls = try #require(server.tls)
        let connection = try await RedisConnection.connect(try RedisURL(server.tlsURL(query: "ca=\(tls.caFile)")))
        #expect(try await connection.command(["PING"]) == .simpleString("PONG"))
        let replies = try await connection.pipeline((0..<200).map { ["SET", "k\($0)", "v"].map { Array($0.utf8) } })
        #expect(replies.count == 200 && replies.allSatisfy { $0 == .simpleString("OK") })
        await connection.close()
        // Not trusted: the system store and an unrelated CA both refuse the test CA's certificate.
        await expectTLSFailure(server.tlsURL(query: ""))
        await expectTLSFailure(server.tlsURL(query: "ca=\(tls.otherCAFile)"))
    }

    @Test func hostNameVerificationAndItsOptOuts() async throws {
        let server = try await RedisServerProcess.launchTLS()
        let tls = try #require(server.tls)
        // The certificate names localhost, not 127.0.0.1.
        await expectTLSFailure(server.tlsURL(host: "127.0.0.1", query: "ca=\(tls.caFile)"))
        for query in ["ca=\(tls.caFile)&verify=ca", "verify=none", "ssl_cert_reqs=none"] {
            let connection = try await RedisConnection.connect(
                try RedisURL(server.tlsURL(host: "127.0.0.1", query: query))
            )
            #expect(try await connection.command(["PING"]) == .simpleString("PONG"))
            await connection.close()
        }
    }

    @Test func clientCertificatesWhenTheServerRequiresThem() async throws {
        let server = try await RedisServerProcess.launchTLS(requireClientCertificates: true)
        let tls = try #require(server.tls)
        let withCertificate = try await RedisConnection.connect(
            try RedisURL(server.tlsURL(query: "ca=\(tls.caFile)&cert=\(tls.clientCertificate)&key=\(tls.clientKey)"))
        )
        #expect(try await withCertificate.command(["PING"]) == .simpleString("PONG"))
        await withCertificate.close()
        // Without one, the server ends the handshake (TLS 1.3 may report it on the first command instead).
        do {
            let connection = try await RedisConnection.connect(
                try RedisURL(server.tlsURL(query: "ca=\(tls.caFile)")),
                timeout: .seconds(3)
            )
            _ = try await connection.command(["PING"])
            Issue.record("a client without a certificate was served")
        } catch let error as RedisError {
            #expect([.tlsFailed, .connectionLost].contains(error.kind), "\(error)")
        }
    }

    @Test func tlsAgainstAPlainPortAndUnreadableFilesAreClearErrors() async throws {
        let plain = try await RedisServerProcess.launch()
        await expectTLSFailure("rediss://127.0.0.1:\(plain.port)/0?verify=none")
        do {
            _ = try await RedisConnection.connect(
                try RedisURL("rediss://localhost:\(plain.port)?ca=/nonexistent/ca.pem")
            )
            Issue.record("a missing CA file was accepted")
        } catch let error as RedisError {
            #expect(error.kind == .tlsFailed)
            #expect(error.message.contains("ca="), "\(error)")
        }
    }
}
