// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

// The storage, the node and the simulation are optimised in debug builds too: the
// deterministic simulation runs thousands of schedules of them in `swift test`, and
// unoptimised they ran 2-4x slower (docs/testing.md, "How long it takes"). ReplogCore stays
// as it is: it is part of the ReplogClient product, and SwiftPM refuses a product with unsafe
// flags to packages that depend on replog by version. Dependencies stay unoptimised, so a
// debug build still builds in minutes.
let optimizedSettings: [SwiftSetting] = swiftSettings + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "replog",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "replog", targets: ["replog"]),
        .library(name: "ReplogCore", targets: ["ReplogCore"]),
        .library(name: "ReplogStorage", targets: ["ReplogStorage"]),
        .library(name: "ReplogNode", targets: ["ReplogNode"]),
        .library(name: "ReplogEcho", targets: ["ReplogEcho"]),
        .library(name: "ReplogBench", targets: ["ReplogBench"]),
        .library(name: "ReplogClient", targets: ["ReplogClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        // Pure replication logic: ordering, deduplication, write-concern bookkeeping,
        // peer health, retry policy. No networking and no clock it is not handed.
        .target(
            name: "ReplogCore",
            swiftSettings: swiftSettings
        ),
        // The log on disk or in memory, and the only way into it: the record format, segments
        // and recovery, the data dir, group commit (fsync off the cooperative threads).
        // One system call Swift's Glibc does not show: a read that never waits for the disk.
        .target(name: "CReplogReadNowait"),
        // And one instruction Swift has no intrinsic for: CRC-32C in hardware.
        .target(name: "CReplogCRC32C"),
        .target(
            name: "ReplogStorage",
            dependencies: [
                "ReplogCore",
                "CReplogReadNowait",
                "CReplogCRC32C",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: optimizedSettings
        ),
        // The master and secondary services (Hummingbird), the replication streams and
        // the transports they run over (HTTP on SwiftNIO, or in memory for tests).
        .target(
            name: "ReplogNode",
            dependencies: [
                "ReplogCore",
                "ReplogStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: optimizedSettings
        ),
        // What applications link: append with retries and idempotency keys, list, follow.
        .target(
            name: "ReplogClient",
            dependencies: [
                "ReplogCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Iteration 0: a newline-delimited TCP echo server and client on SwiftNIO.
        .target(
            name: "ReplogEcho",
            dependencies: [
                "ReplogCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // `replog bench`: a closed-loop load generator with HdrHistogram latencies.
        .target(
            name: "ReplogBench",
            dependencies: [
                "ReplogCore",
                "ReplogEcho",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // Child processes (replog cluster's nodes, the tests' processes) on swift-subprocess.
        .target(
            name: "ReplogProcess",
            dependencies: [
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system", condition: .when(platforms: [.linux])),
            ],
            swiftSettings: swiftSettings
        ),
        // Helpers shared by the test targets (not a product): the history checker.
        .target(
            name: "ReplogTestKit",
            dependencies: ["ReplogCore", "ReplogStorage"],
            swiftSettings: optimizedSettings
        ),
        // The `replog` command: argument parsing and wiring only.
        .executableTarget(
            name: "replog",
            dependencies: [
                "ReplogCore",
                "ReplogStorage",
                "ReplogNode",
                "ReplogEcho",
                "ReplogBench",
                "ReplogProcess",
                "ReplogClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The client library in a few lines each (README, "Use it from Swift"); the
        // integration tests run both against a real cluster.
        .executableTarget(
            name: "ReplogProducerExample",
            dependencies: ["ReplogClient"],
            path: "Examples/Producer",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ReplogConsumerExample",
            dependencies: ["ReplogClient"],
            path: "Examples/Consumer",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplogCoreTests",
            dependencies: ["ReplogCore", "ReplogTestKit"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplogStorageTests",
            dependencies: ["ReplogCore", "ReplogStorage", "ReplogTestKit"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplogNodeTests",
            dependencies: [
                "ReplogCore",
                "ReplogStorage",
                "ReplogNode",
                "ReplogTestKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplogBenchTests",
            dependencies: [
                "ReplogBench",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplogEchoTests",
            dependencies: [
                "ReplogEcho",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Thousands of seeded fault schedules against the real master and secondaries,
        // in one process, on a single-threaded executor and a manual clock.
        .testTarget(
            name: "ReplogSimulationTests",
            dependencies: [
                "ReplogCore",
                "ReplogStorage",
                "ReplogNode",
                "ReplogTestKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: optimizedSettings
        ),
        // Starts the real `replog` binary as separate processes.
        .testTarget(
            name: "ReplogIntegrationTests",
            dependencies: [
                "ReplogCore",
                "ReplogClient",
                "ReplogStorage",
                "ReplogTestKit",
                "ReplogProcess",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
