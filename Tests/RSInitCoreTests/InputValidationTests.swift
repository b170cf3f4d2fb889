import BSON
import Foundation
import Logging
import MongoCWrapper
import RESP
import RSInitTestUtils
import RedisClient
import Testing

@testable import RSInitCore

@Suite struct InputValueTests {
    let flag = InputSource("--timeout")

    @Test(
        arguments: [
            ("90", 90_000), ("90s", 90_000), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000), ("1d", 86_400_000),
            ("1.5s", 1_500), ("0.001", 1), ("1MS", 1), ("7d", 604_800_000), ("0090", 90_000), ("604800", 604_800_000),
        ] as [(String, Int64)]
    )
    func acceptsDurations(_ text: String, _ milliseconds: Int64) throws {
        #expect(try InputValue.duration(text, from: flag) == .milliseconds(milliseconds))
    }

    @Test(arguments: [
        "", "0", "0s", "0.0001s", "-1", "-5s", "+5", "1e16", "1e3", "1e300", "nan", "NaN", "inf", "-inf", "infinity",
        "99999999999999999999", "9223372036854775807", "9223372036854775807ms", "8d", "604801", "5x", "10 s", " 10",
        "10 ", "0x10", "1.5.5s", "s", "ms", ".5", "5.", "1_000", "１０", "5sec", "5 min", "1,5s", "10s5",
    ])
    func rejectsDurations(_ text: String) {
        #expect(throws: InputError.self) { try InputValue.duration(text, from: flag) }
        do {
            _ = try InputValue.duration(text, from: flag)
        } catch {
            #expect(error.message.contains("--timeout"))
            #expect(error.fix.contains("604800 s"))
        }
    }

    /// Every string of up to 3 characters from an alphabet of digits, units and troublemakers: a parse never
    /// traps, and what it accepts is within the range.
    @Test func durationsNeverTrapAndStayInRange() async {
        let alphabet = Array("09.-+ emsdhxn")
        var texts = [""]
        for _ in 0..<3 { texts += texts.flatMap { prefix in alphabet.map { prefix + String($0) } } }
        for (index, text) in Set(texts).enumerated() {
            if index % 200 == 0 { await Task.yield() }
            // Deliberately conditional: most texts are rejected (never a trap); only an accepted one has a range.
            if let duration = try? InputValue.duration(text, from: flag) {
                #expect(InputValue.durationRange.contains(duration), "\(text)")
            }
        }
    }

    @Test func portsCountsAndIndexes() throws {
        #expect(try InputValue.port("1", from: InputSource("--port")) == 1)
        #expect(try InputValue.port("65535", from: InputSource("--port")) == 65535)
        for bad in ["0", "65536", "-1", "+80", " 80", "80 ", "", "8O", "99999999999999999999999", "0x50", "80.0"] {
            #expect(throws: InputError.self, "\(bad)") { try InputValue.port(bad, from: InputSource("--port")) }
        }
        #expect(try InputValue.integer("0", from: InputSource("db"), range: 0...15) == 0)
        #expect(throws: InputError.self) { try InputValue.integer("16", from: InputSource("db"), range: 0...15) }
    }

    @Test func booleansAndLists() throws {
        for yes in ["1", "true", "YES", "On"] { #expect(try InputValue.boolean(yes, from: InputSource("RSINIT_HA"))) }
        for no in ["0", "false", "No", "off"] { #expect(try !InputValue.boolean(no, from: InputSource("RSINIT_HA"))) }
        #expect(throws: InputError.self) { try InputValue.boolean("maybe", from: InputSource("RSINIT_HA")) }
        let include = InputSource("--include")
        #expect(try InputValue.list(nil, from: include, example: "a") == [])
        #expect(try InputValue.list(" a , b.c ", from: include, example: "a") == ["a", "b.c"])
        for bad in [",", ",,,", "a,,b", "a,", ",a", "", " , "] {
            #expect(throws: InputError.self, "\(bad)") { try InputValue.list(bad, from: include, example: "a") }
        }
    }

    @Test func filesAreNamedNeverEchoed() {
        let source = InputSource("RSINIT_PORT_FILE", isFile: true)
        do {
            _ = try InputValue.port("hunter2-secret", from: source)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("RSINIT_PORT_FILE"))
            #expect(!error.message.contains("hunter2"))
        }
    }

    @Test func shownValuesAreRedactedAndShort() {
        #expect(InputValue.shown("root:Secr3tPass@mongo") == "root:***@mongo")
        #expect(InputValue.shown(String(repeating: "x", count: 500)).count == 80)
        #expect(!InputValue.shown("a\u{1B}[31mred").contains("\u{1B}"))
    }
}

