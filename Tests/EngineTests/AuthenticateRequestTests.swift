import Engine
import Testing

@Suite struct AuthenticateRequestTests {
    static func body(_ text: String) -> [UInt8] { Array(text.utf8) }

    static let valid = """
        {"authenticationId":"3f1c0e6e-7a1b-4c1d-9d8e-000000000001","operation":"3DS_CHALLENGE_OOB_ISSUER",
         "details":{"cardId":"card_1","panSuffix":"1234","acsTransactionId":"3f1c0e6e-7a1b-4c1d-9d8e-000000000001",
                    "purchase":{"merchantName":"Books & Co","amount":"78999","currencyCode":"EUR"}}}
        """

    @Test func decodesEveryField() throws {
        let request = try AuthenticateRequest.decode(Self.body(Self.valid))
        #expect(request.authenticationId == "3f1c0e6e-7a1b-4c1d-9d8e-000000000001")
        #expect(request.cardId == "card_1")
        #expect(request.panSuffix == "1234")
        #expect(request.merchantName == "Books & Co")
        #expect(request.amount == "78999")
        #expect(request.currencyCode == "EUR")
    }

    @Test func minimalBodyIsEnough() throws {
        let request = try AuthenticateRequest.decode(Self.body(#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#))
        #expect(request == AuthenticateRequest(authenticationId: "a"))
    }

    @Test func unknownMembersAreIgnored() throws {
        _ = try AuthenticateRequest.decode(Self.body(#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","future":{"x":1}}"#))
    }

    @Test(arguments: [
        ("", "empty body"),
        ("{", "truncated"),
        ("[]", "must be a JSON object"),
        (#"{"operation":"3DS_CHALLENGE_OOB_ISSUER"}"#, "authenticationId is required"),
        (#"{"authenticationId":"a"}"#, "operation is required"),
        (#"{"authenticationId":"a","operation":"OTHER"}"#, "operation must be"),
        (#"{"authenticationId":5,"operation":"3DS_CHALLENGE_OOB_ISSUER"}"#, "must be a string"),
        (#"{"authenticationId":"","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#, "authenticationId must match"),
        (#"{"authenticationId":"a b","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#, "authenticationId must match"),
        (#"{"authenticationId":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#, "authenticationId must match"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":[]}"#, "details must be a JSON object"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"cardId":"x/y"}}"#, "details.cardId"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"panSuffix":"123"}}"#, "panSuffix"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"panSuffix":"12a4"}}"#, "panSuffix"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"panSuffix":1234}}"#, "panSuffix must be a string"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"12.50","currencyCode":"EUR"}}}"#, "amount"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"-1","currencyCode":"EUR"}}}"#, "amount"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"100","currencyCode":"EURO"}}}"#, "currencyCode"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"100","currencyCode":"E1R"}}}"#, "currencyCode"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"amount":"100"}}}"#, "go together"),
        (#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"purchase":{"merchantName":"a\u0000b"}}}"#, "merchantName"),
        (#"{"authenticationId":"a","authenticationId":"b","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#, "duplicate"),
    ])
    func refusesWithAMessageThatNamesTheProblem(body: String, expected: String) {
        #expect {
            _ = try AuthenticateRequest.decode(Self.body(body))
        } throws: { error in
            guard let error = error as? ValidationError else { return false }
            return error.message.contains(expected) && !error.message.isEmpty
        }
    }

    @Test func messagesNeverEchoTheValue() {
        let secretLooking = "4111111111111111"
        do {
            _ = try AuthenticateRequest.decode(Self.body(#"{"authenticationId":"a","operation":"3DS_CHALLENGE_OOB_ISSUER","details":{"panSuffix":"\#(secretLooking)"}}"#))
            Issue.record("should have failed")
        } catch {
            #expect(!error.message.contains(secretLooking))
        }
    }
}

@Suite struct IdentifierTests {
    @Test func issuerIdIsExactlyTenCharacters() {
        #expect(Identifier.isValidIssuerID("ISSUER0001"))
        #expect(!Identifier.isValidIssuerID("ISSUER001"))
        #expect(!Identifier.isValidIssuerID("ISSUER00001"))
        #expect(!Identifier.isValidIssuerID("ISSUER 001"))
        #expect(!Identifier.isValidIssuerID("ISSUÉR0001"))
    }

    @Test func tokenPatterns() {
        #expect(Identifier.isValidToken64("abc_DEF-123"))
        #expect(Identifier.isValidToken64(String(repeating: "a", count: 64)))
        #expect(!Identifier.isValidToken64(String(repeating: "a", count: 65)))
        #expect(!Identifier.isValidToken64(""))
        #expect(!Identifier.isValidToken64("a.b"))
        #expect(Identifier.isValidCardID(String(repeating: "c", count: 48)))
        #expect(!Identifier.isValidCardID(String(repeating: "c", count: 49)))
    }
}
