import Foundation
import Synchronization
import Testing

/// Under load (Authenticate and decisions from several threads), the engine is killed with
/// SIGKILL 10 times and PostgreSQL is stopped with `-m immediate` 5 times, each followed by a
/// restart. Afterwards: every Authenticate answered 200 exists, every decision answered 200 is
/// applied, no authentication has two terminal transitions (and each final state has exactly
/// the one that explains it), and every PENDING past its deadline ends within the sweep
/// interval after recovery.
@Suite(.serialized) struct CrashTests {
    static let sweepIntervalSeconds = 1
    static let sweepGraceSeconds = 1
    static let engineKills = 10
    static let databaseStops = 5

    static var config: String {
        var config = EngineProcess.defaultConfig
        let end = config.range(of: "}", options: .backwards)!
        config.replaceSubrange(end, with: """
              ,"timer": {"tickMilliseconds": 50, "sweepIntervalSeconds": \(sweepIntervalSeconds), "sweepGraceSeconds": \(sweepGraceSeconds)},
              "database": {"poolSize": 8, "acquireTimeoutMilliseconds": 1000, "connectTimeoutSeconds": 2}
            }
            """)
        return config
    }

    /// Where the load sends requests: the current engine's API port (it changes on each restart;
    /// 0 while no engine runs). Tokens outlive restarts: they are verified by the configured key.
    final class Target: Sendable {
        private let port = Atomic<Int>(0)
        let d1Token: String
        let appToken: String
        init(d1Token: String, appToken: String) {
            self.d1Token = d1Token
            self.appToken = appToken
        }
        var apiPort: Int { port.load(ordering: .acquiring) }
        func point(at engine: EngineProcess?) { port.store(engine?.apiPort ?? 0, ordering: .releasing) }
    }

    struct Acknowledged: Sendable {
        var issuer: String
        var id: String
    }

    struct Decided: Sendable {
        var issuer: String
        var id: String
        var expectedState: String
    }

