import TestSupport
import Testing

/// Notify Consumer Operation (ENROLL_AUTHN) and the app backend's authenticator API, against the
/// real binary and PostgreSQL.
@Suite struct AuthenticatorRegistryTests {
    @Test func enrolmentNotificationMakesAuthenticateFindAnAuthenticatorAndRetriesChangeNothing() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            let consumer = TestEnvironment.uniqueID("c")
            let database = try TestDatabase()
            defer { database.shutdown() }

            let before = try d1.send("POST", D1.authenticationPath(consumer: consumer), body: D1.authenticateBody(TestEnvironment.uniqueID()))
            #expect(before.string("authenticationStatus") == "NO_AUTHENTICATOR")

            let operationId = TestEnvironment.uniqueID("op")
            let body = D1Rest.enrolBody(operationId: operationId, consumer: consumer)
            let enrolled = try d1.send("POST", D1Rest.notificationsPath(consumer: consumer), body: body)
            #expect(enrolled.status == 204)
            #expect(enrolled.body.isEmpty)
            #expect(try database.count("select count(*) from authenticators where consumer_id = $1 and active and authn_type = 'BIOMETRIC'", [consumer]) == 1)

            let after = try d1.send("POST", D1.authenticationPath(consumer: consumer), body: D1.authenticateBody(TestEnvironment.uniqueID()))
            #expect(after.string("authenticationStatus") == "PENDING")

