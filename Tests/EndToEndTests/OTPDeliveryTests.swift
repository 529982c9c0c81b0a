import Crypto
import Foundation
import TestSupport
import Testing

/// The OTP delivery worker: queued OTPs reach the messaging service's webhook, signed, and the
/// value is erased from the outbox once delivered.
@Suite(.serialized) struct OTPDeliveryTests {
    static let secret = "otp-webhook-secret-0123"

    static func config(_ receiver: WebhookReceiver, deadlineSeconds: Int = 120) -> String {
        EngineProcess.defaultConfig.replacingOccurrences(
            of: #""otp": {"kind": "simulated", "deliveryDeadlineSeconds": 120}"#,
            with: """
                "otp": {"kind": "webhook", "url": "http://127.0.0.1:\(receiver.port)/otp", "secret": "\(secret)",
                        "timeoutMilliseconds": 1000, "deliveryDeadlineSeconds": \(deadlineSeconds)}
                """)
    }

    /// On a cluster of its own: every engine runs OTP workers, and another test's engine (with
    /// the simulated adapter) would otherwise take this item.
    @Test(.timeLimit(.minutes(2))) func anOTPIsDeliveredSignedAndErased() async throws {
        let cluster = try await PrivateCluster.start(name: "otp")
        defer { Task { await cluster.destroy() } }
        let receiver = try WebhookReceiver()
        receiver.script([503], thenDefault: 200)
        let config = Self.config(receiver)
        #expect(config.contains("/otp\""), "the test configuration has the otp section this test replaces")
        let engine = try await EngineProcess.start(.init(config: config, databaseURL: cluster.url))
        let otp = String(Int64.random(in: 100_000_000_000...999_999_999_999))
        try await runOffPool {
            let d1 = try engine.d1Client()
            #expect(try d1.send("POST", D1Rest.otpPath(consumer: "alice"), body: D1Rest.otpBody(value: otp)).status == 204)
        }
        try await eventually(timeout: .seconds(20), "the OTP to be delivered after one retry") {
            receiver.deliveries.contains { $0.status == 200 && $0.text.contains(otp) }
        }
        let delivery = try #require(receiver.deliveries.first { $0.status == 200 && $0.text.contains(otp) })
        #expect(delivery.headers["x-oob-signature"]
                == "sha256=" + Hex.encode(HMACSHA256.authenticate(delivery.body, key: Array(Self.secret.utf8))))
        let database = try TestDatabase(url: cluster.url)
        defer { database.shutdown() }
        try await eventually(timeout: .seconds(5), "the outbox row to be finished and erased") {
            (try? database.count("""
                select count(*) from outbox where kind = 'otp' and state = 'delivered' and payload is null
                  and finished_at > now() - interval '1 minute'
                """)) ?? 0 >= 1
        }
        #expect(try database.count("select count(*) from outbox where kind = 'otp' and payload like $1", ["%\(otp)%"]) == 0)
        try await engine.stop()
        #expect(!engine.logLines.contains { $0.contains(otp) }, "the OTP value appears in the log")
    }
}
