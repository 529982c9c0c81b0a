import Engine
import Testing

@Suite struct AuthenticationServiceTests {
    let store = InMemoryAuthenticationStore()
    var service: AuthenticationService { AuthenticationService(store: store) }

    func new(_ id: String, consumer: String = "alice", amount: String? = "100") -> NewAuthentication {
        NewAuthentication(issuerId: "ISSUER0001", consumerId: consumer,
                          request: AuthenticateRequest(authenticationId: id, amount: amount, currencyCode: amount == nil ? nil : "EUR"),
                          challengeTTLSeconds: 300, actor: "d1")
    }

    @Test func createsPendingWhenEnrolled() async throws {
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        guard case .status(let status, _, let created) = try await service.authenticate(new("a1")) else {
            Issue.record("expected a status"); return
        }
        #expect(status == "PENDING")
        #expect(created)
        #expect(store.transitions.map(\.cause) == [.create])
    }

    @Test func noAuthenticatorIsRecordedAndPollsAsTechnicalError() async throws {
        guard case .status(let status, _, _) = try await service.authenticate(new("a2", consumer: "bob")) else {
            Issue.record("expected a status"); return
        }
        #expect(status == "NO_AUTHENTICATOR")
        let poll = try await service.poll(issuerId: "ISSUER0001", consumerId: "bob", authenticationId: "a2")
        guard case .status(let current, _) = poll else { Issue.record("expected a status"); return }
        #expect(current == AuthenticationStatus(state: .technicalError, reason: AuthenticationReason.noAuthenticator))
        // A retry answers NO_AUTHENTICATOR again.
        guard case .status(let again, _, let created) = try await service.authenticate(new("a2", consumer: "bob")) else {
            Issue.record("expected a status"); return
        }
        #expect(again == "NO_AUTHENTICATOR")
        #expect(!created)
    }

    @Test func retryWithSameDetailsAnswersCurrentStatus() async throws {
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        _ = try await service.authenticate(new("a3"))
        _ = try await store.transition(TransitionRequest(issuerId: "ISSUER0001", authenticationId: "a3",
                                                          to: AuthenticationStatus(state: .authenticated),
                                                          cause: .decision, actor: "app"))
        guard case .status(let status, _, let created) = try await service.authenticate(new("a3")) else {
            Issue.record("expected a status"); return
        }
        #expect(status == "AUTHENTICATED")
        #expect(!created)
    }

    @Test func sameIdWithOtherConsumerOrDetailsIsAConflictAndChangesNothing() async throws {
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        store.enrol(issuerId: "ISSUER0001", consumerId: "carol")
        _ = try await service.authenticate(new("a4"))
        #expect(try await service.authenticate(new("a4", consumer: "carol")) == .conflict)
        #expect(try await service.authenticate(new("a4", amount: "999")) == .conflict)
        #expect(store.transitions.count == 1)
    }

    @Test func pollOfAnotherConsumersIdIsNotFound() async throws {
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        _ = try await service.authenticate(new("a5"))
        #expect(try await service.poll(issuerId: "ISSUER0001", consumerId: "mallory", authenticationId: "a5") == .notFound)
        #expect(try await service.poll(issuerId: "ISSUER0001", consumerId: "alice", authenticationId: "nope") == .notFound)
    }

    @Test func pollNeverAnswersPendingPastTheDeadline() async throws {
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        _ = try await service.authenticate(new("a6"))
        store.advanceClock(milliseconds: 299_999)
        guard case .status(let before, _) = try await service.poll(issuerId: "ISSUER0001", consumerId: "alice", authenticationId: "a6") else {
            Issue.record("expected a status"); return
        }
        #expect(before == .pending)
        store.advanceClock(milliseconds: 1)
        guard case .status(let after, _) = try await service.poll(issuerId: "ISSUER0001", consumerId: "alice", authenticationId: "a6") else {
            Issue.record("expected a status"); return
        }
        #expect(after == AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.expired))
        #expect(store.transitions.map(\.cause) == [.create, .poll])
    }
}

@Suite struct DecisionTests {
    let store = InMemoryAuthenticationStore()
    var service: AuthenticationService { AuthenticationService(store: store) }

    func create(_ id: String) async throws {
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        _ = try await service.authenticate(NewAuthentication(
            issuerId: "ISSUER0001", consumerId: "alice", request: AuthenticateRequest(authenticationId: id),
            challengeTTLSeconds: 300, actor: "d1"))
    }

    func decide(_ id: String, _ decision: CardholderDecision, app: String = "phone") async throws -> DecisionAnswer {
        try await service.decide(DecisionRequest(issuerId: "ISSUER0001", authenticationId: id, decision: decision,
                                                 appInstanceId: app, actor: "app"))
    }

    @Test func approveThenRepeatThenConflict() async throws {
        try await create("d1")
        #expect(try await decide("d1", .approve) == .applied(AuthenticationStatus(state: .authenticated)))
        #expect(try await decide("d1", .approve) == .repeated(AuthenticationStatus(state: .authenticated)))
        #expect(try await decide("d1", .decline) == .conflict(AuthenticationStatus(state: .authenticated)))
        let log = store.transitions
        #expect(log.map(\.cause) == [.create, .decision, .decision])
        #expect(log.map(\.refused) == [false, false, true])
        #expect(log[1].actor == "app/phone")
    }

    @Test func declineEndsAsFailedWithItsReason() async throws {
        try await create("d2")
        #expect(try await decide("d2", .decline)
                == .applied(AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.declined)))
        #expect(try await decide("d2", .approve)
                == .conflict(AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.declined)))
    }

    @Test func aDecisionAfterTheDeadlineEndsItAsExpiredAndIsRefused() async throws {
        try await create("d3")
        store.advanceClock(milliseconds: 301_000)
        #expect(try await decide("d3", .approve)
                == .conflict(AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.expired)))
        #expect(store.transitions.map(\.cause) == [.create, .poll, .decision])
        #expect(store.transitions.last?.refused == true)
    }

    @Test func unknownIdsAndStrangersChangeNothing() async throws {
        #expect(try await decide("missing", .approve) == .notFound)
        try await create("d4")
        let stranger = try await service.decide(DecisionRequest(issuerId: "ISSUER0001", authenticationId: "d4",
                                                               decision: .approve, appInstanceId: "x", actor: "app"))
        #expect(stranger == .applied(AuthenticationStatus(state: .authenticated)), "the in-memory twin enrols consumers, not instances")
    }

    @Test(arguments: [
        ("", "empty body"), ("{", "truncated"), (#"{"decision":"YES","appInstanceId":"a"}"#, "decision must be APPROVE or DECLINE"),
        (#"{"decision":"APPROVE"}"#, "appInstanceId is required"), (#"{"decision":1,"appInstanceId":"a"}"#, "decision must be a string"),
        (#"{"decision":"APPROVE","appInstanceId":""}"#, "appInstanceId must be 1 to 128"),
    ])
    func bodyErrorsNameTheField(body: String, expected: String) {
        #expect {
            _ = try DecisionRequest.decodeBody(Array(body.utf8))
        } throws: { error in
            (error as? ValidationError)?.message.contains(expected) == true
        }
    }
}
