import Foundation
import Glibc
import TestSupport
import Testing

/// HTTP/1.1 strictness (RFC 9112) against the real binary over raw sockets: every case states the
/// statuses the client must get and what happens to the connection afterwards. A refused request
/// gets `Connection: close` and the server closes without answering anything sent after it; a
/// served one leaves the connection usable (the next request on it is answered). Cases that hide a
/// second request (smuggling) also prove through the database that it never ran.
/// Serialized: the cases are quick, and 259 connections opened at once would only disturb the
/// timing-sensitive suites that run alongside.
@Suite(.serialized) struct HTTPStrictnessTests {
    @Test func thereAreAtLeast150Cases() {
        #expect(StrictCases.all.count >= 150, "\(StrictCases.all.count) cases")
        #expect(Set(StrictCases.all.map(\.name)).count == StrictCases.all.count, "case names are unique")
    }

    @Test(arguments: StrictCases.all)
    func strictness(_ strictCase: StrictCase) async throws {
        let engine = try await StrictEngine.shared()
        let context = StrictContext(token: engine.token, probeID: engine.probeID,
                                    freshID: TestEnvironment.uniqueID("fresh"), smuggledID: TestEnvironment.uniqueID("smuggled"))
        let outcome = try await runOffPool { () throws -> StrictOutcome in
            try StrictCases.run(strictCase, context: context, port: engine.process.apiPort)
        }
        #expect(outcome.statuses == strictCase.statuses, "\(strictCase.name): got \(outcome.statuses)")
        switch strictCase.after {
        case .keepAlive:
            #expect(outcome.lastConnectionHeader?.lowercased() != "close", "\(strictCase.name): Connection: close on a served request")
            #expect(outcome.probeStatus == 200, "\(strictCase.name): the connection should still serve (probe got \(String(describing: outcome.probeStatus)))")
        case .closed:
            #expect(outcome.lastConnectionHeader?.lowercased() == "close", "\(strictCase.name): no Connection: close")
            #expect(outcome.closedWithNothingMore, "\(strictCase.name): the server must close and answer nothing more")
        }
        let fiveHundreds = zip(outcome.statuses, strictCase.statuses).filter { $0.0 >= 500 && $0.1 < 500 }
        #expect(fiveHundreds.isEmpty, "\(strictCase.name): a 5xx where a 4xx was due")

        // Blocking queries run off the cooperative pool, which other suites' handlers need.
        let database = engine.database
        let (smuggled, fresh) = try await runOffPool { () throws -> (String?, String?) in
            (strictCase.smuggles ? try database.state(issuer: "ISSUER0001", authenticationId: context.smuggledID) : nil,
             strictCase.creates ? try database.state(issuer: "ISSUER0001", authenticationId: context.freshID) : nil)
        }
        if strictCase.smuggles {
            // Whatever the server did with the connection, it is closed or idle now: a smuggled
            // request that had run would already be in the table.
            #expect(smuggled == nil, "\(strictCase.name): the smuggled request was executed")
        }
        if strictCase.creates {
            #expect(fresh == "PENDING", "\(strictCase.name): the well-framed request was not applied")
        }
    }
}

// MARK: - The shared engine

/// One engine for all cases, with small timeouts and body limit so the limits are cheap to hit.
/// It lives as long as the test process (it exits when our end of its stdin closes).
final class StrictEngine: Sendable {
    static let maxBodyBytes = 8_192
    static let headerTimeoutSeconds = 2
    static let bodyTimeoutSeconds = 2
    static let idleTimeoutSeconds = 4

    let process: EngineProcess
    let database: TestDatabase
    let token: String
    /// An authentication created at start; GETting it is the 200 the probe expects.
    let probeID: String

    private init(process: EngineProcess, database: TestDatabase, token: String, probeID: String) {
        self.process = process
        self.database = database
        self.token = token
        self.probeID = probeID
    }

    private static let instance = Task { () throws -> StrictEngine in
        var options = EngineProcess.Options()
        let http = #""http": {"headerReadTimeoutSeconds": \#(headerTimeoutSeconds), "bodyReadTimeoutSeconds": \#(bodyTimeoutSeconds), "idleTimeoutSeconds": \#(idleTimeoutSeconds), "maxBodyBytes": \#(maxBodyBytes)},"#
        options.config = "{" + http + options.config.drop { $0 != "{" }.dropFirst()
        let process = try await EngineProcess.start(options)
        let token = try process.token()
        let probeID = TestEnvironment.uniqueID("probe")
        let created = try HTTPClient(port: process.apiPort, token: token)
            .send("POST", D1.authenticationPath(), body: D1.authenticateBody(probeID))
        guard created.status == 200 else { throw TestSetupError("probe authentication: \(created.status) \(created.text)") }
        return StrictEngine(process: process, database: try TestDatabase(), token: token, probeID: probeID)
    }

    static func shared() async throws -> StrictEngine { try await instance.value }
}

