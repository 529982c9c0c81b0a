// swift-tools-version:6.0
// oob-engine: the issuer-side engine for Thales D1 out-of-band 3-D Secure challenges.
// No package dependencies by design (customer requirement): C libraries come in through
// system-library targets, one Swift module wraps each.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "oob-engine",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "oob-engine", targets: ["oob-engine"]),
    ],
    dependencies: [],
    targets: [
        // C libraries: each is imported by exactly one Swift module.
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),

        // Strict JSON reader/writer (no Foundation on the hot path; duplicate keys, depth, UTF-8 checked).
        .target(name: "JSON", swiftSettings: strict),
        // The engine's own HTTP/1.1 server: the only module that touches sockets.
        .target(name: "HTTP", swiftSettings: strict),
        // libpq wrapper, connection pool: the only module that imports CLibPQ.
        .target(name: "Postgres", dependencies: ["CLibPQ"], swiftSettings: strict),
        // libcrypto wrapper (hashes, HMAC, ECDSA, random) and JWS/JWT: the only module that imports CCrypto.
        .target(name: "Crypto", dependencies: ["CCrypto", "JSON"], swiftSettings: strict),
        // The domain: state machine, timer wheel, validation, store protocols. No C, no sockets.
        .target(name: "Engine", dependencies: ["JSON"], swiftSettings: strict),
        // Configuration, routes, PostgreSQL store, wiring.
        .target(name: "Server", dependencies: ["Engine", "HTTP", "Postgres", "Crypto", "JSON"],
                swiftSettings: strict),
        .executableTarget(name: "oob-engine", dependencies: ["Server"], swiftSettings: strict),
        // Benchmarks for scripts/bench (optimised build); figures go in README.md.
        .executableTarget(name: "oob-bench", dependencies: ["Server", "Engine", "Crypto", "Postgres", "JSON"],
                          swiftSettings: strict),

        // Test helpers shared by the test targets: child processes (posix_spawn), TLS test server,
        // blocking work off the cooperative pool.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        // Resources/JSONTestSuite: Nicolas Seriot's parsing corpus (MIT), read from the source tree.
        .testTarget(name: "JSONTests", dependencies: ["JSON"], exclude: ["Resources"], swiftSettings: strict),
        .testTarget(name: "HTTPTests", dependencies: ["HTTP", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres"], swiftSettings: strict),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto", "JSON"], swiftSettings: strict),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "JSON"], swiftSettings: strict),
        .testTarget(name: "ServerTests", dependencies: ["Server", "Engine", "JSON", "Crypto", "HTTP", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "EndToEndTests", dependencies: ["JSON", "Postgres", "Crypto", "TestSupport"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
