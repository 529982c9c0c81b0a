import HTTP
import Testing

/// What one parse produced, in a form tests can compare.
enum Parsed: Equatable, CustomStringConvertible {
    case request(method: String, path: String, query: String?, body: String, keepAlive: Bool)
    case expectContinue
    case failure(Int)

    var description: String {
        switch self {
        case .request(let method, let path, let query, let body, let keepAlive):
            "\(method) \(path) ?\(query ?? "nil") body=\(body) keepAlive=\(keepAlive)"
        case .expectContinue: "100-continue"
        case .failure(let status): "failure \(status)"
        }
    }
}

/// Runs the parser to exhaustion (bounded) and records every event.
func drain(_ parser: inout HTTPRequestParser, into results: inout [Parsed]) {
    for _ in 0..<1_000 {
        switch parser.next() {
        case .needMoreData:
            return
        case .expectContinue:
            results.append(.expectContinue)
        case .request(let request, let keepAlive):
            results.append(.request(method: request.method, path: request.path, query: request.query,
                                    body: String(decoding: request.body, as: UTF8.self), keepAlive: keepAlive))
        case .failure(let error):
            results.append(.failure(error.status))
            return
        }
    }
    Issue.record("parser did not settle")
}

func parseAll(_ text: String, limits: HTTPParserLimits = HTTPParserLimits()) -> [Parsed] {
    var parser = HTTPRequestParser(limits: limits)
    parser.append(Array(text.utf8))
    var results: [Parsed] = []
    drain(&parser, into: &results)
    return results
}

func firstRequest(_ text: String) -> HTTPRequest? {
    var parser = HTTPRequestParser()
    parser.append(Array(text.utf8))
    if case .request(let request, _) = parser.next() { return request }
    return nil
}

@Suite struct HTTPRequestParserTests {
    // MARK: Well-formed requests

    @Test func simpleGet() {
        #expect(parseAll("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            == [.request(method: "GET", path: "/hello", query: nil, body: "", keepAlive: true)])
    }

    @Test func querySplitAtFirstQuestionMarkAndNotDecoded() {
        let request = firstRequest("GET /a%20b/c?x=1&y=%2F?z HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(request?.path == "/a%20b/c")
        #expect(request?.query == "x=1&y=%2F?z")
    }

    @Test func emptyQueryIsEmptyNotNil() {
        #expect(firstRequest("GET /a? HTTP/1.1\r\nHost: x\r\n\r\n")?.query == "")
    }

    @Test func headersKeepOrderAndLookUpCaseInsensitively() {
        let request = firstRequest("GET / HTTP/1.1\r\nHost: x\r\nX-A:  one \t\r\nx-a: two\r\nX-Empty:\r\n\r\n")
        #expect(request?.headers.count == 4)
        #expect(request?.headers["X-A"] == "one")
        #expect(request?.headers["x-a"] == "one")
        #expect(request?.headers.values("X-a") == ["one", "two"])
        #expect(request?.headers["x-empty"] == "")
        #expect(request?.headers.map(\.name) == ["Host", "X-A", "x-a", "X-Empty"])
    }

    @Test func obsTextInValueIsAccepted() {
        var parser = HTTPRequestParser()
        parser.append(Array("GET / HTTP/1.1\r\nHost: x\r\nX-Name: ".utf8) + [0xC3, 0xA9] + Array("\r\n\r\n".utf8))
        guard case .request(let request, _) = parser.next() else { Issue.record("no request"); return }
        #expect(request.headers["x-name"] == "é")
    }

    @Test func http10ClosesUnlessKeepAlive() {
        #expect(parseAll("GET / HTTP/1.0\r\n\r\n") == [.request(method: "GET", path: "/", query: nil, body: "", keepAlive: false)])
        #expect(parseAll("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            == [.request(method: "GET", path: "/", query: nil, body: "", keepAlive: true)])
    }

    @Test func connectionCloseIsHonoured() {
        #expect(parseAll("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n")
            == [.request(method: "GET", path: "/", query: nil, body: "", keepAlive: false)])
    }

    @Test func contentLengthBody() {
        #expect(parseAll("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            == [.request(method: "POST", path: "/p", query: nil, body: "hello", keepAlive: true)])
    }

    @Test func postWithZeroContentLength() {
        #expect(parseAll("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            == [.request(method: "POST", path: "/p", query: nil, body: "", keepAlive: true)])
    }

