import Foundation
import RSInitCore
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
    static func stages() throws -> [Stage] { try parse().stages }

    /// The global `ARG`s (before the first FROM): name → default value, quotes removed.
    static func globalArguments() throws -> [String: String] { try parse().arguments }

    private static func parse() throws -> (stages: [Stage], arguments: [String: String]) {
        let text = try Deployment.text("Docker/Dockerfile").replacingOccurrences(of: "\\\n", with: " ")
        var stages: [Stage] = []
        var arguments: [String: String] = [:]
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
                let nameAndValue = rest.split(separator: "=", maxSplits: 1).map(String.init)
                arguments[nameAndValue[0]] =
                    nameAndValue.count == 2 ? nameAndValue[1].replacingOccurrences(of: "\"", with: "") : ""
            }
        }
        return (stages, arguments)
    }

    /// The `LABEL` key/value pairs of a stage.
    static func labels(_ stage: Stage) -> [String: String] {
        var labels: [String: String] = [:]
        for label in stage.all("LABEL") {
            for match in label.matches(of: /([a-z0-9.-]+)="([^"]*)"/) {
                labels[String(match.output.1)] = String(match.output.2)
            }
        }
        return labels
    }

    @Test func multiStageBuildWithStaticSwiftRuntime() throws {
        let stages = try Self.stages()
        #expect(stages.map(\.name) == ["build", "build-jammy", "mongodb", "rsinit"])  // rsinit is the default target
        for stage in stages where stage.name.hasPrefix("build") {
            #expect(stage.base.hasPrefix("swift:"))
            let runs = stage.all("RUN").joined(separator: "\n")
            #expect(runs.contains("apt-get install -y --no-install-recommends libmongoc-dev libbson-dev pkg-config"))
            #expect(
                runs.contains("swift build -c release --static-swift-stdlib --product rsinit --force-resolved-versions")
            )
            // Exact dependency versions (Docker/dependency-versions, checked against CI's resolution below) and
            // warnings that are not errors: no new release of a dependency or of the toolchain fails the build.
            #expect(runs.contains("sh resolve-pinned.sh dependency-versions"))
            #expect(!runs.contains("swift package resolve"))
            #expect(stage.all("ENV") == ["RSINIT_WARNINGS_AS_ERRORS=0"])
            // The shipped binary is stripped (121 MB unstripped, with its debug information, before).
            #expect(runs.contains("objcopy --strip-all "))
            #expect(runs.contains("/out/rsinit --version"))
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
        // The debug information is kept in the build stage, named by the stripped binary's .gnu_debuglink.
        #expect(runs("build").contains("objcopy --only-keep-debug "))
        #expect(runs("build").contains("--add-gnu-debuglink=/out/rsinit.debug"))
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
        // A regular account with a high uid: no `--system` (useradd warns that 10001 lies outside the system range)
        // and --no-log-init (a high uid would otherwise grow /var/log/lastlog and faillog into large sparse files).
        #expect(install.contains("groupadd --gid 10001 rsinit"))
        #expect(install.contains("useradd --uid 10001 --gid rsinit --no-create-home --no-log-init "))
        #expect(!install.contains("--system"))
        let user = try #require(runtime.all("USER").last)
        #expect(!["root", "0", "0:0"].contains(user))
        #expect(runtime.all("ENTRYPOINT") == [#"["rsinit"]"#])
        #expect(runtime.all("COPY").contains { $0.hasPrefix("--from=build ") && $0.contains("/usr/local/bin/rsinit") })
        let mongodb = try #require(try Self.stages().first { $0.name == "mongodb" })
        #expect(mongodb.base == "mongo:${MONGO_VERSION}")
        #expect(mongodb.all("COPY").contains { $0.hasPrefix("--from=build-jammy ") })
    }

    /// No debconf noise in a user's build log: every install is non-interactive without debconf's warnings.
    @Test func aptInstallsAreQuiet() throws {
        var installs = 0
        for stage in try Self.stages() {
            for run in stage.all("RUN") {
                for part in run.components(separatedBy: "&&") where part.contains("apt-get install") {
                    installs += 1
                    #expect(
                        part.trimmingCharacters(in: .whitespaces).hasPrefix(
                            "DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y --no-install-recommends "
                        ),
                        "\(stage.name): \(part)"
                    )
                }
            }
        }
        #expect(installs == 4)
    }

    /// The OCI labels of both images; the version is the binary's.
    @Test func imagesCarryTheOCILabels() throws {
        let arguments = try Self.globalArguments()
        #expect(arguments["RSINIT_VERSION"] == RSInitVersion.number)
        #expect(arguments["RSINIT_LICENSES"]?.isEmpty == false)
        for stage in try Self.stages() where ["rsinit", "mongodb"].contains(stage.name) {
            let labels = Self.labels(stage)
            #expect(labels["org.opencontainers.image.version"] == "${RSINIT_VERSION}", "\(stage.name)")
            #expect(labels["org.opencontainers.image.source"] == "${RSINIT_SOURCE}", "\(stage.name)")
            #expect(labels["org.opencontainers.image.licenses"] == "${RSINIT_LICENSES}", "\(stage.name)")
            #expect(labels["org.opencontainers.image.description"]?.isEmpty == false, "\(stage.name)")
            for name in ["RSINIT_VERSION", "RSINIT_SOURCE", "RSINIT_LICENSES"] {
                #expect(stage.all("ARG").contains(name), "\(stage.name) does not bring \(name) into scope")
            }
        }
    }

    /// One toolchain: the Swift images of the Dockerfile are the minor version CI builds and tests with.
    @Test func swiftImageIsTheMinorVersionOfTheToolchain() async throws {
        let output = try await onDedicatedThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["swift", "--version"]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        let match = try #require(output.firstMatch(of: /Swift version (\d+)\.(\d+)/), "swift --version: \(output)")
        let toolchain = "\(match.output.1).\(match.output.2)"
        #expect(try Self.globalArguments()["SWIFT_VERSION"] == toolchain)
        for stage in try Self.stages() where stage.name.hasPrefix("build") {
            #expect(stage.base.hasPrefix("swift:${SWIFT_VERSION}-"), "\(stage.name) is not on SWIFT_VERSION")
        }
        // Every other mention (the header comment; tools/image-build.sh reads the tag from it) says the same.
        let dockerfile = try Deployment.text("Docker/Dockerfile")
        let mentions = dockerfile.matches(of: /swift:(\d+\.\d+(?:\.\d+)?)-/).map { String($0.output.1) }
        #expect(!mentions.isEmpty)
        for mention in mentions { #expect(mention == toolchain, "Docker/Dockerfile mentions swift:\(mention)") }
    }

    /// No drift: the image is built with the dependency versions CI resolved and tested (its Package.resolved),
    /// every package of the graph named.
    @Test func imageDependencyVersionsAreTheOnesCIResolved() throws {
        var listed: [String: String] = [:]
        for line in try Deployment.text("Docker/dependency-versions").split(separator: "\n")
        where !line.hasPrefix("#") && !line.allSatisfy(\.isWhitespace) {
            let fields = line.split(separator: " ").map(String.init)
            #expect(fields.count == 2, "\(line)")
            listed[fields[0]] = fields.last
        }
        let resolvedText = try #require(
            try? Deployment.text("Package.resolved"),
            "no Package.resolved: `swift build` writes it (CI's resolution)"
        )
        let resolved = try #require(
            try JSONSerialization.jsonObject(with: Data(resolvedText.utf8)) as? [String: Any]
        )
        var ciVersions: [String: String] = [:]
        for pin in resolved["pins"] as? [[String: Any]] ?? [] {
            let identity = try #require(pin["identity"] as? String)
            ciVersions[identity] = (pin["state"] as? [String: Any])?["version"] as? String ?? "(no version)"
        }
        #expect(!ciVersions.isEmpty)
        #expect(
            listed == ciVersions,
            "Docker/dependency-versions differs from CI's resolution; set it to: \(ciVersions.sorted { $0.key < $1.key })"
        )
    }

    /// Strict warnings are the default (CI, development); only RSINIT_WARNINGS_AS_ERRORS=0 (the image build) lifts them.
    @Test func warningsAreErrorsUnlessTheImageBuildSaysOtherwise() async throws {
        func settings(_ environment: [String: String]) async throws -> String {
            try await onDedicatedThread {
                let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rsinit-manifest-\(UUID())")
                defer { try? FileManager.default.removeItem(at: scratch) }
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                // Its own scratch path: `swift test` holds the lock of .build while this runs.
                process.arguments = [
                    "swift", "package", "--package-path", Deployment.root.path, "--scratch-path", scratch.path,
                    "dump-package",
                ]
                var env = ProcessInfo.processInfo.environment
                env["RSINIT_WARNINGS_AS_ERRORS"] = nil
                for (key, value) in environment { env[key] = value }
                process.environment = env
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = FileHandle.nullDevice
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                return String(decoding: data, as: UTF8.self)
            }
        }
        let strict = try await settings([:])
        let image = try await settings(["RSINIT_WARNINGS_AS_ERRORS": "0"])
        #expect(strict.contains("\"name\" : \"rsinit\""))
        #expect(image.contains("\"name\" : \"rsinit\""))
        #expect(strict.contains("treatAllWarnings"))
        #expect(!image.contains("treatAllWarnings"))
    }
}

