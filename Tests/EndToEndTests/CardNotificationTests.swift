import TestSupport
import Testing

/// Notify 3-D Secure Card Operation against the real binary and PostgreSQL.
@Suite struct CardNotificationTests {
    @Test func d1EndsAPendingAuthenticationAsFailedAndADisagreementIsRecorded() async throws {
        let engine = try await EngineProcess.start()
        let operationId = try await runOffPool {
            let d1 = try engine.d1Client()
            let id = TestEnvironment.uniqueID()
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).string("authenticationStatus") == "PENDING")

            // D1 says SUCCESSFUL, but only the cardholder's decision authenticates.
            let operationId = TestEnvironment.uniqueID("op")
            let body = D1Rest.cardOperationBody(operationId: operationId, acsTransactionId: id)
            let notified = try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"), body: body)
            #expect(notified.status == 204)

            let polled = try d1.send("GET", D1.authenticationPath() + "/" + id)
            #expect(polled.string("authenticationStatus") == "AUTHENTICATION_FAILED")
            #expect(polled.string("reason") == "ended by D1")

            let database = try TestDatabase()
            defer { database.shutdown() }
            let row = try database.rows("""
                select c.status, c.trans_status, c.eci, c.engine_state, c.ended_by_d1, c.agreement, a.authentication_id
                from card_operations c join authentications a on a.id = c.authentication_id where c.operation_id = $1
                """, [operationId])
            #expect(row.count == 1)
            #expect(row.string(0, "authentication_id") == id)
            #expect(row.string(0, "trans_status") == "Y")
            #expect(row.string(0, "eci") == "05")
            #expect(row.string(0, "engine_state") == "AUTHENTICATION_FAILED")
            #expect(row.bool(0, "ended_by_d1") == true)
            #expect(row.string(0, "agreement") == "disagreed")
            let transitionsQuery = """
                select count(*) from transitions t join authentications a on a.id = t.authentication_id
                where a.authentication_id = $1 and t.cause = 'd1-notification' and t.to_state = 'AUTHENTICATION_FAILED'
                """
            #expect(try database.count(transitionsQuery, [id]) == 1)

