import Crypto
import Foundation
import Testing

/// The token endpoint (RFC 6749 §4.4, §5.2) and bearer protection (RFC 6750) over the real binary.
@Suite struct OAuthTests {
    static let tokenPath = "/authz/d1/v1/oauth2/token"

    static func basic(_ id: String, _ secret: String, urlSafe: Bool = false, padded: Bool = true) -> String {
        var text = Data("\(id):\(secret)".utf8).base64EncodedString()
        if urlSafe { text = text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_") }
        if !padded { text = text.replacingOccurrences(of: "=", with: "") }
        return "Basic " + text
    }

    static let form = ("Content-Type", "application/x-www-form-urlencoded")

    @Test func issuesABearerJWTWithTheDocumentedFields() async throws {
        let engine = try await EngineProcess.start()
        let response = try HTTPClient(port: engine.apiPort).send(
            "POST", Self.tokenPath, body: "grant_type=client_credentials&scope=d1",
            headers: [("Authorization", Self.basic("d1", EngineProcess.clientSecrets["d1"]!)), Self.form])
        #expect(response.status == 200)
        #expect(response.header("Cache-Control") == "no-store")
        #expect(response.string("token_type") == "Bearer")
        #expect(response.string("expires_in") == "900")
        #expect(response.string("scope") == "d1")
        #expect(response.string("expires_at")?.hasSuffix("Z") == true)
        let token = try #require(response.string("access_token"))
        #expect(token.split(separator: ".").count == 3)
        // base64url, unpadded (RFC 7515 §2) and url-safe alphabet both accepted in Basic.
        let urlSafe = try HTTPClient(port: engine.apiPort).send(
            "POST", Self.tokenPath, body: "grant_type=client_credentials",
            headers: [("Authorization", Self.basic("d1", EngineProcess.clientSecrets["d1"]!, urlSafe: true, padded: false)), Self.form])
        #expect(urlSafe.status == 200)
        try await engine.stop()
    }

    @Test func tokenEndpointErrorMatrix() async throws {
        let engine = try await EngineProcess.start()
        let client = HTTPClient(port: engine.apiPort)
        let good = Self.basic("d1", EngineProcess.clientSecrets["d1"]!)
        let cases: [(String, String?, String, Int, String)] = [
            ("no Authorization", nil, "grant_type=client_credentials", 401, "invalid_client"),
            ("wrong secret", Self.basic("d1", "wrong-secret-000000"), "grant_type=client_credentials", 401, "invalid_client"),
            ("unknown client", Self.basic("nobody", "whatever-secret-0000"), "grant_type=client_credentials", 401, "invalid_client"),
            ("not Basic", "Bearer abc", "grant_type=client_credentials", 401, "invalid_client"),
            ("garbage base64", "Basic !!!!", "grant_type=client_credentials", 401, "invalid_client"),
            ("no grant_type", good, "scope=d1", 400, "invalid_request"),
            ("duplicate grant_type", good, "grant_type=client_credentials&grant_type=client_credentials", 400, "invalid_request"),
            ("bad grant_type", good, "grant_type=password", 400, "unsupported_grant_type"),
            ("scope not granted", good, "grant_type=client_credentials&scope=ops", 400, "invalid_scope"),
            ("unknown scope", good, "grant_type=client_credentials&scope=admin", 400, "invalid_scope"),
        ]
        for (name, authorization, body, status, error) in cases {
            var headers = [Self.form]
            if let authorization { headers.append(("Authorization", authorization)) }
            let response = try client.send("POST", Self.tokenPath, body: body, headers: headers)
            #expect(response.status == status, "\(name)")
            #expect(response.string("error") == error, "\(name): \(response.text)")
            if status == 401 { #expect(response.header("WWW-Authenticate")?.hasPrefix("Basic") == true, "\(name)") }
        }
        let wrongMediaType = try client.send("POST", Self.tokenPath, body: #"{"grant_type":"client_credentials"}"#,
                                             headers: [("Authorization", good), ("Content-Type", "application/json")])
        #expect(wrongMediaType.string("error") == "invalid_request")
        // No secret ever appears in the log.
        let logs = engine.logLines.joined(separator: "\n")
        #expect(!logs.contains(EngineProcess.clientSecrets["d1"]!))
        #expect(!logs.contains("wrong-secret-000000"))
        try await engine.stop()
    }

    @Test func tenFailuresLockTheClient() async throws {
        let engine = try await EngineProcess.start()
        let client = HTTPClient(port: engine.apiPort)
        for _ in 0..<10 {
            let failed = try client.send("POST", Self.tokenPath, body: "grant_type=client_credentials",
                                         headers: [("Authorization", Self.basic("ops", "wrong-secret-000000")), Self.form])
            #expect(failed.status == 401)
        }
        let locked = try client.send("POST", Self.tokenPath, body: "grant_type=client_credentials",
                                     headers: [("Authorization", Self.basic("ops", EngineProcess.clientSecrets["ops"]!)), Self.form])
        #expect(locked.status == 401, "the right secret is refused while locked")
        #expect(engine.logLines.contains { $0.contains("client locked") && $0.contains("client_id=ops") })
        // Other clients are unaffected.
        #expect(try engine.token(client: "d1").isEmpty == false)
        try await engine.stop()
    }

    @Test func withoutAValidTokenNothingIsReadOrChanged() async throws {
        let engine = try await EngineProcess.start()
        let id = TestEnvironment.uniqueID()
        let token = try engine.token()
        let parts = token.split(separator: ".").map(String.init)
        let tampered = parts[0] + "." + parts[1].dropLast(2) + "xx" + "." + parts[2]
        let appToken = try engine.token(client: "app")
        let unsigned = parts[0] + "." + parts[1] + "."
        let headerNone = Data(#"{"alg":"none","kid":"k1","typ":"JWT"}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        let algNone = headerNone + "." + parts[1] + "."
        // Correctly signed with the engine's own key, but outside their validity window; and
        // one signed with a key the engine does not have.
        let now = Int64(Date().timeIntervalSince1970)
        func signed(iat: Int64, nbf: Int64, exp: Int64, secret: [UInt8]) throws -> String {
            let keys = try JWTKeySet(keys: [JWTKey(kid: "k1", algorithm: .hs256, material: .hmac(secret))], signingKid: "k1")
            return try keys.sign(JWTClaims(iss: "oob-engine", sub: "d1", aud: "oob-engine", scope: ["d1"],
                                           issuers: ["ISSUER0001"], iat: iat, nbf: nbf, exp: exp, jti: "test-jti"))
        }
        let engineKey = try #require(Base64.decode(EngineProcess.hmacKeyBase64))
        let expired = try signed(iat: now - 1000, nbf: now - 1000, exp: now - 10, secret: engineKey)
        let notYetValid = try signed(iat: now, nbf: now + 600, exp: now + 900, secret: engineKey)
        let otherKey = try signed(iat: now, nbf: now, exp: now + 900, secret: Array(repeating: 7, count: 32))
        let stillValid = try signed(iat: now, nbf: now, exp: now + 900, secret: engineKey)
        // The control: the same construction with the right key and times is accepted.
        #expect(try HTTPClient(port: engine.apiPort, token: stillValid).send("GET", D1.authenticationPath() + "/unknown-id").status == 404)
        let refused: [(String, String?, Int)] = [
            ("expired", "Bearer " + expired, 401), ("not yet valid", "Bearer " + notYetValid, 401),
            ("signed with another key", "Bearer " + otherKey, 401),
            ("no token", nil, 401), ("garbage", "Bearer abc.def.ghi", 401), ("tampered payload", "Bearer " + tampered, 401),
            ("stripped signature", "Bearer " + unsigned, 401), ("alg none", "Bearer " + algNone, 401),
            ("wrong scheme", "Basic " + token, 401), ("app scope", "Bearer " + appToken, 403),
        ]
        let client = HTTPClient(port: engine.apiPort)
        for (name, authorization, status) in refused {
            let headers = authorization.map { [("Authorization", $0)] } ?? []
            let create = try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id), headers: headers)
            #expect(create.status == status, "create with \(name)")
            #expect(create.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "\(name)")
            if status == 401 && authorization != nil {
                #expect(create.header("WWW-Authenticate")?.contains("error=\"invalid_token\"") == true, "\(name)")
            }
            let poll = try client.send("GET", D1.authenticationPath() + "/" + id, headers: headers)
            #expect(poll.status == status, "poll with \(name)")
        }
        let database = try TestDatabase()
        defer { database.shutdown() }
        #expect(try database.count("select count(*) from authentications where authentication_id = $1", [id]) == 0)
        let logs = engine.logLines.joined(separator: "\n")
        #expect(!logs.contains(parts[2]), "no token signature in the logs")
        try await engine.stop()
    }

    @Test func aTokenForAnotherIssuerGetsWhatAnUnknownResourceGets() async throws {
        let engine = try await EngineProcess.start()
        let id = TestEnvironment.uniqueID()
        let both = try engine.d1Client()
        #expect(try both.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)).status == 200)
        let onlyTwo = HTTPClient(port: engine.apiPort, token: try engine.token(client: "d1-two"))
        let create = try onlyTwo.send("POST", D1.authenticationPath(), body: D1.authenticateBody(TestEnvironment.uniqueID()))
        let poll = try onlyTwo.send("GET", D1.authenticationPath() + "/" + id)
        let unknown = try both.send("GET", D1.authenticationPath() + "/" + TestEnvironment.uniqueID())
        #expect(create.status == 404)
        #expect(poll.status == 404)
        #expect(poll.text == unknown.text, "same body as an unknown resource")
        // Its own issuer works.
        #expect(try onlyTwo.send("POST", D1.authenticationPath(issuer: "ISSUER0002"), body: D1.authenticateBody(TestEnvironment.uniqueID())).status == 200)
        try await engine.stop()
    }
}
