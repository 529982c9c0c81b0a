import Foundation
import Glibc
import TestSupport
import Testing

/// Slow clients (slowloris) against the real binary: a head dripped byte by byte, a body that
/// never comes, a silent or idle connection. Each is cut off by its timeout (408 + close, or a
/// silent close when nothing was asked) while other clients are served as usual. The engine is
/// the strictness suite's: header and body timeouts of 2 s, idle 4 s.
@Suite struct HTTPSlowClientTests {
    static let header = Double(StrictEngine.headerTimeoutSeconds)
    static let body = Double(StrictEngine.bodyTimeoutSeconds)
    static let idle = Double(StrictEngine.idleTimeoutSeconds)
    /// The server checks timeouts a few times a second; allow for that and a busy machine.
    static let slack = 3.0

    @Test func headersDrippedByteByByteAreCutOff() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        async let slow = runOffPool { () throws -> SlowResult in
            let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 15)
            let head = Array("GET /banking HTTP/1.1\r\nHost: engine\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 400)
            return try SlowResult.drip(head, on: connection, every: 50)
        }
        let served = try await servedMeanwhile(engine, while: Self.header)
        let result = try await slow
        let elapsed = result.elapsed
        #expect(result.response?.status == 408)
        #expect(result.response?.header("Connection") == "close")
        #expect(result.closed)
        #expect(elapsed >= Self.header - 0.2 && elapsed < Self.header + Self.slack, "cut off after \(elapsed) s")
        #expect(result.bytesSent < 400, "the server stopped the drip (\(result.bytesSent) bytes sent)")
        #expect(served.failures == 0 && served.slowest < 3, "others were served: \(served)")
    }

    @Test func bodyThatNeverArrivesIsCutOff() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        let token = engine.token
        async let slow = runOffPool { () throws -> SlowResult in
            let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 15)
            let start = ContinuousClock.now
            try connection.send("POST \(D1.authenticationPath()) HTTP/1.1\r\nHost: engine\r\nAuthorization: Bearer \(token)\r\n"
                                + "Content-Type: application/json\r\nContent-Length: 300\r\n\r\n{\"authenticationId\"")
            return try SlowResult.waitForAnswer(on: connection, since: start)
        }
        let served = try await servedMeanwhile(engine, while: Self.body)
        let result = try await slow
        let elapsed = result.elapsed
        #expect(result.response?.status == 408)
        #expect(result.response?.header("Connection") == "close")
        #expect(result.closed)
        #expect(elapsed >= Self.body - 0.2 && elapsed < Self.body + Self.slack, "cut off after \(elapsed) s")
        #expect(served.failures == 0 && served.slowest < 3, "others were served: \(served)")
    }

    @Test func bodyDrippedByteByByteIsCutOff() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        let token = engine.token
        async let slow = runOffPool { () throws -> SlowResult in
            let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 15)
            let start = ContinuousClock.now
            try connection.send("POST \(D1.authenticationPath()) HTTP/1.1\r\nHost: engine\r\nAuthorization: Bearer \(token)\r\n"
                                + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            let body = Array(String(repeating: "1\r\na\r\n", count: 200).utf8)
            return try SlowResult.drip(body, on: connection, every: 50, since: start)
        }
        let served = try await servedMeanwhile(engine, while: Self.body)
        let result = try await slow
        let elapsed = result.elapsed
        #expect(result.response?.status == 408)
        #expect(result.closed)
        #expect(elapsed >= Self.body - 0.2 && elapsed < Self.body + Self.slack, "cut off after \(elapsed) s")
        #expect(served.failures == 0 && served.slowest < 3, "others were served: \(served)")
    }

    @Test func silentConnectionIsClosedWithoutAnAnswer() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        let result = try await runOffPool { () throws -> SlowResult in
            try SlowResult.waitForAnswer(on: RawHTTPConnection(port: port, receiveTimeoutSeconds: 15))
        }
        let elapsed = result.elapsed
        #expect(result.response == nil && result.closed, "closed, nothing said")
        #expect(elapsed >= Self.header - 0.2 && elapsed < Self.header + Self.slack, "closed after \(elapsed) s")
    }

    @Test func idleKeepAliveConnectionIsClosedWithoutAnAnswer() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        let context = StrictContext(token: engine.token, probeID: engine.probeID, freshID: "", smuggledID: "")
        let result = try await runOffPool { () throws -> (Int?, SlowResult, Double) in
            let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 15)
            try connection.send(StrictCases.probe(context))
            let status = try connection.readResponse()?.status
            let result = try SlowResult.waitForAnswer(on: connection)
            return (status, result, result.elapsed)
        }
        #expect(result.0 == 200)
        #expect(result.1.response == nil && result.1.closed)
        #expect(result.2 >= Self.idle - 0.2 && result.2 < Self.idle + Self.slack, "closed after \(result.2) s")
    }

    /// Fifty slowloris connections at once: each gets its 408, and the server answers everyone
    /// else as usual meanwhile.
    @Test func fiftySlowClientsAtOnce() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        async let slow = runOffPool { () throws -> ([Int?], Double) in
            let connections = try (0..<50).map { _ in try RawHTTPConnection(port: port, receiveTimeoutSeconds: 15) }
            let start = ContinuousClock.now
            for connection in connections { try connection.send("GET /banking HTTP/1.1\r\nHost: eng") }
            let statuses = connections.map { (try? $0.readResponse())??.status }
            return (statuses, HTTPSlowClientTests.seconds(ContinuousClock.now - start))
        }
        let served = try await servedMeanwhile(engine, while: Self.header)
        let (statuses, elapsed) = try await slow
        #expect(statuses.allSatisfy { $0 == 408 }, "\(statuses)")
        #expect(elapsed < Self.header + Self.slack + 2, "all cut off within \(elapsed) s")
        #expect(served.failures == 0 && served.slowest < 3, "others were served: \(served)")
    }

    /// `Expect: 100-continue`: the interim answer comes before the body is sent, and the request
    /// is then applied.
    @Test func expectContinueAnswersBeforeTheBody() async throws {
        let engine = try await StrictEngine.shared()
        let port = engine.process.apiPort
        let token = engine.token
        let id = TestEnvironment.uniqueID("continue")
        let statuses = try await runOffPool { () throws -> [Int?] in
            let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 10)
            let payload = StrictCases.body(id)
            try connection.send("POST \(D1.authenticationPath()) HTTP/1.1\r\nHost: engine\r\nAuthorization: Bearer \(token)\r\n"
                                + "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: \(payload.utf8.count)\r\n\r\n")
            let interim = try connection.readResponse()?.status
            try connection.send(payload)
            return [interim, try connection.readResponse()?.status]
        }
        #expect(statuses == [100, 200])
        let database = try TestDatabase()
        defer { database.shutdown() }
        #expect(try database.state(issuer: "ISSUER0001", authenticationId: id) == "PENDING")
    }

    // MARK: Helpers

    struct Served: Sendable, CustomStringConvertible {
        var count = 0
        var failures = 0
        var slowest = 0.0
        var description: String { "\(count) served, \(failures) failed, slowest \(slowest) s" }
    }

    /// Probes on fresh connections, one after another, for about `seconds`.
    private func servedMeanwhile(_ engine: StrictEngine, while seconds: Double) async throws -> Served {
        let context = StrictContext(token: engine.token, probeID: engine.probeID, freshID: "", smuggledID: "")
        let port = engine.process.apiPort
        return try await runOffPool { () -> Served in
            var served = Served()
            let end = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            for _ in 0..<1_000 where ContinuousClock.now < end {
                let start = ContinuousClock.now
                let status = try? { () throws -> Int? in
                    let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 5)
                    try connection.send(StrictCases.probe(context))
                    return try connection.readResponse()?.status
                }()
                served.count += 1
                if status != 200 { served.failures += 1 }
                served.slowest = max(served.slowest, HTTPSlowClientTests.seconds(ContinuousClock.now - start))
                var pause = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&pause, 0, 100) // pacing between probes, not a wait for state
            }
            return served
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private func seconds(_ duration: Duration) -> Double { Self.seconds(duration) }
}

