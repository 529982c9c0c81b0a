import JSON
import TestSupport
import Testing

/// Deliver OTP against the real binary: validated, queued in the outbox, never logged.
@Suite struct DeliverOTPTests {
    @Test func anOTPIsQueuedDurablyWithItsDeadlineAndNeverLogged() async throws {
        let engine = try await EngineProcess.start()
        let consumer = TestEnvironment.uniqueID("c")
        let otp = String(Int64.random(in: 100_000_000_000...999_999_999_999))
        try await runOffPool {
            let d1 = try engine.d1Client()
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            #expect(try app.send("PUT", D1Rest.appConsumerPath(consumer: consumer), body: #"{"firstName":"Ada","lastName":"L"}"#).status == 204)
            let database = try TestDatabase()
            defer { database.shutdown() }
            let before = try database.rows("select coalesce(max(id), 0) as id from outbox").int(0, "id") ?? 0

            let queued = try d1.send("POST", D1Rest.otpPath(consumer: consumer), body: D1Rest.otpBody(value: otp),
                                     headers: [("x-correlation-id", "otp-\(consumer.suffix(8))")])
            #expect(queued.status == 204)
            #expect(queued.body.isEmpty)

            // Our row: kind otp, no authentication, a deadline 120 s (the test configuration) away.
            let rows = try database.rows("""
                select payload, authentication_id, state,
                       delivery_deadline between now() + interval '100 seconds' and now() + interval '121 seconds' as deadline_ok
                from outbox where id > $1 and kind = 'otp' and created_at > now() - interval '1 minute'
                  and (payload is null or payload like $2)
                """, [String(before), "%\"consumerId\":\"\(consumer)\"%"])
            #expect(rows.count == 1)
            #expect(rows.string(0, "authentication_id") == nil)
            #expect(rows.bool(0, "deadline_ok") == true)
            if let payload = rows.string(0, "payload") {   // erased once the delivery worker is done with it
                let json = try JSONParser.parse(payload)
                #expect(json.objectValue?["otp"]?.objectValue?["value"]?.stringValue == otp)
                #expect(json.objectValue?["deliveryChannel"]?.stringValue == "SMS")
                #expect(json.objectValue?["panSuffix"]?.stringValue == "1234")
                #expect(json.objectValue?["issuerId"]?.stringValue == "ISSUER0001")
            }
            // A consumer known through an authenticator only (alice) gets OTPs too.
            #expect(try d1.send("POST", D1Rest.otpPath(consumer: "alice"), body: D1Rest.otpBody(value: otp)).status == 204)
        }
        try await engine.stop()
        #expect(!engine.logLines.contains { $0.contains(otp) }, "the OTP value appears in the log")
        #expect(engine.logLines.contains { $0.contains("OTP queued") && $0.contains("correlation_id=otp-\(consumer.suffix(8))") })
    }

    @Test func unknownConsumersForeignIssuersAndContractViolationsAreRefused() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let consumer = TestEnvironment.uniqueID("c")
            let database = try TestDatabase()
            defer { database.shutdown() }
            let before = try database.rows("select coalesce(max(id), 0) as id from outbox").int(0, "id") ?? 0

            #expect(try d1.send("POST", D1Rest.otpPath(consumer: consumer), body: D1Rest.otpBody()).status == 404)
            let onlyTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "d1-two"))
            let foreign = try onlyTwo.send("POST", D1Rest.otpPath(consumer: "alice"), body: D1Rest.otpBody())
            #expect(foreign.status == 404)
            #expect(foreign.string("error") == "not found")
            #expect(try HTTPClient(port: engine.apiPort).send("POST", D1Rest.otpPath(consumer: "alice"), body: D1Rest.otpBody()).status == 401)

            let valid = D1Rest.otpBody(value: "123456")
            let cases: [(String, String)] = [
                ("", "empty body"),
                (#"{"deliveryChannel":"SMS","panSuffix":"1234"}"#, "otp is required"),
                (valid.replacingOccurrences(of: #""value":"123456","#, with: ""), "otp.value is required"),
                (valid.replacingOccurrences(of: "123456", with: "1234567890123456"), "otp.value must be 1 to 15"),
                (valid.replacingOccurrences(of: "3DS-AUTHENTICATION", with: "LOGIN"), "otp.reason must be one of"),
                (valid.replacingOccurrences(of: #""expirationDate":"2026-12-01T10:05:00.000Z""#, with: #""expirationDate":"x""#), "otp.expirationDate must be 4 to 32"),
                (valid.replacingOccurrences(of: #""deliveryChannel":"SMS""#, with: #""deliveryChannel":"PUSH""#), "deliveryChannel must be one of"),
                (valid.replacingOccurrences(of: #""deliveryChannel":"SMS","#, with: ""), "deliveryChannel is required"),
                (valid.replacingOccurrences(of: #""panSuffix":"1234""#, with: #""panSuffix":"123""#), "panSuffix must be 4 digits"),
                (valid.replacingOccurrences(of: #""panSuffix":"1234","#, with: ""), "panSuffix is required"),
                (valid.replacingOccurrences(of: #""id":"40010030273""#, with: #""id":"4001""#), "digitalCardRequestor.id must be 11"),
                (valid.replacingOccurrences(of: #""name":"Wallet""#, with: #""name":"Wallet","extra":1"#), "digitalCardRequestor allows no other members"),
                (valid.replacingOccurrences(of: #""deviceName":"Pixel""#, with: #""deviceName":"Pixel","imei":"1""#), "deviceInformation allows no other members"),
                (valid.replacingOccurrences(of: #""amount":"78999""#, with: #""amount":"7.99""#), "threeDSDetails.purchase.amount must be"),
            ]
            for (body, message) in cases {
                let response = try d1.send("POST", D1Rest.otpPath(consumer: "alice"), body: body, headers: [("Content-Type", "application/json")])
                #expect(response.status == 400, "\(message)")
                #expect(response.string("error")?.contains(message) == true, "\(message): \(response.text)")
                #expect(response.string("error")?.contains("123456") == false)
            }
            #expect(try database.count("select count(*) from outbox where id > $1 and kind = 'otp' and payload like '%123456%'", [String(before)]) == 0)
            #expect(try database.count("select count(*) from outbox where id > $1 and kind = 'otp' and payload like $2",
                                       [String(before), "%\"consumerId\":\"\(consumer)\"%"]) == 0)
        }
        try await engine.stop()
    }
}
