import ArgumentParser
import BSON
import FoundationEssentials
import Logging
import MongoCWrapper
import Prometheus
import RSInitCore
import RSInitSupport
import RedisClient
import ServiceLifecycle
import UnixSignals

/// `rsinit tail`: the oplog → Redis bridge (a long-running sidecar).
struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Tail the oplog once and publish change events to Redis Pub/Sub for cultofcoders:redis-oplog.",
        discussion: """
            Without --redis, events are printed as NDJSON on stdout. Channels: <prefix><db>.<collection> and \
            <prefix><db>.<collection>::<Meteor idStringify(_id)>; payload {"e":"i|u|r","d":{"_id":…},"f":[…]}. \
            drop/dropDatabase/renameCollection/create go to the control channel as {"c":…,"db":…,"coll":…}. \
            The checkpoint is kept in Redis (<metadata-prefix>checkpoint) and written with every batch. While Redis \
            is unreachable the oplog is not read further (nothing is dropped). SIGTERM/SIGINT finish the in-flight \
            batch, write the checkpoint and exit 0.

            SOURCES: --source oplog reads local.oplog.rs; --source change-stream reads a change stream \
            (majority-committed events only, works through mongos, needs no access to local; cluster-wide, or one \
            database when --include names one); auto (default) takes the oplog when local.oplog.rs is readable on a \
            replica-set member, else a change stream, and says which at start. --full-document (change stream) puts \
            the document in d for redis-oplog's protectAgainstRaceConditions: false.

            With --http host:port, GET /healthz answers 200 while the tail makes progress (a batch or an idle \
            heartbeat within --stall-timeout) and is less than --max-lag behind the oplog, else 503 with the reason; \
            GET /metrics serves Prometheus text (rsinit_events_total{namespace,op}, rsinit_publish_batches_total, \
            rsinit_publish_duration_seconds, rsinit_lag_seconds, rsinit_dedupe_hits_total, \
            rsinit_publish_retries_total, rsinit_history_lost_total, rsinit_oplog_entries_total).

            EXIT CODES
              0  stopped by SIGTERM/SIGINT
              2  usage or bad input (flags, URIs, TLS set-up, an --http address in use, a Redis database or \
            command the server refuses, open transactions over 1,000,000 operations)
              4  mongod has no oplog: not started with --replSet, or the set is not initiated
              6  authentication failed (Redis or MongoDB)
              9  oplog history lost: the checkpoint rolled out of the oplog, or the change stream cannot resume \
            (286/280/260/136) (--on-history-lost fail)
              11 a delivered, majority-committed oplog entry is missing from a node that committed it (majority \
            data loss, writeConcernMajorityJournalDefault false, or a forced reconfig)

            ENVIRONMENT
              RSINIT_REDIS, RSINIT_PREFIX, RSINIT_CONTROL_CHANNEL, RSINIT_FIELDS, RSINIT_FROM, RSINIT_ON_HISTORY_LOST, \
            RSINIT_MAJORITY, RSINIT_SOURCE, RSINIT_FULL_DOCUMENT, RSINIT_HA, RSINIT_METADATA_PREFIX, RSINIT_INCLUDE, RSINIT_EXCLUDE, RSINIT_FAN_OUT, RSINIT_HTTP, \
            RSINIT_STALL_TIMEOUT, RSINIT_MAX_LAG, plus RSINIT_HOST/PORT/URI.
            """
    )

    enum Fields: String, ExpressibleByArgument, CaseIterable { case top, deep }
    enum HistoryLost: String, ExpressibleByArgument, CaseIterable {
        case fail
        case fromEnd = "from-end"
    }

    @OptionGroup var connection: ConnectionOptions

    @Option(
        help: ArgumentHelp(
            "redis:// or rediss:// (TLS: ?ca=<pem>&verify=full|ca|none&cert=&key=) URL; Sentinel: redis+sentinel://[user:pass@]s1:26379,s2:26379/<master>[/db][?sentinel_password=]; Cluster: redis+cluster://n1:6379,n2:6379; without it events go to stdout as NDJSON (env RSINIT_REDIS).",
            valueName: "url"
        )
    )
    var redis: String?

    @Option(help: "Channel prefix, redis-oplog's globalRedisPrefix (env RSINIT_PREFIX).") var prefix: String = ""

    @Option(
        name: .customLong("control-channel"),
        help: "Channel for drop/dropDatabase/rename/create (env RSINIT_CONTROL_CHANNEL)."
    )
    var controlChannel = "rsinit.commands"

    @Option(help: "Changed fields: top-level names or dotted deep paths (env RSINIT_FIELDS).") var fields: Fields =
        .deep

    @Option(
        help: ArgumentHelp(
            "Where to start: checkpoint (default: resume, or end), end, or a timestamp T.I (env RSINIT_FROM).",
            valueName: "checkpoint|end|T.I"
        )
    )
    var from = "checkpoint"

    @Option(
        name: .customLong("on-history-lost"),
        help: "fail (exit 9) or from-end (log loudly, restart at the end) (env RSINIT_ON_HISTORY_LOST)."
    )
    var onHistoryLost: HistoryLost = .fail

    enum Majority: String, ExpressibleByArgument, CaseIterable { case auto, on, off }

    @Option(
        help: ArgumentHelp(
            "Publish only majority-committed changes: auto (on for a replica set of more than one member), on, or off (faster, but a write a failover rolls back may already have been published) (env RSINIT_MAJORITY).",
            valueName: "auto|on|off"
        )
    )
    var majority: Majority = .auto

    @Flag(help: "HA: several bridges on one oplog publish each event once (atomic Redis dedupe) (env RSINIT_HA).")
    var ha = false

    enum Source: String, ExpressibleByArgument, CaseIterable {
        case oplog
        case changeStream = "change-stream"
        case auto
    }

    @Option(
        help: ArgumentHelp(
            "oplog (local.oplog.rs), change-stream (majority-committed; mongos; no access to local needed) or auto: the oplog when local is readable on a replica-set member, else a change stream (env RSINIT_SOURCE).",
            valueName: "oplog|change-stream|auto"
        )
    )
    var source: Source = .auto

    @Flag(
        name: .customLong("full-document"),
        help:
            "Change-stream source: updates carry the current document in d (updateLookup), for redis-oplog's protectAgainstRaceConditions: false (env RSINIT_FULL_DOCUMENT)."
    )
    var fullDocument = false

    @Option(
        name: .customLong("metadata-prefix"),
        help: "Prefix of the checkpoint and dedupe keys (env RSINIT_METADATA_PREFIX)."
    )
    var metadataPrefix = "rsinit::"

    @Option(
        help: ArgumentHelp(
            "Only these namespaces: db, db.coll, wildcards *, comma-separated (env RSINIT_INCLUDE).",
            valueName: "patterns"
        )
    )
    var include: String?

    @Option(help: ArgumentHelp("Never these namespaces (env RSINIT_EXCLUDE).", valueName: "patterns"))
    var exclude: String?

    @Option(
        name: .customLong("fan-out"),
        help: ArgumentHelp(
            "Extra channels for redis-oplog namespace:/channel: subscriptions: <pattern>=namespace:<X> publishes on <db>.<X>::<coll>, <pattern>=channel:<C> on <db>.<C>; comma-separated (env RSINIT_FAN_OUT).",
            valueName: "rules"
        )
    )
    var fanOut: String?

    @Option(
        help: ArgumentHelp(
            "Serve GET /healthz and /metrics (Prometheus) on host:port (env RSINIT_HTTP).",
            valueName: "host:port"
        )
    )
    var http: String?

    @Option(
        name: .customLong("stall-timeout"),
        help: "/healthz fails after this long without progress (env RSINIT_STALL_TIMEOUT)."
    )
    var stallTimeout = RawArgument("30s")

    @Option(
        name: .customLong("max-lag"),
        help: "/healthz fails while the bridge is further behind the oplog than this (env RSINIT_MAX_LAG)."
    )
    var maxLag = RawArgument("60s")

    @OptionGroup var output: OutputOptions

    func run() async throws {
        let console = Console(output: output, command: "tail")
        do {
            let health = try healthPolicy()
            let mongo = try connection.connectionString()
            let start = try startPosition()
            let (include, exclude, fanOutRules) = try filters()
            let httpAddress = try http.map(Self.parseListenAddress)
            let registry = httpAddress.map { _ in PrometheusCollectorRegistry() }
            let mapping = OplogEventMapper.Configuration(
                fieldsMode: fields == .top ? .top : .deep,
                filter: NamespaceFilter(include: include, exclude: exclude),
                includeFullDocuments: fullDocument
            )
            let choice = try await chooseSource(mongo, include: include, console: console)
            console.info("source: \(choice.reason)")
            let publisher = try makePublisher(mongo, fanOutRules: fanOutRules, console: console)
            var bridgeConfiguration = OplogBridge.Configuration(
                tailer: OplogTailerConfiguration(
                    connectionString: mongo,
                    mapping: mapping,
                    majority: MajorityMode(rawValue: majority.rawValue) ?? .auto
                ),
                start: start,
                onHistoryLost: onHistoryLost == .fail ? .fail : .fromEnd,
                health: health
            )
            bridgeConfiguration.source = choice.source
            let bridge = OplogBridge(
                configuration: bridgeConfiguration,
                publisher: publisher,
                logger: console.logger,
                metrics: registry.map { BridgeMetrics(factory: Self.metricsFactory($0)) } ?? BridgeMetrics()
            )
            try await serve(
                bridge,
                publisher: publisher,
                http: httpAddress.flatMap { address in
                    registry.map { (address, $0) }
                },
                console: console
            )
            let statistics = bridge.statistics
            console.info(
                "stopped after \(statistics.events) events in \(statistics.batches) batches; checkpoint \(statistics.lastPosition.map { "\($0)" } ?? "unchanged")"
            )
        } catch is CancellationError {
            // A signal arrived before anything was delivered: a clean stop.
            console.info("stopped")
        } catch {
            // The core decides kind, message, fix and exit code; the CLI prints them.
            guard let failure = BootstrapFailure(tailError: error) else { throw error }
            console.result(.failure(failure), elapsed: .zero)
            throw ExitCode(failure.exitCode)
        }
    }

    /// `--source` (auto probes the deployment unless `--full-document` decides).
    private func chooseSource(
        _ mongo: MongoConnectionString,
        include: [String],
        console: Console
    ) async throws -> SourceChoice {
        let facts = source == .auto && !fullDocument ? await SourceChoice.probe(mongo, logger: console.logger) : nil
        do {
            return try SourceChoice.decide(
                requested: source == .auto ? nil : source == .changeStream,
                fullDocument: fullDocument,
                include: include,
                facts: facts
            )
        } catch { throw error.failure }
    }

    /// `--stall-timeout` and `--max-lag`.
    private func healthPolicy() throws(BootstrapFailure) -> BridgeHealth.Policy {
        do {
            return BridgeHealth.Policy(
                stallTimeout: try InputValue.duration(stallTimeout.text, from: InputSource("--stall-timeout")),
                maximumLag: try InputValue.duration(maxLag.text, from: InputSource("--max-lag"))
            )
        } catch { throw error.failure }
    }

    /// `--from`: checkpoint, end or an oplog timestamp `T.I`.
    private func startPosition() throws(BootstrapFailure) -> StartPosition {
        switch from {
        case "checkpoint": return .checkpoint
        case "end": return .end
        default:
            guard let ts = CheckpointEncoding.parseTimestamp(from) else {
                throw BootstrapFailure(
                    .usage,
                    "invalid --from \"\(InputValue.shown(from))\"",
                    fix: "use checkpoint, end, or an oplog timestamp T.I (seconds.increment, e.g. 1700000000.1)"
                )
            }
            return .at(ts)
        }
    }

    /// `--include`, `--exclude`, `--fan-out` (and a non-empty `--control-channel`).
    private func filters() throws(BootstrapFailure) -> (
        include: [String], exclude: [String], fanOut: [FanOutRule]
    ) {
        let include: [String]
        let exclude: [String]
        let fanOutItems: [String]
        do throws(InputError) {
            include = try InputValue.list(
                self.include,
                from: InputSource("--include"),
                example: "steedos,app.tasks"
            )
            exclude = try InputValue.list(self.exclude, from: InputSource("--exclude"), example: "app.logs,tmp*")
            fanOutItems = try InputValue.list(
                fanOut,
                from: InputSource("--fan-out"),
                example: "app.tasks=namespace:company"
            )
            try Self.checkPatterns(include, from: "--include")
            try Self.checkPatterns(exclude, from: "--exclude")
            if controlChannel.isEmpty {
                throw InputError("--control-channel is empty", fix: "name a channel, e.g. rsinit.commands")
            }
        } catch { throw error.failure }
        do { return (include, exclude, try fanOutItems.map(FanOutRule.init)) } catch {
            throw BootstrapFailure(
                .usage,
                Redaction.redact(error.description),
                fix: "e.g. --fan-out 'app.tasks=namespace:company' or 'app=channel:news'"
            )
        }
    }

    /// Redis (`--redis`) or NDJSON on stdout.
    private func makePublisher(
        _ mongo: MongoConnectionString,
        fanOutRules: [FanOutRule],
        console: Console
    ) throws(BootstrapFailure) -> any EventPublisher {
        guard let redis else {
            if ha { throw BootstrapFailure(.usage, "--ha needs --redis") }
            console.info("tailing \(mongo.redacted) → stdout (NDJSON)")
            return NDJSONPublisher(channelPrefix: prefix, fanOut: fanOutRules)
        }
        let url: RedisURL
        do {
            url = try RedisURL(redis)
            try url.checkTLSFiles()
        } catch {
            throw BootstrapFailure(
                .usage,
                error.message,
                fix:
                    "use redis[s]://[user:password@]host[:port][/db 0-\(RedisURL.maximumDatabase)][?ca=<pem>&verify=full|ca|none&cert=<pem>&key=<pem>], "
                    + "redis[s]+sentinel://[user:password@]s1:26379,s2:26379/<master>[/db][?sentinel_password=<pw>] or "
                    + "redis[s]+cluster://n1:6379,n2:6379"
            )
        }
        if url.useTLS && url.tls.verify == .none {
            console.warn(
                "--redis has verify=none: the Redis server's certificate is not checked (encrypted, but "
                    + "anyone on the path can impersonate the server); use verify=full (the default) with ca="
            )
        }
        let publisher = RedisEventPublisher(
            configuration: .init(
                url: url,
                channelPrefix: prefix,
                controlChannel: controlChannel,
                metadataPrefix: metadataPrefix,
                highAvailability: ha,
                fanOut: fanOutRules
            ),
            logger: console.logger
        )
        console.info("tailing \(mongo.redacted) → \(url)\(ha ? " (HA dedupe)" : "")")
        return publisher
    }

    /// Runs the bridge (and the HTTP server for `--http`) until a signal or a failure; closes the publisher.
    private func serve(
        _ bridge: OplogBridge,
        publisher: any EventPublisher,
        http endpoint: ((host: String, port: Int), PrometheusCollectorRegistry)?,
        console: Console
    ) async throws {
        // HTTP server, then the bridge: on SIGTERM/SIGINT the group shuts services down in reverse order, so the
        // bridge finishes its batch and checkpoint while /healthz still answers.
        var services = [ServiceGroupConfiguration.ServiceConfiguration]()
        if let (httpAddress, registry) = endpoint {
            services.append(
                .init(
                    service: OperationsHTTPServer(
                        host: httpAddress.host,
                        port: httpAddress.port,
                        logger: console.logger
                    ) { [bridge] path in Self.route(path, bridge: bridge, registry: registry) },
                    successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .cancelGroup
                )
            )
        }
        services.append(
            .init(
                service: bridge,
                successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .cancelGroup
            )
        )
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "rsinit.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(10)
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
            await publisher.close()
        } catch {
            await publisher.close()
            if let bindFailure = Self.describeBindFailure(error, address: http) { throw bindFailure }
            throw error
        }
    }

    /// Prometheus backend for the bridge's metrics; publish latency is sub-millisecond, so its buckets start lower
    /// than the default 5 ms.
    static func metricsFactory(_ registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[BridgeMetrics.Name.publishDuration] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(5),
        ]
        return factory
    }

    static func route(
        _ path: String,
        bridge: OplogBridge,
        registry: PrometheusCollectorRegistry
    ) -> OperationsHTTPServer.Response? {
        switch path {
        case "/healthz":
            let (healthy, json) = bridge.healthReport()
            return .init(
                status: healthy ? 200 : 503,
                contentType: "application/json",
                body: json + "\n"  // BridgeHealth redacts the only free text in it, the stop reason
            )
        case "/metrics":
            // Labels come from the oplog (namespaces), never from the configuration; redacted all the same.
            return .init(
                status: 200,
                contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: Redaction.redact(registry.emitToString())
            )
        default:
            return nil
        }
    }

    /// `--include`/`--exclude` patterns: `db`, `db.coll`, `*` wildcards; no white space, no empty parts.
    static func checkPatterns(_ patterns: [String], from flag: String) throws(InputError) {
        for pattern in patterns {
            let parts = pattern.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            guard !pattern.contains(where: { $0.isWhitespace || $0 == "$" || $0 == "\0" }),
                parts.allSatisfy({ !$0.isEmpty })
            else {
                throw InputError(
                    "invalid \(flag) pattern \"\(InputValue.shown(pattern))\"",
                    fix: "use db, db.collection or * wildcards (e.g. \(flag) steedos,app.tasks,logs*)"
                )
            }
        }
    }

    /// `host:port`, `:port` (all interfaces) or `[v6]:port`; the port 1-65535.
    static func parseListenAddress(_ text: String) throws(BootstrapFailure) -> (host: String, port: Int) {
        let fix = "use host:port with a port from 1 to 65535, e.g. --http 0.0.0.0:9121 or --http [::]:9121"
        let invalid = BootstrapFailure(.usage, "invalid --http \"\(InputValue.shown(text))\"", fix: fix)
        guard let colon = text.lastIndex(of: ":") else { throw invalid }
        let port: Int
        do {
            port = try InputValue.port(String(text[text.index(after: colon)...]), from: InputSource("--http port"))
        } catch { throw BootstrapFailure(.usage, error.message, fix: fix) }
        var host = String(text[..<colon])
        if host.hasPrefix("[") || host.hasSuffix("]") {
            guard host.hasPrefix("["), host.hasSuffix("]"), host.count > 2 else { throw invalid }
            host = String(host.dropFirst().dropLast())
            guard RedisURL.isIPv6Address(host) else { throw invalid }
        } else if host.contains(":") || host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) {
            throw invalid
        }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// A port in use or an address not on this host is the user's to fix: say so, exit 2.
    static func describeBindFailure(_ error: any Error, address: String?) -> BootstrapFailure? {
        guard let address, let bindError = error as? OperationsHTTPServer.BindError else { return nil }
        return BootstrapFailure(
            .usage,
            "cannot listen on --http \(address): \(bindError.reason)",
            fix: "choose a free port or an address of this host"
        )
    }
}