// MARK: - Cases

struct StrictContext: Sendable {
    var token: String
    var probeID: String
    /// For a request that should be applied (and is checked in the database).
    var freshID: String
    /// For a hidden request that must never run.
    var smuggledID: String
}

struct StrictCase: Sendable, CustomTestStringConvertible {
    enum After: Sendable {
        /// The last response keeps the connection: a probe on it gets 200.
        case keepAlive
        /// The last response says `Connection: close` and the server closes, answering nothing more.
        case closed
    }

    var name: String
    var request: @Sendable (StrictContext) -> [UInt8]
    /// The statuses, in order, of the responses on the connection (100 Continue included).
    var statuses: [Int]
    var after: After
    /// The request hides `smuggledID`'s authenticate: it must not exist afterwards.
    var smuggles = false
    /// The request carries `freshID`'s authenticate: it must exist afterwards.
    var creates = false
    /// Half-close our side after sending.
    var halfClose = false

    var testDescription: String { name }
}

struct StrictOutcome: Sendable {
    var statuses: [Int] = []
    var lastConnectionHeader: String?
    var probeStatus: Int?
    var closedWithNothingMore = false
}

enum StrictCases {
    static let issuerPath = D1.authenticationPath()

    static func run(_ strictCase: StrictCase, context: StrictContext, port: Int) throws -> StrictOutcome {
        let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 10)
        var outcome = StrictOutcome()
        // The server may answer and close before it has read everything (a 413 on the head):
        // a failed send is then expected, the answer is what counts.
        try? connection.send(strictCase.request(context))
        if strictCase.halfClose { shutdown(connection.fd, Int32(SHUT_WR)) }
        for _ in strictCase.statuses {
            guard let response = try connection.readResponse() else { break }
            outcome.statuses.append(response.status)
            outcome.lastConnectionHeader = response.header("Connection")
        }
        switch strictCase.after {
        case .keepAlive:
            try connection.send(probe(context))
            outcome.probeStatus = try connection.readResponse()?.status
        case .closed:
            // nil: the server closed without sending anything more (a timeout would throw).
            if case .success(nil) = Result(catching: { try connection.readResponse() }) { outcome.closedWithNothingMore = true }
        }
        return outcome
    }

    // MARK: Request pieces

    static func auth(_ c: StrictContext) -> String { "Authorization: Bearer \(c.token)\r\n" }

    static func probe(_ c: StrictContext) -> [UInt8] {
        Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8)
    }

    /// A GET of the probe authentication with the given request line pieces and extra header lines.
    static func get(method: String = "GET", target: String? = nil, version: String = "HTTP/1.1",
                    host: String? = "Host: engine\r\n", _ extra: String = "") -> @Sendable (StrictContext) -> [UInt8] {
        { c in Array("\(method) \(target ?? "\(issuerPath)/\(c.probeID)") \(version)\r\n\(host ?? "")\(auth(c))\(extra)\r\n".utf8) }
    }

    /// Raw bytes spliced into an otherwise valid GET (after the auth header).
    static func getWith(_ bytes: [UInt8]) -> @Sendable (StrictContext) -> [UInt8] {
        { c in Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))".utf8) + bytes + Array("\r\n\r\n".utf8) }
    }

    static func body(_ id: String) -> String { D1.authenticateBody(id).replacingOccurrences(of: "\n", with: "") }

    /// A complete, valid authenticate for `id` (Content-Length framed).
    static func authenticate(_ c: StrictContext, id: String) -> String {
        let payload = body(id)
        return "POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Type: application/json\r\nContent-Length: \(payload.utf8.count)\r\n\r\n\(payload)"
    }

    /// An authenticate for the fresh id whose head carries `headers` (framing included) and whose
    /// body is `body(payload)`.
    static func post(_ headers: @escaping @Sendable (String) -> String, body make: @escaping @Sendable (String) -> String = { $0 },
                     version: String = "HTTP/1.1") -> @Sendable (StrictContext) -> [UInt8] {
        { c in
            let payload = body(c.freshID)
            return Array("POST \(issuerPath) \(version)\r\nHost: engine\r\n\(auth(c))Content-Type: application/json\r\n\(headers(payload))\r\n\(make(payload))".utf8)
        }
    }

    static func length(_ payload: String) -> String { "Content-Length: \(payload.utf8.count)\r\n" }

    /// The payload in chunks of `size` bytes, terminated, with optional extension and trailers.
    static func chunked(_ payload: String, size: Int, extension ext: String = "", trailers: String = "") -> String {
        let bytes = Array(payload.utf8)
        var out = ""
        var index = 0
        while index < bytes.count {
            let piece = bytes[index..<min(index + size, bytes.count)]
            out += String(piece.count, radix: 16) + ext + "\r\n" + String(decoding: piece, as: UTF8.self) + "\r\n"
            index += size
        }
        return out + "0\r\n" + trailers + "\r\n"
    }

    static func smuggled(_ c: StrictContext) -> String { authenticate(c, id: c.smuggledID) }

    // MARK: The table

    static let all: [StrictCase] = framing + contentLength + host + headerSyntax + controlCharacters
        + lineEndings + requestLine + chunkedBodies + sizes + smuggling + connectionHandling

    static let framing: [StrictCase] = [
        StrictCase(name: "Content-Length then Transfer-Encoding", request: post({ length($0) + "Transfer-Encoding: chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding then Content-Length", request: post({ "Transfer-Encoding: chunked\r\n" + length($0) }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding with Content-Length 0", request: post({ _ in "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding Chunked (case) with Content-Length", request: post({ "Transfer-Encoding: Chunked\r\n" + length($0) }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding with tab and Content-Length", request: post({ "Transfer-Encoding:\tchunked\r\n" + length($0) }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding on HTTP/1.0", request: post({ _ in "Transfer-Encoding: chunked\r\n" }, body: { chunked($0, size: 64) }, version: "HTTP/1.0"),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding identity", request: post({ _ in "Transfer-Encoding: identity\r\n" }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding gzip alone", request: post({ _ in "Transfer-Encoding: gzip\r\n" }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding chunked then gzip", request: post({ _ in "Transfer-Encoding: chunked, gzip\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding gzip then chunked (not implemented)", request: post({ _ in "Transfer-Encoding: gzip, chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [501], after: .closed),
        StrictCase(name: "Transfer-Encoding chunked twice in one line", request: post({ _ in "Transfer-Encoding: chunked, chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding chunked on two lines", request: post({ _ in "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding chunked then another line", request: post({ _ in "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding empty", request: post({ _ in "Transfer-Encoding: \r\n" }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding xchunked", request: post({ _ in "Transfer-Encoding: xchunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding chunked with a parameter", request: post({ _ in "Transfer-Encoding: chunked;q=1\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding with space before the colon", request: post({ _ in "Transfer-Encoding : chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer-Encoding with a vertical tab", request: post({ _ in "Transfer-Encoding: \u{0B}chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [400], after: .closed),
        StrictCase(name: "Transfer_Encoding is just another header: no framing, 411", request: post({ _ in "Transfer_Encoding: chunked\r\n" }, body: { chunked($0, size: 64) }),
                   statuses: [411], after: .closed),
        StrictCase(name: "POST without any framing", request: post({ _ in "" }),
                   statuses: [411], after: .closed),
        StrictCase(name: "Transfer-Encoding as obs-fold continuation", request: post({ length($0) + "X-Pad: a\r\n Transfer-Encoding: chunked\r\n" }),
                   statuses: [400], after: .closed),
    ]

    static let contentLength: [StrictCase] = {
        let refused: [(String, String)] = [
            ("different duplicate Content-Length", "Content-Length: 5\r\nContent-Length: 6\r\n"),
            ("Content-Length list", "Content-Length: 5, 5\r\n"),
            ("negative Content-Length", "Content-Length: -1\r\n"),
            ("signed Content-Length", "Content-Length: +5\r\n"),
            ("hex Content-Length", "Content-Length: 0x10\r\n"),
            ("decimal point Content-Length", "Content-Length: 5.0\r\n"),
            ("empty Content-Length", "Content-Length:\r\n"),
            ("Content-Length with inner space", "Content-Length: 1 2\r\n"),
            ("Content-Length with letters", "Content-Length: 12abc\r\n"),
            ("Content-Length fullwidth digit", "Content-Length: \u{FF15}\r\n"),
            ("Content-Length exponent", "Content-Length: 1e3\r\n"),
            ("Content-Length with a comma only", "Content-Length: ,\r\n"),
            ("Content-Length with space before the colon", "Content-Length : 5\r\n"),
        ]
        var cases = refused.map { name, header in
            StrictCase(name: name, request: post({ _ in header }), statuses: [400], after: .closed)
        }
        cases += [
            StrictCase(name: "Content-Length of 25 digits", request: post({ _ in "Content-Length: 9999999999999999999999999\r\n" }),
                       statuses: [413], after: .closed),
            StrictCase(name: "Content-Length one past the limit", request: post({ _ in "Content-Length: \(StrictEngine.maxBodyBytes + 1)\r\n" }),
                       statuses: [413], after: .closed),
            StrictCase(name: "identical duplicate Content-Length is accepted", request: post({ length($0) + length($0) }),
                       statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "Content-Length with leading zeros", request: post({ "Content-Length: 000\($0.utf8.count)\r\n" }),
                       statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "Content-Length with tabs around the value", request: post({ "Content-Length:\t\($0.utf8.count)\t\r\n" }),
                       statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "lower-case content-length", request: post({ "content-length: \($0.utf8.count)\r\n" }),
                       statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "POST with Content-Length 0 (empty body, handler's 400)", request: post({ _ in "Content-Length: 0\r\n" }, body: { _ in "" }),
                       statuses: [400], after: .keepAlive),
            StrictCase(name: "GET with a Content-Length body", request: { c in
                Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Length: 5\r\n\r\nhello".utf8)
            }, statuses: [200], after: .keepAlive),
            StrictCase(name: "Content-Length shorter than the body: the rest is a bad request", request: post({ _ in "Content-Length: 10\r\n" }, body: { $0 + "\r\n\r\n" }),
                       statuses: [400, 400], after: .closed),
            StrictCase(name: "Content-Length longer than the body, then half-close", request: post({ "Content-Length: \($0.utf8.count + 10)\r\n" }),
                       statuses: [400], after: .closed, halfClose: true),
        ]
        return cases
    }()

    static let host: [StrictCase] = [
        StrictCase(name: "missing Host on HTTP/1.1", request: get(host: nil), statuses: [400], after: .closed),
        StrictCase(name: "two Host headers", request: get(host: "Host: a\r\nHost: b\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "two identical Host headers", request: get(host: "Host: a\r\nHost: a\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host with a space in the value", request: get(host: "Host: a b\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host with userinfo", request: get(host: "Host: user@engine\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host with a path", request: get(host: "Host: engine/x\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host with a tab inside", request: get(host: "Host: a\tb\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host with non-ASCII", request: get(host: "Host: \u{E9}ngine\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host with space before the colon", request: get(host: "Host : engine\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host as obs-fold continuation", request: get(host: "X-A: b\r\n Host: engine\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "Host plus a folded second line", request: get(host: "Host: engine\r\n\tx\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "empty Host is valid", request: get(host: "Host:\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "Host with a port", request: get(host: "Host: engine:8080\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "Host as an IPv6 literal", request: get(host: "Host: [::1]:8080\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "Host as an IPv4 literal", request: get(host: "Host: 127.0.0.1\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "lower-case host header", request: get(host: "host: engine\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "upper-case HOST header", request: get(host: "HOST: engine\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "HTTP/1.0 without Host is served and closed", request: get(version: "HTTP/1.0", host: nil), statuses: [200], after: .closed),
    ]

    static let headerSyntax: [StrictCase] = {
        var cases: [StrictCase] = [
            StrictCase(name: "space before the colon", request: get("X-Test : a\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "tab before the colon", request: get("X-Test\t: a\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "obs-fold with a space", request: get("X-Test: a\r\n b\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "obs-fold with a tab", request: get("X-Test: a\r\n\tb\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "obs-fold right after the request line", request: { c in
                Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\n Host: engine\r\n\(auth(c))\r\n".utf8)
            }, statuses: [400], after: .closed),
            StrictCase(name: "header line without a colon", request: get("X-Test a\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "empty header name", request: get(": a\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "header name with non-ASCII", request: get("X-T\u{E9}st: a\r\n"), statuses: [400], after: .closed),
            StrictCase(name: "header value with HTAB is fine", request: get("X-Test: a\tb\r\n"), statuses: [200], after: .keepAlive),
            StrictCase(name: "header value with obs-text is fine", request: getWith(Array("X-Test: ".utf8) + [0xC3, 0xA9, 0xFF]), statuses: [200], after: .keepAlive),
            StrictCase(name: "header value with trailing whitespace is fine", request: get("X-Test: a \t \r\n"), statuses: [200], after: .keepAlive),
            StrictCase(name: "empty header value is fine", request: get("X-Test:\r\n"), statuses: [200], after: .keepAlive),
            StrictCase(name: "ninety extra headers are fine", request: get((0..<90).map { "X-H\($0): v\r\n" }.joined()), statuses: [200], after: .keepAlive),
            StrictCase(name: "101 headers", request: get((0..<101).map { "X-H\($0): v\r\n" }.joined()), statuses: [431], after: .closed),
            StrictCase(name: "header value of 17,000 bytes", request: get("X-Big: \(String(repeating: "a", count: 17_000))\r\n"), statuses: [431], after: .closed),
            StrictCase(name: "header section over 16 KiB in small headers", request: get((0..<80).map { "X-H\($0): \(String(repeating: "b", count: 220))\r\n" }.joined()),
                       statuses: [431], after: .closed),
            StrictCase(name: "header name of 20,000 bytes", request: get("X\(String(repeating: "n", count: 20_000)): v\r\n"), statuses: [431], after: .closed),
        ]
        for special in ["@", "(", ")", "\"", "/", "[", "]", "{", "}", "=", ",", "?", "\\", "<", ">", ";"] {
            cases.append(StrictCase(name: "header name with \(special)", request: get("X\(special)Test: a\r\n"), statuses: [400], after: .closed))
        }
        return cases
    }()

    static let controlCharacters: [StrictCase] = {
        var cases: [StrictCase] = []
        // Every C0 control except HTAB, and DEL, inside a header value; CR and LF are below.
        for byte in (UInt8(0x00)...0x1F).filter({ $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) + [0x7F] {
            cases.append(StrictCase(name: String(format: "control 0x%02X in a header value", byte),
                                    request: getWith(Array("X-Test: a".utf8) + [byte] + Array("b".utf8)), statuses: [400], after: .closed))
        }
        for byte: UInt8 in [0x00, 0x01, 0x1B, 0x7F, 0x20] {
            cases.append(StrictCase(name: String(format: "control 0x%02X in a header name", byte),
                                    request: getWith(Array("X-T".utf8) + [byte] + Array("est: a".utf8)), statuses: [400], after: .closed))
        }
        for byte: UInt8 in [0x00, 0x01, 0x08, 0x7F] {
            cases.append(StrictCase(name: String(format: "control 0x%02X in the target", byte), request: { c in
                Array("GET \(issuerPath)/".utf8) + [byte] + Array(" HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8)
            }, statuses: [400], after: .closed))
            cases.append(StrictCase(name: String(format: "control 0x%02X in the method", byte), request: { c in
                Array("G".utf8) + [byte] + Array("ET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8)
            }, statuses: [400], after: .closed))
        }
        return cases
    }()

    static let lineEndings: [StrictCase] = [
        StrictCase(name: "bare LF line endings throughout", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\nHost: engine\nAuthorization: Bearer \(c.token)\n\n".utf8)
        }, statuses: [400], after: .closed),
        StrictCase(name: "bare LF after the request line", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\nHost: engine\r\n\(auth(c))\r\n".utf8)
        }, statuses: [400], after: .closed),
        StrictCase(name: "bare LF after a header", request: get("X-Test: a\nX-Other: b\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "bare LF ending the head", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\n".utf8)
        }, statuses: [400], after: .closed),
        StrictCase(name: "bare CR after the request line", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\rHost: engine\r\n\(auth(c))\r\n".utf8)
        }, statuses: [400], after: .closed),
        StrictCase(name: "bare CR between headers", request: get("X-Test: a\rX-Other: b\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "bare CR inside a header value", request: get("X-Test: a\rb\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "CR CR LF ending a header", request: get("X-Test: a\r\r\n"), statuses: [400], after: .closed),
        StrictCase(name: "LF CR instead of CRLF", request: get("X-Test: a\n\r"), statuses: [400], after: .closed),
        StrictCase(name: "bare CR ending the head", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\r\n".utf8)
        }, statuses: [400], after: .closed),
        StrictCase(name: "bare LF inside the target", request: { c in
            Array("GET \(issuerPath)/a\nb HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8)
        }, statuses: [400], after: .closed),
        StrictCase(name: "one empty line before the request", request: { c in Array("\r\n".utf8) + probe(c) }, statuses: [200], after: .keepAlive),
        StrictCase(name: "four empty lines before the request", request: { c in Array("\r\n\r\n\r\n\r\n".utf8) + probe(c) }, statuses: [200], after: .keepAlive),
        StrictCase(name: "five empty lines before the request", request: { c in Array("\r\n\r\n\r\n\r\n\r\n".utf8) + probe(c) }, statuses: [400], after: .closed),
        StrictCase(name: "a bare LF before the request", request: { c in Array("\n".utf8) + probe(c) }, statuses: [400], after: .closed),
    ]

    static let requestLine: [StrictCase] = {
        var cases: [StrictCase] = [
            StrictCase(name: "lower-case method", request: get(method: "get"), statuses: [405], after: .keepAlive),
            StrictCase(name: "unknown method", request: get(method: "FOO"), statuses: [405], after: .keepAlive),
            StrictCase(name: "method with @", request: get(method: "G@T"), statuses: [400], after: .closed),
            StrictCase(name: "method with a non-ASCII byte", request: get(method: "G\u{C9}T"), statuses: [400], after: .closed),
            StrictCase(name: "empty method", request: { c in Array(" \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8) }, statuses: [400], after: .closed),
            StrictCase(name: "method of 9,000 bytes", request: get(method: String(repeating: "G", count: 9_000)), statuses: [414], after: .closed),
            StrictCase(name: "two spaces after the method", request: { c in Array("GET  \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8) }, statuses: [400], after: .closed),
            StrictCase(name: "tab after the method", request: { c in Array("GET\t\(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8) }, statuses: [400], after: .closed),
            StrictCase(name: "two spaces before the version", request: { c in Array("GET \(issuerPath)/\(c.probeID)  HTTP/1.1\r\nHost: engine\r\n\(auth(c))\r\n".utf8) }, statuses: [400], after: .closed),
            StrictCase(name: "trailing space after the version", request: get(version: "HTTP/1.1 "), statuses: [400], after: .closed),
            StrictCase(name: "space inside the target", request: get(target: "/a b"), statuses: [400], after: .closed),
            StrictCase(name: "missing version (HTTP/0.9 style)", request: { c in Array("GET \(issuerPath)/\(c.probeID)\r\n".utf8) }, statuses: [400], after: .closed),
            StrictCase(name: "extra word after the version", request: get(version: "HTTP/1.1 extra"), statuses: [400], after: .closed),
            StrictCase(name: "asterisk-form target", request: get(method: "OPTIONS", target: "*"), statuses: [400], after: .closed),
            StrictCase(name: "absolute-form target", request: get(target: "http://engine/x"), statuses: [400], after: .closed),
            StrictCase(name: "authority-form target", request: get(method: "CONNECT", target: "engine:443"), statuses: [400], after: .closed),
            StrictCase(name: "target with non-ASCII", request: get(target: "/\u{E9}"), statuses: [400], after: .closed),
            StrictCase(name: "request line of 9,000 bytes", request: get(target: "/" + String(repeating: "a", count: 9_000)), statuses: [414], after: .closed),
            StrictCase(name: "long but allowed target", request: get(target: "/" + String(repeating: "a", count: 7_000)), statuses: [404], after: .keepAlive),
            StrictCase(name: "percent-encoded NUL in the path", request: get(target: "/banking/%00"), statuses: [404], after: .keepAlive),
            StrictCase(name: "invalid percent-encoding in the path", request: get(target: "\(issuerPath)/%ZZ"), statuses: [400], after: .keepAlive),
            StrictCase(name: "dot segments in the path", request: get(target: "/../../etc/passwd"), statuses: [404], after: .keepAlive),
            StrictCase(name: "HTTP/2 connection preface", request: { _ in Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) }, statuses: [400], after: .closed),
            StrictCase(name: "TLS ClientHello", request: { _ in [0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00, 0x00, 0xA1, 0x03, 0x03] + Array(repeating: 0x41, count: 32) + Array("\r\n\r\n".utf8) },
                       statuses: [400], after: .closed),
            StrictCase(name: "NUL as the first byte", request: { c in [0] + probe(c) }, statuses: [400], after: .closed),
        ]
        let versions: [(String, Int)] = [("HTTP/1.2", 505), ("HTTP/2.0", 505), ("HTTP/3.0", 505), ("HTTP/0.9", 505),
                                         ("http/1.1", 400), ("HTTP/1.1.1", 400), ("HTTP/11", 400), ("HTTP/1", 400),
                                         ("HTTP/ 1.1", 400), ("HTTPS/1.1", 400), ("HTTP/1.10", 400), ("HTTP/a.b", 400),
                                         ("HTTP/1.1\t", 400), ("", 400)]
        for (version, status) in versions {
            cases.append(StrictCase(name: "version '\(version)'", request: get(version: version), statuses: [status], after: .closed))
        }
        return cases
    }()

    static let chunkedBodies: [StrictCase] = {
        let te: @Sendable (String) -> String = { _ in "Transfer-Encoding: chunked\r\n" }
        var cases: [StrictCase] = [
            StrictCase(name: "chunked in one chunk", request: post(te, body: { chunked($0, size: 4_096) }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "chunked in 1-byte chunks", request: post(te, body: { chunked($0, size: 1) }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "chunked in 7-byte chunks", request: post(te, body: { chunked($0, size: 7) }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "chunk extensions", request: post(te, body: { chunked($0, size: 50, extension: ";name=value") }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "quoted chunk extension", request: post(te, body: { chunked($0, size: 50, extension: ";name=\"a b\"") }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "whitespace before a chunk extension", request: post(te, body: { chunked($0, size: 50, extension: " ;x") }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "trailer fields", request: post(te, body: { chunked($0, size: 50, trailers: "X-Trailer: 1\r\nX-Other: 2\r\n") }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "Content-Length as a trailer is ignored", request: post(te, body: { chunked($0, size: 50, trailers: "Content-Length: 5\r\n") }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "upper-case hex and leading zeros", request: post(te, body: { payload in
                let bytes = Array(payload.utf8)
                return "000\(String(bytes.count, radix: 16, uppercase: true))\r\n\(payload)\r\n0000\r\n\r\n"
            }), statuses: [200], after: .keepAlive, creates: true),
            StrictCase(name: "chunked GET with an empty body", request: get("Transfer-Encoding: chunked\r\n\r\n0\r\n"), statuses: [200], after: .keepAlive),
        ]
        let refused: [(String, Int, @Sendable (String) -> String)] = [
            ("chunk size not hex", 400, { "g\r\n\($0)\r\n0\r\n\r\n" }),
            ("negative chunk size", 400, { "-1\r\n\($0)\r\n0\r\n\r\n" }),
            ("chunk size with 0x", 400, { _ in "0x5\r\nhello\r\n0\r\n\r\n" }),
            ("empty chunk size line", 400, { _ in "\r\nhello\r\n0\r\n\r\n" }),
            ("space before the chunk size", 400, { _ in " 5\r\nhello\r\n0\r\n\r\n" }),
            ("chunk size overflowing 64 bits", 413, { _ in "ffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n" }),
            ("chunk sizes over the body limit", 413, { _ in "1000\r\n\(String(repeating: "a", count: 4_096))\r\n1001\r\n" }),
            ("chunk data longer than its size", 400, { _ in "2\r\nabc\r\n0\r\n\r\n" }),
            ("chunk data shorter than its size", 400, { _ in "5\r\nabc\r\n0\r\n\r\n" }),
            ("bare LF after the chunk size", 400, { _ in "5\nhello\r\n0\r\n\r\n" }),
            ("bare LF after the chunk data", 400, { _ in "5\r\nhello\n0\r\n\r\n" }),
            ("bare CR after the chunk size", 400, { _ in "5\rhello\r\n0\r\n\r\n" }),
            ("bare CR in a chunk extension", 400, { _ in "5;a\rb\r\nhello\r\n0\r\n\r\n" }),
            ("NUL in a chunk extension", 400, { _ in "5;a\u{0}b\r\nhello\r\n0\r\n\r\n" }),
            ("chunk extension over 1 KiB", 400, { _ in "5;\(String(repeating: "e", count: 1_100))\r\nhello\r\n0\r\n\r\n" }),
            ("trailer line without a colon", 400, { _ in "5\r\nhello\r\n0\r\nnot a field\r\n\r\n" }),
            ("obs-fold in the trailers", 400, { _ in "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n" }),
            ("control character in a trailer", 400, { _ in "5\r\nhello\r\n0\r\nX-T: a\u{1}b\r\n\r\n" }),
            ("trailers over 16 KiB", 431, { _ in "5\r\nhello\r\n0\r\nX-T: \(String(repeating: "t", count: 17_000))\r\n\r\n" }),
            ("a request line in the trailers", 400, { _ in "5\r\nhello\r\n0\r\nGET / HTTP/1.1\r\n\r\n" }),
        ]
        for (name, status, make) in refused {
            cases.append(StrictCase(name: name, request: post(te, body: make), statuses: [status], after: .closed))
        }
        cases.append(StrictCase(name: "last chunk never terminated, then half-close", request: post(te, body: { chunked($0, size: 64).replacingOccurrences(of: "0\r\n\r\n", with: "0\r\n") }),
                                statuses: [400], after: .closed, halfClose: true))
        return cases
    }()

    static let sizes: [StrictCase] = [
        StrictCase(name: "body over the limit, sent", request: post({ _ in "Content-Length: \(StrictEngine.maxBodyBytes + 100)\r\n" },
                                                                     body: { _ in String(repeating: "a", count: StrictEngine.maxBodyBytes + 100) }),
                   statuses: [413], after: .closed),
        StrictCase(name: "body exactly at the limit (bad JSON, handler's 400)", request: post({ _ in "Content-Length: \(StrictEngine.maxBodyBytes)\r\n" },
                                                                                              body: { _ in String(repeating: "a", count: StrictEngine.maxBodyBytes) }),
                   statuses: [400], after: .keepAlive),
        StrictCase(name: "Expect 100-continue with the body already sent", request: post({ length($0) + "Expect: 100-continue\r\n" }),
                   statuses: [200], after: .keepAlive, creates: true),
        StrictCase(name: "Expect 100-continue over the limit gets 413 and no 100", request: post({ _ in "Content-Length: 100000\r\nExpect: 100-continue\r\n" }, body: { _ in "" }),
                   statuses: [413], after: .closed),
        StrictCase(name: "unknown expectation", request: post({ length($0) + "Expect: teapot\r\n" }), statuses: [417], after: .closed),
    ]

    static let smuggling: [StrictCase] = [
        StrictCase(name: "CL.TE: zero chunk then a hidden request", request: { c in
            let hidden = smuggled(c)
            let body = "0\r\n\r\n" + hidden
            return Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nTransfer-Encoding: chunked\r\n\r\n\(body)".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "TE.CL: chunk holding a hidden request", request: { c in
            let hidden = smuggled(c)
            let body = String(hidden.utf8.count, radix: 16) + "\r\n" + hidden + "\r\n0\r\n\r\n"
            return Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n\(body)".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "TE.TE: chunked then an unknown coding line, hidden request", request: { c in
            Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n0\r\n\r\n\(smuggled(c))".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "two Content-Lengths hiding a request", request: { c in
            let hidden = smuggled(c)
            return Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Length: 0\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "obs-fold Transfer-Encoding hiding a request", request: { c in
            Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Length: 5\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\(smuggled(c))".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "bare-LF head hiding a request", request: { c in
            Array("POST \(issuerPath) HTTP/1.1\nHost: engine\nContent-Length: 0\n\n\(smuggled(c))".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "request after a malformed header", request: { c in Array("GET / HTTP/1.1\r\nHost: engine\r\nBad Header: x\r\n\r\n\(smuggled(c))".utf8) },
                   statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "request after a 413", request: { c in
            Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Length: 100000\r\n\r\n\(smuggled(c))".utf8)
        }, statuses: [413], after: .closed, smuggles: true),
        StrictCase(name: "request after a 505", request: { c in Array("GET / HTTP/2.0\r\nHost: engine\r\n\r\n\(smuggled(c))".utf8) },
                   statuses: [505], after: .closed, smuggles: true),
        StrictCase(name: "request after a 431", request: { c in
            Array("GET / HTTP/1.1\r\nHost: engine\r\nX: \(String(repeating: "h", count: 17_000))\r\n\r\n\(smuggled(c))".utf8)
        }, statuses: [431], after: .closed, smuggles: true),
        StrictCase(name: "request after a missing Host", request: { c in Array("GET / HTTP/1.1\r\nX: y\r\n\r\n\(smuggled(c))".utf8) },
                   statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "request after Connection: close", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Connection: close\r\n\r\n\(smuggled(c))".utf8)
        }, statuses: [200], after: .closed, smuggles: true),
        StrictCase(name: "request after an HTTP/1.0 request", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.0\r\n\(auth(c))\r\n\(smuggled(c))".utf8)
        }, statuses: [200], after: .closed, smuggles: true),
        StrictCase(name: "request inside a Content-Length body", request: { c in
            let hidden = smuggled(c)
            return Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Type: application/json\r\nContent-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)".utf8)
        }, statuses: [400], after: .keepAlive, smuggles: true),
        StrictCase(name: "request inside a chunked body", request: { c in
            Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\(chunked(smuggled(c), size: 100))".utf8)
        }, statuses: [400], after: .keepAlive, smuggles: true),
        StrictCase(name: "request inside a GET's body", request: { c in
            let hidden = smuggled(c)
            return Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Length: \(hidden.utf8.count)\r\n\r\n\(hidden)".utf8)
        }, statuses: [200], after: .keepAlive, smuggles: true),
        StrictCase(name: "request inside the trailers", request: { c in
            Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Transfer-Encoding: chunked\r\n\r\n0\r\n\(smuggled(c))\r\n\r\n".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "request after a bare-CR header", request: { c in
            Array("GET / HTTP/1.1\r\nHost: engine\r\nX: a\rContent-Length: 0\r\n\r\n\(smuggled(c))".utf8)
        }, statuses: [400], after: .closed, smuggles: true),
        StrictCase(name: "pipelined valid requests are all served", request: { c in Array(authenticate(c, id: c.freshID).utf8) + probe(c) + probe(c) },
                   statuses: [200, 200, 200], after: .keepAlive, creates: true),
    ]

    static let connectionHandling: [StrictCase] = [
        StrictCase(name: "Connection: close is honoured", request: get("Connection: close\r\n"), statuses: [200], after: .closed),
        StrictCase(name: "Connection: CLOSE in capitals", request: get("Connection: CLOSE\r\n"), statuses: [200], after: .closed),
        StrictCase(name: "Connection: keep-alive, close", request: get("Connection: keep-alive, close\r\n"), statuses: [200], after: .closed),
        StrictCase(name: "close in a second Connection header", request: get("Connection: keep-alive\r\nConnection: close\r\n"), statuses: [200], after: .closed),
        StrictCase(name: "HTTP/1.0 closes by default", request: get(version: "HTTP/1.0"), statuses: [200], after: .closed),
        StrictCase(name: "HTTP/1.0 with keep-alive stays open", request: get(version: "HTTP/1.0", "Connection: keep-alive\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "HTTP/1.1 keeps the connection by default", request: get(), statuses: [200], after: .keepAlive),
        StrictCase(name: "Connection: keep-alive on HTTP/1.1", request: get("Connection: keep-alive\r\n"), statuses: [200], after: .keepAlive),
        StrictCase(name: "OPTIONS on a known path", request: get(method: "OPTIONS"), statuses: [405], after: .keepAlive),
        StrictCase(name: "a refused request's 404 keeps the connection", request: get(target: "/nowhere"), statuses: [404], after: .keepAlive),
        StrictCase(name: "a handler's 401 keeps the connection", request: { c in
            Array("GET \(issuerPath)/\(c.probeID) HTTP/1.1\r\nHost: engine\r\n\r\n".utf8)
        }, statuses: [401], after: .keepAlive),
        StrictCase(name: "a handler's 415 keeps the connection", request: { c in
            let payload = body(c.freshID)
            return Array("POST \(issuerPath) HTTP/1.1\r\nHost: engine\r\n\(auth(c))Content-Type: text/plain\r\n\(length(payload))\r\n\(payload)".utf8)
        }, statuses: [415], after: .keepAlive),
    ]
}

extension StrictCases {
    typealias Build = @Sendable (StrictContext) -> [UInt8]

    /// One request's bytes followed by another's, in the same write.
    static func concatenate(_ first: @escaping Build, _ second: @escaping Build) -> Build {
        { first($0) + second($0) }
    }
}