@Suite struct RedisErrorModelTests {
    @Test func everyKindHasOneCategoryAndTransienceFollowsIt() {
        for kind in RedisError.Kind.allCases {
            let error = RedisError(kind, "any text, even LOADING or NOAUTH")
            #expect(error.isTransient == (error.category == .transient), "\(kind)")
        }
        #expect(RedisError.category(of: .invalidURL) == .usage)
        #expect(RedisError.category(of: .serverConfiguration) == .usage)
        #expect(RedisError.category(of: .tlsFailed) == .usage)
        #expect(RedisError.category(of: .authenticationFailed) == .authentication)
        #expect(RedisError.category(of: .authenticationRequired) == .authentication)
        #expect(RedisError.category(of: .permissionDenied) == .authentication)
        #expect(RedisError.category(of: .unexpectedReply) == .transient)
        #expect(RedisError.category(of: .protocolError) == .transient)
    }

    @Test(arguments: [
        ("LOADING Redis is loading the dataset in memory", RedisError.Kind.serverBusy),
        ("BUSY Redis is busy running a script", .serverBusy),
        ("TRYAGAIN Multiple keys request during rehashing", .serverBusy),
        ("READONLY You can't write against a read only replica.", .serverBusy),
        ("MASTERDOWN Link with MASTER is down", .serverBusy),
        ("OOM command not allowed when used memory > 'maxmemory'.", .serverBusy),
        ("CLUSTERDOWN The cluster is down", .serverBusy),
        ("NOAUTH Authentication required.", .authenticationRequired),
        ("WRONGPASS invalid username-password pair or user is disabled.", .authenticationFailed),
        ("ERR invalid password", .authenticationFailed),
        ("NOPERM this user has no permissions to run the 'evalsha' command", .permissionDenied),
        ("ERR DB index is out of range", .serverConfiguration),
        ("ERR unknown command 'EVALSHA', with args beginning with: ", .serverConfiguration),
        ("ERR wrong number of arguments for 'set' command", .server),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", .server),
        ("NOSCRIPT No matching script. Please use EVAL.", .server),
        ("", .server),
        ("LOADINGX not a code", .server),
    ])
    func errorRepliesAreClassifiedByTheirCode(_ reply: String, _ kind: RedisError.Kind) {
        #expect(RedisError.kind(ofReply: reply) == kind)
        #expect(RedisError.reply(reply, command: "SET").kind == kind)
    }

    @Test func replyTextIsRedacted() {
        let error = RedisError.reply("ERR something about redis://:topsecret1@cache", command: "GET")
        #expect(!error.message.contains("topsecret1"))
    }

    @Test func repliesOfTheWrongTypeAreErrorsNotDefaults() throws {
        #expect(try RedisConnection.scriptCount(.integer(3), events: 5) == 3)
        #expect(try RedisConnection.scriptCount(.integer(-1), events: 5) == -1)
        for reply in [
            RESPValue.bulk("3"), .bulkString(nil), .simpleString("OK"), .array([]), .integer(6), .integer(-2),
            .integer(.max),
        ] {
            #expect(throws: RedisError.self, "\(reply)") { try RedisConnection.scriptCount(reply, events: 5) }
            do { _ = try RedisConnection.scriptCount(reply, events: 5) } catch {
                #expect(error.kind == .unexpectedReply && error.isTransient)
            }
        }
        #expect(throws: RedisError.self) { try RedisConnection.scriptCount(.error("BUSY x"), events: 1) }
        #expect(try RedisConnection.optionalString(.bulkString(nil), command: "GET") == nil)
        #expect(try RedisConnection.optionalString(.bulk("1.2"), command: "GET") == "1.2")
        for reply in [RESPValue.integer(1), .array([]), .bulkString([0xFF, 0xFE])] {
            #expect(throws: RedisError.self, "\(reply)") { try RedisConnection.optionalString(reply, command: "GET") }
        }
    }

