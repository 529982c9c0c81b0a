import Postgres
import Testing

@Suite("PostgresConnection against a real server")
struct PostgresConnectionTests {
    @Test func parametersCarryNullQuotesAndUnicodeUnchanged() throws {
        let connection = try TestDatabase.connect()
        let tricky = #"O'Brien "the" \ backslash; -- not a comment $1 "#
        let unicode = "Zoë 日本語 🎉 \u{0301}e"
        let rows = try connection.query("select $1::text as a, $2::text as b, $3::text as c, $4::int as d, $5::text as e",
                                        [nil, tricky, unicode, "42", ""])
        #expect(rows.count == 1)
        #expect(rows.columns == ["a", "b", "c", "d", "e"])
        #expect(rows.string(0, "a") == nil)
        #expect(rows.string(0, "b") == tricky)
        #expect(rows.string(0, "c") == unicode)
        #expect(rows.int(0, "d") == 42)
        #expect(rows.string(0, "e") == "")
        #expect(rows[row: 0, column: 1] == tricky)
    }

    @Test func booleansIntegersAndOutOfRangeReads() throws {
        let connection = try TestDatabase.connect()
        let rows = try connection.query("""
            select true as yes, false as no, null::boolean as unknown, 9007199254740993::bigint as big, -7 as negative
            """)
        #expect(rows.bool(0, "yes") == true)
        #expect(rows.bool(0, "no") == false)
        #expect(rows.bool(0, "unknown") == nil)
        #expect(rows.int(0, "big") == 9_007_199_254_740_993)
        #expect(rows.int(0, "negative") == -7)
        #expect(rows.string(1, "yes") == nil)
        #expect(rows.string(0, "missing") == nil)
        #expect(rows[row: 0, column: 99] == nil)
        let empty = try connection.query("select 1 as one where false")
        #expect(empty.count == 0)
        #expect(empty.int(0, "one") == nil)
    }

