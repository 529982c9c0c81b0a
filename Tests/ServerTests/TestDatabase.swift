import Foundation
import Postgres
import Server

/// The database `scripts/test` starts (DATABASE_URL), for the suites of this target that run
/// against the real PostgreSQL.
enum TestDatabase {
    static func url() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw StoreError.inconsistent("DATABASE_URL is not set: run scripts/test")
        }
        return url
    }

    static func configuration(url: String? = nil, poolSize: Int = 1) throws -> PostgresConfiguration {
        PostgresConfiguration(url: try url ?? Self.url(), poolSize: poolSize, connectTimeoutSeconds: 2,
                              statementTimeoutMilliseconds: 20_000, applicationName: "oob-engine-tests")
    }
}
