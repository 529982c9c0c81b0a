import Foundation
import Synchronization
import Testing

/// The engine↔PostgreSQL link breaks (a FaultProxy between them stalls, drops or cuts it):
/// the engine answers 503 + Retry-After within a bound (never a 500, never a hang), says why on
/// /health/ready, and serves again within seconds of the link returning, without a restart.
@Suite(.serialized) struct DatabaseFaultTests {
    static let acquireTimeoutMilliseconds = 500
    static let statementTimeoutMilliseconds = 1500
    static let connectTimeoutSeconds = 2
    /// The longest any request may take while the link is broken: waiting for a connection,
    /// then a call the watchdog ends (statement timeout + 1 s) or a connect that times out,
    /// plus scheduling slack on a shared 2-core machine.
    static let answerBound: Duration = .milliseconds(acquireTimeoutMilliseconds
        + max(statementTimeoutMilliseconds + 1000, connectTimeoutSeconds * 1000) + 3000)
    /// "Within seconds": the longest wait for a 200 after the link returns.
    static let recoveryBound: Duration = .seconds(5)

    static var config: String {
        var config = EngineProcess.defaultConfig
        let end = config.range(of: "}", options: .backwards)!
        config.replaceSubrange(end, with: """
              ,"database": {"poolSize": 4, "acquireTimeoutMilliseconds": \(acquireTimeoutMilliseconds),
                            "statementTimeoutMilliseconds": \(statementTimeoutMilliseconds),
                            "connectTimeoutSeconds": \(connectTimeoutSeconds)}
            }
            """)
        return config
    }

    enum Fault: String, CaseIterable, Sendable, CustomStringConvertible {
        /// Nothing forwarded, every connection kept open: a frozen server or black-holed link.
        case stall
        /// Every connection reset and new ones refused: the server is gone.
        case drop
        /// Connections reset every 200 ms while new ones still get through: a flapping link.
        case flap

        var description: String { rawValue }
    }

    /// One answer seen while the fault lasted.
    struct Answer: Sendable {
        var route: String
        var status: Int
        var hasRetryAfter: Bool
        var seconds: Double
        var authenticationId: String?
    }

    @Test(.timeLimit(.minutes(2)), arguments: Fault.allCases)
    func theEngineAnswers503DuringAFaultAndRecoversWithoutARestart(fault: Fault) async throws {
        let upstreamPort = try Self.upstreamPort()
        let proxy = try FaultProxy(upstreamPort: upstreamPort)
        defer { proxy.stop() }
        let engine = try await EngineProcess.start(.init(config: Self.config,
                                                         databaseURL: proxy.url(replacingPortIn: try TestEnvironment.databaseURL)))
        let d1 = try engine.d1Client()
        let ops = HTTPClient(port: engine.opsPort)
        let known = TestEnvironment.uniqueID("fault")
        // Every blocking call runs on a thread of its own (asyncSend), never on the cooperative
        // pool: a slow answer during a fault must not starve the tests running beside this one.
        #expect(try await d1.asyncSend("POST", D1.authenticationPath(), body: D1.authenticateBody(known)).status == 200)
        try await eventually(timeout: .seconds(20), "the engine to be ready") {
            try await ops.asyncSend("GET", "/health/ready").status == 200
        }

        switch fault {
        case .stall: proxy.stall()
        case .drop: proxy.drop(); proxy.cut()
        case .flap: break
        }
        // Load during the fault: Authenticate and polls from 8 threads (twice the pool).
        let faultSeconds = 4.0
        let answers = try await Self.load(engine: engine, d1: d1, known: known, seconds: faultSeconds, threads: 8) { elapsed in
            if fault == .flap, Int(elapsed * 5) != Int((elapsed - 0.05) * 5) { proxy.cut() }
        }
        let readiness = try await Self.timed { try await ops.asyncSend("GET", "/health/ready") }

        let healedAt = ContinuousClock.now
        proxy.heal()
        var firstOK: Duration?
        try await eventually(timeout: .seconds(30), interval: .milliseconds(50), "a 200 after the link returned") {
            let response = try await d1.asyncSend("POST", D1.authenticationPath(),
                                                  body: D1.authenticateBody(TestEnvironment.uniqueID("fault")))
            if response.status == 200 { firstOK = ContinuousClock.now - healedAt }
            return response.status == 200
        }
        let recovery = try #require(firstOK)
        try await eventually(timeout: .seconds(10), interval: .milliseconds(50), "ready after the link returned") {
            try await ops.asyncSend("GET", "/health/ready").status == 200
        }
        let readyAfter = ContinuousClock.now - healedAt

        let seconds = Self.seconds(recovery)
        print("database fault \(fault): \(answers.count) answers during \(faultSeconds) s "
              + "(\(answers.filter { $0.status == 200 }.count) × 200, \(answers.filter { $0.status == 503 }.count) × 503), "
              + "slowest \(String(format: "%.2f", answers.map(\.seconds).max() ?? 0)) s; "
              + "first 200 \(String(format: "%.2f", seconds)) s after the link returned, ready after "
              + "\(String(format: "%.2f", Self.seconds(readyAfter))) s")

        let unexpected = answers.filter { $0.status != 200 && $0.status != 503 }
        #expect(unexpected.isEmpty, "only 200 or 503 while the link is broken: \(unexpected.map { "\($0.route) \($0.status)" })")
        #expect(answers.allSatisfy { $0.status != 503 || $0.hasRetryAfter }, "every 503 carries Retry-After")
        let slowest = answers.map(\.seconds).max() ?? 0
        #expect(slowest <= Self.seconds(Self.answerBound), "every request answered within \(Self.answerBound), slowest \(slowest) s")
        if fault != .flap {
            #expect(answers.filter { $0.status == 503 }.count >= 8, "503s while the database is unreachable")
            #expect(readiness.response.status == 503)
            #expect(readiness.response.header("Retry-After") != nil)
            #expect(readiness.response.string("reason") == "database unavailable", "\(readiness.response.text)")
            #expect(Self.seconds(readiness.elapsed) <= Self.seconds(Self.answerBound))
        }
        #expect(recovery <= Self.recoveryBound, "a 200 within \(Self.recoveryBound) of the link returning, took \(recovery)")

        // Nothing acknowledged was lost, and no answer was a lie: every 200 Authenticate exists.
        let database = try TestDatabase()
        defer { database.shutdown() }
        for answer in answers where answer.route == "authenticate" && answer.status == 200 {
            #expect(try database.state(issuer: "ISSUER0001", authenticationId: answer.authenticationId!) != nil)
        }
        #expect(try await engine.stop() == 0)
    }