    @Test func preparedStatementIsPreparedOnceAndReused() throws {
        let connection = try TestDatabase.connect()
        let name = TestDatabase.uniqueName("echo")
        let statement = PostgresStatement(name, "select $1::int + 1 as next")
        for value in 0..<5 {
            #expect(try connection.execute(statement, [String(value)]).int(0, "next") == value + 1)
        }
        let prepared = try connection.query("select count(*) as count from pg_prepared_statements where name = $1", [name])
        #expect(prepared.int(0, "count") == 1)
        let clash = PostgresStatement(name, "select 2")
        #expect { try connection.execute(clash) } throws: { error in
            (error as? PostgresError)?.kind == .misuse
        }
    }

    /// How PostgreSQL planned each execution of `name` on this session, and the session's mode now.
    private func plans(_ connection: PostgresConnection, _ name: String) throws -> (generic: Int?, custom: Int?, mode: String?) {
        let rows = try connection.query("""
            select generic_plans, custom_plans, current_setting('plan_cache_mode') as mode
            from pg_prepared_statements where name = $1
            """, [name])
        return (rows.int(0, "generic_plans"), rows.int(0, "custom_plans"), rows.string(0, "mode"))
    }

    @Test func genericStatementsArePlannedOnceAndOthersAsPostgreSQLChooses() throws {
        let connection = try TestDatabase.connect()
        #expect(try connection.query("select current_setting('plan_cache_mode') as mode").string(0, "mode") == "auto")
        // The shape of the batched statements: an array parameter the planner cannot see.
        let sql = "select count(*) as n from unnest($1::text[]) as item where item <> ''"
        let generic = PostgresStatement(TestDatabase.uniqueName("generic"), sql, planning: .generic)
        let automatic = PostgresStatement(TestDatabase.uniqueName("automatic"), sql)
        for round in 1...3 {
            #expect(try connection.execute(generic, ["{a,b,c}"]).int(0, "n") == 3)
            #expect(try connection.execute(automatic, ["{a,b}"]).int(0, "n") == 2)
            let genericPlans = try plans(connection, generic.name)
            #expect(genericPlans.generic == round)
            #expect(genericPlans.custom == 0)
            // PostgreSQL's default makes a custom plan for each of the first five executions.
            let automaticPlans = try plans(connection, automatic.name)
            #expect(automaticPlans.custom == round)
            #expect(automaticPlans.generic == 0)
            #expect(automaticPlans.mode == "auto")
        }
    }

    @Test func planningIsLeftAloneInsideATransactionAndSwitchedAfterIt() throws {
        let connection = try TestDatabase.connect()
        let generic = PostgresStatement(TestDatabase.uniqueName("generic"), "select $1::int + 1 as next", planning: .generic)
        // Inside a transaction that rolls back, a SET would be undone behind the connection's back.
        do {
            try connection.transaction { connection in
                #expect(try connection.execute(generic, ["1"]).int(0, "next") == 2)
                throw CancellationError()
            }
        } catch is CancellationError {}
        #expect(try plans(connection, generic.name).custom == 1)
        #expect(try connection.execute(generic, ["2"]).int(0, "next") == 3)
        let after = try plans(connection, generic.name)
        #expect(after.generic == 1)
        #expect(after.mode == "force_generic_plan")
    }

    @Test func planningIsSetAgainAfterDiscardAll() throws {
        let connection = try TestDatabase.connect()
        let generic = PostgresStatement(TestDatabase.uniqueName("generic"), "select $1::int * 2 as twice", planning: .generic)
        #expect(try connection.execute(generic, ["2"]).int(0, "twice") == 4)
        try connection.executeScript("discard all")
        #expect(try connection.execute(generic, ["3"]).int(0, "twice") == 6)
        let plansAfter = try plans(connection, generic.name)
        #expect(plansAfter.generic == 1)
        #expect(plansAfter.custom == 0)
    }

    @Test func statementIsPreparedAgainAfterDeallocate() throws {
        let connection = try TestDatabase.connect()
        let statement = PostgresStatement(TestDatabase.uniqueName("again"), "select $1::text as value")
        #expect(try connection.execute(statement, ["a"]).string(0, "value") == "a")
        try connection.executeScript("deallocate all")
        #expect(try connection.execute(statement, ["b"]).string(0, "value") == "b")
    }

    @Test func uniqueViolationReportsSQLStateAndConstraintButNotTheValue() throws {
        let connection = try TestDatabase.connect()
        let table = TestDatabase.uniqueName("cards")
        try connection.executeScript("create temporary table \(table) (pan text constraint \(table)_pan_key unique)")
        let insert = PostgresStatement("insert_\(table)", "insert into \(table) (pan) values ($1)")
        let secret = "4111111111111111"
        #expect(try connection.execute(insert, [secret]).affectedRows == 1)
        do {
            _ = try connection.execute(insert, [secret])
            Issue.record("the duplicate was accepted")
        } catch {
            #expect(error.kind == .queryFailed)
            #expect(error.sqlState == "23505")
            #expect(error.isUniqueViolation)
            #expect(error.constraint == "\(table)_pan_key")
            #expect(!error.isUnavailable)
            #expect(!error.isRetryable)
            #expect(!error.description.contains(secret))
            #expect(error.description.contains("23505"))
        }
        // The session is still fine after a failed statement.
        #expect(try connection.query("select count(*) as count from \(table)").int(0, "count") == 1)
    }

    @Test func dataErrorsDoNotEchoTheParameter() throws {
        let connection = try TestDatabase.connect()
        let secret = "secret-token-5500000000000004"
        do {
            _ = try connection.query("select $1::int as n", [secret])
            Issue.record("a non-integer was accepted")
        } catch {
            #expect(error.sqlState == "22P02")
            #expect(!error.description.contains(secret))
            #expect(!error.detailMessage.contains("5500000000000004"))
            #expect(error.description.contains("invalid input syntax"))
        }
        do {
            _ = try connection.query("select $1::text", ["before\u{0}\(secret)"])
            Issue.record("a NUL byte was sent")
        } catch {
            #expect(error.sqlState == "22021")
            #expect(!error.description.contains(secret))
        }
    }

    @Test func transactionCommitsOrRollsBack() throws {
        struct Abort: Error {}
        let connection = try TestDatabase.connect()
        let table = TestDatabase.uniqueName("ledger")
        try connection.executeScript("create temporary table \(table) (id int primary key)")
        try connection.transaction { try $0.query("insert into \(table) values (1)") }
        #expect(throws: Abort.self) {
            try connection.transaction { connection in
                _ = try connection.query("insert into \(table) values (2)")
                throw Abort()
            }
        }
        // A failure swallowed inside the transaction must not look like a commit.
        #expect { 
            try connection.transaction { connection in
                _ = try connection.query("insert into \(table) values (3)")
                _ = try? connection.query("insert into \(table) values (1)")
            }
        } throws: { error in (error as? PostgresError)?.sqlState == "25P02" }
        let ids = try connection.query("select id from \(table) order by id")
        #expect(ids.count == 1)
        #expect(ids.int(0, "id") == 1)
        #expect(try connection.transaction { try $0.query("select 5 as five").int(0, "five") } == 5)
    }

    @Test func scriptRunsSeveralStatements() throws {
        let connection = try TestDatabase.connect()
        let table = TestDatabase.uniqueName("script")
        try connection.executeScript("""
            begin;
            create temporary table \(table) (id int);
            create temporary table if not exists \(table) (id int);
            insert into \(table) values (1), (2), (3);
            commit;
            """)
        #expect(try connection.query("select count(*) as count from \(table)").int(0, "count") == 3)
        #expect { try connection.executeScript("select 1; select * from no_such_table_\(table);") } throws: { error in
            (error as? PostgresError)?.sqlState == "42P01"
        }
    }

    @Test func copyOutDecodesTextFormat() throws {
        let connection = try TestDatabase.connect()
        var rows: [[String?]] = []
        try connection.copyOut("""
            copy (select * from (values (1, 'tab\there', null::text), (2, E'line\\nbreak \\\\ back', 'ünï')) v(a, b, c)
                  order by a) to stdout
            """) { rows.append($0) }
        #expect(rows == [["1", "tab\there", nil], ["2", "line\nbreak \\ back", "ünï"]])
        #expect(try connection.query("select 1 as one").int(0, "one") == 1)
    }

    @Test func statementTimeoutIsUnavailable() throws {
        let connection = try PostgresConnection.connect(try TestDatabase.configuration(statementTimeoutMilliseconds: 50))
        do {
            _ = try connection.query("select pg_sleep(5)")
            Issue.record("the statement timeout did not fire")
        } catch {
            #expect(error.sqlState == "57014")
            #expect(error.isUnavailable)
        }
        #expect(!connection.isBroken)
    }

    @Test func statementThatKillsItsSessionIsConnectionLost() throws {
        let connection = try TestDatabase.connect()
        #expect(connection.backendProcessID > 0)
        do {
            _ = try connection.query("select pg_terminate_backend(pg_backend_pid())")
            Issue.record("the session survived its own termination")
        } catch {
            #expect(error.kind == .connectionLost)
            #expect(error.isUnavailable)
            #expect(!error.isRetryable)
        }
        #expect(connection.isBroken)
        #expect { try connection.query("select 1") } throws: { error in
            (error as? PostgresError)?.kind == .connectionLost
        }
    }

    @Test func connectionFailureNeverShowsThePassword() throws {
        let password = "hunter2-Very-Secret"
        // Port 1 on loopback: nothing listens, so the connection is refused at once.
        let refused = PostgresConfiguration(url: "postgresql://oob:\(password)@127.0.0.1:1/oob", connectTimeoutSeconds: 2)
        #expect(!refused.description.contains(password))
        do {
            _ = try PostgresConnection.connect(refused)
            Issue.record("connected to port 1")
        } catch {
            #expect(error.kind == .connectionFailed)
            #expect(error.isUnavailable)
            #expect(error.isRetryable)
            #expect(!error.description.contains(password))
        }
        for url in ["postgresql://oob:\(password)@127.0.0.1:notaport/oob", "host=x password=\(password) bogus"] {
            do {
                _ = try PostgresConnection.connect(PostgresConfiguration(url: url))
                Issue.record("a malformed URL was accepted")
            } catch {
                #expect(error.kind == .connectionFailed)
                #expect(!error.description.contains(password))
            }
        }
    }
}