/// What a slow client saw: the answer (if any), whether the server then closed, how much it sent.
struct SlowResult: Sendable {
    var response: RawHTTPConnection.Response?
    var closed = false
    var bytesSent = 0
    /// Seconds from `since` (taken on the client's own thread) to the close or the answer.
    var elapsed = 0.0

    /// Sends `bytes` one at a time, `milliseconds` apart, until the server answers (or the bytes
    /// run out); then reads the answer and whether the connection closes.
    static func drip(_ bytes: [UInt8], on connection: RawHTTPConnection, every milliseconds: Int32,
                     since start: ContinuousClock.Instant = .now) throws -> SlowResult {
        var result = SlowResult()
        for byte in bytes {
            var readable = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            if poll(&readable, 1, milliseconds) > 0 { break }
            guard (try? connection.send([byte])) != nil else { break }
            result.bytesSent += 1
        }
        let rest = try waitForAnswer(on: connection, since: start)
        result.response = rest.response
        result.closed = rest.closed
        result.elapsed = rest.elapsed
        return result
    }

    /// Waits (bounded by the receive timeout) for an answer and for the close.
    static func waitForAnswer(on connection: RawHTTPConnection, since start: ContinuousClock.Instant = .now) throws -> SlowResult {
        var result = SlowResult()
        result.response = try connection.readResponse()
        result.elapsed = HTTPSlowClientTests.seconds(ContinuousClock.now - start)
        if result.response == nil {
            result.closed = true
        } else if case .success(nil) = Result(catching: { try connection.readResponse() }) {
            result.closed = true
        }
        return result
    }
}
