import HTTP
import JSON
package import Postgres

/// Health endpoints on the ops listener (OOB_OPS_LISTEN), without authentication.
package struct HealthRoutes: Sendable {
    package var pool: PostgresPool
    package var recovery: DeadlineRecovery?
    package var metrics: DeadlineMetrics?

    package init(pool: PostgresPool, recovery: DeadlineRecovery? = nil, metrics: DeadlineMetrics? = nil) {
        self.pool = pool
        self.recovery = recovery
        self.metrics = metrics
    }

    private static let live = Responses.json(200, [("status", .string("live"))])

    package var routes: [Route] {
        [
            Route("GET", "/health/live", name: "health.live", synchronous: { _ in Self.live }),
            Route("GET", "/health/ready", name: "health.ready") { context in
                await self.ready(context)
            },
        ]
    }

    /// Ready when the database answers and carries the schema this build expects.
    func ready(_ context: RouteContext) async -> HTTPResponse {
        do {
            let version = try await pool.withConnection { connection in
                try connection.execute(Migration.versionQuery).int(0, "version")
            }
            guard version == Migration.schemaVersion else {
                return Responses.json(503, [("status", .string("not ready")),
                                            ("reason", .string("schema version is not \(Migration.schemaVersion)"))],
                                      headers: [("Retry-After", "1")])
            }
            var members: [(String, JSONValue)] = [("status", .string("ready")), ("database", .string("ok"))]
            // Recovery of PENDING deadlines runs while the engine already answers (polls and
            // the sweeper end anything due meanwhile); readiness waits for it to finish, so a
            // load balancer moves traffic only to an instance whose timers are all loaded.
            var status = 200
            if let recovery {
                members.append(("recovery", recovery.json))
                if recovery.progress.phase != .done {
                    status = 503
                    members[0] = ("status", .string("not ready"))
                    members.append(("reason", .string("recovering deadlines")))
                }
            }
            if let metrics {
                let snapshot = metrics.snapshot
                members.append(("timers", .object(JSONObject([
                    ("pending", .number(JSONNumber(snapshot.pending))), ("fired", .number(JSONNumber(snapshot.fired))),
                    ("swept", .number(JSONNumber(snapshot.sweptEnded))),
                ]))))
            }
            return Responses.json(status, members, headers: status == 200 ? [] : [("Retry-After", "1")])
        } catch let error as PostgresError where error.isUnavailable {
            return Responses.json(503, [("status", .string("not ready")), ("reason", .string("database unavailable"))],
                                  headers: [("Retry-After", "1")])
        } catch {
            context.logger.warning("readiness check failed", ["error": String(describing: error)])
            return Responses.json(503, [("status", .string("not ready")), ("reason", .string("database check failed"))],
                                  headers: [("Retry-After", "1")])
        }
    }
}