    /// A checkpoint that does not parse is an error that closes the connection and is retried, never a default.
    @Test(.enabled(if: RedisServerProcess.isAvailable)) func aCheckpointThatDoesNotParseIsAnErrorNotADefault()
        async throws
    {
        let redis = try await RedisServerProcess.launch()
        defer { redis.stop() }
        let url = try RedisURL(redis.url())
        let connection = try await RedisConnection.connect(url)
        try await connection.require(["SET", "rsinit::checkpoint", "not-a-position"])
        await connection.close()
        let publisher = RedisEventPublisher(configuration: .init(url: url), logger: Logger(label: "test"))
        do {
            _ = try await publisher.loadCheckpoint()
            Issue.record("a checkpoint that does not parse was accepted")
        } catch let error as RedisError {
            #expect(error.kind == .unexpectedReply && error.isTransient)
            #expect(error.message.contains("not-a-position"))
        }
        await publisher.close()
    }

    @Test(arguments: [
        ("redis://[zz::1]:6379", "malformed IPv6"), ("redis://[::1:6379", "no closing"),
        ("redis://::1:6379", "brackets"), ("redis://[::1]x", "after the IPv6"),
        ("redis://h/99999999999", "database"), ("redis://h/2147483648", "database"), ("redis://h/-1", "database"),
        ("redis://h/+1", "database"), ("redis://h:+80", "port"), ("redis://cache host", "invalid host"),
        ("redis://ca_che!/0", "invalid host"), ("redis://:p%ZZ@h", "malformed %-escape"),
        ("rediss://h/?ca=", "needs a file path"), ("rediss://h/?=x", "without a name"),
        ("redis://h/?ca=/x", "rediss://"), ("rediss://h/?verify=maybe", "full, ca or none"),
    ])
    func redisURLsAreValidatedPartByPart(_ text: String, _ mentions: String) {
        do {
            _ = try RedisURL(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.kind == .invalidURL && error.category == .usage)
            #expect(error.message.contains(mentions), "\(error.message)")
        }
    }

    @Test func validRedisURLsStillParse() throws {
        #expect(try RedisURL("redis://h/2147483647").database == Int(Int32.max))
        #expect(try RedisURL("redis://[fe80::1%eth0]:6380").host == "fe80::1%eth0")
        #expect(try RedisURL("redis://redis-0.redis_svc.ns.svc.cluster.local").port == 6379)
        let tls = try RedisURL("rediss://h/?ca=/does/not/exist")
        #expect(throws: RedisError.self) { try tls.checkTLSFiles() }
        #expect(RedisURL.isIPv6Address("::1") && !RedisURL.isIPv6Address("zz::1") && !RedisURL.isIPv6Address("1.2.3.4"))
    }
}

@Suite struct BoundsTests {
    @Test func respFramesOverTheBufferCapAreErrorsCompleteOrNot() throws {
        let limits = RESPLimits(maximumBufferSize: 64)
        // Incomplete, but already more than the cap buffered: an error, not "need more data" forever.
        var partial = Array("*3\r\n$100\r\n".utf8) + Array(repeating: UInt8(ascii: "a"), count: 80)
        var index = 0
        #expect(throws: RESPError.self) { try RESPCodec.decode(partial, at: &index, limits: limits) }
        // Complete but over the cap.
        partial =
            Array("*2\r\n$40\r\n".utf8) + Array(repeating: UInt8(ascii: "a"), count: 40)
            + Array("\r\n$10\r\n0123456789\r\n".utf8)
        index = 0
        #expect(throws: RESPError.self) { try RESPCodec.decode(partial, at: &index, limits: limits) }
        // Within the cap: decoded; incomplete within the cap: nil.
        index = 0
        #expect(try RESPCodec.decode(Array("$5\r\nhello\r\n".utf8), at: &index, limits: limits) == .bulk("hello"))
        index = 0
        #expect(try RESPCodec.decode(Array("$5\r\nhel".utf8), at: &index, limits: limits) == nil)
    }

