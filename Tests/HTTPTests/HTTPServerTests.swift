import Glibc
import HTTP
import Synchronization
import TestSupport
import Testing

/// Loopback tests: a real server on 127.0.0.1 port 0, raw bytes, every wait bounded.
@Suite struct HTTPServerTests {
    @Test func simpleRequest() async throws {
        try await withServer { port, _ in
            let response = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/hello?x=1"))
                return try client.readResponse()
            }
            #expect(response?.status == 200)
            #expect(response?.text == "GET /hello?x=1 ")
            #expect(response?.headers["Content-Length"] == "15")
            #expect(response?.headers["Content-Type"] == "text/plain")
            #expect(response?.headers["Date"]?.hasSuffix(" GMT") == true)
            #expect(response?.headers["Connection"] == nil)
        }
    }

    @Test func keepAliveReusesTheConnection() async throws {
        let logs = LogCollector()
        try await withServer(logs: logs) { port, _ in
            let responses = try await runOffPool {
                let client = try TestClient(port: port)
                return try (0..<3).map { index in
                    try client.send(request("POST", "/k", body: "n\(index)"))
                    return try client.readResponse()
                }
            }
            #expect(responses.map { $0?.text } == ["POST /k n0", "POST /k n1", "POST /k n2"])
            #expect(Set(responses.map { $0?.headers["X-Remote"] ?? "" }).count == 1)
            #expect(logs.count(prefix: "accepted") == 1)
        }
    }

    @Test func connectionCloseAndHTTP10Close() async throws {
        try await withServer { port, _ in
            let (first, firstClosed, second, secondClosed) = try await runOffPool {
                let a = try TestClient(port: port)
                try a.send(request("GET", "/a", headers: [("Connection", "close")]))
                let first = try a.readResponse()
                let firstClosed = try a.readsEndOfFile()
                let b = try TestClient(port: port)
                try b.send("GET /b HTTP/1.0\r\n\r\n")
                let second = try b.readResponse()
                return (first, firstClosed, second, try b.readsEndOfFile())
            }
            #expect(first?.headers["Connection"] == "close")
            #expect(firstClosed)
            #expect(second?.status == 200)
            #expect(second?.headers["Connection"] == "close")
            #expect(secondClosed)
        }
    }

    @Test func http10KeepAliveIsConfirmedAndHonoured() async throws {
        try await withServer { port, _ in
            let (first, second) = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                let first = try client.readResponse()
                try client.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                return (first, try client.readResponse())
            }
            #expect(first?.headers["Connection"] == "keep-alive")
            #expect(second?.text == "GET /b ")
        }
    }

    /// A client that half-closes after a complete request still gets its answer; one that
    /// half-closes in the middle of a request is told 400.
    @Test func halfClosedClients() async throws {
        try await withServer { port, _ in
            let (complete, partial) = try await runOffPool {
                let a = try TestClient(port: port)
                try a.send(request("GET", "/delay/100"))
                shutdown(a.fd, Int32(SHUT_WR))
                let b = try TestClient(port: port)
                try b.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
                shutdown(b.fd, Int32(SHUT_WR))
                return (try a.readResponse(), try b.readResponse())
            }
            #expect(complete?.status == 200)
            #expect(complete?.headers["Connection"] == "close")
            #expect(partial?.status == 400)
        }
    }

    @Test func connectionThatNeverSendsIsClosedAfterTheHeaderTimeout() async throws {
        try await withServer({ $0.headerReadTimeout = .milliseconds(200) }) { port, _ in
            let closed = try await runOffPool { try TestClient(port: port, receiveTimeout: 5).readsEndOfFile() }
            #expect(closed)
        }
    }

    /// Three requests in one write; the handler finishes them in a different order (by delay),
    /// the responses still leave in request order.
    @Test func pipelinedResponsesKeepRequestOrder() async throws {
        try await withServer { port, _ in
            let texts = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/delay/200") + request("GET", "/delay/0") + request("POST", "/delay/50", body: "3"))
                return try (0..<3).map { _ in try client.readResponse()?.text }
            }
            #expect(texts == ["GET /delay/200 ", "GET /delay/0 ", "POST /delay/50 3"])
        }
    }

    /// Answers given inside `handle` (on the loop thread, without the mailbox) and answers from
    /// tasks running on the loop's executor, pipelined and mixed with ordinary ones.
    @Test func answersFromTheLoopThreadKeepOrderAndKeepAlive() async throws {
        try await withServer { port, _ in
            let texts = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/sync/1") + request("GET", "/loop/30") + request("GET", "/sync/2")
                                + request("GET", "/delay/10") + request("GET", "/loop/0") + request("GET", "/sync/3"))
                var texts = try (0..<6).map { _ in try client.readResponse()?.text }
                // The connection stays usable afterwards.
                try client.send(request("GET", "/sync/4"))
                texts.append(try client.readResponse()?.text)
                return texts
            }
            #expect(texts == ["GET /sync/1 ", "GET /loop/30 ", "GET /sync/2 ", "GET /delay/10 ", "GET /loop/0 ",
                              "GET /sync/3 ", "GET /sync/4 "])
        }
    }

    @Test func headResponseHasNoBody() async throws {
        try await withServer { port, _ in
            let (head, next) = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("HEAD", "/h") + request("GET", "/after"))
                return (try client.readResponse(bodyExpected: false), try client.readResponse())
            }
            #expect(head?.status == 200)
            #expect(head?.headers["Content-Length"] == "8")
            #expect(next?.text == "GET /after ", "the HEAD response carried no body bytes")
        }
    }

    @Test func expectContinueGetsAnInterimResponse() async throws {
        try await withServer { port, _ in
            let (interim, final) = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
                let interim = try client.readResponse()
                try client.send("body")
                return (interim, try client.readResponse())
            }
            #expect(interim?.status == 100)
            #expect(final?.text == "POST /e body")
        }
    }

    @Test(arguments: [
        ("body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 413),
        ("request line too long", "GET /\(String(repeating: "a", count: 300)) HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("header section too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 600))\r\n\r\n", 431),
        ("length required", "POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        ("malformed", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("unsupported coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ])
    func refusedRequestsGetJSONErrorAndClose(hazard: String, text: String, status: Int) async throws {
        try await withServer({
            $0.maxBodyBytes = 100
            $0.maxRequestLineBytes = 256
            $0.maxHeaderBytes = 512
        }) { port, _ in
            let (response, closed) = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(text)
                return (try client.readResponse(), try client.readsEndOfFile())
            }
            #expect(response?.status == status, "\(hazard)")
            #expect(response?.headers["Content-Type"] == "application/json")
            #expect(response?.headers["Connection"] == "close")
            #expect(response?.text.hasPrefix(#"{"error":""#) == true)
            #expect(closed, "\(hazard): the connection closes after a parse error")
        }
    }

    /// A 70 KB header is refused with 431 while the client is still sending, and the client can
    /// read the answer (no reset from closing with unread input).
    @Test func oversizedHeaderSentInFullStillGetsTheAnswer() async throws {
        try await withServer { port, _ in
            let response = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 70_000))\r\n\r\n")
                return try client.readResponse()
            }
            #expect(response?.status == 431)
        }
    }

    @Test func slowHeadersGet408() async throws {
        try await withServer({ $0.headerReadTimeout = .milliseconds(300) }) { port, _ in
            let (response, closed, elapsed) = try await runOffPool {
                let client = try TestClient(port: port, receiveTimeout: 5)
                let started = ContinuousClock.now
                try client.send("GET / HTTP/1.1\r\nHo")
                let response = try client.readResponse()
                return (response, try client.readsEndOfFile(), ContinuousClock.now - started)
            }
            #expect(response?.status == 408)
            #expect(closed)
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(4))
        }
    }

    @Test func slowBodyGets408() async throws {
        try await withServer({ $0.bodyReadTimeout = .milliseconds(300) }) { port, _ in
            let response = try await runOffPool {
                let client = try TestClient(port: port, receiveTimeout: 5)
                try client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
                return try client.readResponse()
            }
            #expect(response?.status == 408)
        }
    }

    @Test func idleKeepAliveConnectionIsClosedSilently() async throws {
        try await withServer({ $0.idleTimeout = .milliseconds(300) }) { port, _ in
            let (response, closed) = try await runOffPool {
                let client = try TestClient(port: port, receiveTimeout: 5)
                try client.send(request("GET", "/"))
                let response = try client.readResponse()
                return (response, try client.readsEndOfFile())
            }
            #expect(response?.status == 200)
            #expect(closed)
        }
    }

    @Test func clientDisconnectsMidBodyAndBeforeTheResponse() async throws {
        let logs = LogCollector()
        let handler = EchoHandler()
        try await withServer(handler: handler, logs: logs) { port, _ in
            try await runOffPool {
                let midBody = try TestClient(port: port)
                try midBody.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
                let beforeResponse = try TestClient(port: port)
                try beforeResponse.send(request("GET", "/delay/200"))
                let reset = try TestClient(port: port)
                try reset.send(request("GET", "/delay/100"))
                var linger = linger(l_onoff: 1, l_linger: 0) // close() sends RST
                setsockopt(reset.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            }
            #expect(await waitUntil { logs.count(prefix: "closed") >= 3 }, "all three connections are cleaned up")
            // The delayed answers arrive for connections that no longer exist and are dropped.
            #expect(await waitUntil { handler.seen.count.load(ordering: .relaxed) == 2 })
            try await Task.sleep(for: .milliseconds(300))
            let response = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/still-alive"))
                return try client.readResponse()
            }
            #expect(response?.status == 200)
        }
    }

    /// Garbage of every kind gets a 4xx (or a plain close), never a 5xx or a crash, and the
    /// server answers normally afterwards.
    @Test func garbageNeverGets5xx() async throws {
        try await withServer({ $0.headerReadTimeout = .milliseconds(500) }) { port, _ in
            let statuses = try await runOffPool {
                var generator = SeededGenerator(seed: 0xBAD_B17E)
                var statuses: [Int] = []
                for index in 0..<200 {
                    let client = try TestClient(port: port, receiveTimeout: 5)
                    var bytes = (0..<Int.random(in: 1...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    if index % 2 == 0 { bytes = Array("GET /".utf8) + bytes }
                    try? client.send(bytes + Array("\r\n\r\n".utf8))
                    if let response = try? client.readResponse() { statuses.append(response.status) }
                }
                return statuses
            }
            #expect(statuses.count >= 150)
            #expect(statuses.allSatisfy { (400...499).contains($0) }, "\(Set(statuses))")
            let response = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/after-garbage"))
                return try client.readResponse()
            }
            #expect(response?.status == 200)
        }
    }

    @Test func responderDroppedWithoutAnswerGives500() async throws {
        try await withServer { port, _ in
            let response = try await runOffPool {
                let client = try TestClient(port: port)
                try client.send(request("GET", "/drop"))
                return try client.readResponse()
            }
            #expect(response?.status == 500)
        }
    }

    @Test func twoThousandConcurrentConnections() async throws {
        // In-flight limit above the connection count: this test is about connections, not overload.
        try await withServer({ $0.maxInFlightRequests = 4_096 }) { port, _ in
            let (ok, elapsed) = try await runOffPool {
                let started = ContinuousClock.now
                let clients = try (0..<2_000).map { _ in try TestClient(port: port, receiveTimeout: 30) }
                for (index, client) in clients.enumerated() { try client.send(request("GET", "/c/\(index)")) }
                var ok = 0
                for (index, client) in clients.enumerated() where try client.readResponse()?.text == "GET /c/\(index) " {
                    ok += 1
                }
                return (ok, ContinuousClock.now - started)
            }
            #expect(ok == 2_000)
            #expect(elapsed < .seconds(60))
        }
    }

    @Test func overloadAnswers503WithoutCallingTheHandler() async throws {
        let handler = HoldingHandler()
        let logs = LogCollector()
        try await withServer({ $0.maxInFlightRequests = 1 }, handler: handler, logs: logs) { port, _ in
            let first = try TestClient(port: port)
            try await runOffPool { try first.send(request("GET", "/held")) }
            #expect(await waitUntil { handler.heldCount == 1 })
            let busy = try await runOffPool {
                let second = try TestClient(port: port)
                try second.send(request("GET", "/refused"))
                return try second.readResponse()
            }
            #expect(busy?.status == 503)
            #expect(busy?.headers["Retry-After"] == "1")
            #expect(busy?.headers["Content-Type"] == "application/json")
            #expect(handler.heldCount == 1)
            handler.release()
            let released = try await runOffPool { try first.readResponse() }
            #expect(released?.text == "released")
            #expect(logs.count(prefix: "rejected: too many requests") == 1)
        }
    }

    @Test func connectionsBeyondTheLimitAreRefused() async throws {
        try await withServer({ $0.maxConnections = 2 }) { port, _ in
            let refused = try await runOffPool {
                let a = try TestClient(port: port)
                let b = try TestClient(port: port)
                try a.send(request("GET", "/a"))
                try b.send(request("GET", "/b"))
                _ = try a.readResponse()
                _ = try b.readResponse()
                let c = try TestClient(port: port)
                return try c.readResponse()
            }
            #expect(refused?.status == 503)
        }
    }

    @Test func gracefulShutdownFinishesTheRequestInFlight() async throws {
        let handler = EchoHandler()
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        let server = HTTPServer(configuration: configuration, handler: handler)
        let port = try server.start()
        let client = try TestClient(port: port)
        let idle = try TestClient(port: port)
        try await runOffPool { try client.send(request("GET", "/delay/300")) }
        #expect(await waitUntil { handler.seen.count.load(ordering: .relaxed) == 1 })
        let shutdown = Task { try await runOffPool { server.shutdown() } }
        let (response, closed, idleClosed) = try await runOffPool {
            (try client.readResponse(), try client.readsEndOfFile(), try idle.readsEndOfFile())
        }
        try await shutdown.value
        #expect(response?.status == 200)
        #expect(response?.headers["Connection"] == "close")
        #expect(closed)
        #expect(idleClosed)
        #expect(throws: TestFailure.self) { _ = try TestClient(port: port) }
        server.shutdown() // idempotent
    }

    @Test func listensOnLocalhostAndIPv6Loopback() async throws {
        var configuration = HTTPServerConfiguration()
        configuration.port = 0
        configuration.host = "localhost"
        let server = HTTPServer(configuration: configuration, handler: EchoHandler())
        #expect(try server.start() > 0)
        server.shutdown()
        configuration.host = "::1"
        let v6 = HTTPServer(configuration: configuration, handler: EchoHandler())
        // Some containers have no IPv6 loopback; then binding fails cleanly with a SystemError.
        do { #expect(try v6.start() > 0) } catch { print("IPv6 loopback unavailable: \(error)") }
        v6.shutdown()
        configuration.host = "not-an-address"
        #expect(throws: HTTPServerError.self) { try HTTPServer(configuration: configuration, handler: EchoHandler()).start() }
    }
}
