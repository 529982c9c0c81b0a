import Postgres
import Testing

/// The pool's acquire accounting behind /metrics: how many requests got a connection, how long
/// they queued for it, and how many gave up.
@Suite("PostgresPool wait statistics")
struct PoolWaitStatisticsTests {
    @Test func queuedTimeAndTimeoutsAreCounted() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1, acquireTimeout: .milliseconds(300)))
        defer { pool.shutdown() }
        #expect(try await pool.withConnection { try $0.query("select 1 as one").int(0, "one") } == 1)
        #expect(pool.statistics.acquired == 1)
        #expect(pool.statistics.acquireWaitSeconds < 0.1)

        // The only connection held: one request times out, one waits until it is released.
        let gate = Gate()
        let holder = Task { try await pool.withConnection { _ in gate.waitOpen() } }
        #expect(await eventually { pool.statistics.busy == 1 })
        await #expect(throws: PostgresError.self) { try await pool.withConnection { _ in 1 } }
        #expect(pool.statistics.acquireTimeouts == 1)
        let waiter = Task { try await pool.withConnection { _ in 2 } }
        #expect(await eventually { pool.statistics.waiting == 1 })
        // What is measured here is the wait itself, so the connection is held for a known time.
        try await Task.sleep(for: .milliseconds(100))
        gate.open()
        #expect(try await holder.value)
        #expect(try await waiter.value == 2)
        let statistics = pool.statistics
        #expect(statistics.acquired == 3)
        #expect(statistics.acquireTimeouts == 1)
        #expect(statistics.acquireWaitSeconds >= 0.09)
        #expect(statistics.acquireWaitSeconds < 0.3 + 0.1)
    }
}
