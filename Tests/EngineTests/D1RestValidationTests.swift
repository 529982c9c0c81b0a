import Engine
import JSON
import Testing

/// Issue 6's request types: the contract's rules, one hazard per test.
@Suite struct D1RestValidationTests {
    static func body(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func enrolmentNotificationDecodes() throws {
        let notification = try ConsumerOperationNotification.decode(Self.body("""
            {"operationId":"op-1","operation":"ENROLL_AUTHN","status":"SUCCESSFUL","startTime":"2026-12-01T10:00:00Z",
             "requestorType":"USER","requestorId":"alice","details":{"appInstanceId":"phone","authnType":"PLATFORM"},"future":1}
            """), consumerId: "alice")
        #expect(notification.isSuccessful)
        #expect(notification.appInstanceId == "phone")
        #expect(notification.authnType == "PLATFORM")
    }

    @Test func failedEnrolmentNeedsNoDetails() throws {
        let notification = try ConsumerOperationNotification.decode(Self.body("""
            {"operationId":"op-1","operation":"ENROLL_AUTHN","status":"FAILED","startTime":"t","requestorType":"USER",
             "requestorId":"alice","error":"user cancelled"}
            """), consumerId: "alice")
        #expect(!notification.isSuccessful)
        #expect(notification.error == "user cancelled")
    }

    @Test func requestorMustBeThePathsConsumer() {
        #expect(throws: ValidationError("requestorId must be the consumerId of the path")) {
            try ConsumerOperationNotification.decode(Self.body("""
                {"operationId":"op-1","operation":"ENROLL_AUTHN","status":"FAILED","startTime":"t","requestorType":"USER","requestorId":"bob"}
                """), consumerId: "alice")
        }
    }

