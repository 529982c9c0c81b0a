import Foundation
import Testing

/// What scripts/test provides: the database, the built binary, the cluster's folder and port.
enum TestEnvironment {
    static var databaseURL: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
                throw TestSetupError("DATABASE_URL is not set: run the suite with scripts/test")
            }
            return url
        }
    }

    static var engineBinary: String {
        get throws {
            if let path = ProcessInfo.processInfo.environment["OOB_ENGINE_BINARY"], FileManager.default.isExecutableFile(atPath: path) {
                return path
            }
            let guess = repositoryRoot + "/.build/debug/oob-engine"
            guard FileManager.default.isExecutableFile(atPath: guess) else {
                throw TestSetupError("the oob-engine binary was not found: run the suite with scripts/test")
            }
            return guess
        }
    }

    /// The cluster scripts/test started (for tests that stop and restart PostgreSQL).
    static var clusterDirectory: String? { ProcessInfo.processInfo.environment["OOB_TEST_PGDATA"] }
    static var clusterPort: String? { ProcessInfo.processInfo.environment["OOB_TEST_PGPORT"] }

    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }   // Support, EndToEndTests, Tests, root
        return url.path
    }()

    /// Where engine logs are kept for the whole run (a later test scans them for secrets).
    static var logDirectory: String {
        let dir = ProcessInfo.processInfo.environment["OOB_TEST_LOG_DIR"] ?? (repositoryRoot + "/.tmp/test-logs")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func uniqueID(_ prefix: String = "t") -> String {
        prefix + "-" + UUID().uuidString.lowercased()
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes; never a fixed sleep.
func eventually(timeout: Duration = .seconds(10), interval: Duration = .milliseconds(20),
                _ what: String, _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: interval)
    }
    throw TestSetupError("timed out after \(timeout) waiting for: \(what)")
}
