import Foundation
import Testing

/// The D1 authenticate → poll flow against the real binary and the real PostgreSQL.
@Suite struct D1FlowTests {
    @Test func createThenPollThenRetry() async throws {
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let id = TestEnvironment.uniqueID()

        let created = try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id),
                                      headers: [("x-correlation-id", "corr-\(id.suffix(8))")])
        #expect(created.status == 200)
        #expect(created.header("Content-Type") == "application/json")
        #expect(created.text == #"{"authenticationStatus":"PENDING"}"#)

        let polled = try client.send("GET", D1.authenticationPath() + "/" + id)
        #expect(polled.status == 200)
        #expect(polled.string("authenticationStatus") == "PENDING")
        #expect(polled.string("reason") == nil)

        // The same call again: idempotent, same answer, nothing new written.
        let retried = try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
        #expect(retried.status == 200)
        #expect(retried.string("authenticationStatus") == "PENDING")

        let database = try TestDatabase()
        defer { database.shutdown() }
        #expect(try database.count("select count(*) from authentications where authentication_id = $1", [id]) == 1)
        #expect(try database.count("""
            select count(*) from transitions t join authentications a on a.id = t.authentication_id
            where a.authentication_id = $1 and t.from_state is null and t.to_state = 'PENDING' and t.cause = 'create'
            """, [id]) == 1)
        let row = try database.rows("""
            select consumer_id, card_id, pan_suffix, merchant_name, amount, currency_code, state, version,
                   deadline > now() + interval '290 seconds' as ttl_ok
            from authentications where authentication_id = $1
            """, [id])
        #expect(row.string(0, "consumer_id") == "alice")
        #expect(row.string(0, "pan_suffix") == "1234")
        #expect(row.string(0, "amount") == "78999")
        #expect(row.string(0, "merchant_name") == "Books & Co")
        #expect(row.bool(0, "ttl_ok") == true)
        // The correlation id is carried on the request's log line.
        try await eventually("the access log line with the correlation id") {
            engine.logLines.contains { $0.contains("correlation_id=corr-\(id.suffix(8))") && $0.contains("route=d1.authenticate") }
        }
        #expect(try await engine.stop() == 0)
    }

    @Test func sameIdWithOtherDetailsOrConsumerIsForbiddenAndChangesNothing() async throws {
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        #expect(try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)

        let otherAmount = try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id, amount: "1"))
        #expect(otherAmount.status == 403)
        #expect(otherAmount.string("error") != nil)
        let otherConsumer = try client.send("POST", D1.authenticationPath(consumer: "bob"), body: D1.authenticateBody(id))
        #expect(otherConsumer.status == 403)

        let database = try TestDatabase()
        defer { database.shutdown() }
        let row = try database.rows("select amount, consumer_id, version from authentications where authentication_id = $1", [id])
        #expect(row.string(0, "amount") == "78999")
        #expect(row.string(0, "consumer_id") == "alice")
        #expect(row.int(0, "version") == 1)
        #expect(try database.count("select count(*) from transitions t join authentications a on a.id = t.authentication_id where a.authentication_id = $1", [id]) == 1)
        try await engine.stop()
    }

    @Test func noAuthenticatorIsRecordedAndPollsAsTechnicalError() async throws {
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        let consumer = "nobody-" + id.suffix(12)
        let created = try client.send("POST", D1.authenticationPath(consumer: consumer), body: D1.authenticateBody(id))
        #expect(created.status == 200)
        #expect(created.string("authenticationStatus") == "NO_AUTHENTICATOR")

        let polled = try client.send("GET", D1.authenticationPath(consumer: consumer) + "/" + id)
        #expect(polled.status == 200)
        #expect(polled.string("authenticationStatus") == "TECHNICAL_ERROR")
        #expect(polled.string("reason") == "no authenticator enrolled")

        let again = try client.send("POST", D1.authenticationPath(consumer: consumer), body: D1.authenticateBody(id))
        #expect(again.string("authenticationStatus") == "NO_AUTHENTICATOR")
        try await engine.stop()
    }

    @Test func pollOfUnknownOrForeignIdsIsNotFound() async throws {
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        #expect(try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)

        for path in [
            D1.authenticationPath() + "/" + TestEnvironment.uniqueID(),           // unknown id
            D1.authenticationPath(consumer: "mallory") + "/" + id,               // another consumer
            D1.authenticationPath(issuer: "ISSUER0002") + "/" + id,              // another issuer
            D1.authenticationPath(issuer: "ISSUER9999") + "/" + id,              // unknown issuer
        ] {
            let response = try client.send("GET", path)
            #expect(response.status == 404, "\(path)")
            #expect(response.string("error") != nil)
            #expect(response.header("Content-Type") == "application/json")
        }
        try await engine.stop()
    }

    @Test func pollEndsAnExpiredAuthenticationBeforeAnswering() async throws {
        // ISSUER0002 has a 2 s challenge TTL in the test configuration.
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        let path = D1.authenticationPath(issuer: "ISSUER0002")
        #expect(try client.send("POST", path, body: D1.authenticateBody(id)).string("authenticationStatus") == "PENDING")

        let database = try TestDatabase()
        defer { database.shutdown() }
        var final: RawHTTPConnection.Response?
        try await eventually(timeout: .seconds(15), interval: .milliseconds(100), "the poll to answer a final state") {
            let polled = try client.send("GET", path + "/" + id)
            #expect(polled.status == 200)
            if polled.string("authenticationStatus") == "PENDING" {
                // Never PENDING once the deadline (by the database's clock) has passed.
                let past = try database.rows("select deadline < now() - interval '50 milliseconds' as past from authentications where authentication_id = $1", [id]).bool(0, "past")
                #expect(past == false, "answered PENDING after the deadline")
                return false
            }
            final = polled
            return true
        }
        #expect(final?.string("authenticationStatus") == "AUTHENTICATION_FAILED")
        #expect(final?.string("reason") == "expired")
        #expect(try database.count("""
            select count(*) from transitions t join authentications a on a.id = t.authentication_id
            where a.authentication_id = $1 and t.to_state = 'AUTHENTICATION_FAILED' and t.from_state = 'PENDING'
            """, [id]) == 1)
        try await engine.stop()
    }

    @Test func thirtyTwoConcurrentCreatesLeaveOneRowAndOneCreation() async throws {
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let id = TestEnvironment.uniqueID()
        let body = D1.authenticateBody(id)
        let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for _ in 0..<32 {
                group.addTask {
                    let response = try await client.asyncSend("POST", D1.authenticationPath(), body: body)
                    return (response.status, response.string("authenticationStatus"))
                }
            }
            var all: [(Int, String?)] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(statuses.count == 32)
        #expect(statuses.allSatisfy { $0.0 == 200 && $0.1 == "PENDING" })
        let database = try TestDatabase()
        defer { database.shutdown() }
        #expect(try database.count("select count(*) from authentications where authentication_id = $1", [id]) == 1)
        #expect(try database.count("""
            select count(*) from transitions t join authentications a on a.id = t.authentication_id where a.authentication_id = $1
            """, [id]) == 1)
        try await engine.stop()
    }
}
