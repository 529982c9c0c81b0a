import Postgres
import Testing

/// The pool's acquire accounting behind /metrics: how many requests got a connection, how long
/// they queued for it, and how many gave up.
@Suite("PostgresPool wait statistics")
struct PoolWaitStatisticsTests {
    @Test func queuedTimeIsCounted() async throws {
        // A generous acquire timeout: the whole suite runs in parallel on a small machine.
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1, acquireTimeout: .seconds(10)))
        defer { pool.shutdown() }
        #expect(try await pool.withConnection { try $0.query("select 1 as one").int(0, "one") } == 1)
        #expect(pool.statistics.acquired == 1)
        #expect(pool.statistics.acquireWaitSeconds < 1)
        let before = pool.statistics.acquireWaitSeconds

        // The only connection held: the next request queues until it is released.
        let gate = Gate()
        let holder = Task { try await pool.withConnection { _ in gate.waitOpen() } }
        #expect(await eventually { pool.statistics.busy == 1 })
        let waiter = Task { try await pool.withConnection { _ in 2 } }
        #expect(await eventually { pool.statistics.waiting == 1 })
        // What is measured here is the wait itself, so the connection is held for a known time.
        let clock = ContinuousClock()
        let started = clock.now
        try await Task.sleep(for: .milliseconds(100))
        gate.open()
        #expect(try await holder.value)
        #expect(try await waiter.value == 2)
        let held = clock.now - started
        let statistics = pool.statistics
        #expect(statistics.acquired == 3)
        #expect(statistics.acquireTimeouts == 0)
        let waited = statistics.acquireWaitSeconds - before
        #expect(waited >= 0.09)
        #expect(waited <= Double(held.components.seconds) + Double(held.components.attoseconds) / 1e18 + 0.5)
    }

    @Test func timeoutsAreCounted() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1, acquireTimeout: .milliseconds(100)))
        defer { pool.shutdown() }
        let gate = Gate()
        let holder = Task { try await pool.withConnection { _ in gate.waitOpen() } }
        #expect(await eventually { pool.statistics.busy == 1 })
        await #expect(throws: PostgresError.self) { try await pool.withConnection { _ in 1 } }
        await #expect(throws: PostgresError.self) { try await pool.withConnection { _ in 1 } }
        #expect(pool.statistics.acquireTimeouts == 2)
        #expect(pool.statistics.acquired == 1)
        gate.open()
        #expect(try await holder.value)
    }
}
