import Foundation
import Glibc
import Postgres
import Testing

/// A server that stops answering in the middle of a statement, with its socket still open (a
/// frozen server, or a link that stops forwarding): the server's own statement_timeout cannot
/// help, and libpq would wait forever. The pool's watchdog ends the call once the statement
/// timeout (+ 1 s) has passed, and the next request gets a fresh connection.
@Suite struct PostgresStallTests {
    @Test(.timeLimit(.minutes(1))) func aCallTheServerNeverAnswersEndsAfterTheStatementTimeout() async throws {
        // Freezes a backend with SIGSTOP: only on the throwaway cluster scripts/test started on
        // this machine, never on whatever DATABASE_URL might point at.
        guard ProcessInfo.processInfo.environment["OOB_TEST_PGDATA"] != nil else { return }
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1, statementTimeoutMilliseconds: 500))
        defer { pool.shutdown() }
        let backend = try #require(try await pool.withConnection { try $0.query("select pg_backend_pid() as pid").int(0, "pid") })
        let command = (try? String(contentsOfFile: "/proc/\(backend)/cmdline", encoding: .utf8)) ?? ""
        try #require(command.contains("postgres"), "the backend runs on this machine")
        try #require(kill(Int32(backend), SIGSTOP) == 0)
        defer { kill(Int32(backend), SIGCONT) }

        let started = ContinuousClock.now
        await #expect { try await pool.withConnection { try $0.query("select 1") } } throws: { error in
            (error as? PostgresError)?.kind == .connectionLost && (error as? PostgresError)?.isUnavailable == true
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(1400), "not before the statement timeout + 1 s")
        #expect(elapsed < .seconds(6), "ended by the watchdog, took \(elapsed)")
        kill(Int32(backend), SIGCONT)
        #expect(try await pool.withConnection { try $0.query("select 1 as one").int(0, "one") } == 1)
        #expect(try await pool.withConnection { try $0.query("select pg_backend_pid() as pid").int(0, "pid") } != backend)
    }
}
