import Postgres
import Synchronization
import Testing

@Suite("PostgresPool against a real server")
struct PostgresPoolTests {
    @Test func moreJobsThanConnectionsAllComplete() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 3))
        defer { pool.shutdown() }
        let statement = PostgresStatement("pool_pid", "select pg_backend_pid() as pid, $1::int as n, pg_sleep(0.02)")
        let pids = try await withThrowingTaskGroup(of: (Int, Int32).self) { group in
            for job in 0..<24 {
                group.addTask {
                    try await pool.withConnection { connection in
                        let rows = try connection.execute(statement, [String(job)])
                        return (rows.int(0, "n") ?? -1, Int32(rows.int(0, "pid") ?? -1))
                    }
                }
            }
            var seen: [Int: Int32] = [:]
            for try await (job, pid) in group { seen[job] = pid }
            return seen
        }
        #expect(pids.count == 24)
        #expect(Set(pids.keys) == Set(0..<24))
        #expect(Set(pids.values).count <= 3)
        let statistics = pool.statistics
        #expect(statistics.open <= 3)
        #expect(statistics.waiting == 0)
    }

    @Test func waitingBeyondAcquireTimeoutFailsAsUnavailable() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1, acquireTimeout: .milliseconds(200)))
        defer { pool.shutdown() }
        let gate = Gate()
        let holder = Task { try await pool.withConnection { _ in gate.waitOpen() } }
        #expect(await eventually { pool.statistics.busy == 1 })
        let started = ContinuousClock.now
        do {
            _ = try await pool.withConnection { try $0.query("select 1") }
            Issue.record("got a connection while the only one was held")
        } catch let error as PostgresError {
            #expect(error.kind == .poolTimeout)
            #expect(error.isUnavailable)
            #expect(ContinuousClock.now - started >= .milliseconds(150))
            #expect(ContinuousClock.now - started < .seconds(5))
        }
        gate.open()
        #expect(try await holder.value)
        #expect(try await pool.withConnection { try $0.query("select 1 as one").int(0, "one") } == 1)
    }

    @Test func fullQueueFailsFast() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1, maxQueueLength: 0))
        defer { pool.shutdown() }
        let gate = Gate()
        let holder = Task { try await pool.withConnection { _ in gate.waitOpen() } }
        #expect(await eventually { pool.statistics.busy == 1 })
        await #expect { try await pool.withConnection { _ in 1 } } throws: { error in
            (error as? PostgresError)?.kind == .queueFull && (error as? PostgresError)?.isUnavailable == true
        }
        gate.open()
        #expect(try await holder.value)
    }

    @Test func reconnectsAfterTheBackendIsTerminated() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1))
        defer { pool.shutdown() }
        let statement = PostgresStatement("reconnect_probe", "select pg_backend_pid() as pid, $1::text as echo")
        let first = try await pool.withConnection { try $0.execute(statement, ["one"]).int(0, "pid") ?? -1 }
        let killer = try TestDatabase.connect()
        #expect(try killer.query("select pg_terminate_backend($1::int) as done", [String(first)]).bool(0, "done") == true)
        // The terminated session is noticed and replaced; the prepared statement is prepared again
        // on the new one. An attempt racing the termination may fail, but only as unavailable.
        let unexpected = Mutex<[String]>([])
        let recovered = await eventually {
            do {
                let pid = try await pool.withConnection { try $0.execute(statement, ["two"]).int(0, "pid") ?? -1 }
                return pid != first
            } catch let error as PostgresError where error.isUnavailable {
                return false
            } catch {
                unexpected.withLock { $0.append(String(describing: error)) }
                return false
            }
        }
        #expect(recovered)
        #expect(unexpected.withLock { $0 }.isEmpty)
        #expect(pool.statistics.open == 1)
    }

    @Test func statementThatLosesItsConnectionFailsThenPoolRecovers() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1))
        defer { pool.shutdown() }
        await #expect { try await pool.withConnection { try $0.query("select pg_terminate_backend(pg_backend_pid())") } }
            throws: { error in (error as? PostgresError)?.kind == .connectionLost }
        #expect(try await pool.withConnection { try $0.query("select 1 as one").int(0, "one") } == 1)
    }

    @Test func transactionLeftOpenIsRolledBackBeforeReuse() async throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 1))
        defer { pool.shutdown() }
        let table = TestDatabase.uniqueName("left_open")
        let before = try pool.withConnectionBlocking { connection in
            _ = try connection.query("begin")
            try connection.executeScript("create temporary table \(table) (id int)")
            return connection.backendProcessID
        }
        let after = try await pool.withConnection { connection in
            (connection.backendProcessID, try connection.query("select to_regclass($1) is null as gone", ["pg_temp.\(table)"]).bool(0, "gone"))
        }
        #expect(after.0 == before, "the same session is reused, not replaced")
        #expect(after.1 == true, "the open transaction was rolled back")
        let value = try await pool.transaction { try $0.query("select 7 as seven").int(0, "seven") }
        #expect(value == 7)
    }

    @Test func blockingCallsAndShutdown() throws {
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 2))
        #expect(try pool.withConnectionBlocking { try $0.query("select 3 as three").int(0, "three") } == 3)
        #expect(pool.statistics.open == 1)
        pool.shutdown()
        pool.shutdown()
        #expect(pool.statistics.open == 0)
        #expect { try pool.withConnectionBlocking { _ in 1 } } throws: { error in
            (error as? PostgresError)?.kind == .poolClosed
        }
    }

    @Test func unreachableServerFailsFastAsUnavailable() async throws {
        let pool = PostgresPool(configuration: PostgresConfiguration(url: "postgresql://oob@127.0.0.1:1/oob", poolSize: 1))
        defer { pool.shutdown() }
        let started = ContinuousClock.now
        await #expect { try await pool.withConnection { _ in 1 } } throws: { error in
            (error as? PostgresError)?.kind == .connectionFailed && (error as? PostgresError)?.isUnavailable == true
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }
}
