import Engine
import Foundation
import HTTP
import Server
import Testing

@Suite struct SchemaTests {
    @Test func embeddedSchemaMatchesSchemaSQL() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let file = try String(contentsOf: root.appendingPathComponent("schema.sql"), encoding: .utf8)
        #expect(file.trimmingCharacters(in: .newlines) == Schema.sql.trimmingCharacters(in: .newlines),
                "schema.sql changed: run scripts/gen-schema")
    }
}

@Suite struct ConfigurationTests {
    func parse(_ text: String) throws -> ConfigFile {
        try ConfigFile.parse(Array(text.utf8), source: "test")
    }

    @Test func readsTheDocumentedShape() throws {
        let file = try parse("""
            {"issuers": [{"id": "ISSUER0001", "challengeTTLSeconds": 120}, {"id": "ISSUER0002"}],
             "authenticators": [{"issuerId": "ISSUER0001", "consumerId": "demo-consumer",
                                 "appInstanceId": "demo-app", "authnType": "BIOMETRIC"}],
             "futureFeature": {}}
            """)
        #expect(file.issuers["ISSUER0001"]?.challengeTTLSeconds == 120)
        #expect(file.issuers["ISSUER0002"]?.challengeTTLSeconds == 300)
        #expect(file.authenticators.count == 1)
        #expect(file.unknownKeys == ["futureFeature"])
    }

