/// How to reach PostgreSQL and how the pool behaves. Defaults live here and nowhere else.
///
/// - `url`: a libpq connection URI or key/value string (it may carry the password, so it is
///   never printed: `description` leaves it out).
/// - `poolSize` (16): connections, and dedicated threads, at most; both are opened lazily.
/// - `acquireTimeout` (2 s): how long a request may wait for a free connection before failing
///   with `PostgresError.Kind.poolTimeout`.
/// - `maxQueueLength` (1024): waiting requests beyond this fail at once (`.queueFull`).
/// - `connectTimeoutSeconds` (5): libpq `connect_timeout`; keeps reconnects during an outage short
///   (libpq treats values below 2 as 2).
/// - `statementTimeoutMilliseconds` (10 000): the server-side `statement_timeout` of every
///   connection (0 disables it). A call still waiting for the server 1 s after it has passed
///   (a frozen server, a stalled link) is ended by the pool: its connection is shut down and
///   the call fails with `.connectionLost`.
/// - `applicationName` ("oob-engine"): shown in `pg_stat_activity`; the URL may override it.
package struct PostgresConfiguration: Sendable, CustomStringConvertible {
    package var url: String
    package var poolSize: Int
    package var acquireTimeout: Duration
    package var maxQueueLength: Int
    package var connectTimeoutSeconds: Int
    package var statementTimeoutMilliseconds: Int
    package var applicationName: String

    package init(url: String, poolSize: Int = 16, acquireTimeout: Duration = .seconds(2),
                 maxQueueLength: Int = 1024, connectTimeoutSeconds: Int = 5,
                 statementTimeoutMilliseconds: Int = 10_000, applicationName: String = "oob-engine") {
        self.url = url
        self.poolSize = poolSize
        self.acquireTimeout = acquireTimeout
        self.maxQueueLength = maxQueueLength
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        self.applicationName = applicationName
    }

    /// Safe to log: the URL (which may hold a password) is left out.
    package var description: String {
        "PostgresConfiguration(poolSize: \(poolSize), acquireTimeout: \(acquireTimeout), "
            + "maxQueueLength: \(maxQueueLength), connectTimeoutSeconds: \(connectTimeoutSeconds), "
            + "statementTimeoutMilliseconds: \(statementTimeoutMilliseconds), applicationName: \(applicationName))"
    }

    /// How long a blocking call may wait for the server before the pool's watchdog ends it;
    /// nil when there is no statement timeout to go by.
    var stalledCallLimitNanoseconds: UInt64? {
        guard statementTimeoutMilliseconds > 0 else { return nil }
        return UInt64(statementTimeoutMilliseconds + 1000) * 1_000_000
    }

    var acquireTimeoutNanoseconds: UInt64 {
        let (seconds, attoseconds) = acquireTimeout.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
    }
}