/// The shipped binary depends on FoundationEssentials, not on the full Foundation (FoundationInternationalization and
/// its ICU data: ~40 MB of the image).
@Suite struct ShippedBinaryTests {
    @Test func shippedModulesImportOnlyFoundationEssentials() throws {
        let sources = Deployment.root.appendingPathComponent("Sources")
        var files: [String] = []
        for module in ["BSON", "RSInitSupport", "MongoCWrapper", "RESP", "RedisClient", "RSInitCore", "rsinit"] {
            let enumerator = try #require(
                FileManager.default.enumerator(atPath: sources.appendingPathComponent(module).path)
            )
            for case let path as String in enumerator where path.hasSuffix(".swift") {
                files.append("\(module)/\(path)")
            }
        }
        #expect(files.count > 20)
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") where line.contains("import Foundation") {
                let words = line.split(separator: " ")
                guard words.count >= 2, words[words.count - 2] == "import", words.last != "FoundationEssentials" else {
                    continue
                }
                Issue.record("Sources/\(file): \(line) (use FoundationEssentials; the full Foundation is ~40 MB)")
            }
        }
    }

    /// The binary's DT_NEEDED libraries (the debug build links the Swift libraries dynamically, so a module that
    /// imports the full Foundation shows here); an ELF64 little-endian file is read by its section headers.
    @Test func binaryDoesNotLinkTheFullFoundation() throws {
        let needed = try Self.neededLibraries(Data(contentsOf: CLI.binary))
        #expect(needed.contains { $0.hasPrefix("libc.so") }, "\(needed)")
        for library in ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so"] {
            #expect(!needed.contains(library), "\(CLI.binary.path) links \(library)")
        }
    }

    static func neededLibraries(_ file: Data) throws -> [String] {
        try file.withUnsafeBytes { raw -> [String] in
            func load<T: FixedWidthInteger>(_ offset: Int, as: T.Type) throws -> T {
                guard offset >= 0, offset + MemoryLayout<T>.size <= raw.count else { throw ELFError() }
                return T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
            }
            guard raw.count > 64, raw.starts(with: [0x7F, 0x45, 0x4C, 0x46, 2, 1]) else { throw ELFError() }
            let sectionTable = Int(try load(0x28, as: UInt64.self))
            let entrySize = Int(try load(0x3A, as: UInt16.self))
            let count = Int(try load(0x3C, as: UInt16.self))
            let section = { (index: Int) in sectionTable + index * entrySize }
            for index in 0..<count where try load(section(index) + 4, as: UInt32.self) == 6 {  // SHT_DYNAMIC
                let dynamic = Int(try load(section(index) + 0x18, as: UInt64.self))
                let size = Int(try load(section(index) + 0x20, as: UInt64.self))
                let strings = Int(
                    try load(section(Int(try load(section(index) + 0x28, as: UInt32.self))) + 0x18, as: UInt64.self)
                )
                var names: [String] = []
                for entry in stride(from: dynamic, to: dynamic + size, by: 16)
                where try load(entry, as: Int64.self) == 1 {
                    let start = strings + Int(try load(entry + 8, as: UInt64.self))  // DT_NEEDED: a .dynstr offset
                    guard start < raw.count, let end = raw[start...].firstIndex(of: 0) else { throw ELFError() }
                    names.append(String(decoding: raw[start..<end], as: UTF8.self))
                }
                return names
            }
            return []
        }
    }

    struct ELFError: Error {}
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