    @Test func controlCharactersInFreeTextAreRefused() {
        #expect(throws: ValidationError("startTime must be 1 to 64 printable characters")) {
            try ConsumerOperationNotification.decode(Self.body(#"""
                {"operationId":"op-1","operation":"ENROLL_AUTHN","status":"FAILED","startTime":"a\u0000b","requestorType":"USER","requestorId":"a"}
                """#), consumerId: "a")
        }
    }

    @Test func cardNotificationKeepsWhatTheEngineActsOn() throws {
        let notification = try CardOperationNotification.decode(Self.body("""
            {"operationId":"op-2","operation":"3DS_CHALLENGE_OOB_ISSUER","status":"FAILED","startTime":"t",
             "details":{"acsTransactionId":"acs-1","transStatus":"N","transStatusReason":"14","eci":"07"}}
            """))
        #expect(notification.acsTransactionId == "acs-1")
        #expect(notification.transStatus == "N")
        #expect(notification.transStatusReason == "14")
        #expect(notification.eci == "07")
        #expect(!notification.isSuccessful)
    }

    @Test(arguments: [
        (true, AuthenticationState.authenticated, D1Agreement.agreed),
        (true, .authenticationFailed, .disagreed),
        (true, .technicalError, .disagreed),
        (true, .pending, .pending),
        (false, .authenticated, .disagreed),
        (false, .authenticationFailed, .agreed),
        (false, .technicalError, .agreed),
        (false, .pending, .pending),
    ])
    func agreementTable(d1Successful: Bool, engine: AuthenticationState, expected: D1Agreement) {
        #expect(D1Agreement.compare(d1Successful: d1Successful, engine: engine) == expected)
    }

    @Test func endByD1FailsAPendingAuthenticationAndNeverAuthenticates() async throws {
        let store = InMemoryAuthenticationStore()
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        let service = AuthenticationService(store: store)
        let new = NewAuthentication(issuerId: "ISSUER0001", consumerId: "alice", request: AuthenticateRequest(authenticationId: "a1"),
                                    challengeTTLSeconds: 300, actor: "d1")
        guard case .status(_, let record, _) = try await service.authenticate(new) else { Issue.record("no record"); return }
        let (ended, didEnd) = try await service.endByD1(record, actor: "d1")
        #expect(didEnd)
        #expect(ended.status == AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.endedByD1))
        #expect(store.transitions.last?.cause == .d1Notification)
        // Already final: nothing more happens.
        let (again, endedAgain) = try await service.endByD1(ended, actor: "d1")
        #expect(!endedAgain)
        #expect(again.status == ended.status)
        #expect(store.transitions.count == 2)
    }

    @Test func consumerInfoKeepsOnlyTheContractsMembers() throws {
        let info = try ConsumerInfo.decode(Self.body("""
            {"lastName":"Lovelace","firstName":"Ada","nickname":"x","cardIds":["c1","c1","c2"],
             "mobilePhoneNumber":{"phoneNumber":"612","countryCode":"+44","extension":"9"}}
            """))
        #expect(String(decoding: JSONValue.object(info.json).serialized(), as: UTF8.self)
                == #"{"firstName":"Ada","lastName":"Lovelace","mobilePhoneNumber":{"countryCode":"+44","phoneNumber":"612"}}"#)
        #expect(info.cardIds == ["c1", "c2"])
    }

    @Test(arguments: ["Zoé", "O'Brien-Smith", "محمد", "李小龙", "Jean Paul 2", "a/b;c:d#e,f.g_h"])
    func namesTheContractAllows(_ name: String) {
        #expect(ConsumerPatterns.isName(name, maxLength: 128))
    }

    @Test(arguments: ["", "a<b", "a\"b", "a\nb", "emoji 😀", "a@b", "a+b"])
    func namesTheContractRefuses(_ name: String) {
        #expect(!ConsumerPatterns.isName(name, maxLength: 128))
    }

    @Test func nameLengthCountsCharactersNotBytes() {
        #expect(ConsumerPatterns.isName(String(repeating: "é", count: 40), maxLength: 40))
        #expect(!ConsumerPatterns.isName(String(repeating: "é", count: 41), maxLength: 40))
    }

    @Test(arguments: [("a@b.co", true), ("first.last+tag@mail.example.com", true), ("a&b*c@x-y.org", true),
                      ("a@b", false), (".a@b.co", false), ("a.@b.co", false), ("a@.b.co", false), ("a@b.c", false),
                      ("a@b.co1", false), ("a@@b.co", false), ("a b@c.co", false), ("a@b.abcdefghijklmnop", false)])
    func emails(_ email: String, _ valid: Bool) {
        #expect(ConsumerPatterns.isEmail(email) == valid)
    }

    @Test func otherPatterns() {
        #expect(ConsumerPatterns.isLanguage("fr-FR") && ConsumerPatterns.isLanguage("en-us"))
        #expect(!ConsumerPatterns.isLanguage("FR-fr") && !ConsumerPatterns.isLanguage("fr_FR") && !ConsumerPatterns.isLanguage("fr-FRA"))
        #expect(ConsumerPatterns.isDateOfBirth("1990-12-31") && !ConsumerPatterns.isDateOfBirth("1990-00-10"))
        #expect(!ConsumerPatterns.isDateOfBirth("1990-01-32") && !ConsumerPatterns.isDateOfBirth("90-01-01"))
        #expect(ConsumerPatterns.isZipCode("SW1A 1AA") && !ConsumerPatterns.isZipCode("12345-6789"))
        #expect(ConsumerPatterns.isCountryCode("FR") && !ConsumerPatterns.isCountryCode("fr"))
    }

    @Test func otpPayloadCarriesWhatMustBeDeliveredAndErrorsNeverQuoteTheValue() throws {
        let request = try DeliverOTPRequest.decode(Self.body("""
            {"otp":{"value":"123456","reason":"CARD-DIGITIZATION"},"deliveryChannel":"EMAIL","panSuffix":"9876",
             "digitalCardRequestor":{"id":"40010030273","walletId":""}}
            """))
        let payload = try JSONParser.parse(request.payload(issuerId: "ISSUER0001", consumerId: "alice"))
        #expect(payload.objectValue?["otp"]?.objectValue?["value"]?.stringValue == "123456")
        #expect(payload.objectValue?["digitalCardRequestor"]?.objectValue?["walletId"]?.stringValue == "")
        #expect(payload.objectValue?["consumerId"]?.stringValue == "alice")
        do {
            _ = try DeliverOTPRequest.decode(Self.body(#"{"otp":{"value":"1234567890123456","reason":"x"}}"#))
            Issue.record("accepted a 16-character OTP")
        } catch {
            #expect(!error.message.contains("1234567890123456"))
        }
    }
}
