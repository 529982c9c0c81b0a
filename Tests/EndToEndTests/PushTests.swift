import Crypto
import Foundation
import Synchronization
import TestSupport
import Testing

/// The push adapter, its durable outbox and the app backend's decision API, against a real
/// webhook receiver on loopback. Serialized: every engine here runs push workers, and a worker
/// delivers whatever is due in the shared database to its own receiver.
@Suite(.serialized) struct PushTests {
    static let secret = "webhook-secret-0123456789"

    /// The test config plus a push section (and optionally a timer section).
    static func config(push: String, extra: String = "") -> String {
        var config = EngineProcess.defaultConfig
        let end = config.range(of: "}", options: .backwards)!
        config.replaceSubrange(end, with: "  ,\"push\": \(push)\(extra)\n}")
        return config
    }

    static func webhook(_ receiver: WebhookReceiver, deliveryDeadlineSeconds: Int = 30) -> String {
        """
        {"kind": "webhook", "url": "http://127.0.0.1:\(receiver.port)/challenges", "secret": "\(secret)",
         "timeoutMilliseconds": 1000, "deliveryDeadlineSeconds": \(deliveryDeadlineSeconds)}
        """
    }

    static func decisionPath(_ id: String, issuer: String = "ISSUER0001") -> String {
        "/app/v1/issuers/\(issuer)/authentications/\(id)/decision"
    }

    static func decisionBody(_ decision: String, app: String = "alice-phone") -> String {
        #"{"decision": "\#(decision)", "appInstanceId": "\#(app)"}"#
    }

    static func poll(_ client: HTTPClient, _ id: String, issuer: String = "ISSUER0001") throws -> RawHTTPConnection.Response {
        try client.send("GET", D1.authenticationPath(issuer: issuer) + "/" + id)
    }

