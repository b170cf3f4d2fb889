import Foundation
import RSInitTestUtils
import Testing
import Yams

/// Static checks of Docker/ (no Docker engine runs on our machines): the compose files, the Kubernetes example and
/// the Dockerfile must use only flags the real binary's `--help` lists, and be wired as the README describes.
enum Deployment {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    static func yaml(_ path: String) throws -> [String: Any] {
        try #require(try Yams.load(yaml: text(path)) as? [String: Any], "\(path) is not a YAML mapping")
    }

    static func documents(_ path: String) throws -> [[String: Any]] {
        try Yams.load_all(yaml: text(path)).compactMap { $0 as? [String: Any] }
    }
}

/// What `rsinit [subcommand] --help` lists: flags (and whether they take a value) and environment variables.
struct HelpCatalog {
    var flags: [String: [String: Bool]] = [:]  // subcommand ("" = bootstrap) → flag → takes a value
    var variables: Set<String> = []

    static func load() async throws -> HelpCatalog {
        var catalog = HelpCatalog()
        for subcommand in ["", "status", "wait", "tail"] {
            let run = try await CLI.run(subcommand.isEmpty ? ["--help"] : [subcommand, "--help"])
            #expect(run.exitCode == 0)
            var flags: [String: Bool] = [:]
            // OPTIONS: one line per option, `  -q, --quiet` or `  --host <host>   description`.
            let options = try #require(run.stdout.components(separatedBy: "\nOPTIONS:\n").last)
            for line in options.split(separator: "\n") {
                guard let match = line.prefixMatch(of: /\ \ (?:(-[a-z]), )?(--[a-z][a-z-]*)( <[^>]+>)?/) else {
                    continue
                }
                let takesValue = match.output.3 != nil
                flags[String(match.output.2)] = takesValue
                if let short = match.output.1 { flags[String(short)] = takesValue }
            }
            flags["--help"] = false
            flags["-h"] = false
            catalog.flags[subcommand] = flags
            for match in run.stdout.matches(of: /RSINIT_[A-Z_]+[A-Z]/) {
                catalog.variables.insert(String(match.output))
            }
        }
        return catalog
    }

    /// Problems with one invocation of the binary (arguments after `rsinit`), empty when it is valid.
    func problems(_ arguments: [String]) -> [String] {
        var arguments = arguments[...]
        var subcommand = ""
        if let first = arguments.first, ["status", "wait", "tail"].contains(first) {
            subcommand = first
            arguments = arguments.dropFirst()
        }
        guard let known = flags[subcommand] else { return ["unknown subcommand \(subcommand)"] }
        var problems: [String] = []
        while let argument = arguments.popFirst() {
            let name = String(argument.prefix { $0 != "=" })
            guard let takesValue = known[name] else {
                problems.append("`rsinit \(subcommand)` has no \(argument)")
                continue
            }
            if takesValue && !argument.contains("=") {
                guard let value = arguments.popFirst(), !value.hasPrefix("--") else {
                    problems.append("\(argument) needs a value")
                    continue
                }
            }
        }
        return problems
    }

    func isKnown(variable: String) -> Bool {
        variables.contains(variable)
            || (variable.hasSuffix("_FILE") && variables.contains(String(variable.dropLast(5))))
    }
}