    @Test func aTransactionOverTheBufferBoundIsReportedNotBufferedOnAndOn() {
        let lsid =
            #""lsid":{"id":{"$binary":{"base64":"AQEBAQEBAQEBAQEBAQEBAQ==","subType":"04"}}},"txnNumber":{"$numberLong":"7"}"#
        var mapper = OplogEventMapper(
            configuration: .init(maximumPendingOperations: 3),
            startPosition: BSONTimestamp(seconds: 5, increment: 0)
        )
        var events: [ChangeEvent] = []
        for i in 1...2 {
            let document = entry(
                #"{"ts":{"$timestamp":{"t":5,"i":\#(i)}},"op":"c","ns":"admin.$cmd",\#(lsid),"o":{"applyOps":[{"op":"i","ns":"app.c","o":{"_id":\#(i)}},{"op":"i","ns":"app.c","o":{"_id":\#(i + 10)}}],"partialTxn":true}}"#
            )
            _ = mapper.map(document, into: &events)
            #expect(mapper.pendingTransactionsExceedBound == (i == 2))
        }
        #expect(mapper.pendingOperationCount == 4)
        #expect(events.isEmpty)
        // A commit releases the operations from the count.
        let commit = entry(
            #"{"ts":{"$timestamp":{"t":5,"i":3}},"op":"c","ns":"admin.$cmd",\#(lsid),"o":{"applyOps":[],"count":4}}"#
        )
        _ = mapper.map(commit, into: &events)
        #expect(mapper.pendingOperationCount == 0 && !mapper.pendingTransactionsExceedBound)
        #expect(events.count == 4)
        #expect("\(OplogTransactionTooLarge(operations: 4, maximum: 3))".contains("(3)"))
    }

    /// A server for one test; stops when the task is cancelled.
    static func startServer(
        maximumConnections: Int,
        idleTimeout: Duration
    ) async throws -> (port: Int, task: Task<Void, any Error>) {
        let bound = AsyncStream.makeStream(of: Int.self)
        let server = OperationsHTTPServer(
            host: "127.0.0.1",
            port: 0,
            logger: .init(label: "test"),
            maximumConnections: maximumConnections,
            idleTimeout: idleTimeout,
            onBound: { bound.continuation.yield($0) },
            router: { _ in .init(status: 200, body: "ok\n") }
        )
        let task = Task { try await server.run() }
        var iterator = bound.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        return (port, task)
    }

    @Test func theHTTPServerClosesConnectionsOverItsCap() async throws {
        let (port, task) = try await Self.startServer(maximumConnections: 2, idleTimeout: .seconds(600))
        defer { task.cancel() }
        try await onDedicatedThread {
            // Two connections fill the cap (they are served: a request on each is answered).
            let first = try #require(connectLoopback(port: UInt16(port)))
            let second = try #require(connectLoopback(port: UInt16(port)))
            defer { for fd in [first, second] { close(fd) } }
            for fd in [first, second] {
                let request = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
                #expect(write(fd, request, request.count) == request.count)
                #expect(Self.readSome(fd, within: 20).hasPrefix("HTTP/1.1 200"))
            }
            // A third is closed by the server (the idle timeout is 10 minutes: this is the cap).
            let third = try #require(connectLoopback(port: UInt16(port)))
            defer { close(third) }
            #expect(Self.closedByPeer(third, within: 20))
        }
    }

    @Test func theHTTPServerClosesIdleConnections() async throws {
        let (port, task) = try await Self.startServer(maximumConnections: 64, idleTimeout: .milliseconds(300))
        defer { task.cancel() }
        try await onDedicatedThread {
            let idle = try #require(connectLoopback(port: UInt16(port)))
            defer { close(idle) }
            #expect(Self.closedByPeer(idle, within: 20))
            // A half-sent request is idle too.
            let partial = try #require(connectLoopback(port: UInt16(port)))
            defer { close(partial) }
            let head = Array("GET /healthz HTTP/1.1\r\nHo".utf8)
            #expect(write(partial, head, head.count) == head.count)
            #expect(Self.closedByPeer(partial, within: 20))
        }
    }

    /// The first bytes the peer sends within `within` seconds.
    static func readSome(_ fd: Int32, within seconds: Int) -> String {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(fd, &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }

    /// Reads until EOF (true) or `within` seconds pass (false).
    static func closedByPeer(_ fd: Int32, within seconds: Int) -> Bool {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }
}