    @Test(.timeLimit(.minutes(4))) func killNineAndImmediateDatabaseStopsLoseNothingAcknowledged() async throws {
        let started = ContinuousClock.now
        let cluster = try await PrivateCluster.start(name: "crash")
        defer { Task { await cluster.destroy() } }
        let options = EngineProcess.Options(config: Self.config, databaseURL: cluster.url)
        var engine = try await EngineProcess.start(options)
        let target = Target(d1Token: try engine.token(), appToken: try engine.token(client: "app"))
        target.point(at: engine)

        let prefix = "crash-" + UUID().uuidString.prefix(8).lowercased()
        let creates = Collected<Acknowledged>()
        let decisions = Collected<Decided>()
        let attempts = Counter()
        let unexpected = Collected<String>()
        let stop = Counter()

        // Four load threads: Authenticate on ISSUER0001 (300 s) and ISSUER0002 (2 s: these end
        // by their deadline), and on ISSUER0001 the cardholder's APPROVE or DECLINE right after.
        let load = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                            Thread.detachNewThread {
                                continuation.resume(with: Result {
                                    Self.runLoad(worker: worker, prefix: prefix, target: target, stop: stop, attempts: attempts,
                                                 creates: creates, decisions: decisions, unexpected: unexpected)
                                })
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        let database = try TestDatabase(url: cluster.url)
        defer { database.shutdown() }
        let sweepBound = Duration.seconds(Self.sweepIntervalSeconds + Self.sweepGraceSeconds) + .milliseconds(1500)
        // After each recovery (the engine ready again): how long until nothing is PENDING past
        // the deadline it had when recovery finished.
        var overdueEndings: [Duration] = []
        func overdueEnd(after fault: String) async throws {
            try await eventually(timeout: .seconds(30), interval: .milliseconds(50), "ready after \(fault)") {
                (try? await HTTPClient(port: engine.opsPort).asyncSend("GET", "/health/ready").status) == 200
            }
            let recovered = ContinuousClock.now
            var recoveredAt: String?
            try await eventually(timeout: .seconds(10), interval: .milliseconds(50), "the database's clock") {
                recoveredAt = try? database.rows("select now()::text as now").string(0, "now")
                return recoveredAt != nil
            }
            try await eventually(timeout: sweepBound, interval: .milliseconds(50), "overdue PENDING to end after \(fault)") {
                (try? database.count("""
                    select count(*) as count from authentications
                    where authentication_id like $1 and state = 'PENDING' and deadline < $2::timestamptz
                    """, [prefix + "-%", recoveredAt!])) == 0
            }
            overdueEndings.append(ContinuousClock.now - recovered)
        }

        // The faults, interleaved: two engine kills, one database stop, five times over.
        var engineKills = 0, databaseStops = 0
        for round in 0..<(Self.engineKills + Self.databaseStops) {
            let before = creates.count + decisions.count
            try await eventually(timeout: .seconds(20), interval: .milliseconds(20), "load to be acknowledged before fault \(round)") {
                creates.count + decisions.count >= before + 30
            }
            if round % 3 == 2 {
                try await cluster.stopImmediately()
                try await cluster.start()
                databaseStops += 1
                try await overdueEnd(after: "database stop \(databaseStops)")
            } else {
                target.point(at: nil)
                try await engine.kill()
                engine = try await EngineProcess.start(options)
                target.point(at: engine)
                engineKills += 1
                try await overdueEnd(after: "engine kill \(engineKills)")
            }
        }
        // Load through the last recovery too, then stop it.
        let beforeEnd = creates.count + decisions.count
        try await eventually(timeout: .seconds(20), interval: .milliseconds(20), "load after the last fault") {
            creates.count + decisions.count >= beforeEnd + 30
        }
        stop.add(1)
        try await load.value
        // Every PENDING past its deadline ends within the sweep interval (+ grace) of recovery.
        try await overdueEnd(after: "the load stopped")
        // And the 2 s ones still running at the end, by their deadline and the sweep interval.
        try await eventually(timeout: .seconds(2) + sweepBound, interval: .milliseconds(100), "every 2 s challenge to end") {
            try database.count("""
                select count(*) as count from authentications
                where authentication_id like $1 and issuer_id = 'ISSUER0002' and state = 'PENDING'
                """, [prefix + "-%"]) == 0
        }

        let rows = try database.rows("""
            select issuer_id, authentication_id, state from authentications where authentication_id like $1
            """, [prefix + "-%"])
        var states: [String: String] = [:]
        for row in 0..<rows.count {
            states[rows.string(row, "issuer_id")! + "/" + rows.string(row, "authentication_id")!] = rows.string(row, "state")
        }
        let acknowledged = creates.items
        let decided = decisions.items
        let lostCreates = acknowledged.filter { states[$0.issuer + "/" + $0.id] == nil }
        let lostDecisions = decided.filter { states[$0.issuer + "/" + $0.id] != $0.expectedState }
        // Terminal transitions: at most one each, and exactly one for each final state, matching it.
        let doubled = try database.count("""
            select count(*) as count from (
                select t.authentication_id from transitions t join authentications a on a.id = t.authentication_id
                where a.authentication_id like $1 and t.outcome = 'applied' and t.to_state <> 'PENDING'
                group by t.authentication_id having count(*) > 1) doubled
            """, [prefix + "-%"])
        let unexplained = try database.count("""
            select count(*) as count from authentications a
            where a.authentication_id like $1 and (
                (a.state = 'PENDING') <> not exists (select 1 from transitions t where t.authentication_id = a.id
                                                     and t.outcome = 'applied' and t.to_state <> 'PENDING')
                or (a.state <> 'PENDING' and not exists (select 1 from transitions t where t.authentication_id = a.id
                                                         and t.outcome = 'applied' and t.to_state = a.state)))
            """, [prefix + "-%"])
        let early = try database.count("""
            select count(*) as count from authentications a join transitions t on t.authentication_id = a.id
            where a.authentication_id like $1 and t.outcome = 'applied' and t.cause in ('timer', 'sweeper', 'poll')
              and t.at < a.deadline
            """, [prefix + "-%"])

        let elapsed = ContinuousClock.now - started
        print("crash test: \(engineKills) engine kills, \(databaseStops) database stops in \(elapsed); "
              + "\(attempts.value) requests, \(acknowledged.count) creates and \(decided.count) decisions "
              + "acknowledged; lost: \(lostCreates.count) creates, \(lostDecisions.count) decisions; "
              + "double terminal transitions: \(doubled); unexplained states: \(unexplained); ended early: \(early); "
              + "overdue PENDING all ended at most \(overdueEndings.max() ?? .zero) after each recovery")
        #expect(engineKills == Self.engineKills)
        #expect(databaseStops == Self.databaseStops)
        #expect(acknowledged.count >= 100, "enough acknowledged load to mean something")
        #expect(decided.count >= 30)
        #expect(lostCreates.isEmpty, "acknowledged Authenticate lost: \(lostCreates.prefix(5).map(\.id))")
        #expect(lostDecisions.isEmpty, "acknowledged decision not applied: \(lostDecisions.prefix(5).map { "\($0.id) \(states[$0.issuer + "/" + $0.id] ?? "missing")" })")
        #expect(doubled == 0, "no authentication has two terminal transitions")
        #expect(unexplained == 0, "every state is explained by exactly its terminal transition")
        #expect(early == 0, "no deadline fired early")
        #expect(unexpected.items.isEmpty, "answers other than 200/409/503 or a dropped connection: \(unexpected.items.prefix(5))")
        #expect(try await engine.stop() == 0)
    }

    /// One load thread: requests on fresh connections until `stop`; failures to connect or an
    /// answer cut off by a crash are expected (the outcome is unknown, so nothing is recorded).
    static func runLoad(worker: Int, prefix: String, target: Target, stop: Counter, attempts: Counter,
                        creates: Collected<Acknowledged>, decisions: Collected<Decided>, unexpected: Collected<String>) {
        var sequence = 0
        while stop.value == 0 && sequence < 100_000 {
            sequence += 1
            let port = target.apiPort
            guard port != 0 else {
                usleep(5_000)   // no engine right now: pace the loop, do not spin
                continue
            }
            let issuer = sequence % 3 == 0 ? "ISSUER0002" : "ISSUER0001"
            let id = "\(prefix)-\(worker)-\(sequence)"
            attempts.add(1)
            guard let created = send(port: port, "POST", D1.authenticationPath(issuer: issuer), body: D1.authenticateBody(id),
                                     token: target.d1Token, unexpected: unexpected), created.status == 200 else {
                // The engine or the database is away: pace the loop (a 503 comes back at once),
                // so it loads the machine no more than the tests running beside it can bear.
                usleep(20_000)
                continue
            }
            guard created.string("authenticationStatus") == "PENDING" else {
                unexpected.append("create \(id) answered \(created.text)")
                continue
            }
            creates.append(Acknowledged(issuer: issuer, id: id))
            guard issuer == "ISSUER0001" else { continue }
            let approve = sequence % 2 == 0
            attempts.add(1)
            let body = #"{"decision":"\#(approve ? "APPROVE" : "DECLINE")","appInstanceId":"alice-phone"}"#
            guard let decided = send(port: port, "POST", "/app/v1/issuers/\(issuer)/authentications/\(id)/decision",
                                     body: body, token: target.appToken, unexpected: unexpected),
                  decided.status == 200 else { continue }
            let expected = approve ? "AUTHENTICATED" : "AUTHENTICATION_FAILED"
            if decided.string("authenticationStatus") != expected {
                unexpected.append("decision \(id) answered \(decided.text)")
            }
            decisions.append(Decided(issuer: issuer, id: id, expectedState: expected))
        }
    }

    /// nil when the connection failed or broke (the engine died): the outcome is unknown.
    static func send(port: Int, _ method: String, _ path: String, body: String, token: String,
                     unexpected: Collected<String>) -> RawHTTPConnection.Response? {
        guard let connection = try? RawHTTPConnection(port: port, receiveTimeoutSeconds: 10) else { return nil }
        let request = HTTPClient.request(method, path, body: body, headers: [("Authorization", "Bearer " + token)])
        guard (try? connection.send(request)) != nil, let response = try? connection.readResponse() else { return nil }
        // 409: a decision that lost to the deadline; 503: the database is away. Anything else is wrong.
        if ![200, 409, 503].contains(response.status) {
            unexpected.append("\(method) \(path) answered \(response.status) \(response.text)")
        }
        return response
    }
}

extension Collected {
    var count: Int { items.count }
}

/// A counter shared by threads (also a stop flag: non-zero means stop).
final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    func add(_ amount: Int) { storage.add(amount, ordering: .relaxed) }
    var value: Int { storage.load(ordering: .relaxed) }
}