/// The value after `flag` in an argument list.
func value(of flag: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func strings(_ any: Any?) -> [String] { (any as? [Any])?.map { "\($0)" } ?? [] }

func isLoopback(_ host: String) -> Bool {
    let name = host.split(separator: ":").first.map(String.init)?.lowercased() ?? ""
    return name == "localhost" || name.hasPrefix("127.") || name == "::1" || name == "[::1]"
}

@Suite struct ComposeTests {
    let base: [String: Any]
    let auth: [String: Any]
    var services: [String: [String: Any]] { base["services"] as? [String: [String: Any]] ?? [:] }
    var authServices: [String: [String: Any]] { auth["services"] as? [String: [String: Any]] ?? [:] }

    init() throws {
        base = try Deployment.yaml("Docker/compose.yaml")
        auth = try Deployment.yaml("Docker/compose.auth.yaml")
    }

    /// Every rsinit invocation in a compose file: service commands of the rsinit image and health checks.
    static func invocations(_ services: [String: [String: Any]], base: [String: [String: Any]]) -> [(String, [String])]
    {
        var found: [(String, [String])] = []
        for (name, service) in services {
            let image = "\(service["image"] ?? base[name]?["image"] ?? "")"
            let target = ((service["build"] ?? base[name]?["build"]) as? [String: Any])?["target"] as? String
            if image.contains("rsinit:") || target == "rsinit", let command = service["command"] {
                found.append((name, strings(command)))
            }
            let test = strings((service["healthcheck"] as? [String: Any])?["test"])
            if let index = test.firstIndex(of: "rsinit") {
                found.append(("\(name) healthcheck", Array(test[(index + 1)...])))
            }
        }
        return found
    }

    @Test func everyRsinitInvocationUsesFlagsTheBinaryLists() async throws {
        let help = try await HelpCatalog.load()
        let all = Self.invocations(services, base: services) + Self.invocations(authServices, base: services)
        #expect(all.count >= 3)
        for (where_, arguments) in all {
            #expect(help.problems(arguments).isEmpty, "\(where_): \(help.problems(arguments))")
        }
        for file in [services, authServices] {
            for (name, service) in file {
                for key in (service["environment"] as? [String: Any] ?? [:]).keys where key.hasPrefix("RSINIT_") {
                    #expect(help.isKnown(variable: key), "\(name): \(key) is not an rsinit variable")
                }
            }
        }
    }

    @Test func mongodIsPlainAndItsHealthCheckIsRsinitWait() throws {
        let mongodb = try #require(services["mongodb"])
        let command = strings(mongodb["command"])
        #expect(command.first == "mongod")
        #expect(value(of: "--replSet", in: command) == "steedos")
        #expect(command.contains("--bind_ip_all"))
        #expect((mongodb["build"] as? [String: Any])?["target"] as? String == "mongodb")
        let health = try #require(mongodb["healthcheck"] as? [String: Any])
        let test = strings(health["test"])
        #expect(Array(test.prefix(3)) == ["CMD", "rsinit", "wait"])
        #expect(!test.joined(separator: " ").contains("ping"))
        #expect(value(of: "--set-name", in: test) == "steedos")
    }

    @Test func initIsOneShotWithARealMemberHostAndAppsWaitForIt() throws {
        let initService = try #require(services["rsinit-init"])
        let command = strings(initService["command"])
        let setName = value(of: "--replSet", in: strings(services["mongodb"]?["command"]))
        #expect(value(of: "--set-name", in: command) == setName)
        let memberHost = try #require(value(of: "--member-host", in: command))
        #expect(memberHost == "mongodb:27017")
        #expect(!command.contains("--allow-localhost-member"))
        #expect("\(initService["restart"] ?? "")" == "no")
        let initDependencies = try #require(initService["depends_on"] as? [String: [String: Any]])
        #expect(initDependencies["mongodb"]?["condition"] as? String == "service_started")

        let app = try #require(services["steedos"])
        let dependencies = try #require(app["depends_on"] as? [String: [String: Any]])
        #expect(dependencies["rsinit-init"]?["condition"] as? String == "service_completed_successfully")
        #expect(dependencies["mongodb"]?["condition"] as? String == "service_healthy")
        let environment = try #require(app["environment"] as? [String: Any])
        for key in ["MONGO_URL", "MONGO_OPLOG_URL"] {
            let url = try #require(environment[key] as? String)
            #expect(url.contains("//\(memberHost)/"), "\(key) must name the member host")
            #expect(url.contains("replicaSet=\(setName ?? "")"))
        }
        #expect(((app["deploy"] as? [String: Any])?["replicas"] as? Int ?? 0) >= 2)
    }

    @Test func bridgeRunsTwiceWithHADedupeAgainstTheRedisService() throws {
        let bridge = try #require(services["rsinit-bridge"])
        let command = strings(bridge["command"])
        #expect(command.first == "tail")
        #expect(command.contains("--ha"))
        #expect((bridge["deploy"] as? [String: Any])?["replicas"] as? Int == 2)
        let redis = try #require(value(of: "--redis", in: command))
        let redisHost = redis.dropFirst("redis://".count).prefix { $0 != ":" && $0 != "/" }
        #expect(services[String(redisHost)] != nil, "--redis names no service")
        #expect(value(of: "--http", in: command)?.hasPrefix("0.0.0.0:") == true)
        let dependencies = try #require(bridge["depends_on"] as? [String: [String: Any]])
        #expect(dependencies["rsinit-init"]?["condition"] as? String == "service_completed_successfully")
        #expect(dependencies[String(redisHost)]?["condition"] as? String == "service_healthy")
        // The checkpoint lives in Redis: it must persist.
        let redisCommand = strings(services["redis"]?["command"])
        #expect(redisCommand.contains("--appendonly"))
    }

    @Test func traefikIsStickyAndPortsAndImagesAreConsistent() throws {
        let app = try #require(services["steedos"])
        let labels = strings(app["labels"])
        #expect(labels.contains("traefik.enable=true"))
        #expect(labels.contains { $0.hasSuffix(".loadbalancer.sticky.cookie=true") })
        let port = try #require(
            labels.first { $0.contains(".loadbalancer.server.port=") }?.split(separator: "=").last.map(String.init)
        )
        #expect((app["environment"] as? [String: Any])?["PORT"] as? String == port)
        var published: [String] = []
        for service in services.values {
            published += strings(service["ports"]).map { String($0.split(separator: ":")[0]) }
        }
        #expect(Set(published).count == published.count, "a host port is published twice")
        // Every dependency names a service; images are pinned (our own images excepted: built here).
        for (name, service) in services {
            for dependency in (service["depends_on"] as? [String: Any] ?? [:]).keys {
                #expect(services[dependency] != nil, "\(name) depends on unknown \(dependency)")
            }
            let image = "\(service["image"] ?? "")"
            if !image.contains("rsinit") { #expect(image.contains(":") && !image.hasSuffix(":latest"), "\(name)") }
        }
        let dockerfile = try Deployment.text("Docker/Dockerfile")
        #expect(dockerfile.contains("ARG MONGO_VERSION=7.0"))
    }

    @Test func noLoopbackMemberHostAnywhere() throws {
        for path in ["Docker/compose.yaml", "Docker/compose.auth.yaml", "Docker/k8s/rsinit.yaml"] {
            // Comments may tell the story of the guide's trap; the configuration itself must not repeat it.
            let text = try Deployment.text(path).split(separator: "\n")
                .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }.joined(separator: "\n")
            for pattern in ["localhost:27017", "127.0.0.1:27017", "--allow-localhost-member"] {
                #expect(!text.contains(pattern), "\(path) contains \(pattern)")
            }
        }
    }

    @Test func authVariantGeneratesTheKeyFileAndPassesCredentialsAsSecrets() throws {
        for name in authServices.keys where name != "mongodb-keyfile" {
            #expect(services[name] != nil, "the override names unknown service \(name)")
        }
        let keyfile = try #require(authServices["mongodb-keyfile"])
        let script = strings(keyfile["command"]).joined(separator: " ")
        #expect(script.contains("chmod 0400 /keyfile/keyfile"))
        #expect(script.contains("chown 999:999 /keyfile/keyfile"))
        #expect(script.contains("base64 -w 0"))  // keyFile content must be base64 characters
        let mongodb = try #require(authServices["mongodb"])
        let command = strings(mongodb["command"])
        #expect(value(of: "--keyFile", in: command) == "/keyfile/keyfile")
        #expect(strings(mongodb["volumes"]).contains("mongodb-keyfile:/keyfile:ro"))
        let dependencies = try #require(mongodb["depends_on"] as? [String: [String: Any]])
        #expect(dependencies["mongodb-keyfile"]?["condition"] as? String == "service_completed_successfully")
        let declared = Set((auth["secrets"] as? [String: Any] ?? [:]).keys)
        for name in ["mongodb", "rsinit-init", "rsinit-bridge"] {
            let service = try #require(authServices[name])
            let environment = try #require(service["environment"] as? [String: Any])
            #expect(environment["RSINIT_USERNAME"] as? String == "root")
            let passwordFile = try #require(environment["RSINIT_PASSWORD_FILE"] as? String)
            let secret = try #require(passwordFile.split(separator: "/").last.map(String.init))
            #expect(passwordFile == "/run/secrets/\(secret)")
            #expect(strings(service["secrets"]).contains(secret) && declared.contains(secret), "\(name)")
        }
        // No literal credentials: user:password@ only through interpolation.
        let text = try Deployment.text("Docker/compose.auth.yaml")
        for match in text.matches(of: /\/\/([^:\/@\s]+):([^@\s]+)@/) {
            #expect(match.output.2.hasPrefix("${"), "literal password in \(match.output.0)")
        }
    }
}

