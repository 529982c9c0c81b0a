import Dispatch
import Foundation
import Postgres
import Testing

/// The PostgreSQL every database test runs against. scripts/test always sets DATABASE_URL, so a
/// missing one is a broken set-up, reported as a failure rather than silently skipped.
enum TestDatabase {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "DATABASE_URL is not set: run scripts/test, or start a database with "
                + "`eval \"$(scripts/dev-db)\"` before `swift test`"
        }
    }

    static func url() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else { throw Missing() }
        return url
    }

    static func configuration(poolSize: Int = 2, acquireTimeout: Duration = .seconds(2), maxQueueLength: Int = 1024,
                              statementTimeoutMilliseconds: Int = 10_000) throws -> PostgresConfiguration {
        PostgresConfiguration(url: try url(), poolSize: poolSize, acquireTimeout: acquireTimeout,
                              maxQueueLength: maxQueueLength, connectTimeoutSeconds: 2,
                              statementTimeoutMilliseconds: statementTimeoutMilliseconds,
                              applicationName: "oob-engine-tests")
    }

    static func connect() throws -> PostgresConnection {
        try PostgresConnection.connect(try configuration())
    }

    /// A table name no other test (or concurrent run) uses.
    static func uniqueName(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}

/// Polls `condition` until it holds or `timeout` passes; every wait in these tests is bounded.
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Lets a test hold a pool connection until it says so.
/// @unchecked Sendable: only DispatchSemaphores, which are thread-safe.
final class Gate: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)

    func open() { semaphore.signal() }

    /// Bounded so a failing test cannot hang the run.
    func waitOpen(timeout: Double = 10) -> Bool {
        semaphore.wait(timeout: .now() + timeout) == .success
    }
}
