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