@Suite struct KubernetesExampleTests {
    @Test func initContainerBootstrapsAndTheBridgeIsProbedOnHealthz() async throws {
        let help = try await HelpCatalog.load()
        let documents = try Deployment.documents("Docker/k8s/rsinit.yaml")
        func object(_ kind: String, _ name: String) throws -> [String: Any] {
            try #require(
                documents.first {
                    $0["kind"] as? String == kind && ($0["metadata"] as? [String: Any])?["name"] as? String == name
                },
                "\(kind)/\(name)"
            )
        }
        func podSpec(_ object: [String: Any]) -> [String: Any] {
            ((object["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any] ?? [:]
        }
        func containers(_ spec: [String: Any], _ key: String) -> [[String: Any]] {
            spec[key] as? [[String: Any]] ?? []
        }
        // Every rsinit invocation is valid.
        var invocations = 0
        for document in documents {
            let spec = podSpec(document)
            for container in containers(spec, "containers") + containers(spec, "initContainers") {
                if "\(container["image"] ?? "")".hasPrefix("rsinit:") {
                    invocations += 1
                    let arguments = strings(container["args"])
                    #expect(help.problems(arguments).isEmpty, "\(help.problems(arguments))")
                }
                for probe in ["readinessProbe", "livenessProbe"] {
                    let command = strings(((container[probe] as? [String: Any])?["exec"] as? [String: Any])?["command"])
                    if command.first == "rsinit" {
                        invocations += 1
                        #expect(help.problems(Array(command.dropFirst())).isEmpty)
                    }
                }
            }
        }
        #expect(invocations >= 4)

        // The headless service publishes not-ready pods (the bootstrap makes mongod ready).
        let service = try object("Service", "mongodb")
        #expect((service["spec"] as? [String: Any])?["publishNotReadyAddresses"] as? Bool == true)
        let statefulSet = try object("StatefulSet", "mongodb")
        let mongod = try #require(containers(podSpec(statefulSet), "containers").first)
        #expect(value(of: "--replSet", in: strings(mongod["args"])) == "steedos")
        let readiness = strings(((mongod["readinessProbe"] as? [String: Any])?["exec"] as? [String: Any])?["command"])
        #expect(Array(readiness.prefix(2)) == ["rsinit", "wait"])

        // The app's initContainer bootstraps with the pod's stable name as the member host.
        let app = try object("Deployment", "steedos")
        let bootstrap = try #require(containers(podSpec(app), "initContainers").first)
        let arguments = strings(bootstrap["args"])
        #expect(!["status", "wait", "tail"].contains(arguments.first ?? ""))
        let memberHost = try #require(value(of: "--member-host", in: arguments))
        #expect(memberHost.hasPrefix("mongodb-0.mongodb"))
        #expect(!isLoopback(memberHost))

        // The bridge: probes on /healthz at the port --http serves.
        let bridge = try object("Deployment", "rsinit-bridge")
        #expect((bridge["spec"] as? [String: Any])?["replicas"] as? Int == 2)
        let container = try #require(containers(podSpec(bridge), "containers").first)
        let tail = strings(container["args"])
        #expect(tail.first == "tail" && tail.contains("--ha"))
        let httpPort = try #require(value(of: "--http", in: tail)?.split(separator: ":").last.flatMap { Int($0) })
        let ports = container["ports"] as? [[String: Any]] ?? []
        let named = try #require(ports.first { $0["name"] as? String == "http" })
        #expect(named["containerPort"] as? Int == httpPort)
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = try #require((container[probe] as? [String: Any])?["httpGet"] as? [String: Any], "\(probe)")
            #expect(get["path"] as? String == "/healthz")
            #expect("\(get["port"] ?? "")" == "http")
        }
        let security = try #require(container["securityContext"] as? [String: Any])
        #expect(security["runAsNonRoot"] as? Bool == true)
    }
}

@Suite struct DockerfileTests {
    struct Stage {
        var name: String
        var base: String
        var instructions: [(String, String)] = []
        func all(_ keyword: String) -> [String] { instructions.filter { $0.0 == keyword }.map(\.1) }
    }