            // The bank unenrols the app; D1 then retries the old notification: nothing changes.
            #expect(try app.send("DELETE", D1Rest.authenticatorsPath(consumer: consumer) + "/phone-1").status == 204)
            let retried = try d1.send("POST", D1Rest.notificationsPath(consumer: consumer), body: body)
            #expect(retried.status == 204)
            #expect(try database.count("select count(*) from consumer_operations where operation_id = $1", [operationId]) == 1)
            #expect(try database.count("select count(*) from authenticators where consumer_id = $1 and active", [consumer]) == 0)
            let unenrolled = try d1.send("POST", D1.authenticationPath(consumer: consumer), body: D1.authenticateBody(TestEnvironment.uniqueID()))
            #expect(unenrolled.string("authenticationStatus") == "NO_AUTHENTICATOR")
        }
        try await engine.stop()
    }

    @Test func failedEnrolmentIsRecordedOnly() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let consumer = TestEnvironment.uniqueID("c")
            let operationId = TestEnvironment.uniqueID("op")
            let failed = try d1.send("POST", D1Rest.notificationsPath(consumer: consumer),
                                     body: D1Rest.enrolBody(operationId: operationId, consumer: consumer, status: "FAILED"))
            #expect(failed.status == 204)
            let database = try TestDatabase()
            defer { database.shutdown() }
            #expect(try database.count("select count(*) from consumer_operations where operation_id = $1 and status = 'FAILED'", [operationId]) == 1)
            #expect(try database.count("select count(*) from authenticators where consumer_id = $1", [consumer]) == 0)
        }
        try await engine.stop()
    }

    @Test func notificationsThatBreakTheContractAreRefusedAndStoreNothing() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let consumer = TestEnvironment.uniqueID("c")
            let path = D1Rest.notificationsPath(consumer: consumer)
            let start = #""startTime":"2026-12-01T10:00:00Z""#
            let cases: [(String, String)] = [
                ("", "empty body"),
                ("[]", "body must be a JSON object"),
                (#"{"operation":"ENROLL_AUTHN","status":"FAILED",\#(start),"requestorType":"USER","requestorId":"\#(consumer)"}"#, "operationId is required"),
                (#"{"operationId":"a b","operation":"ENROLL_AUTHN","status":"FAILED",\#(start),"requestorType":"USER","requestorId":"\#(consumer)"}"#, "operationId must match"),
                (#"{"operationId":"op1","operation":"DELETE_AUTHN","status":"FAILED",\#(start),"requestorType":"USER","requestorId":"\#(consumer)"}"#, "operation must be one of"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"DONE",\#(start),"requestorType":"USER","requestorId":"\#(consumer)"}"#, "status must be one of"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"FAILED","requestorType":"USER","requestorId":"\#(consumer)"}"#, "startTime is required"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"FAILED",\#(start),"requestorType":"BANK","requestorId":"\#(consumer)"}"#, "requestorType must be one of"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"FAILED",\#(start),"requestorType":"USER"}"#, "requestorId is required"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"FAILED",\#(start),"requestorType":"USER","requestorId":"someone-else"}"#, "requestorId must be"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"SUCCESSFUL",\#(start),"requestorType":"USER","requestorId":"\#(consumer)","details":{"authnType":"BIOMETRIC"}}"#, "details.appInstanceId is required"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"SUCCESSFUL",\#(start),"requestorType":"USER","requestorId":"\#(consumer)","details":{"appInstanceId":"p","authnType":"PIN"}}"#, "details.authnType must be one of"),
                (#"{"operationId":"op1","operation":"ENROLL_AUTHN","status":"FAILED",\#(start),"requestorType":"USER","requestorId":"\#(consumer)","details":"x"}"#, "details must be a JSON object"),
            ]
            for (body, message) in cases {
                let response = try d1.send("POST", path, body: body, headers: [("Content-Type", "application/json")])
                #expect(response.status == 400, "\(message)")
                #expect(response.string("error")?.contains(message) == true, "\(message): \(response.text)")
            }
            let notJSON = try d1.send("POST", path, body: "a=b", headers: [("Content-Type", "application/x-www-form-urlencoded")])
            #expect(notJSON.status == 415)
            let database = try TestDatabase()
            defer { database.shutdown() }
            #expect(try database.count("select count(*) from consumer_operations where consumer_id = $1", [consumer]) == 0)
            #expect(try database.count("select count(*) from authenticators where consumer_id = $1", [consumer]) == 0)
        }
        try await engine.stop()
    }

    @Test func notificationsNeedAD1TokenForThePathsIssuer() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let consumer = TestEnvironment.uniqueID("c")
            let body = D1Rest.enrolBody(operationId: TestEnvironment.uniqueID("op"), consumer: consumer)
            let onlyTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "d1-two"))
            let foreign = try onlyTwo.send("POST", D1Rest.notificationsPath(consumer: consumer), body: body)
            #expect(foreign.status == 404)
            #expect(foreign.string("error") == "not found")
            #expect(try engine.d1Client().send("POST", D1Rest.notificationsPath(issuer: "ISSUER9999", consumer: consumer), body: body).status == 404)
            #expect(try HTTPClient(port: engine.apiPort).send("POST", D1Rest.notificationsPath(consumer: consumer), body: body).status == 401)
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            #expect(try app.send("POST", D1Rest.notificationsPath(consumer: consumer), body: body).status == 403)
            let database = try TestDatabase()
            defer { database.shutdown() }
            #expect(try database.count("select count(*) from consumer_operations where consumer_id = $1", [consumer]) == 0)
        }
        try await engine.stop()
    }

    @Test func appBackendEnrolsListsAndUnenrols() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            let consumer = TestEnvironment.uniqueID("c")
            let path = D1Rest.authenticatorsPath(consumer: consumer)

            #expect(try app.send("GET", path).status == 404)   // unknown consumer
            let created = try app.send("PUT", path + "/phone-1", body: #"{"authnType":"BIOMETRIC"}"#)
            #expect(created.status == 201)
            #expect(created.text == #"{"appInstanceId":"phone-1","authnType":"BIOMETRIC","active":true}"#)
            let again = try app.send("PUT", path + "/phone-1", body: #"{"authnType":"PLATFORM"}"#)
            #expect(again.status == 200)
            #expect(again.string("authnType") == "PLATFORM")
            #expect(try app.send("PUT", path + "/tablet%201", body: #"{"authnType":"BIOMETRIC"}"#).status == 201)

            let listed = try app.send("GET", path)
            #expect(listed.status == 200)
            guard case .object(let root)? = listed.json, case .array(let items)? = root["authenticators"] else {
                Issue.record("no authenticators array: \(listed.text)")
                return
            }
            #expect(items.count == 2)
            #expect(items.compactMap { $0.objectValue?["appInstanceId"]?.stringValue } == ["phone-1", "tablet 1"])

            #expect(try app.send("DELETE", path + "/phone-1").status == 204)
            #expect(try app.send("DELETE", path + "/phone-1").status == 204)   // idempotent
            #expect(try app.send("DELETE", path + "/no-such-app").status == 404)
            let afterDelete = try app.send("GET", path)
            let active = afterDelete.json?.objectValue?["authenticators"]?.arrayValue?.compactMap { item -> String? in
                item.objectValue?["active"]?.boolValue == true ? item.objectValue?["appInstanceId"]?.stringValue : nil
            }
            #expect(active == ["tablet 1"])

            for bad in ["", "{}", #"{"authnType":"PIN"}"#, #"{"authnType":1}"#] {
                let response = try app.send("PUT", path + "/phone-2", body: bad, headers: [("Content-Type", "application/json")])
                #expect(response.status == 400, "\(bad)")
                #expect(response.string("error") != nil)
            }
            // Scope and issuer.
            let d1 = try engine.d1Client()
            #expect(try d1.send("GET", path).status == 403)
            let appTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app-two"))
            #expect(try appTwo.send("GET", path).status == 404)
            #expect(try appTwo.send("PUT", path + "/phone-3", body: #"{"authnType":"BIOMETRIC"}"#).status == 404)
            #expect(try appTwo.send("DELETE", path + "/tablet%201").status == 404)
            #expect(try HTTPClient(port: engine.apiPort).send("GET", path).status == 401)
            let database = try TestDatabase()
            defer { database.shutdown() }
            #expect(try database.count("select count(*) from authenticators where consumer_id = $1", [consumer]) == 2)
            #expect(try database.count("select count(*) from authenticators where consumer_id = $1 and active", [consumer]) == 1)
        }
        try await engine.stop()
    }
}
