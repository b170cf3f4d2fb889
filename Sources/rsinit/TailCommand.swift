import ArgumentParser
import Dispatch
import Foundation
import Logging
import MongoCWrapper
import RSInitCore

#if canImport(Glibc)
import Glibc
#endif

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

            EXIT CODES
              0  stopped by SIGTERM/SIGINT
              2  usage or bad input (flags, URIs)
              6  authentication failed (Redis or MongoDB)
              9  oplog history lost: the checkpoint rolled out of the oplog (--on-history-lost fail)

            ENVIRONMENT
              RSINIT_REDIS, RSINIT_PREFIX, RSINIT_CONTROL_CHANNEL, RSINIT_FIELDS, RSINIT_FROM, RSINIT_ON_HISTORY_LOST, \
            RSINIT_HA, RSINIT_METADATA_PREFIX, RSINIT_INCLUDE, RSINIT_EXCLUDE, plus RSINIT_HOST/PORT/URI.
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
            "redis:// URL; without it events go to stdout as NDJSON (env RSINIT_REDIS).",
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

    @Flag(help: "HA: several bridges on one oplog publish each event once (atomic Redis dedupe) (env RSINIT_HA).")
    var ha = false

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

    @OptionGroup var output: OutputOptions

    func run() async throws {
        let console = Console(output: output, command: "tail")
        do {
            let mongo = try connection.connectionString()
            let start: OplogBridge.Start
            switch from {
            case "checkpoint": start = .checkpoint
            case "end": start = .end
            default:
                guard let ts = CheckpointEncoding.parseTimestamp(from) else {
                    throw BootstrapFailure(
                        .usage,
                        "invalid --from \"\(from)\"",
                        fix: "use checkpoint, end, or a timestamp T.I"
                    )
                }
                start = .timestamp(ts)
            }
            let split: (String?) -> [String] = {
                $0?.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } ?? []
            }
            let mapping = OplogEventMapper.Configuration(
                fieldsMode: fields == .top ? .top : .deep,
                filter: NamespaceFilter(include: split(include), exclude: split(exclude))
            )
            let publisher: any EventPublisher
            if let redis {
                let url: RedisURL
                do { url = try RedisURL(redis) } catch {
                    throw BootstrapFailure(.usage, error.message, fix: "use redis://[user:password@]host[:port][/db]")
                }
                if url.useTLS {
                    throw BootstrapFailure(
                        .usage,
                        "rediss:// (TLS) is not supported by this build yet",
                        fix: "use redis:// on a trusted network"
                    )
                }
                publisher = RedisEventPublisher(
                    configuration: .init(
                        url: url,
                        channelPrefix: prefix,
                        controlChannel: controlChannel,
                        metadataPrefix: metadataPrefix,
                        highAvailability: ha
                    ),
                    logger: console.logger
                )
                console.info("tailing \(mongo.redacted) → \(url)\(ha ? " (HA dedupe)" : "")")
            } else {
                if ha { throw BootstrapFailure(.usage, "--ha needs --redis") }
                publisher = NDJSONPublisher(channelPrefix: prefix)
                console.info("tailing \(mongo.redacted) → stdout (NDJSON)")
            }
            let bridge = OplogBridge(
                configuration: .init(
                    tailer: OplogTailerConfiguration(connectionString: mongo, mapping: mapping),
                    start: start,
                    onHistoryLost: onHistoryLost == .fail ? .fail : .fromEnd
                ),
                publisher: publisher,
                logger: console.logger
            )
            let signals = Self.installSignalHandlers { [bridge] in
                console.info("stopping: finishing the in-flight batch")
                bridge.stop()
            }
            defer { for source in signals { source.cancel() } }
            do {
                try await bridge.run()
                await publisher.close()
            } catch {
                await publisher.close()
                throw error
            }
            let statistics = bridge.statistics
            console.info(
                "stopped after \(statistics.events) events in \(statistics.batches) batches; checkpoint \(statistics.lastPosition.map { "\($0)" } ?? "unchanged")"
            )
        } catch let failure as BootstrapFailure {
            console.result(.failure(failure), elapsed: .zero)
            throw ExitCode(failure.exitCode)
        } catch let lost as OplogHistoryLost {
            Console.writeError("rsinit: error: \(lost)")
            Console.writeError(
                "rsinit: fix: events were lost to the consumer; restart with --from end (or --on-history-lost from-end) after consumers reload, and size the oplog for the longest bridge outage"
            )
            throw ExitCode(9)
        } catch let error as RedisError {
            Console.writeError("rsinit: error: \(error)")
            throw ExitCode(error.kind == .authenticationFailed || error.kind == .authenticationRequired ? 6 : 2)
        } catch let error as MongoError {
            Console.writeError("rsinit: error: MongoDB: \(error)")
            throw ExitCode(error.code == .authenticationFailed || error.code == .unauthorized ? 6 : 2)
        }
    }

    /// SIGTERM / SIGINT call `handler` (on a dispatch queue) instead of killing the process.
    static func installSignalHandlers(_ handler: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            return source
        }
    }
}
