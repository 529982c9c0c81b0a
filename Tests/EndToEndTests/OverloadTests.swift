import Foundation
import Glibc
import Testing

/// Past its configured concurrency the engine sheds load with 503 + Retry-After instead of
/// queueing without bound: a small-limit engine flooded by many concurrent clients answers
/// every request with 200 or 503 quickly, its memory stays bounded, and it serves normally after.
@Suite(.serialized) struct OverloadTests {
    static let maxInFlightRequests = 8
    static let maxConnections = 32
    static let clients = 48
    static let requestsPerClient = 100
    /// Besides them, clients that pipeline this many requests on one kept-alive connection.
    static let pipeliningClients = 4
    static let pipelinedRequests = 200
    /// No request may wait longer than this (the pool's acquire timeout is 200 ms).
    static let answerBound = 5.0
    /// Growth of the engine's resident memory under the flood, over its size just before it.
    static let rssGrowthBound = 96 << 20

    static var config: String {
        var config = EngineProcess.defaultConfig
        let end = config.range(of: "}", options: .backwards)!
        config.replaceSubrange(end, with: """
              ,"http": {"maxInFlightRequests": \(maxInFlightRequests), "maxConnections": \(maxConnections)},
              "database": {"poolSize": 2, "acquireTimeoutMilliseconds": 200}
            }
            """)
        return config
    }

    struct Outcome: Sendable {
        var status: Int   // 0: the connection was refused, reset or closed without an answer
        var hasRetryAfter: Bool
        var seconds: Double
        var detail: String
    }