    @Test func identicalDuplicateContentLengthsAreAccepted() {
        #expect(parseAll("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nab")
            == [.request(method: "POST", path: "/p", query: nil, body: "ab", keepAlive: true)])
    }

    @Test func chunkedBodyWithExtensionsAndTrailers() {
        let text = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        #expect(parseAll(text) == [.request(method: "POST", path: "/c", query: nil, body: "hello world", keepAlive: true)])
    }

    @Test func transferEncodingIsCaseInsensitive() {
        let text = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        #expect(parseAll(text) == [.request(method: "POST", path: "/c", query: nil, body: "abc", keepAlive: true)])
    }

    @Test func leadingEmptyLinesAreSkipped() {
        #expect(parseAll("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            == [.request(method: "GET", path: "/", query: nil, body: "", keepAlive: true)])
    }

    @Test func pipelinedRequestsComeOutInOrder() {
        let text = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(parseAll(text).map(\.description) == [
            "GET /1 ?nil body= keepAlive=true", "POST /2 ?nil body=abc keepAlive=true", "GET /3 ?nil body= keepAlive=true",
        ])
    }

    /// Every split of a pipelined byte stream gives the same requests as one delivery.
    @Test func pipelinedBytesSplitAtEveryBoundary() {
        let text = "GET /1?q HTTP/1.1\r\nHost: x\r\n\r\n"
            + "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            + "PUT /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nab\r\n3\r\ncde\r\n0\r\nT: 1\r\n\r\n"
            + "GET /4 HTTP/1.0\r\n\r\n"
        let bytes = Array(text.utf8)
        let expected = parseAll(text)
        #expect(expected.count == 4)
        for split in 0...bytes.count {
            var parser = HTTPRequestParser()
            var results: [Parsed] = []
            parser.append(Array(bytes[..<split]))
            drain(&parser, into: &results)
            parser.append(Array(bytes[split...]))
            drain(&parser, into: &results)
            #expect(results == expected, "split at \(split)")
        }
    }

    /// Byte-at-a-time delivery (the slowloris shape) parses the same, without rescanning.
    @Test func oneByteAtATime() {
        let text = "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\nGET /y HTTP/1.1\r\nHost: y\r\n\r\n"
        var parser = HTTPRequestParser()
        var results: [Parsed] = []
        for byte in text.utf8 {
            parser.append([byte])
            drain(&parser, into: &results)
        }
        #expect(results == parseAll(text))
        #expect(parser.bufferedByteCount == 0)
    }

    @Test func expectContinueIsReportedBeforeTheBody() {
        var parser = HTTPRequestParser()
        var results: [Parsed] = []
        parser.append(Array("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".utf8))
        drain(&parser, into: &results)
        #expect(results == [.expectContinue])
        parser.append(Array("ok".utf8))
        drain(&parser, into: &results)
        #expect(results == [.expectContinue, .request(method: "POST", path: "/e", query: nil, body: "ok", keepAlive: true)])
    }

    @Test func expectContinueNotReportedWhenTheBodyIsAlreadyHere() {
        #expect(parseAll("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
            == [.request(method: "POST", path: "/e", query: nil, body: "ok", keepAlive: true)])
    }

    @Test func phasesFollowTheMessage() {
        var parser = HTTPRequestParser()
        #expect(parser.phase == .idle)
        parser.append(Array("POST / HTTP/1.1\r\nHo".utf8))
        _ = parser.next()
        #expect(parser.phase == .head)
        parser.append(Array("st: x\r\nContent-Length: 4\r\n\r\nab".utf8))
        _ = parser.next()
        #expect(parser.phase == .body)
        parser.append(Array("cd".utf8))
        guard case .request = parser.next() else { Issue.record("no request"); return }
        #expect(parser.phase == .idle)
    }

    @Test func failureIsSticky() {
        var parser = HTTPRequestParser()
        parser.append(Array("BAD\r\n".utf8))
        guard case .failure(let first) = parser.next() else { Issue.record("expected failure"); return }
        parser.append(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        guard case .failure(let second) = parser.next() else { Issue.record("expected failure"); return }
        #expect(first == second)
    }

    // MARK: Limits

    @Test func requestLineTooLongIs414EvenBeforeItEnds() {
        var limits = HTTPParserLimits()
        limits.maxRequestLineBytes = 64
        #expect(parseAll("GET /\(String(repeating: "a", count: 100)) HTTP/1.1\r\nHost: x\r\n\r\n", limits: limits) == [.failure(414)])
        #expect(parseAll("GET /\(String(repeating: "a", count: 100))", limits: limits) == [.failure(414)])
        #expect(parseAll("GET /\(String(repeating: "a", count: 40)) HTTP/1.1\r\nHost: x\r\n\r\n", limits: limits).count == 1)
    }

    @Test func headerSectionTooLargeIs431EvenBeforeItEnds() {
        var limits = HTTPParserLimits()
        limits.maxHeaderBytes = 100
        #expect(parseAll("GET / HTTP/1.1\r\nHost: x\r\nX: \(String(repeating: "a", count: 200))\r\n\r\n", limits: limits) == [.failure(431)])
        #expect(parseAll("GET / HTTP/1.1\r\nHost: x\r\nX: \(String(repeating: "a", count: 200))", limits: limits) == [.failure(431)])
        #expect(parseAll("GET / HTTP/1.1\r\nHost: x\r\nX: \(String(repeating: "a", count: 50))\r\n\r\n", limits: limits).count == 1)
    }

    @Test func tooManyHeaderFieldsIs431() {
        var limits = HTTPParserLimits()
        limits.maxHeaderCount = 5
        let five = (1...4).map { "X-\($0): v\r\n" }.joined()
        #expect(parseAll("GET / HTTP/1.1\r\nHost: x\r\n\(five)\r\n", limits: limits).count == 1)
        #expect(parseAll("GET / HTTP/1.1\r\nHost: x\r\n\(five)X-5: v\r\n\r\n", limits: limits) == [.failure(431)])
    }

    @Test func bodyTooLargeIs413AsSoonAsContentLengthIsSeen() {
        var limits = HTTPParserLimits()
        limits.maxBodyBytes = 10
        #expect(parseAll("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", limits: limits) == [.failure(413)])
        #expect(parseAll("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits).count == 1)
    }

    @Test func hugeContentLengthIs413NotAnOverflow() {
        #expect(parseAll("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n") == [.failure(413)])
    }

    @Test func chunkedBodyTooLargeIs413() {
        var limits = HTTPParserLimits()
        limits.maxBodyBytes = 10
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(parseAll(head + "6\r\nabcdef\r\n6\r\n", limits: limits) == [.failure(413)])
        #expect(parseAll(head + "fffffffffffffffffffffff\r\n", limits: limits) == [.failure(413)])
        #expect(parseAll(head + "5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n", limits: limits).count == 1)
    }

    @Test func trailerSectionCountsAgainstTheHeaderLimit() {
        var limits = HTTPParserLimits()
        limits.maxHeaderBytes = 80
        let text = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: \(String(repeating: "t", count: 100))\r\n\r\n"
        #expect(parseAll(text, limits: limits) == [.failure(431)])
    }

    @Test(arguments: ["POST", "PUT", "PATCH"])
    func bodyMethodsWithoutLengthAre411(method: String) {
        #expect(parseAll("\(method) / HTTP/1.1\r\nHost: x\r\n\r\n") == [.failure(411)])
    }

    @Test func getAndDeleteWithoutLengthHaveNoBody() {
        #expect(parseAll("DELETE /d HTTP/1.1\r\nHost: x\r\n\r\n")
            == [.request(method: "DELETE", path: "/d", query: nil, body: "", keepAlive: true)])
    }

    // MARK: Malformed input, named after the hazard

    @Test(arguments: [
        ("missing Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400),
        ("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("bare LF in request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
        ("bare LF in header", "GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
        ("obs-fold continuation line", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n", 400),
        ("obs-fold with tab", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400),
        ("whitespace before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("header without colon", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
        ("empty header name", "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400),
        ("NUL in header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n", 400),
        ("DEL in header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u{7F}b\r\n\r\n", 400),
        ("bare CR in header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
        ("non-token method", "GE(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("double space after method", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("double space before version", "GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("trailing space after version", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
        ("tab as separator", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("no version", "GET /\r\nHost: x\r\n\r\n", 400),
        ("asterisk-form target", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("absolute-form target", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400),
        ("garbage version", "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400),
        ("unsupported version 2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("unsupported version 1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
        ("control byte in target", "GET /a\u{1}b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("signed Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
        ("negative Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ("hex Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("list Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\na", 400),
        ("empty Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400),
        ("conflicting Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        ("Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("gzip transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ("gzip then chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("malformed chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
        ("chunk size with junk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", 400),
        ("chunk data too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400),
        ("unknown expectation", "POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\na", 417),
        ("too many empty lines first", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ])
    func malformedRequestIsRefused(hazard: String, text: String, status: Int) {
        #expect(parseAll(text) == [.failure(status)], "\(hazard)")
    }

    /// Mutated requests (flipped, dropped, duplicated bytes) never trap, always settle, and never
    /// yield a request whose body exceeds the limit.
    @Test func mutatedRequestsAlwaysSettle() {
        var generator = SeededGenerator(seed: 0x5EED)
        let seeds = [
            "POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ]
        var limits = HTTPParserLimits()
        limits.maxBodyBytes = 16
        for round in 0..<3_000 {
            var bytes = Array(seeds[round % seeds.count].utf8)
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &generator)
                case 1: if bytes.count > 1 { bytes.remove(at: index) }
                default: bytes.insert(bytes[index], at: index)
                }
            }
            var parser = HTTPRequestParser(limits: limits)
            let split = Int.random(in: 0...bytes.count, using: &generator)
            for part in [Array(bytes[..<split]), Array(bytes[split...])] {
                parser.append(part)
                settle: for _ in 0..<100 {
                    switch parser.next() {
                    case .needMoreData, .failure: break settle
                    case .expectContinue: continue
                    case .request(let request, _): #expect(request.body.count <= 16)
                    }
                }
            }
        }
    }

    @Test func http10WithoutHostIsAccepted() {
        #expect(parseAll("GET / HTTP/1.0\r\n\r\n").count == 1)
    }
}

@Suite struct HTTPHeadersTests {
    @Test func addLookupRemove() {
        var headers = HTTPHeaders([("A", "1"), ("b", "2")])
        headers.add("a", "3")
        #expect(headers.count == 3)
        #expect(headers["a"] == "1")
        #expect(headers.values("A") == ["1", "3"])
        #expect(headers["missing"] == nil)
        headers.remove("A")
        #expect(headers.count == 1)
        #expect(Array(headers).map(\.value) == ["2"])
    }
}
