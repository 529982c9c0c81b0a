import JSON
import TestSupport
import Testing

/// Get Consumer Information and the app backend's consumer PUT, against the real binary.
@Suite struct ConsumerInformationTests {
    @Test func storedInformationIsServedToD1AndNeverLogged() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            let consumer = TestEnvironment.uniqueID("c")
            let card = "card-" + consumer.suffix(12)

            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer)).status == 404)
            let body = D1Rest.consumerInfo.replacingOccurrences(of: #""language""#, with: #""cardIds":["\#(card)"],"unknownField":1,"language""#)
            #expect(try app.send("PUT", D1Rest.appConsumerPath(consumer: consumer), body: body).status == 204)

            let served = try d1.send("GET", D1Rest.consumerPath(consumer: consumer))
            #expect(served.status == 200)
            #expect(served.header("Content-Type") == "application/json")
            #expect(served.header("Cache-Control") == "no-store")
            // Only the contract's members, as given.
            #expect(served.json == (try JSONParser.parse(D1Rest.consumerInfo)))

            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer) + "?cardId=" + card).status == 200)
            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer) + "?cardId=card-of-someone-else").status == 404)
            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer) + "?cardId=bad%20card").status == 400)

            // An update replaces the information and the cards.
            let updated = #"{"firstName":"Zoé","lastName":"Martin"}"#
            #expect(try app.send("PUT", D1Rest.appConsumerPath(consumer: consumer), body: updated).status == 204)
            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer)).text == #"{"firstName":"Zoé","lastName":"Martin"}"#)
            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer) + "?cardId=" + card).status == 404)

            // Another issuer's token, an unknown issuer.
            let onlyTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "d1-two"))
            #expect(try onlyTwo.send("GET", D1Rest.consumerPath(consumer: consumer)).status == 404)
            #expect(try d1.send("GET", D1Rest.consumerPath(issuer: "ISSUER0002", consumer: consumer)).status == 404)
            let appTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app-two"))
            #expect(try appTwo.send("PUT", D1Rest.appConsumerPath(consumer: consumer), body: updated).status == 404)
            #expect(try d1.send("PUT", D1Rest.appConsumerPath(consumer: consumer), body: updated).status == 403)

        }
        try await engine.stop()
        for secret in ["Zoé", "zoe.darc", "612345678", "Orléans", "1990-02-28"] {
            #expect(!engine.logLines.contains { $0.contains(secret) }, "personal data in the log: \(secret)")
        }
    }

    @Test func informationThatBreaksTheContractsPatternsIsRefusedAndChangesNothing() async throws {
        let engine = try await EngineProcess.start()
        try await runOffPool {
            let d1 = try engine.d1Client()
            let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
            let consumer = TestEnvironment.uniqueID("c")
            let path = D1Rest.appConsumerPath(consumer: consumer)
            let original = #"{"firstName":"Ada","lastName":"Lovelace"}"#
            #expect(try app.send("PUT", path, body: original).status == 204)

            let cases: [(String, String)] = [
                ("", "empty body"),
                (#"{"lastName":"L"}"#, "firstName is required"),
                (#"{"firstName":"A"}"#, "lastName is required"),
                (#"{"firstName":"A<script>","lastName":"L"}"#, "firstName must match"),
                (#"{"firstName":"","lastName":"L"}"#, "firstName must match"),
                (#"{"firstName":"A","lastName":"\#(String(repeating: "x", count: 129))"}"#, "lastName must match"),
                (#"{"firstName":"A","lastName":"L","language":"FR-fr"}"#, "language must match"),
                (#"{"firstName":"A","lastName":"L","dateOfBirth":"1990-13-01"}"#, "dateOfBirth must match"),
                (#"{"firstName":"A","lastName":"L","title":"\#(String(repeating: "x", count: 41))"}"#, "title must match"),
                (#"{"firstName":"A","lastName":"L","email":"a@b"}"#, "email must match"),
                (#"{"firstName":"A","lastName":"L","email":"a..b@example.com"}"#, "email must match"),
                (#"{"firstName":"A","lastName":"L","mobilePhoneNumber":{"countryCode":"33","phoneNumber":"1"}}"#, "mobilePhoneNumber.countryCode must match"),
                (#"{"firstName":"A","lastName":"L","mobilePhoneNumber":{"countryCode":"+33"}}"#, "mobilePhoneNumber.phoneNumber is required"),
                (#"{"firstName":"A","lastName":"L","residencyAddress":{"line1":"x","zipCode":"1","countryCode":"fr"}}"#, "residencyAddress.countryCode must match"),
                (#"{"firstName":"A","lastName":"L","residencyAddress":{"zipCode":"1","countryCode":"FR"}}"#, "residencyAddress.line1 is required"),
                (#"{"firstName":"A","lastName":"L","residencyAddress":{"line1":"x","zipCode":"12345678901","countryCode":"FR"}}"#, "residencyAddress.zipCode must match"),
                (#"{"firstName":"A","lastName":"L","cardIds":["a b"]}"#, "cardIds must hold"),
                (#"{"firstName":1,"lastName":"L"}"#, "firstName must be a string"),
            ]
            for (body, message) in cases {
                let response = try app.send("PUT", path, body: body, headers: [("Content-Type", "application/json")])
                #expect(response.status == 400, "\(message)")
                #expect(response.string("error")?.contains(message) == true, "\(message): \(response.text)")
            }
            #expect(try d1.send("GET", D1Rest.consumerPath(consumer: consumer)).text == original)
            #expect(try app.send("PUT", path, body: original, headers: [("Content-Type", "text/plain")]).status == 415)
        }
        try await engine.stop()
    }
}