    /// Stages with their instructions (continuation lines joined, comments dropped).
    static func stages() throws -> [Stage] {
        let text = try Deployment.text("Docker/Dockerfile").replacingOccurrences(of: "\\\n", with: " ")
        var stages: [Stage] = []
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let keyword = String(trimmed.prefix { !$0.isWhitespace }).uppercased()
            let rest = trimmed.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            if keyword == "FROM" {
                let parts = rest.split(separator: " ").map(String.init)
                #expect(parts.count == 3 && parts[1].uppercased() == "AS", "unnamed stage: \(trimmed)")
                stages.append(Stage(name: parts.last ?? "", base: parts.first ?? ""))
            } else if !stages.isEmpty {
                stages[stages.count - 1].instructions.append((keyword, rest))
            } else {
                #expect(keyword == "ARG", "only ARG may precede the first FROM: \(trimmed)")
            }
        }
        return stages
    }

    @Test func multiStageBuildWithStaticSwiftRuntime() throws {
        let stages = try Self.stages()
        #expect(stages.map(\.name) == ["build", "build-jammy", "mongodb", "rsinit"])  // rsinit is the default target
        for stage in stages where stage.name.hasPrefix("build") {
            #expect(stage.base.hasPrefix("swift:"))
            let runs = stage.all("RUN").joined(separator: "\n")
            #expect(runs.contains("apt-get install -y --no-install-recommends libmongoc-dev libbson-dev pkg-config"))
            #expect(runs.contains("swift build -c release --static-swift-stdlib --product rsinit"))
            for copied in stage.all("COPY") {
                let source = String(copied.split(separator: " ")[0])
                #expect(FileManager.default.fileExists(atPath: Deployment.root.appendingPathComponent(source).path))
            }
        }
        // Packed relative relocations need glibc >= 2.36: the Debian 12 build (the bridge's image) has them, the
        // Ubuntu 22.04 one (glibc 2.35, mongod's health check) must not.
        let relr = "-Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs"
        let runs = { (name: String) in
            (stages.first { $0.name == name }?.all("RUN") ?? []).joined(separator: " ")
                .split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        #expect(runs("build").contains(relr))
        #expect(!runs("build-jammy").contains("pack-relative-relocs"))
        let ignored = try Deployment.text(".dockerignore").split(separator: "\n")
        for needed in ["Package.swift", "Sources", "Tests"] { #expect(!ignored.contains(Substring(needed))) }
    }

    @Test func runtimeIsSlimNonRootWithTheRsinitEntrypoint() throws {
        let runtime = try #require(try Self.stages().last)
        #expect(runtime.base.hasPrefix("debian:") && runtime.base.hasSuffix("-slim"))
        let install = runtime.all("RUN").joined()
        #expect(
            install.contains(
                "apt-get install -y --no-install-recommends libmongoc-1.0-0 libbson-1.0-0 ca-certificates "
            )
        )
        #expect(!install.contains("-dev"))
        let user = try #require(runtime.all("USER").last)
        #expect(!["root", "0", "0:0"].contains(user))
        #expect(runtime.all("ENTRYPOINT") == [#"["rsinit"]"#])
        #expect(runtime.all("COPY").contains { $0.hasPrefix("--from=build ") && $0.contains("/usr/local/bin/rsinit") })
        let mongodb = try #require(try Self.stages().first { $0.name == "mongodb" })
        #expect(mongodb.base == "mongo:${MONGO_VERSION}")
        #expect(mongodb.all("COPY").contains { $0.hasPrefix("--from=build-jammy ") })
    }
}

/// The README's CLI reference against the binary's `--help`, both ways.
@Suite struct ReadmeReferenceTests {
    @Test func flagTablesMatchTheHelp() async throws {
        let help = try await HelpCatalog.load()
        let known = Set(help.flags.values.flatMap(\.keys))
        let readme = try Deployment.text("README.md")
        var documented: Set<String> = []
        for line in readme.split(separator: "\n") where line.hasPrefix("| `-") {
            let firstCell = line.dropFirst(2).prefix { $0 != "|" }
            for match in firstCell.matches(of: /`(--?[a-z][a-z-]*)/) { documented.insert(String(match.output.1)) }
        }
        #expect(documented.count >= 30)
        for flag in documented { #expect(known.contains(flag), "README documents \(flag), which --help does not list") }
        for flag in known where !["--help", "-h", "--version"].contains(flag) {
            #expect(readme.contains("`\(flag)"), "--help lists \(flag), which the README does not document")
        }
        for variable in help.variables { #expect(readme.contains(variable), "README lacks \(variable)") }
    }
}