    @Test(arguments: [
        (#"{"issuers": []"#, "test"),
        (#"{}"#, "issuers"),
        (#"{"issuers": [{"id": "SHORT"}]}"#, "issuers[0].id"),
        (#"{"issuers": [{"id": "ISSUER0001", "challengeTTLSeconds": 0}]}"#, "challengeTTLSeconds"),
        (#"{"issuers": [{"id": "ISSUER0001", "challengeTTLSeconds": "300"}]}"#, "challengeTTLSeconds"),
        (#"{"issuers": [{"id": "ISSUER0001"}, {"id": "ISSUER0001"}]}"#, "issuers[1].id"),
        (#"{"issuers": [{"id": "ISSUER0001"}], "authenticators": [{"issuerId": "ISSUER0009", "consumerId": "c", "appInstanceId": "a", "authnType": "BIOMETRIC"}]}"#, "authenticators[0].issuerId"),
        (#"{"issuers": [{"id": "ISSUER0001"}], "authenticators": [{"issuerId": "ISSUER0001", "consumerId": "c", "appInstanceId": "a", "authnType": "FACE"}]}"#, "authenticators[0].authnType"),
    ])
    func errorsNameTheKey(text: String, key: String) {
        #expect {
            _ = try parse(text)
        } throws: { error in
            String(describing: error).contains(key)
        }
    }

    @Test func listenAddresses() throws {
        #expect(try ListenAddress(parsing: "127.0.0.1:8080", setting: "X") == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(try ListenAddress(parsing: "[::1]:0", setting: "X") == ListenAddress(host: "::1", port: 0))
        for bad in ["8080", "127.0.0.1:", ":80", "127.0.0.1:65536", "127.0.0.1:http", "[::1]8080"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { _ = try ListenAddress(parsing: bad, setting: "X") }
        }
    }

    @Test func environmentErrorsNameTheVariable() {
        #expect { _ = try EngineSettings.load(environment: [:]) } throws: { String(describing: $0).hasPrefix("DATABASE_URL") }
        #expect { _ = try EngineSettings.load(environment: ["DATABASE_URL": "postgresql://a@b/c"]) } throws: {
            String(describing: $0).hasPrefix("OOB_CONFIG")
        }
        #expect { _ = try EngineSettings.load(environment: ["DATABASE_URL": "postgresql://a@b/c", "OOB_LISTEN": "x"]) } throws: {
            String(describing: $0).hasPrefix("OOB_LISTEN")
        }
    }
}

@Suite struct RouterTests {
    let router = Router([
        Route("POST", "/a/{x}/b", name: "post-b") { _ in HTTPResponse(status: 200) },
        Route("GET", "/a/{x}/b/{y}", name: "get-b") { _ in HTTPResponse(status: 200) },
        Route("PUT", "/a/{x}/b/{y}", name: "put-b") { _ in HTTPResponse(status: 200) },
    ])

    @Test func matchesAndExtractsParameters() {
        guard case .found(let route, let parameters) = router.match(method: "GET", path: "/a/one/b/two%2Dthree") else {
            Issue.record("no match"); return
        }
        #expect(route.name == "get-b")
        #expect(parameters == ["one", "two-three"])
    }

    @Test func wrongMethodListsAllowed() {
        guard case .methodNotAllowed(let allowed) = router.match(method: "DELETE", path: "/a/1/b/2") else {
            Issue.record("expected 405"); return
        }
        #expect(allowed == ["GET", "PUT"])
    }

    @Test func unknownPathsAndBadEscapes() {
        if case .notFound = router.match(method: "GET", path: "/a/1/b/2/3") {} else { Issue.record("expected 404") }
        if case .notFound = router.match(method: "POST", path: "/a/1/b/") {} else { Issue.record("trailing slash is another path") }
        if case .badPath = router.match(method: "GET", path: "/a/%zz/b/1") {} else { Issue.record("expected bad path") }
        if case .badPath = router.match(method: "GET", path: "/a/%ff/b/1") {} else { Issue.record("invalid UTF-8 is a bad path") }
    }
}

@Suite struct LoggerTests {
    @Test func valuesWithSpacesQuotesOrNewlinesStayOnOneLine() {
        #expect(Logger.quoted("plain") == "plain")
        #expect(Logger.quoted("two words") == "\"two words\"")
        #expect(Logger.quoted("a\nb") == "\"a\\nb\"")
        #expect(Logger.quoted("say \"hi\"") == "\"say \\\"hi\\\"\"")
        #expect(Logger.quoted("") == "\"\"")
    }

    @Test func timestampsAreRFC3339() {
        #expect(LogClock.format(unixMilliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(LogClock.format(unixMilliseconds: 1_795_000_000_123) == "2026-11-18T11:06:40.123Z")
    }
}

@Suite struct OAuthParsingTests {
    @Test func formDecodingFollowsTheURLStandard() {
        let pairs = FormURLEncoded.parse(Array("grant_type=client_credentials&scope=d1+app&x=%41%2B".utf8))
        #expect(pairs?.map { $0.0 } == ["grant_type", "scope", "x"])
        #expect(pairs?.map { $0.1 } == ["client_credentials", "d1 app", "A+"])
        #expect(FormURLEncoded.parse(Array("a=%zz".utf8)) == nil)
        #expect(FormURLEncoded.parse([0xFF]) == nil)
    }

    @Test func basicCredentialsAreFormDecodedAfterBase64() {
        // RFC 6749 §2.3.1: "my client" / "p@ss:word" urlencoded, then base64.
        let standard = "Basic " + "bXkrY2xpZW50OnAlNDBzcyUzQXdvcmQ="
        let decoded = TokenAuthority.basicCredentials(standard)
        #expect(decoded?.0 == "my client")
        #expect(decoded?.1 == "p@ss:word")
        #expect(TokenAuthority.basicCredentials("Basic " + "bXkrY2xpZW50OnAlNDBzcyUzQXdvcmQ")?.0 == "my client", "unpadded")
        #expect(TokenAuthority.basicCredentials("Bearer xyz") == nil)
        #expect(TokenAuthority.basicCredentials("Basic bm9jb2xvbg==") == nil, "no colon")
        #expect(TokenAuthority.basicCredentials(nil) == nil)
    }

    @Test func isoTimestamps() {
        #expect(ISO8601.format(unixSeconds: 0) == "1970-01-01T00:00:00Z")
    }
}

@Suite struct RecoveryRowTests {
    func parse(_ text: String) -> (id: UInt64, deadlineUnixMilliseconds: Int64)? {
        Array(text.utf8).withUnsafeBytes { DeadlineRecovery.parseRow($0) }
    }

    @Test func parsesCopyTextRows() {
        #expect(parse("123\t1733000000000\n")! == (123, 1_733_000_000_000))
        #expect(parse("1\t-5\n")! == (1, -5))
        #expect(parse("9\t42")! == (9, 42))
    }

    @Test(arguments: ["", "\n", "12\n", "x\t1\n", "1\t\n", "1\tx\n", "1 2\n", "1\t2\t3\n", "1\t2\n\n",
                      "123456789012345678901\t1\n", "1\t1234567890123456789\n"])
    func refusesAnythingElse(_ row: String) {
        #expect(parse(row) == nil)
    }
}
