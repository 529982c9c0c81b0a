import Foundation
import Glibc
import TestSupport
import Testing

/// PENDING polls answered from memory (AuthenticationCache) stay in step with the database: a
/// change made on another instance shows within the 100 ms the issue allows, because the
/// database announces it (LISTEN/NOTIFY) and memory answers only while its listener is fresh.
@Suite(.serialized) struct PendingCacheTests {
    static let pendingHits = #"oob_poll_cache_hits_total{state="pending"}"#

    /// What `pollUntil` saw, in seconds from its start.
    struct Observed {
        /// When the last request answered PENDING was sent (0 if none was).
        var lastPendingSent = 0.0
        /// When the first answer with the expected state arrived (nil: none within the timeout).
        var expectedReceived: Double?
        /// Answers other than PENDING before the expected one.
        var others: [String] = []
    }

    /// Polls `path` on a kept-alive connection until the answer's `authenticationStatus` is
    /// `expected` or `timeout` passes. Blocking: call it off the cooperative pool.
    ///
    /// Started once the change has committed (its answer has arrived), it measures staleness
    /// from below: a request answered PENDING was answered no earlier than it was sent, so
    /// `lastPendingSent` is at most how long after the commit PENDING was still answered,
    /// whatever the machine's load does to round trips.
    static func pollUntil(_ engine: EngineProcess, _ path: String, token: String, expected: String,
                          timeout: Duration = .seconds(5)) throws -> Observed {
        var connection = try RawHTTPConnection(port: engine.apiPort)
        let request = HTTPClient.request("GET", path, headers: [("Authorization", "Bearer " + token)])
        let started = ContinuousClock.now
        var observed = Observed()
        while ContinuousClock.now - started < timeout {
            let sent = ContinuousClock.now
            if (try? connection.send(request)) == nil {
                connection = try RawHTTPConnection(port: engine.apiPort)
                try connection.send(request)
            }
            guard let response = try connection.readResponse() else { throw TestSetupError("no answer") }
            let state = response.string("authenticationStatus") ?? "status \(response.status)"
            if state == expected {
                observed.expectedReceived = DatabaseFaultTests.seconds(ContinuousClock.now - started)
                return observed
            }
            if state == "PENDING" {
                observed.lastPendingSent = DatabaseFaultTests.seconds(sent - started)
            } else {
                observed.others.append(state)
            }
        }
        return observed
    }

    /// Polls until this instance answers the PENDING from memory (its listener is connected and
    /// fresh), so that the rest of a test exercises the cache rather than the database.
    /// Blocking: call it off the cooperative pool.
    static func waitUntilServedFromMemory(_ engine: EngineProcess, _ client: HTTPClient, _ path: String) throws {
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(20) {
            let before = try MetricsTests.quickValue(engine, Self.pendingHits) ?? 0
            let polled = try client.send("GET", path)
            guard polled.string("authenticationStatus") == "PENDING" else {
                throw TestSetupError("expected PENDING, got \(polled.status) \(polled.text)")
            }
            if try MetricsTests.quickValue(engine, Self.pendingHits) ?? 0 > before { return }
            usleep(20_000)   // pacing between attempts, bounded by the loop's deadline
        }
        throw TestSetupError("no PENDING poll was answered from memory within 20 s")
    }

