import Foundation
import Testing

/// Bad input always gets a clear 4xx with a JSON {"error": ...} body; nothing stored changes.
@Suite struct BadInputTests {
    static let path = D1.authenticationPath()

    @Test(arguments: [
        ("not json", "{"),
        ("wrong top-level type", "[1,2]"),
        ("missing authenticationId", #"{"operation":"3DS_CHALLENGE_OOB_ISSUER"}"#),
        ("missing operation", #"{"authenticationId":"x1"}"#),
        ("unknown operation", #"{"authenticationId":"x1","operation":"PAY"}"#),
        ("wrong type", #"{"authenticationId":1,"operation":"3DS_CHALLENGE_OOB_ISSUER"}"#),
        ("bad authenticationId", #"{"authenticationId":"x 1","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#),
        ("bad panSuffix", #"{"authenticationId":"x1","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"panSuffix":"12345"}}"#),
        ("bad amount", #"{"authenticationId":"x1","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"1.5","currencyCode":"EUR"}}}"#),
        ("bad currency", #"{"authenticationId":"x1","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"15","currencyCode":"EU"}}}"#),
        ("bad cardId", #"{"authenticationId":"x1","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"cardId":"a/b"}}"#),
        ("duplicate key", #"{"authenticationId":"x1","authenticationId":"x2","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#),
        ("empty body", ""),
    ])
    func malformedBodiesAreRefused(name: String, body: String) async throws {
        let engine = try await EngineProcess.start()
        let response = try engine.d1Client().send("POST", Self.path, body: body)
        #expect(response.status == 400, "\(name)")
        #expect(response.header("Content-Type") == "application/json")
        #expect(response.string("error")?.isEmpty == false, "\(name): \(response.text)")
        try await engine.stop()
    }

    @Test func pathAndHeaderRules() async throws {
        let engine = try await EngineProcess.start()
        let client = try engine.d1Client()
        let body = D1.authenticateBody(TestEnvironment.uniqueID())

        let shortIssuer = try client.send("POST", D1.authenticationPath(issuer: "ISSUER01"), body: body)
        #expect(shortIssuer.status == 400)
        let badConsumer = try client.send("POST", D1.authenticationPath(consumer: "al%20ice"), body: body)
        #expect(badConsumer.status == 400)
        let badCorrelation = try client.send("POST", Self.path, body: body, headers: [("x-correlation-id", "has space")])
        #expect(badCorrelation.status == 400)
        #expect(badCorrelation.string("error")?.contains("x-correlation-id") == true)
        let wrongType = try client.send("POST", Self.path, body: body, headers: [("Content-Type", "text/plain")])
        #expect(wrongType.status == 415)

        let unknownPath = try client.send("GET", "/nowhere")
        #expect(unknownPath.status == 404)
        #expect(unknownPath.string("error") != nil)
        let wrongMethod = try client.send("DELETE", Self.path)
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("Allow") == "POST")
        #expect(wrongMethod.string("error") != nil)
        let badAuthenticationId = try client.send("GET", Self.path + "/bad.id")
        #expect(badAuthenticationId.status == 400)
        try await engine.stop()
    }

    /// 1,000 malformed requests of several kinds; none gets a 5xx and the server still answers
    /// correctly afterwards.
    @Test func thousandMalformedRequestsLeaveTheServerHealthy() async throws {
        let engine = try await EngineProcess.start()
        let auth = [("Authorization", "Bearer " + (try engine.token()))]
        var generator = SeededGenerator(seed: 0x00B0_E1E1)
        var fiveHundreds = 0
        var answered = 0
        for index in 0..<1000 {
            let connection = try RawHTTPConnection(port: engine.apiPort, receiveTimeoutSeconds: 15)
            let bytes: [UInt8]
            switch index % 5 {
            case 0: // bad JSON of random printable bytes
                let junk = String((0..<Int.random(in: 1...200, using: &generator)).map { _ in
                    Character(Unicode.Scalar(UInt8.random(in: 0x20...0x7E, using: &generator)))
                })
                bytes = HTTPClient.request("POST", Self.path, body: junk, headers: auth)
            case 1: // oversized headers
                bytes = Array("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 70_000))\r\n\r\n".utf8)
            case 2: // truncated body: announces more than it sends, then half-closes
                bytes = Array("POST \(Self.path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\(auth[0].0): \(auth[0].1)\r\nContent-Length: 100\r\n\r\n{\"authenticationId\"".utf8)
            case 3: // random bytes
                bytes = (0..<Int.random(in: 1...512, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) } + Array("\r\n\r\n".utf8)
            default: // valid JSON, wrong shape
                bytes = HTTPClient.request("POST", Self.path, body: #"{"authenticationId":{"deep":[1,2,3]},"operation":null}"#, headers: auth)
            }
            try? connection.send(bytes)
            if index % 5 == 2 { shutdown(connection.fd, Int32(SHUT_WR)) }
            if let response = try? connection.readResponse() {
                answered += 1
                if response.status >= 500 { fiveHundreds += 1 }
                #expect((400...499).contains(response.status), "request \(index) got \(response.status)")
            }
        }
        #expect(fiveHundreds == 0)
        #expect(answered >= 600, "most malformed requests get an answer (truncated ones may just be closed)")

        let id = TestEnvironment.uniqueID()
        let client = try engine.d1Client()
        #expect(try client.send("POST", Self.path, body: D1.authenticateBody(id)).string("authenticationStatus") == "PENDING")
        #expect(try client.send("GET", Self.path + "/" + id).string("authenticationStatus") == "PENDING")
        #expect(try await engine.stop() == 0)
    }
}

/// SplitMix64: reproducible randomness for fuzz-like tests.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