            // D1 retries: 204, nothing new.
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"), body: body).status == 204)
            #expect(try database.count("select count(*) from card_operations where operation_id = $1", [operationId]) == 1)
            #expect(try database.count(transitionsQuery, [id]) == 1)
            return operationId
        }
        try await eventually("the disagreement warning") {
            engine.logLines.contains { $0.contains("D1 and the engine disagree") && $0.contains("operation_id=\(operationId)") }
        }
        try await engine.stop()
    }

    @Test func failedNotificationAgreesWithAnEndedAuthentication() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let id = TestEnvironment.uniqueID()
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)
            let operationId = TestEnvironment.uniqueID("op")
            let body = D1Rest.cardOperationBody(operationId: operationId, status: "FAILED", acsTransactionId: id, transStatus: "N", eci: "07")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"), body: body).status == 204)
            let database = try TestDatabase()
            defer { database.shutdown() }
            let row = try database.rows("select agreement, ended_by_d1, trans_status from card_operations where operation_id = $1", [operationId])
            #expect(row.string(0, "agreement") == "agreed")
            #expect(row.bool(0, "ended_by_d1") == true)
            #expect(try database.state(issuer: "ISSUER0001", authenticationId: id) == "AUTHENTICATION_FAILED")
        }
        try await engine.stop()
    }

    @Test func otherOperationsAndUnmatchedOnesAreStoredForReporting() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let database = try TestDatabase()
            defer { database.shutdown() }
            // card-1 is known from the Authenticate calls of the other tests; make sure of it here.
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(TestEnvironment.uniqueID())).status == 200)

            let frictionless = TestEnvironment.uniqueID("op")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"),
                                body: D1Rest.cardOperationBody(operationId: frictionless, operation: "3DS_FRICTIONLESS",
                                                               acsTransactionId: "acs-x")).status == 204)
            let unmatched = TestEnvironment.uniqueID("op")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"),
                                body: D1Rest.cardOperationBody(operationId: unmatched, acsTransactionId: TestEnvironment.uniqueID())).status == 204)
            let minimal = TestEnvironment.uniqueID("op")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"),
                                body: #"{"operationId":"\#(minimal)","operation":"3DS_CHALLENGE_OTP_SMS","status":"FAILED","startTime":"t"}"#).status == 204)

            #expect(try database.rows("select operation, agreement from card_operations where operation_id = $1", [frictionless]).string(0, "agreement") == nil)
            #expect(try database.rows("select agreement from card_operations where operation_id = $1", [unmatched]).string(0, "agreement") == "unmatched")
            #expect(try database.count("select count(*) from card_operations where operation_id = $1", [minimal]) == 1)
        }
        try await engine.stop()
    }

    @Test func concurrentDeliveriesOfOneNotificationEndTheAuthenticationOnce() async throws {
        let engine = try await EngineProcess.start()
        let id = TestEnvironment.uniqueID()
        let operationId = TestEnvironment.uniqueID("op")
        let d1 = try await runOffPool {
            let d1 = try engine.d1Client()
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)
            return d1
        }
        let body = D1Rest.cardOperationBody(operationId: operationId, status: "FAILED", acsTransactionId: id, transStatus: "N")
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<16 {
                group.addTask { try await d1.asyncSend("POST", D1Rest.cardNotificationsPath(card: "card-1"), body: body).status }
            }
            var all: [Int] = []
            for try await status in group { all.append(status) }
            return all
        }
        #expect(statuses == Array(repeating: 204, count: 16))
        try await runOffPool {
            let database = try TestDatabase()
            defer { database.shutdown() }
            #expect(try database.count("select count(*) from card_operations where operation_id = $1", [operationId]) == 1)
            #expect(try database.count("""
                select count(*) from transitions t join authentications a on a.id = t.authentication_id
                where a.authentication_id = $1 and t.to_state <> 'PENDING'
                """, [id]) == 1)
        }
        try await engine.stop()
    }

    @Test func aNotificationNeverEndsAnotherCardsOrAnotherIssuersAuthentication() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let database = try TestDatabase()
            defer { database.shutdown() }
            let id = TestEnvironment.uniqueID()
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)   // card-1, ISSUER0001
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            let otherCard = "card-" + id.suffix(12)
            #expect(try app.send("PUT", D1Rest.appConsumerPath(consumer: "alice"),
                                 body: #"{"firstName":"Alice","lastName":"L","cardIds":["\#(otherCard)"]}"#).status == 204)
            #expect(try app.send("PUT", D1Rest.appConsumerPath(issuer: "ISSUER0002", consumer: "alice"),
                                 body: #"{"firstName":"Alice","lastName":"L","cardIds":["card-1"]}"#).status == 204)

            let onOtherCard = TestEnvironment.uniqueID("op")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: otherCard),
                                body: D1Rest.cardOperationBody(operationId: onOtherCard, acsTransactionId: id)).status == 204)
            let onOtherIssuer = TestEnvironment.uniqueID("op")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(issuer: "ISSUER0002", card: "card-1"),
                                body: D1Rest.cardOperationBody(operationId: onOtherIssuer, acsTransactionId: id)).status == 204)

            #expect(try database.state(issuer: "ISSUER0001", authenticationId: id) == "PENDING")
            for operationId in [onOtherCard, onOtherIssuer] {
                let row = try database.rows("select agreement, authentication_id from card_operations where operation_id = $1", [operationId])
                #expect(row.string(0, "agreement") == "unmatched")
                #expect(row.string(0, "authentication_id") == nil)
            }
        }
        try await engine.stop()
    }

    @Test func unknownCardsForeignIssuersAndContractViolationsAreRefused() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let id = TestEnvironment.uniqueID()
            #expect(try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)
            let database = try TestDatabase()
            defer { database.shutdown() }

            let operationId = TestEnvironment.uniqueID("op")
            let body = D1Rest.cardOperationBody(operationId: operationId, acsTransactionId: id)
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-never-seen"), body: body).status == 404)
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(issuer: "ISSUER9999", card: "card-1"), body: body).status == 404)
            let onlyTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "d1-two"))
            let foreign = try onlyTwo.send("POST", D1Rest.cardNotificationsPath(card: "card-1"), body: body)
            #expect(foreign.status == 404)
            #expect(foreign.string("error") == "not found")
            #expect(try d1.send("POST", D1Rest.cardNotificationsPath(card: "bad%20card"), body: body).status == 400)

            let valid = D1Rest.cardOperationBody(operationId: operationId, acsTransactionId: id)
            let cases: [(String, String)] = [
                (valid.replacingOccurrences(of: #""operation":"3DS_CHALLENGE_OOB_ISSUER","#, with: ""), "operation is required"),
                (valid.replacingOccurrences(of: "3DS_CHALLENGE_OOB_ISSUER", with: "3DS_SOMETHING"), "operation must be one of"),
                (valid.replacingOccurrences(of: #""status":"SUCCESSFUL""#, with: #""status":"OK""#), "status must be one of"),
                (valid.replacingOccurrences(of: operationId, with: "op id"), "operationId must match"),
                (valid.replacingOccurrences(of: #""startTime":"2026-12-01T10:00:00Z","#, with: ""), "startTime is required"),
                (valid.replacingOccurrences(of: #""consumerId":"alice""#, with: #""consumerId":"al ice""#), "consumerId must match"),
                (valid.replacingOccurrences(of: #""transStatus":"Y""#, with: #""transStatus":"A""#), "details.transStatus must be one of"),
                (valid.replacingOccurrences(of: #""transStatusReason":"01""#, with: #""transStatusReason":"1""#), "details.transStatusReason must be 2"),
                (valid.replacingOccurrences(of: #""deviceChannel":"02""#, with: #""deviceChannel":"04""#), "details.device.deviceChannel must be one of"),
                (valid.replacingOccurrences(of: #""merchantType":"5942""#, with: #""merchantType":"59""#), "details.purchase.merchantType must be 4"),
                (valid.replacingOccurrences(of: #""authenticationMethod":"09""#, with: #""authenticationMethod":"01""#), "details.authenticationMethod must be one of"),
                (valid.replacingOccurrences(of: #""evaluatedRule":[]"#, with: #""evaluatedRule":{}"#), "details.rba.evaluatedRule must be an array"),
                (#"{"operationId":"x","operation":"3DS_FRICTIONLESS","status":"FAILED","startTime":"t","details":[]}"#, "details must be a JSON object"),
            ]
            for (bad, message) in cases {
                let response = try d1.send("POST", D1Rest.cardNotificationsPath(card: "card-1"), body: bad)
                #expect(response.status == 400, "\(message)")
                #expect(response.string("error")?.contains(message) == true, "\(message): \(response.text)")
            }
            #expect(try database.count("select count(*) from card_operations where operation_id = $1", [operationId]) == 0)
            #expect(try database.state(issuer: "ISSUER0001", authenticationId: id) == "PENDING")
        }
        try await engine.stop()
    }
}