    // MARK: Helpers

    static func upstreamPort() throws -> Int {
        if let port = TestEnvironment.clusterPort.flatMap(Int.init) { return port }
        let url = try TestEnvironment.databaseURL
        guard let afterHost = url.range(of: "@")?.upperBound ?? url.range(of: "//")?.upperBound,
              let colon = url[afterHost...].firstIndex(of: ":"),
              let port = Int(url[url.index(after: colon)...].prefix { $0.isNumber }) else {
            throw TestSetupError("no port in DATABASE_URL")
        }
        return port
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func timed<T>(_ body: () async throws -> T) async throws -> (response: T, elapsed: Duration) {
        let start = ContinuousClock.now
        let value = try await body()
        return (value, ContinuousClock.now - start)
    }

    /// Requests from `threads` threads (each on a fresh connection, so a slow answer never hides
    /// behind another) for `seconds`; `tick` runs every 50 ms on the calling task meanwhile.
    static func load(engine: EngineProcess, d1: HTTPClient, known: String, seconds: Double, threads: Int,
                     tick: @escaping @Sendable (Double) -> Void) async throws -> [Answer] {
        let collected = Collected<Answer>()
        let started = ContinuousClock.now
        let end = started + .milliseconds(Int(seconds * 1000))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<threads {
                group.addTask {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        Thread.detachNewThread {
                            continuation.resume(with: Result {
                                var round = 0
                                while ContinuousClock.now < end && round < 10_000 {
                                    round += 1
                                    let authenticate = (round + worker) % 2 == 0
                                    let id = TestEnvironment.uniqueID("fault")
                                    let begin = ContinuousClock.now
                                    let response = authenticate
                                        ? try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
                                        : try d1.send("GET", D1.authenticationPath() + "/" + known)
                                    let answer = Answer(route: authenticate ? "authenticate" : "poll", status: response.status,
                                                        hasRetryAfter: response.header("Retry-After") != nil,
                                                        seconds: Self.seconds(ContinuousClock.now - begin),
                                                        authenticationId: authenticate ? id : nil)
                                    collected.append(answer)
                                }
                            })
                        }
                    }
                }
            }
            group.addTask {
                while ContinuousClock.now < end {
                    tick(Self.seconds(ContinuousClock.now - started))
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            try await group.waitForAll()
        }
        return collected.items
    }
}

/// Values gathered by several threads.
final class Collected<Value: Sendable>: Sendable {
    private let storage = Mutex<[Value]>([])
    func append(_ value: Value) { storage.withLock { $0.append(value) } }
    var items: [Value] { storage.withLock { $0 } }
}
