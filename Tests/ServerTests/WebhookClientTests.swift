import Crypto
import Foundation
import Glibc
import HTTP
import Server
import Synchronization
import TestSupport
import Testing

/// The engine's own webhook client (`SignedWebhook`, used for push and OTP delivery) against
/// real loopback servers: outcome mapping, the overall deadline, refused connections, and TLS
/// trust (a self-signed certificate made with the `openssl` CLI, served by Python's ssl module).
@Suite struct WebhookClientTests {
    static let secret = "0123456789abcdef-secret"

    func webhook(_ url: String, timeoutMilliseconds: Int = 2000, caFile: String? = nil) throws -> SignedWebhook {
        SignedWebhook(url: try #require(HTTPURL(url)), secret: Self.secret, timeoutMilliseconds: timeoutMilliseconds, caFile: caFile)
    }

    @Test func mapsStatusesToOutcomes() async throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        let hook = try webhook("http://127.0.0.1:\(server.port)/challenges?v=1")
        let cases: [(Int, PushOutcome)] = [
            (200, .delivered), (204, .delivered), (503, .retryable("HTTP 503")), (500, .retryable("HTTP 500")),
            (408, .retryable("HTTP 408")), (429, .retryable("HTTP 429")), (400, .permanent("HTTP 400")),
            (404, .permanent("HTTP 404")), (301, .permanent("HTTP 301")),
        ]
        for (status, expected) in cases {
            server.answer(status)
            let outcome = try await runOffPool { hook.post(Array(#"{"a":1}"#.utf8), headers: [("X-OOB-Authentication-Id", "abc")]) }
            #expect(outcome == expected, "status \(status)")
        }
        let request = try #require(server.requests.last)
        #expect(request.head.hasPrefix("POST /challenges?v=1 HTTP/1.1\r\n"))
        let headers = request.headers
        #expect(headers["host"] == "127.0.0.1:\(server.port)")
        #expect(headers["content-type"] == "application/json")
        #expect(headers["connection"] == "close")
        #expect(headers["content-length"] == "7")
        #expect(headers["x-oob-authentication-id"] == "abc")
        let key = HMACSHA256Key(Array(Self.secret.utf8))
        #expect(headers["x-oob-signature"] == SignedWebhook.signature(of: Array(#"{"a":1}"#.utf8), key: key))
        #expect(request.body == Array(#"{"a":1}"#.utf8))
    }

    @Test func aServerThatNeverAnswersTimesOutWithinTheDeadline() async throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        server.answer(nil)
        let hook = try webhook("http://127.0.0.1:\(server.port)/", timeoutMilliseconds: 300)
        // Timed on the posting thread: the test task itself may resume late on a busy pool.
        let (outcome, elapsed) = try await runOffPool { timed { hook.post(Array("{}".utf8)) } }
        #expect(outcome == .retryable("timed out (waiting for the response)"))
        #expect(elapsed >= .milliseconds(290) && elapsed < .milliseconds(1500), "\(elapsed)")
    }

    @Test func aRefusedConnectionIsRetryable() async throws {
        // Bound but not listening: the kernel refuses connections to it, and the port stays ours.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let port = try LoopbackServer.bindLoopback(fd)
        let outcome = try await runOffPool { try webhook("http://127.0.0.1:\(port)/").post([]) }
        #expect(outcome == .retryable("connect failed: Connection refused"))
    }

    @Test func anUnresolvableHostIsRetryable() async throws {
        let outcome = try await runOffPool { try webhook("http://no-such-host.invalid/").post([]) }
        guard case .retryable(let why) = outcome else { Issue.record("\(outcome)"); return }
        #expect(why.hasPrefix("cannot resolve host"))
    }

    @Test func aTLSHandshakeThatNeverCompletesTimesOut() async throws {
        let server = try LoopbackServer()
        defer { server.stop() }
        server.answer(nil)
        let hook = try webhook("https://127.0.0.1:\(server.port)/", timeoutMilliseconds: 300)
        let (outcome, elapsed) = try await runOffPool { timed { hook.post([]) } }
        #expect(outcome == .retryable("TLS: timed out (handshake)"))
        #expect(elapsed >= .milliseconds(290) && elapsed < .milliseconds(1500), "\(elapsed)")
    }

    @Test func statusLinesAreParsedStrictly() async throws {
        for (raw, expected) in [
            ("HTTP/1.1 201 Created\r\nX-A: b\r\n\r\n", PushOutcome.delivered),
            ("HTTP/1.0 200\r\n\r\n", .delivered),
            ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\n\r\n", .retryable("HTTP 502")),
            ("ICY 200 OK\r\n\r\n", .retryable("bad response: not an HTTP/1.x status line")),
            ("HTTP/1.1 2000 OK\r\n\r\n", .retryable("bad response: not an HTTP/1.x status line")),
            ("HTTP/1.1 200 OK\r\nX-Partial", .retryable("transport: connection closed inside the response head")),
            ("", .retryable("transport: connection closed with no response")),
        ] {
            let server = try LoopbackServer()
            defer { server.stop() }
            server.answerRaw(raw)
            let outcome = try await runOffPool { try webhook("http://127.0.0.1:\(server.port)/").post([]) }
            #expect(outcome == expected, "\(raw.debugDescription)")
        }
    }
}

func timed<T>(_ body: () -> T) -> (T, Duration) {
    let started = ContinuousClock.now
    let result = body()
    return (result, ContinuousClock.now - started)
}

/// TLS against a real TLS server.
@Suite struct WebhookTLSTests {
    static let secret = "0123456789abcdef-secret"

    func post(_ url: String, caFile: String?, timeoutMilliseconds: Int = 5000) async throws -> PushOutcome {
        let hook = SignedWebhook(url: try #require(HTTPURL(url)), secret: Self.secret,
                                 timeoutMilliseconds: timeoutMilliseconds, caFile: caFile)
        return try await runOffPool { hook.post(Array(#"{"tls":true}"#.utf8)) }
    }

    @Test func deliversWhenTheCertificateIsTrusted() async throws {
        let certificates = try TestCertificates.shared()
        let server = try TLSTestServer(certificate: certificates.loopback)
        defer { server.stop() }
        #expect(try await post("https://127.0.0.1:\(server.port)/ok", caFile: certificates.loopback.certificate) == .delivered)
        #expect(try await post("https://localhost:\(server.port)/ok", caFile: certificates.loopback.certificate) == .delivered)
        #expect(try await post("https://localhost:\(server.port)/status/503", caFile: certificates.loopback.certificate)
                == .retryable("HTTP 503"))
        #expect(try await post("https://localhost:\(server.port)/status/403", caFile: certificates.loopback.certificate)
                == .permanent("HTTP 403"))
    }

    @Test func withoutACAFileOnlyTheSystemsRootsAreTrusted() async throws {
        let certificates = try TestCertificates.shared()
        let server = try TLSTestServer(certificate: certificates.loopback)
        defer { server.stop() }
        // The self-signed certificate is not among the system's roots. SSL_CERT_FILE, which
        // adds it, is tested on the engine binary (PushTests): setenv in this process would race
        // every thread that reads the environment.
        #expect(try await post("https://localhost:\(server.port)/ok", caFile: nil)
                == .retryable("TLS: certificate not trusted: self-signed certificate"))
        #expect(server.requestCount == 0)
    }

    @Test func refusesAnUntrustedCertificate() async throws {
        let certificates = try TestCertificates.shared()
        let server = try TLSTestServer(certificate: certificates.loopback)
        defer { server.stop() }
        // Trusting another certificate only.
        #expect(try await post("https://127.0.0.1:\(server.port)/ok", caFile: certificates.otherName.certificate)
                == .retryable("TLS: certificate not trusted: self-signed certificate"))
        #expect(server.requestCount == 0)
    }

    @Test func refusesAHostnameMismatch() async throws {
        let certificates = try TestCertificates.shared()
        let server = try TLSTestServer(certificate: certificates.otherName)
        defer { server.stop() }
        // Trusted, but issued for wrong.example only.
        #expect(try await post("https://localhost:\(server.port)/ok", caFile: certificates.otherName.certificate)
                == .retryable("TLS: certificate not trusted: hostname mismatch"))
        #expect(try await post("https://127.0.0.1:\(server.port)/ok", caFile: certificates.otherName.certificate)
                == .retryable("TLS: certificate not trusted: IP address mismatch"))
        #expect(server.requestCount == 0)
    }

    @Test func aPlainHTTPServerBehindAnHTTPSURLIsATLSFailure() async throws {
        let certificates = try TestCertificates.shared()
        let server = try LoopbackServer()
        defer { server.stop() }
        server.answer(200)
        let outcome = try await post("https://127.0.0.1:\(server.port)/", caFile: certificates.loopback.certificate,
                                     timeoutMilliseconds: 1000)
        guard case .retryable(let why) = outcome else { Issue.record("\(outcome)"); return }
        #expect(why.hasPrefix("TLS: "), "\(why)")
    }
}