    @Test(.timeLimit(.minutes(3))) func aDecisionOnAnotherInstanceShowsWithinTheBound() async throws {
        let a = try await EngineProcess.start()
        let b = try await EngineProcess.start()
        let tokenA = try a.token()
        let d1A = HTTPClient(port: a.apiPort, token: tokenA)
        let d1B = try b.d1Client()
        let appB = HTTPClient(port: b.apiPort, token: try b.token(client: "app"))

        let (delays, stalest) = try await runOffPool { () throws -> ([Double], [Double]) in
            var delays: [Double] = []
            var stalest: [Double] = []
            for round in 0..<5 {
                let id = TestEnvironment.uniqueID("cache\(round)")
                let path = D1.authenticationPath() + "/" + id
                // Created on B, read (and so cached) on A.
                let created = try d1B.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
                #expect(created.string("authenticationStatus") == "PENDING")
                try Self.waitUntilServedFromMemory(a, d1A, path)
                // Still PENDING, from memory, while nothing happens.
                for _ in 0..<20 { #expect(try d1A.send("GET", path).string("authenticationStatus") == "PENDING") }

                let decided = try appB.send("POST", "/app/v1/issuers/ISSUER0001/authentications/\(id)/decision",
                                            body: #"{"decision": "APPROVE", "appInstanceId": "alice-phone"}"#)
                #expect(decided.status == 200)
                let observed = try Self.pollUntil(a, path, token: tokenA, expected: "AUTHENTICATED")
                #expect(observed.others.isEmpty, "only PENDING before AUTHENTICATED: \(observed.others)")
                let delay = try #require(observed.expectedReceived, "instance A never showed the decision made on B")
                delays.append(delay)
                // The issue's bound (the design's is 75 ms), independent of round-trip times.
                #expect(observed.lastPendingSent < 0.1,
                        "A answered PENDING to a request sent \(Int(observed.lastPendingSent * 1000)) ms after B's decision")
                // Generous for a loaded 2-core machine: round trips included.
                #expect(delay < 1.0, "A showed B's decision \(Int(delay * 1000)) ms after it was answered")
                stalest.append(observed.lastPendingSent)
                // And it stays final.
                #expect(try d1A.send("GET", path).string("authenticationStatus") == "AUTHENTICATED")
            }
            return (delays, stalest)
        }
        func milliseconds(_ values: [Double]) -> String { values.map { String(format: "%.1f", $0 * 1000) }.joined(separator: ", ") }
        print("PendingCacheTests: after B's decision was answered, A answered PENDING to requests sent up to "
              + "[\(milliseconds(stalest))] ms later and AUTHENTICATED by [\(milliseconds(delays))] ms")
        try await a.stop()
        try await b.stop()
    }

    @Test(.timeLimit(.minutes(3))) func anOperatorExpiryOnAnotherInstanceShowsAsFinal() async throws {
        let a = try await EngineProcess.start()
        let b = try await EngineProcess.start()
        let tokenA = try a.token()
        let d1A = HTTPClient(port: a.apiPort, token: tokenA)
        let opsB = HTTPClient(port: b.opsPort, token: try b.token(client: "ops"))
        let id = TestEnvironment.uniqueID("cache-ops")
        let path = D1.authenticationPath() + "/" + id
        let delay = try await runOffPool { () throws -> Double in
            // Created on A: cached there from its own insert.
            let created = try d1A.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
            #expect(created.string("authenticationStatus") == "PENDING")
            try Self.waitUntilServedFromMemory(a, d1A, path)

            let expired = try opsB.send("POST", "/ops/v1/issuers/ISSUER0001/authentications/\(id)/expire",
                                        body: #"{"reason": "cache drill"}"#)
            #expect(expired.status == 200)
            let observed = try Self.pollUntil(a, path, token: tokenA, expected: "AUTHENTICATION_FAILED")
            #expect(observed.others.isEmpty, "\(observed.others)")
            #expect(observed.lastPendingSent < 0.1)
            let final = try d1A.send("GET", path)
            #expect(final.string("authenticationStatus") == "AUTHENTICATION_FAILED")
            #expect(final.string("reason") == "expired")
            return try #require(observed.expectedReceived, "instance A never showed the expiry made on B")
        }
        #expect(delay < 1.0)
        print("PendingCacheTests: A showed B's operator expiry after \(String(format: "%.1f", delay * 1000)) ms")
        try await a.stop()
        try await b.stop()
    }

    /// With `database.pendingCache: false` there is no listener and nothing PENDING is served
    /// from memory; finals still are.
    @Test(.timeLimit(.minutes(3))) func thePendingCacheCanBeTurnedOff() async throws {
        var config = EngineProcess.defaultConfig
        let end = config.range(of: "}", options: .backwards)!
        config.replaceSubrange(end, with: #", "database": {"pendingCache": false}}"#)
        let engine = try await EngineProcess.start(.init(config: config))
        let d1 = try engine.d1Client()
        let id = TestEnvironment.uniqueID("nocache")
        try await runOffPool { () throws in
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)
            for _ in 0..<20 { #expect(try d1.send("GET", D1.authenticationPath() + "/" + id).string("authenticationStatus") == "PENDING") }
            #expect(try MetricsTests.quickValue(engine, Self.pendingHits) == 0)
            #expect(try MetricsTests.quickValue(engine, "oob_poll_cache_listener_connected") == 0)
        }
        try await engine.stop()
    }
}
