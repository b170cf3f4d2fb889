// swift-tools-version:6.2
import PackageDescription

// Warnings are errors in development and CI. The image build (Docker/Dockerfile) sets RSINIT_WARNINGS_AS_ERRORS=0: a
// warning a newer toolchain patch release adds must not fail a user's `docker build` (README, "The image").
let warningsAsErrors = Context.environment["RSINIT_WARNINGS_AS_ERRORS"] != "0"

let strictSettings: [SwiftSetting] =
    [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
        .enableUpcomingFeature("InternalImportsByDefault"),
    ] + (warningsAsErrors ? [.treatAllWarnings(as: .error)] : [])

let package = Package(
    name: "rsinit",
    products: [
        .library(name: "RSInitCore", targets: ["RSInitCore"]),
        .executable(name: "rsinit", targets: ["rsinit"]),
        .executable(name: "mongod-double", targets: ["mongod-double"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
        // RSInitCore: SHA-1 for EVALSHA ids and change-stream dedupe keys. Test support: the double's SCRAM
        // (SHA-1/SHA-256, HMAC, MD5, PBKDF2). 4.x: on Linux it imports FoundationEssentials, not the full Foundation
        // the shipped binary must not link (3.x does; ShippedBinaryTests).
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // Tests only: the static checks of Docker/ (compose files and Kubernetes manifests).
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // MARK: - Targets

        // libmongoc/libbson 1.x from the system (Debian: libmongoc-dev libbson-dev), found through pkg-config.
        .systemLibrary(
            name: "CLibMongoC",
            pkgConfig: "libmongoc-1.0",
            providers: [.apt(["libmongoc-dev", "libbson-dev", "pkg-config"])]
        ),
        // Pure Swift BSON (no C): model, validation, coding, Decimal128 text, the resume-token codec.
        .target(name: "BSON", swiftSettings: strictSettings),
        // Shared helpers below every module that prints or reads files: redaction, duration text, local files.
        .target(name: "RSInitSupport", swiftSettings: strictSettings),
        // The only Swift module that imports CLibMongoC: client, cursors, errors, BSON ⇄ bson_t, Extended JSON.
        .target(
            name: "MongoCWrapper",
            dependencies: [
                "CLibMongoC", "BSON", "RSInitSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // Pure RESP2 codec (no I/O): values, encoder, incremental decoder with limits.
        .target(name: "RESP", swiftSettings: strictSettings),
        // Redis client over RESP: NIO connection (TLS), URL, Sentinel/Cluster topology, connector, cluster slots.
        .target(
            name: "RedisClient",
            dependencies: [
                "RESP", "RSInitSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The product: replica-set bootstrap, oplog tailer and bridge.
        .target(
            name: "RSInitCore",
            dependencies: [
                "BSON", "RSInitSupport", "MongoCWrapper",
                "RESP", "RedisClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "rsinit",
            dependencies: [
                "RSInitCore", "BSON", "RSInitSupport", "MongoCWrapper", "RedisClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Test support, not shipped in the CLI: FakeMongod, a mongod 7.0 wire-protocol double.
        .target(
            name: "RSInitTestUtils",
            dependencies: [
                "BSON", "RESP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // Benchmarks (not tests): `swift run -c release rsinit-bench`.
        .executableTarget(
            name: "rsinit-bench",
            dependencies: [
                "RSInitTestUtils", "BSON", "MongoCWrapper", "RSInitCore", "RESP", "RedisClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "mongod-double",
            dependencies: [
                "RSInitTestUtils",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),

        // The writes of scripts/demo.sh (insert, update, delete on steedos.tasks through libmongoc); not shipped.
        .executableTarget(
            name: "rsinit-demo-writes",
            dependencies: [
                "BSON", "MongoCWrapper",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),

        // MARK: - Tests

        .testTarget(
            name: "MongoCWrapperTests",
            dependencies: [
                "BSON", "RSInitSupport", "MongoCWrapper", "RSInitTestUtils",
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "RESPTests", dependencies: ["RESP"], swiftSettings: strictSettings),
        // The pure modules' tests build without libmongoc (a test that compares with libbson is in MongoCWrapperTests).
        .testTarget(name: "BSONTests", dependencies: ["BSON", "RSInitTestUtils"], swiftSettings: strictSettings),
        .testTarget(
            name: "RSInitSupportTests",
            dependencies: ["RSInitSupport", "RSInitTestUtils"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RedisClientTests",
            dependencies: [
                "RedisClient", "RESP", "RSInitTestUtils",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "FakeMongodTests",
            dependencies: ["BSON", "MongoCWrapper", "RSInitTestUtils"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RSInitCoreTests",
            dependencies: [
                "RSInitCore", "BSON", "RSInitSupport", "MongoCWrapper", "RedisClient", "RSInitTestUtils",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RSInitCLITests",
            dependencies: [
                "RSInitTestUtils", "BSON", "RSInitSupport", "MongoCWrapper", "RSInitCore", "RESP", "RedisClient",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