@Suite("PostgresError and PostgresRows without a server")
struct PostgresValueTests {
    @Test func unavailabilityAndRetryClassification() {
        #expect(PostgresError(kind: .poolTimeout).isUnavailable)
        #expect(PostgresError(kind: .queueFull).isUnavailable)
        #expect(PostgresError(kind: .queryFailed, sqlState: "08006").isUnavailable)
        #expect(PostgresError(kind: .queryFailed, sqlState: "57P01").isUnavailable)
        #expect(PostgresError(kind: .queryFailed, sqlState: "53300").isUnavailable)
        #expect(!PostgresError(kind: .queryFailed, sqlState: "23505").isUnavailable)
        #expect(!PostgresError(kind: .misuse).isUnavailable)
        #expect(PostgresError(kind: .queryFailed, sqlState: "40001").isRetryable)
        #expect(!PostgresError(kind: .queryFailed, sqlState: "23505").isRetryable)
        #expect(!PostgresError(kind: .connectionLost).isRetryable)
    }

    @Test func rowsReadByNameAndPosition() {
        let rows = PostgresRows(columns: ["id", "flag"], values: ["1", "t", "x", nil], affectedRows: 2)
        #expect(rows.count == 2)
        #expect(rows.int(0, "id") == 1)
        #expect(rows.int(1, "id") == nil)
        #expect(rows.bool(0, "flag") == true)
        #expect(rows.bool(1, "flag") == nil)
        #expect(rows[row: 2, column: 0] == nil)
        #expect(rows[row: -1, column: 0] == nil)
    }
}