    /// README: "to trust a private CA, set `SSL_CERT_FILE` (a PEM bundle) … in the engine's
    /// environment". The same https webhook, self-signed, first without it, then with it.
    @Test(.timeLimit(.minutes(2))) func anHTTPSWebhookTrustsThePrivateCANamedBySSLCertFile() async throws {
        let certificates = try TestCertificates.shared()
        let server = try TLSTestServer(certificate: certificates.loopback)
        defer { server.stop() }
        let push = """
            {"kind": "webhook", "url": "https://localhost:\(server.port)/challenges", "secret": "\(Self.secret)",
             "timeoutMilliseconds": 2000, "deliveryDeadlineSeconds": 60}
            """
        for trusted in [false, true] {
            let environment = trusted ? ["SSL_CERT_FILE": certificates.loopback.certificate] : [:]
            let engine = try await EngineProcess.start(.init(config: Self.config(push: push), environment: environment))
            let id = TestEnvironment.uniqueID()
            #expect(try engine.d1Client().send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
                .string("authenticationStatus") == "PENDING")
            func logged(_ message: String) -> Bool {
                engine.logLines.contains { $0.contains(message) && $0.contains("authentication_id=\(id)") }
            }
            if trusted {
                try await eventually(timeout: .seconds(15), "the push to be delivered over TLS") { logged("push delivered") }
                #expect(server.requestCount >= 1)
            } else {
                try await eventually(timeout: .seconds(15), "the push to fail its TLS handshake") {
                    logged("certificate not trusted: self-signed certificate")
                }
                #expect(server.requestCount == 0)
                #expect(!logged("push delivered"))
            }
            try await engine.stop()
        }
    }

    @Test(.timeLimit(.minutes(2))) func webhookThenApproveAuthenticates() async throws {
        let receiver = try WebhookReceiver()
        let engine = try await EngineProcess.start(.init(config: Self.config(push: Self.webhook(receiver))))
        let d1 = try engine.d1Client()
        let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
        let id = TestEnvironment.uniqueID()
        #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).string("authenticationStatus") == "PENDING")

        try await eventually(timeout: .seconds(15), "the webhook to arrive") { !receiver.deliveries(for: id).isEmpty }
        let delivery = try #require(receiver.deliveries(for: id).first)
        // The signature: HMAC-SHA-256 of the raw body with the shared secret.
        let expected = "sha256=" + Hex.encode(HMACSHA256.authenticate(delivery.body, key: Array(Self.secret.utf8)))
        #expect(delivery.headers["x-oob-signature"] == expected)
        #expect(delivery.headers["content-type"] == "application/json")
        let body = try #require(delivery.body.isEmpty ? nil : try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [String: Any])
        #expect(body["issuerId"] as? String == "ISSUER0001")
        #expect(body["consumerId"] as? String == "alice")
        #expect(body["authenticationId"] as? String == id)
        #expect(body["cardId"] as? String == "card-1")
        #expect(body["panSuffix"] as? String == "1234")
        #expect((body["purchase"] as? [String: Any])?["amount"] as? String == "78999")
        #expect(body["appInstanceIds"] as? [String] == ["alice-phone"])
        #expect((body["createdAt"] as? String)?.hasSuffix("Z") == true)
        #expect((body["expiresAt"] as? String)?.hasSuffix("Z") == true)

        // The app lists it, then the cardholder approves.
        let listed = try app.send("GET", "/app/v1/issuers/ISSUER0001/consumers/alice/challenges")
        #expect(listed.status == 200)
        #expect(listed.text.contains("\"authenticationId\":\"\(id)\""))
        let approve = try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("APPROVE"))
        #expect(approve.status == 200)
        #expect(approve.string("authenticationStatus") == "AUTHENTICATED")
        #expect(try Self.poll(d1, id).string("authenticationStatus") == "AUTHENTICATED")
        #expect(!(try app.send("GET", "/app/v1/issuers/ISSUER0001/consumers/alice/challenges").text.contains(id)))

        // The same decision again: the same 200. Another decision: 409 with the current status,
        // nothing changed, and the refused attempt is in the transitions log.
        let again = try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("APPROVE"))
        #expect(again.status == 200)
        #expect(again.string("authenticationStatus") == "AUTHENTICATED")
        let decline = try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("DECLINE"))
        #expect(decline.status == 409)
        #expect(decline.string("authenticationStatus") == "AUTHENTICATED")
        #expect(try Self.poll(d1, id).string("authenticationStatus") == "AUTHENTICATED")
        let database = try TestDatabase()
        defer { database.shutdown() }
        let log = try database.rows("""
            select t.cause, t.outcome, t.to_state, t.actor from transitions t join authentications a on a.id = t.authentication_id
            where a.issuer_id = 'ISSUER0001' and a.authentication_id = $1 order by t.id
            """, [id])
        #expect(log.count == 3)
        #expect(log.string(1, "cause") == "decision")
        #expect(log.string(1, "outcome") == "applied")
        #expect(log.string(1, "actor") == "app/alice-phone")
        #expect(log.string(2, "outcome") == "refused")
        #expect(log.string(2, "to_state") == "AUTHENTICATION_FAILED")
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(2))) func declineFailsAndBadDecisionsAreRefused() async throws {
        let receiver = try WebhookReceiver()
        let engine = try await EngineProcess.start(.init(config: Self.config(push: Self.webhook(receiver))))
        let d1 = try engine.d1Client()
        let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
        let id = TestEnvironment.uniqueID()
        _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))

        #expect(try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("APPROVE", app: "someone-elses-phone")).status == 403)
        #expect(try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("MAYBE")).status == 400)
        #expect(try app.send("POST", Self.decisionPath(id), body: "{").status == 400)
        #expect(try app.send("POST", Self.decisionPath(id), body: #"{"decision": "APPROVE"}"#).status == 400)
        #expect(try app.send("POST", Self.decisionPath(TestEnvironment.uniqueID()), body: Self.decisionBody("APPROVE")).status == 404)
        #expect(try d1.send("POST", Self.decisionPath(id), body: Self.decisionBody("APPROVE")).status == 403, "a d1 token has no app scope")
        #expect(try HTTPClient(port: engine.apiPort).send("POST", Self.decisionPath(id), body: Self.decisionBody("APPROVE")).status == 401)
        #expect(try Self.poll(d1, id).string("authenticationStatus") == "PENDING", "nothing above changed anything")

        let decline = try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("DECLINE"))
        #expect(decline.status == 200)
        #expect(decline.string("authenticationStatus") == "AUTHENTICATION_FAILED")
        let polled = try Self.poll(d1, id)
        #expect(polled.string("authenticationStatus") == "AUTHENTICATION_FAILED")
        #expect(polled.string("reason") == "declined by cardholder")
        #expect(try app.send("POST", Self.decisionPath(id), body: Self.decisionBody("APPROVE")).status == 409)
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(2))) func aDecisionAfterTheDeadlineIsRefused() async throws {
        let engine = try await EngineProcess.start()   // no push: the app lists challenges itself
        let d1 = try engine.d1Client()
        let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
        let id = TestEnvironment.uniqueID()
        _ = try d1.send("POST", D1.authenticationPath(issuer: "ISSUER0002"), body: D1.authenticateBody(id))
        let database = try TestDatabase()
        defer { database.shutdown() }
        try await eventually(timeout: .seconds(10), "the 2 s deadline to pass") {
            (try? database.count("select count(*) from authentications where issuer_id = 'ISSUER0002' and authentication_id = $1 and deadline < now()", [id])) == 1
        }
        let late = try app.send("POST", Self.decisionPath(id, issuer: "ISSUER0002"), body: Self.decisionBody("APPROVE"))
        #expect(late.status == 409)
        #expect(late.string("authenticationStatus") == "AUTHENTICATION_FAILED")
        #expect(late.string("reason") == "expired")
        #expect(try Self.poll(d1, id, issuer: "ISSUER0002").string("reason") == "expired")
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(2))) func backendDownThenUpIsDeliveredAfterRetries() async throws {
        let receiver = try WebhookReceiver()
        receiver.script([503, 503, 503], thenDefault: 200)
        let engine = try await EngineProcess.start(.init(config: Self.config(push: Self.webhook(receiver))))
        let d1 = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
        try await eventually(timeout: .seconds(30), "a 2xx delivery after retries") {
            receiver.deliveries(for: id).contains { $0.status == 200 }
        }
        let attempts = receiver.deliveries(for: id).map(\.status)
        #expect(attempts == [503, 503, 503, 200])
        let database = try TestDatabase()
        defer { database.shutdown() }
        try await eventually(timeout: .seconds(5), "the outbox to record the delivery") {
            (try? database.count("""
                select count(*) from outbox o join authentications a on a.id = o.authentication_id
                where a.authentication_id = $1 and o.state = 'delivered' and o.attempts = 4
                """, [id])) == 1
        }
        #expect(try Self.poll(d1, id).string("authenticationStatus") == "PENDING")
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(2))) func backendDownPastTheDeliveryDeadlineEndsInTechnicalError() async throws {
        let receiver = try WebhookReceiver(defaultStatus: 503)
        let engine = try await EngineProcess.start(.init(config: Self.config(push: Self.webhook(receiver, deliveryDeadlineSeconds: 2))))
        let d1 = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
        try await eventually(timeout: .seconds(20), "the challenge to fail") {
            (try? Self.poll(d1, id).string("authenticationStatus")) == "TECHNICAL_ERROR"
        }
        #expect(try Self.poll(d1, id).string("reason") == "push delivery failed")
        #expect(receiver.deliveries(for: id).count >= 2, "it kept trying until the deadline")
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(2))) func aPermanentRefusalFailsAtOnce() async throws {
        let receiver = try WebhookReceiver(defaultStatus: 400)
        let engine = try await EngineProcess.start(.init(config: Self.config(push: Self.webhook(receiver, deliveryDeadlineSeconds: 60))))
        let d1 = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
        try await eventually(timeout: .seconds(15), "the challenge to fail") {
            (try? Self.poll(d1, id).string("authenticationStatus")) == "TECHNICAL_ERROR"
        }
        #expect(receiver.deliveries(for: id).count == 1, "a 4xx is not retried")
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(3))) func undeliveredItemsSurviveAKillAndAreDeliveredAfterTheRestart() async throws {
        let receiver = try WebhookReceiver(defaultStatus: 503)
        let config = Self.config(push: Self.webhook(receiver, deliveryDeadlineSeconds: 120))
        let first = try await EngineProcess.start(.init(config: config))
        let d1 = try first.d1Client()
        let prefix = "outbox-" + UUID().uuidString.prefix(8)
        let ids = (0..<20).map { "\(prefix)-\($0)" }
        for id in ids { _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)) }
        try await eventually(timeout: .seconds(15), "first attempts to fail") { ids.allSatisfy { !receiver.deliveries(for: $0).isEmpty } }
        try await first.kill()

        receiver.script([], thenDefault: 200)
        let second = try await EngineProcess.start(.init(config: config))
        try await eventually(timeout: .seconds(60), "every item to be delivered after the restart") {
            ids.allSatisfy { id in receiver.deliveries(for: id).contains { $0.status == 200 } }
        }
        let database = try TestDatabase()
        defer { database.shutdown() }
        try await eventually(timeout: .seconds(5), "the outbox to record them") {
            (try? database.count("""
                select count(*) from outbox o join authentications a on a.id = o.authentication_id
                where a.authentication_id like $1 and o.state = 'delivered'
                """, [prefix + "-%"])) == 20
        }
        try await second.stop()
    }

    @Test(.timeLimit(.minutes(2))) func theSimulatedAdapterApprovesThroughTheDecisionPath() async throws {
        let engine = try await EngineProcess.start(.init(config: Self.config(
            push: #"{"kind": "simulated", "decision": "APPROVE", "afterMilliseconds": 200}"#)))
        let d1 = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).string("authenticationStatus") == "PENDING")
        try await eventually(timeout: .seconds(15), "the simulated cardholder to approve") {
            (try? Self.poll(d1, id).string("authenticationStatus")) == "AUTHENTICATED"
        }
        let database = try TestDatabase()
        defer { database.shutdown() }
        #expect(try database.rows("""
            select t.actor from transitions t join authentications a on a.id = t.authentication_id
            where a.authentication_id = $1 and t.cause = 'decision'
            """, [id]).string(0, "actor") == "simulated-app/alice-phone")
        try await engine.stop()
    }

    /// APPROVE, DECLINE and the deadline at the same moment, 500 times: each authentication ends
    /// with exactly one terminal transition, every 200 agrees with it, and D1's poll matches.
    @Test(.timeLimit(.minutes(3))) func approveDeclineAndDeadlineRace() async throws {
        let engine = try await EngineProcess.start()
        let d1 = try engine.d1Client()
        let appToken = try engine.token(client: "app")
        let prefix = "race-" + UUID().uuidString.prefix(8)
        let count = 500
        let created = ContinuousClock.now
        try await DeadlineTests.createMany(engine, prefix: prefix, count: count)
        // Aim the decisions at the deadline: creation took some time, so the earliest are
        // already close to or past it and the latest still have some to go.
        let sinceCreate = ContinuousClock.now - created
        if sinceCreate < .milliseconds(1900) { try await Task.sleep(for: .milliseconds(1900) - sinceCreate) }

        let answers = Locked<[String: [(String, Int, String?)]]>([:])
        let path: @Sendable (String) -> String = { id in Self.decisionPath(id, issuer: "ISSUER0002") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        Thread.detachNewThread {
                            continuation.resume(with: Result {
                                let client = HTTPClient(port: engine.apiPort, token: appToken)
                                for index in stride(from: worker, to: count * 2, by: 8) {
                                    let id = "\(prefix)-\(index / 2)"
                                    let decision = index % 2 == 0 ? "APPROVE" : "DECLINE"
                                    let response = try client.send("POST", path(id), body: Self.decisionBody(decision))
                                    answers.withLock { $0[id, default: []].append((decision, response.status, response.string("authenticationStatus"))) }
                                }
                            })
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let database = try TestDatabase()
        defer { database.shutdown() }
        try await DeadlineTests.waitUntilNonePending(database, prefix: prefix, timeout: .seconds(30))
        let finals = try database.rows("""
            select a.authentication_id, a.state, a.reason,
                   (select count(*) from transitions t where t.authentication_id = a.id and t.outcome = 'applied'
                                                         and t.from_state is not null) as terminal
            from authentications a where a.issuer_id = 'ISSUER0002' and a.authentication_id like $1
            """, [prefix + "-%"])
        #expect(finals.count == count)
        var outcomes: [String: Int] = [:]
        for row in 0..<finals.count {
            let id = finals.string(row, "authentication_id")!
            let state = finals.string(row, "state")!
            let reason = finals.string(row, "reason")
            #expect(finals.int(row, "terminal") == 1, "\(id) has exactly one terminal transition")
            let mine = answers.withLock { $0[id] ?? [] }
            #expect(mine.count == 2)
            for (decision, status, answered) in mine {
                #expect(status == 200 || status == 409, "\(id) \(decision) → \(status)")
                #expect(answered == state, "every answer carries the final state")
                if status == 200 {
                    #expect(decision == (state == "AUTHENTICATED" ? "APPROVE" : "DECLINE"))
                    #expect(state == "AUTHENTICATED" || reason == "declined by cardholder")
                }
            }
            #expect(mine.filter { $0.1 == 200 }.count <= 1)
            if mine.allSatisfy({ $0.1 == 409 }) { #expect(reason == "expired", "\(id): nobody's decision counted, so the deadline did") }
            let polled = try Self.poll(d1, id, issuer: "ISSUER0002")
            #expect(polled.string("authenticationStatus") == state)
            outcomes[state + "/" + (reason ?? "-"), default: 0] += 1
        }
        // Not an assertion on timing, a record of how the race went.
        print("race outcomes: \(outcomes)")
        try await engine.stop()
    }
}

/// A value shared between test threads.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
