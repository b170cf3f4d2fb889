import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` started on a free loopback port for one test (never a mock), with extra options such
/// as `--requirepass`. `stop()` / `start()` simulate outages on the same port.
public final class RedisServerProcess: @unchecked Sendable {
    public private(set) var port: UInt16 = 0
    private let extraArguments: [String]
    private let directory: URL
    /// A Sentinel (`redis-server <config> --sentinel`): its configuration file, written before the first start.
    private let sentinelConfiguration: URL?
    /// Certificates when the server speaks TLS only (``launchTLS(requireClientCertificates:)``).
    public let tls: TLSFiles?

    /// PEM files made with `openssl` for one TLS server: a CA, the server's certificate (for `localhost` only, so
    /// that `127.0.0.1` fails host-name verification), a client certificate, and an unrelated CA.
    public struct TLSFiles: Sendable {
        public let caFile: String
        public let serverCertificate: String
        public let serverKey: String
        public let clientCertificate: String
        public let clientKey: String
        public let otherCAFile: String
    }
    /// The running server's pid (0 when stopped). posix_spawn/waitpid, not Foundation.Process, whose
    /// `waitUntilExit` can hang when called off the main thread.
    private var pid: pid_t = 0
    /// The running server's process id (0 when stopped), for benchmarks that read its CPU time.
    public var processID: Int32 { pid }

    /// The path of `redis-server`, if installed.
    public static let executable: String? = {
        for path in ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        return nil
    }()

    public static var isAvailable: Bool { executable != nil }

    /// Starts a server (`extraArguments` e.g. `["--requirepass", "secret"]`) and waits until it answers.
    public convenience init(_ extraArguments: [String] = []) throws {
        try self.init(extraArguments, tls: false, requireClientCertificates: false)
    }

    private init(
        _ extraArguments: [String],
        tls: Bool,
        requireClientCertificates: Bool,
        sentinelConfiguration: String? = nil
    ) throws {
        guard Self.executable != nil else { throw FakeMongodError("redis-server is not installed") }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let sentinelConfiguration {
            let file = directory.appendingPathComponent("sentinel.conf")
            try sentinelConfiguration.write(to: file, atomically: true, encoding: .utf8)
            self.sentinelConfiguration = file
        } else {
            self.sentinelConfiguration = nil
        }
        if tls {
            let files = try Self.sharedCertificates.get()
            self.tls = files
            self.extraArguments =
                [
                    "--tls-cert-file", files.serverCertificate, "--tls-key-file", files.serverKey,
                    "--tls-ca-cert-file", files.caFile, "--tls-auth-clients", requireClientCertificates ? "yes" : "no",
                ] + extraArguments
        } else {
            self.tls = nil
            self.extraArguments = extraArguments
        }
        // A port found free can be taken by a parallel test before redis-server binds it: try a few.
        var lastError: (any Error)?
        for _ in 0..<5 {
            port = try Self.freePort()
            do {
                try start(within: 3)
                return
            } catch {
                stop()
                lastError = error
            }
        }
        throw lastError ?? FakeMongodError("redis-server did not start")
    }

    private var arguments: [String] {
        let listen = tls == nil ? ["--port", "\(port)"] : ["--port", "0", "--tls-port", "\(port)"]
        if let sentinelConfiguration {
            return [sentinelConfiguration.path] + listen + ["--bind", "127.0.0.1", "--dir", directory.path]
                + extraArguments + ["--sentinel"]
        }
        return listen + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path]
            + extraArguments
    }

    /// A Sentinel (`redis-server <config> --sentinel`) monitoring `masterName` at `127.0.0.1:<masterPort>`, with
    /// short timeouts so that tests fail over within seconds.
    public static func launchSentinel(
        masterName: String,
        masterPort: UInt16,
        quorum: Int = 2,
        downAfterMilliseconds: Int = 1000,
        failoverTimeoutMilliseconds: Int = 4000,
        extraConfiguration: String = ""
    ) async throws -> RedisServerProcess {
        let configuration = """
            sentinel monitor \(masterName) 127.0.0.1 \(masterPort) \(quorum)
            sentinel down-after-milliseconds \(masterName) \(downAfterMilliseconds)
            sentinel failover-timeout \(masterName) \(failoverTimeoutMilliseconds)
            sentinel parallel-syncs \(masterName) 1
            \(extraConfiguration)

            """
        return try await onDedicatedThread {
            try RedisServerProcess(
                [],
                tls: false,
                requireClientCertificates: false,
                sentinelConfiguration: configuration
            )
        }
    }

    /// A server that speaks TLS only, on its port.
    public static func launchTLS(requireClientCertificates: Bool = false) async throws -> RedisServerProcess {
        try await onDedicatedThread {
            try RedisServerProcess([], tls: true, requireClientCertificates: requireClientCertificates)
        }
    }

    /// `rediss://<host>:<port>/0` with the given query (`ca=…&verify=…`).
    public func tlsURL(host: String = "localhost", query: String) -> String {
        "rediss://\(host):\(port)/0\(query.isEmpty ? "" : "?" + query)"
    }

    /// One set of certificates per test process (RSA key generation is the costly part of a TLS test).
    static let sharedCertificates: Result<TLSFiles, any Error> = Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try makeCertificates(in: directory)
    }

    static func makeCertificates(in directory: URL) throws -> TLSFiles {
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        func openssl(_ arguments: [String]) throws {
            guard let pid = spawnQuietly("/usr/bin/openssl", arguments) else {
                throw FakeMongodError("cannot run /usr/bin/openssl (Debian: apt-get install openssl)")
            }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            guard status == 0 else { throw FakeMongodError("openssl \(arguments.first ?? "") failed") }
        }
        try "subjectAltName=DNS:localhost\n".write(toFile: path("san.cnf"), atomically: true, encoding: .utf8)
        for ca in ["ca", "other-ca"] {
            try openssl([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(ca).key"), "-out",
                path("\(ca).pem"),
                "-days", "2", "-subj", "/CN=rsinit test \(ca)",
            ])
        }
        for leaf in ["server", "client"] {
            try openssl([
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(leaf).key"), "-out", path("\(leaf).csr"),
                "-subj", "/CN=\(leaf == "server" ? "localhost" : "rsinit client")",
            ])
            try openssl(
                [
                    "x509", "-req", "-in", path("\(leaf).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                    "-CAcreateserial", "-out", path("\(leaf).pem"), "-days", "2",
                ] + (leaf == "server" ? ["-extfile", path("san.cnf")] : [])
            )
        }
        return TLSFiles(
            caFile: path("ca.pem"),
            serverCertificate: path("server.pem"),
            serverKey: path("server.key"),
            clientCertificate: path("client.pem"),
            clientKey: path("client.key"),
            otherCAFile: path("other-ca.pem")
        )
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts a server off the cooperative pool (start-up polls until the server answers).
    public static func launch(_ extraArguments: [String] = []) async throws -> RedisServerProcess {
        try await onDedicatedThread { try RedisServerProcess(extraArguments) }
    }

    /// Restarts a stopped server off the cooperative pool.
    public func restart() async throws {
        try await onDedicatedThread { try self.start() }
    }

    /// `redis://127.0.0.1:<port>` plus optional credentials.
    public func url(user: String? = nil, password: String? = nil, database: Int = 0) -> String {
        var credentials = ""
        if let password { credentials = "\(user ?? ""):\(password)@" }
        return "redis://\(credentials)127.0.0.1:\(port)/\(database)"
    }

    /// Starts (again) on the same port.
    public func start() throws { try start(within: 10) }

    private func start(within seconds: TimeInterval) throws {
        guard let spawned = spawnQuietly(Self.executable!, arguments) else {
            throw FakeMongodError("cannot start redis-server")
        }
        pid = spawned
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if Self.canConnect(port) {
                // Someone answers on the port — make sure it is our process (a parallel test may own the port and
                // our redis-server exits at once when its bind fails).
                Thread.sleep(forTimeInterval: 0.05)
                var status: Int32 = 0
                guard waitpid(spawned, &status, WNOHANG) == 0 else {
                    pid = 0
                    throw FakeMongodError("redis-server could not bind port \(port)")
                }
                return
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw FakeMongodError("redis-server did not start on port \(port)")
    }

    /// Kills the server (SIGKILL: no shutdown save, like a crash) and waits for it to exit.
    public func stop() {
        guard pid != 0 else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
    }

    static func canConnect(_ port: UInt16) -> Bool {
        guard let fd = connectLoopback(port: port) else { return false }
        Glibc.close(fd)
        return true
    }

    /// A port nobody listens on, from 20000–31999 (below the kernel's ephemeral range, where the doubles' port-0
    /// binds land). Collisions with parallel tests are caught by the pid check in `start`.
    public static func freePort() throws -> UInt16 {
        for _ in 0..<100 {
            let candidate = UInt16.random(in: 20000...31999)
            if !canConnect(candidate) { return candidate }
        }
        throw FakeMongodError("no free loopback port")
    }
}