    @Test(.timeLimit(.minutes(2))) func aFloodIsShedWith503AndMemoryStaysBounded() async throws {
        let engine = try await EngineProcess.start(.init(config: Self.config))
        let token = try engine.token()
        let d1 = HTTPClient(port: engine.apiPort, token: token)
        let warm = TestEnvironment.uniqueID("overload")
        #expect(try await d1.asyncSend("POST", D1.authenticationPath(), body: D1.authenticateBody(warm)).status == 200)
        let pid = engine.process.pid
        let rssBefore = try Self.residentBytes(pid)

        let outcomes = Collected<Outcome>()
        let pipelined = Collected<Outcome>()
        let peakRSS = Counter()
        peakRSS.add(rssBefore)
        let done = Counter()
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<Self.pipeliningClients {
                group.addTask {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        Thread.detachNewThread {
                            Self.pipeline(port: engine.apiPort, token: token, warm: warm, outcomes: pipelined)
                            continuation.resume()
                        }
                    }
                }
            }
            for client in 0..<Self.clients {
                group.addTask {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        Thread.detachNewThread {
                            Self.flood(client: client, port: engine.apiPort, token: token, warm: warm, outcomes: outcomes)
                            continuation.resume()
                        }
                    }
                }
            }
            group.addTask {
                // Memory while the flood lasts (bounded: the flood itself is bounded in count).
                var samples = 0
                while done.value == 0 && samples < 1200 {
                    samples += 1
                    if let rss = try? Self.residentBytes(pid), rss > peakRSS.value { peakRSS.add(rss - peakRSS.value) }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            for _ in 0..<(Self.clients + Self.pipeliningClients) { try await group.next() }
            done.add(1)
            try await group.waitForAll()
        }
        let floodSeconds = DatabaseFaultTests.seconds(ContinuousClock.now - started)

        // Afterwards it serves normally, at once.
        let after = try await DatabaseFaultTests.timed {
            try await d1.asyncSend("POST", D1.authenticationPath(), body: D1.authenticateBody(TestEnvironment.uniqueID("overload")))
        }
        let ready = try await HTTPClient(port: engine.opsPort).asyncSend("GET", "/health/ready")
        let rssAfter = try Self.residentBytes(pid)

        let all = outcomes.items
        let ok = all.filter { $0.status == 200 }.count
        let shed = all.filter { $0.status == 503 }
        let unanswered = all.filter { $0.status == 0 }
        let other = all.filter { ![0, 200, 503].contains($0.status) }
        let slowest = all.map(\.seconds).max() ?? 0
        let reasons = Dictionary(grouping: shed, by: { $0.detail }).mapValues(\.count)
        let piped = pipelined.items
        let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
        print("overload: \(all.count) requests from \(Self.clients) clients in \(String(format: "%.1f", floodSeconds)) s "
              + "(limits: \(Self.maxInFlightRequests) in flight, \(Self.maxConnections) connections): \(ok) × 200, "
              + "\(shed.count) × 503, \(unanswered.count) without an answer, \(other.count) other; slowest "
              + "\(String(format: "%.2f", slowest)) s; RSS \(mib(rssBefore)) before, peak \(mib(peakRSS.value)), "
              + "\(mib(rssAfter)) after; first request after the flood \(after.response.status) in \(after.elapsed); "
              + "503 reasons \(reasons); pipelined: \(piped.count) answers to \(Self.pipeliningClients * Self.pipelinedRequests) "
              + "requests (\(piped.filter { $0.status == 200 }.count) × 200, \(piped.filter { $0.status == 503 }.count) × 503)")

        #expect(all.count == Self.clients * Self.requestsPerClient)
        #expect(other.isEmpty, "only 200 or 503: \(other.prefix(5).map { "\($0.status) \($0.detail)" })")
        #expect(unanswered.isEmpty, "every request answered: \(unanswered.prefix(5).map(\.detail))")
        #expect(shed.count > 0, "past its limits the engine sheds load")
        #expect(ok > 0, "and still serves what it can")
        #expect(shed.allSatisfy { $0.hasRetryAfter }, "every 503 carries Retry-After")
        #expect(slowest <= Self.answerBound, "nothing queued without bound: slowest \(slowest) s")
        #expect(peakRSS.value - rssBefore <= Self.rssGrowthBound, "memory stays bounded: \(mib(peakRSS.value - rssBefore)) growth")
        #expect(piped.allSatisfy { $0.status == 200 || ($0.status == 503 && $0.hasRetryAfter) },
                "pipelined: \(piped.filter { $0.status != 200 }.prefix(3).map { "\($0.status) \($0.detail)" })")
        #expect(piped.filter { $0.status == 0 }.isEmpty)
        #expect(after.response.status == 200)
        #expect(after.elapsed <= .seconds(1))
        #expect(ready.status == 200)
        #expect(try await engine.stop() == 0)
    }

    /// One client: `requestsPerClient` requests, each on a fresh connection (so the flood
    /// presses on the connection limit too), alternating Authenticate and a poll.
    static func flood(client: Int, port: Int, token: String, warm: String, outcomes: Collected<Outcome>) {
        for index in 0..<requestsPerClient {
            let authenticate = (client + index) % 2 == 0
            let request = authenticate
                ? HTTPClient.request("POST", D1.authenticationPath(),
                                     body: D1.authenticateBody(TestEnvironment.uniqueID("overload")),
                                     headers: [("Authorization", "Bearer " + token)])
                : HTTPClient.request("GET", D1.authenticationPath() + "/" + warm, headers: [("Authorization", "Bearer " + token)])
            let begin = ContinuousClock.now
            var outcome = Outcome(status: 0, hasRetryAfter: false, seconds: 0, detail: "")
            do {
                let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 10)
                try connection.send(request)
                if let response = try connection.readResponse() {
                    outcome.status = response.status
                    outcome.hasRetryAfter = response.header("Retry-After") != nil
                    outcome.detail = response.text
                } else {
                    outcome.detail = "closed without an answer"
                }
            } catch {
                outcome.detail = String(describing: error)
            }
            outcome.seconds = DatabaseFaultTests.seconds(ContinuousClock.now - begin)
            outcomes.append(outcome)
        }
    }

    /// One kept-alive connection with `pipelinedRequests` requests written at once; every one
    /// is answered in order (a 503 for the ones past the limits) unless the server closes the
    /// connection after saying so (`Connection: close`).
    static func pipeline(port: Int, token: String, warm: String, outcomes: Collected<Outcome>) {
        do {
            let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 10)
            var bytes: [UInt8] = []
            for _ in 0..<pipelinedRequests {
                bytes += HTTPClient.request("GET", D1.authenticationPath() + "/" + warm, headers: [("Authorization", "Bearer " + token)])
            }
            try connection.send(bytes)
            for _ in 0..<pipelinedRequests {
                guard let response = try connection.readResponse() else {
                    outcomes.append(Outcome(status: 0, hasRetryAfter: false, seconds: 0, detail: "closed without an answer"))
                    return
                }
                outcomes.append(Outcome(status: response.status, hasRetryAfter: response.header("Retry-After") != nil,
                                        seconds: 0, detail: response.text))
                if response.header("Connection")?.lowercased() == "close" { return }
            }
        } catch {
            outcomes.append(Outcome(status: 0, hasRetryAfter: false, seconds: 0, detail: String(describing: error)))
        }
    }

    /// Resident set size from /proc/<pid>/statm (second field, in pages).
    static func residentBytes(_ pid: Int32) throws -> Int {
        let text = try String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8)
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { throw TestSetupError("unreadable statm: \(text)") }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
