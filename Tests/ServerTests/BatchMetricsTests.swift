import Postgres
import Server
import Testing

/// The group commit's metrics (`oob_db_batch_*`): what one statement records, and what a
/// `Batcher` records against the real database.
@Suite struct BatchMetricsTests {
    static func registry() -> MetricsRegistry {
        let registry = MetricsRegistry()
        Metrics.declareBatchFamilies(in: registry)
        return registry
    }

    /// The sample lines of one family and kind, as `suffix{labels} value` without the name.
    static func lines(_ registry: MetricsRegistry, _ name: String, kind: String) -> [String] {
        registry.render().split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix(name + "_") && $0.contains(#"kind="\#(kind)""#) }
            .map { String($0.dropFirst(name.count)) }
    }

    @Test func oneStatementRecordsItsRowsItsTimeAndEachRequestsWait() {
        let registry = Self.registry()
        let metrics = BatchMetrics(kind: "create", registry: registry)
        // Submitted at 0 and 1 ms, sent at 3 ms, committed at 7 ms.
        metrics.record(submittedAt: [0, 1_000], sentAt: 3_000, committedAt: 7_000)
        let rows = Self.lines(registry, "oob_db_batch_rows", kind: "create")
        #expect(rows.contains(#"_bucket{kind="create",le="1"} 0"#))
        #expect(rows.contains(#"_bucket{kind="create",le="2"} 1"#))
        #expect(rows.contains(#"_sum{kind="create"} 2"#))
        #expect(rows.contains(#"_count{kind="create"} 1"#))
        let seconds = Self.lines(registry, "oob_db_batch_seconds", kind: "create")
        #expect(seconds.contains(#"_bucket{kind="create",le="0.003"} 0"#))
        #expect(seconds.contains(#"_bucket{kind="create",le="0.005"} 1"#))
        #expect(seconds.contains(#"_sum{kind="create"} 0.004"#))
        let queue = Self.lines(registry, "oob_db_batch_queue_seconds", kind: "create")
        #expect(queue.contains(#"_bucket{kind="create",le="0.002"} 1"#))
        #expect(queue.contains(#"_bucket{kind="create",le="0.003"} 2"#))
        #expect(queue.contains(#"_sum{kind="create"} 0.005"#))
        #expect(queue.contains(#"_count{kind="create"} 2"#))
        // Other kinds are other series.
        #expect(Self.lines(registry, "oob_db_batch_rows", kind: "decision").isEmpty)
    }

    @Test func theSeriesShowAtZeroOnceResolved() {
        let registry = Self.registry()
        _ = BatchMetrics(kind: "find", registry: registry)
        #expect(Self.lines(registry, "oob_db_batch_rows", kind: "find").contains(#"_count{kind="find"} 0"#))
        #expect(Self.lines(registry, "oob_db_batch_queue_seconds", kind: "find").contains(#"_count{kind="find"} 0"#))
    }

    /// Concurrent submissions through a real connection: every request counted once in the rows
    /// and in the waits, one time per statement, and no statement over its batch size.
    @Test(.timeLimit(.minutes(1))) func aBatcherCountsEveryRequestOnce() async throws {
        let registry = Self.registry()
        let pool = PostgresPool(configuration: try TestDatabase.configuration(poolSize: 2))
        defer { pool.shutdown() }
        let batcher = Batcher<Int, Int>(pool: pool, maxInFlight: 1, maxBatch: 8,
                                        metrics: BatchMetrics(kind: "test", registry: registry)) { items, connection in
            _ = try connection.query("select 1")
            return items.map { .success($0 * 2) }
        }
        let submitted = 40
        let answers = try await withThrowingTaskGroup(of: Int.self) { group in
            for item in 0..<submitted { group.addTask { try await batcher.submit(item) } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(answers.sorted() == (0..<submitted).map { $0 * 2 })

        func value(_ name: String, _ suffix: String) throws -> Double {
            let line = try #require(Self.lines(registry, name, kind: "test").first { $0.hasPrefix(suffix + "{") })
            return try #require(Double(line.split(separator: " ").last ?? ""))
        }
        let statements = try value("oob_db_batch_rows", "_count")
        #expect(try value("oob_db_batch_rows", "_sum") == Double(submitted))
        #expect(statements >= Double(submitted / 8) && statements <= Double(submitted))
        #expect(Self.lines(registry, "oob_db_batch_rows", kind: "test").contains(#"_bucket{kind="test",le="8"} \#(Int(statements))"#))
        #expect(try value("oob_db_batch_seconds", "_count") == statements)
        #expect(try value("oob_db_batch_seconds", "_sum") > 0)
        #expect(try value("oob_db_batch_queue_seconds", "_count") == Double(submitted))
    }
}
