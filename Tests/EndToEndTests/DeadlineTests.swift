import Foundation
import Testing

/// Deadlines end every PENDING authentication on time: by the timer wheel, after a crash by
/// start-up recovery, and when an instance is gone, by another instance's sweeper.
@Suite(.serialized) struct DeadlineTests {
    /// The test config with a `timer` section and ISSUER0002's 2 s challenges.
    static func config(sweepIntervalSeconds: Int = 5, sweepGraceSeconds: Int = 2) -> String {
        var config = EngineProcess.defaultConfig
        let end = config.range(of: "}", options: .backwards)!
        config.replaceSubrange(end, with: """
              ,"timer": {"tickMilliseconds": 50, "sweepIntervalSeconds": \(sweepIntervalSeconds), "sweepGraceSeconds": \(sweepGraceSeconds)}
            }
            """)
        return config
    }

    /// Creates `count` authentications on ISSUER0002 (2 s deadline) over `connections` kept-alive
    /// connections, each on its own thread; every answer must be PENDING.
    static func createMany(_ engine: EngineProcess, prefix: String, count: Int, connections: Int = 8,
                           issuer: String = "ISSUER0002") async throws {
        let token = try engine.token()
        let path = D1.authenticationPath(issuer: issuer)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<connections {
                group.addTask {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        Thread.detachNewThread {
                            continuation.resume(with: Result {
                                var connection = try RawHTTPConnection(port: engine.apiPort)
                                for index in stride(from: worker, to: count, by: connections) {
                                    let request = HTTPClient.request("POST", path, body: D1.authenticateBody("\(prefix)-\(index)"),
                                                                     headers: [("Authorization", "Bearer " + token)])
                                    if (try? connection.send(request)) == nil {
                                        connection = try RawHTTPConnection(port: engine.apiPort)
                                        try connection.send(request)
                                    }
                                    guard let response = try connection.readResponse(), response.status == 200,
                                          response.string("authenticationStatus") == "PENDING" else {
                                        throw TestSetupError("create \(prefix)-\(index) was not answered PENDING")
                                    }
                                }
                            })
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// How the authentications with this prefix ended, from the transitions log.
    struct Endings {
        var total = 0, stillPending = 0, expired = 0, early = 0, late = 0, terminalTransitions = 0
        var byCause: [String: Int] = [:]
        var actors: Set<String> = []
    }

    static func endings(_ database: TestDatabase, prefix: String, lateAfterSeconds: Int) throws -> Endings {
        var result = Endings()
        let summary = try database.rows("""
            select count(*) as total,
                   count(*) filter (where a.state = 'PENDING') as pending,
                   count(*) filter (where a.state = 'AUTHENTICATION_FAILED' and a.reason = 'expired') as expired
            from authentications a where a.issuer_id = 'ISSUER0002' and a.authentication_id like $1
            """, [prefix + "-%"])
        result.total = summary.int(0, "total") ?? -1
        result.stillPending = summary.int(0, "pending") ?? -1
        result.expired = summary.int(0, "expired") ?? -1
        let transitions = try database.rows("""
            select t.cause, t.actor, count(*) as count,
                   count(*) filter (where t.at < a.deadline) as early,
                   count(*) filter (where t.at > a.deadline + make_interval(secs => $2::int)) as late
            from authentications a join transitions t on t.authentication_id = a.id and t.from_state = 'PENDING'
            where a.issuer_id = 'ISSUER0002' and a.authentication_id like $1
            group by t.cause, t.actor
            """, [prefix + "-%", String(lateAfterSeconds)])
        for row in 0..<transitions.count {
            let count = transitions.int(row, "count") ?? 0
            result.terminalTransitions += count
            result.early += transitions.int(row, "early") ?? 0
            result.late += transitions.int(row, "late") ?? 0
            result.byCause[transitions.string(row, "cause") ?? "?", default: 0] += count
            result.actors.insert(transitions.string(row, "actor") ?? "?")
        }
        return result
    }

    static func waitUntilNonePending(_ database: TestDatabase, prefix: String, timeout: Duration) async throws {
        try await eventually(timeout: timeout, interval: .milliseconds(200), "every \(prefix) authentication to end") {
            (try? database.count("""
                select count(*) as count from authentications
                where issuer_id = 'ISSUER0002' and authentication_id like $1 and state = 'PENDING'
                """, [prefix + "-%"])) == 0
        }
    }

    @Test(.timeLimit(.minutes(5))) func tenThousandDeadlinesEndOnTimeAndNoneEarly() async throws {
        let engine = try await EngineProcess.start(.init(config: Self.config()))
        let database = try TestDatabase()
        defer { database.shutdown() }
        let prefix = "wheel-" + UUID().uuidString.prefix(8)
        try await Self.createMany(engine, prefix: prefix, count: 10_000)
        try await Self.waitUntilNonePending(database, prefix: prefix, timeout: .seconds(60))
        let endings = try Self.endings(database, prefix: prefix, lateAfterSeconds: 1)
        #expect(endings.total == 10_000)
        #expect(endings.expired == 10_000)
        #expect(endings.terminalTransitions == 10_000, "exactly one terminal transition each")
        #expect(endings.early == 0, "ended before the deadline")
        #expect(endings.late == 0, "ended more than 1 s after the deadline: \(endings.byCause)")
        #expect(endings.byCause["timer", default: 0] > 0)
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(5))) func afterKillNineARestartEndsEveryPendingByDeadlinePlusSweepInterval() async throws {
        let cluster = try await PrivateCluster.start(name: "recovery")
        defer { Task { await cluster.destroy() } }
        let config = Self.config(sweepIntervalSeconds: 5, sweepGraceSeconds: 2)
        let first = try await EngineProcess.start(.init(config: config, databaseURL: cluster.url))
        let prefix = "recover-" + UUID().uuidString.prefix(8)
        try await Self.createMany(first, prefix: prefix, count: 1_000)
        try await first.kill()
        let database = try TestDatabase(url: cluster.url)
        defer { database.shutdown() }
        #expect(try database.count("""
            select count(*) as count from authentications where authentication_id like $1 and state = 'PENDING'
            """, [prefix + "-%"]) > 0, "some were still PENDING when the engine died")

        let second = try await EngineProcess.start(.init(config: config, databaseURL: cluster.url))
        try await Self.waitUntilNonePending(database, prefix: prefix, timeout: .seconds(60))
        let endings = try Self.endings(database, prefix: prefix, lateAfterSeconds: 5)
        #expect(endings.total == 1_000)
        #expect(endings.expired == 1_000)
        #expect(endings.terminalTransitions == 1_000)
        #expect(endings.early == 0)
        #expect(endings.late == 0, "ended later than deadline + sweep interval: \(endings.byCause)")
        let ready = try HTTPClient(port: second.opsPort).send("GET", "/health/ready")
        #expect(ready.status == 200)
        #expect(ready.text.contains("\"recovery\""))
        try await second.stop()
    }

    @Test(.timeLimit(.minutes(5))) func aSurvivingInstanceEndsWhatADeadOneLeft() async throws {
        let cluster = try await PrivateCluster.start(name: "instances")
        defer { Task { await cluster.destroy() } }
        let config = Self.config(sweepIntervalSeconds: 1, sweepGraceSeconds: 1)
        let survivor = try await EngineProcess.start(.init(config: config, databaseURL: cluster.url))
        let doomed = try await EngineProcess.start(.init(config: config, databaseURL: cluster.url))
        let database = try TestDatabase(url: cluster.url)
        defer { database.shutdown() }

        // Both alive: each schedules its own; both sweep. Then one dies with its own still PENDING.
        let shared = "both-" + UUID().uuidString.prefix(8)
        try await Self.createMany(survivor, prefix: shared + "-a", count: 200)
        try await Self.createMany(doomed, prefix: shared + "-b", count: 200)
        let orphans = "orphan-" + UUID().uuidString.prefix(8)
        try await Self.createMany(doomed, prefix: orphans, count: 300)
        try await doomed.kill()
        let leftBehind = try database.count("""
            select count(*) as count from authentications where authentication_id like $1 and state = 'PENDING'
            """, [orphans + "-%"])
        #expect(leftBehind > 0, "some were still PENDING when the instance died")

        try await Self.waitUntilNonePending(database, prefix: orphans, timeout: .seconds(60))
        try await Self.waitUntilNonePending(database, prefix: shared, timeout: .seconds(60))
        let orphaned = try Self.endings(database, prefix: orphans, lateAfterSeconds: 10)
        #expect(orphaned.total == 300)
        #expect(orphaned.expired == 300)
        #expect(orphaned.terminalTransitions == 300, "exactly one terminal transition each")
        #expect(orphaned.early == 0)
        let survivorPid = String(survivor.process.pid)
        let doomedPid = String(doomed.process.pid)
        // What the dead instance had not ended before it died, the survivor ended.
        #expect(orphaned.actors.contains { $0.hasSuffix(":" + survivorPid) }, "\(orphaned.actors)")
        #expect(orphaned.actors.allSatisfy { $0.hasSuffix(":" + survivorPid) || $0.hasSuffix(":" + doomedPid) })
        let everything = try Self.endings(database, prefix: shared, lateAfterSeconds: 10)
        #expect(everything.total == 400)
        #expect(everything.terminalTransitions == 400)
        #expect(try database.count("""
            select count(*) as count from (select authentication_id from transitions where from_state is not null
                                           group by authentication_id having count(*) > 1) doubled
            """) == 0, "no authentication has two terminal transitions")
        try await survivor.stop()
    }
}
