import Engine
import Testing

/// Every state × every event (STYLE.md: state machines tested as a full table).
@Suite struct StateMachineTests {
    static let declined = AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.declined)
    static let expired = AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.expired)
    static let endedByD1 = AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.endedByD1)
    static let pushFailed = AuthenticationStatus(state: .technicalError, reason: AuthenticationReason.pushDeliveryFailed)
    static let noAuthenticator = AuthenticationStatus(state: .technicalError, reason: AuthenticationReason.noAuthenticator)
    static let authenticated = AuthenticationStatus(state: .authenticated)

    static let allStatuses: [AuthenticationStatus] = [.pending, authenticated, declined, expired, endedByD1, pushFailed, noAuthenticator]

    /// The expected outcome for each (status, event), written out by hand.
    static func expected(_ status: AuthenticationStatus, _ event: AuthenticationEvent) -> TransitionOutcome {
        if status == .pending {
            switch event {
            case .approve: return .transition(to: authenticated)
            case .decline: return .transition(to: declined)
            case .deadlinePassed, .operatorExpire: return .transition(to: expired)
            case .pushFailed: return .transition(to: pushFailed)
            case .endedByD1: return .transition(to: endedByD1)
            }
        }
        switch (status, event) {
        case (authenticated, .approve), (declined, .decline), (expired, .deadlinePassed), (expired, .operatorExpire),
             (pushFailed, .pushFailed), (endedByD1, .endedByD1):
            return .repeated(status)
        default:
            return .refused(current: status)
        }
    }

    @Test(arguments: allStatuses, AuthenticationEvent.allCases)
    func everyStateTimesEveryEvent(status: AuthenticationStatus, event: AuthenticationEvent) {
        var machine = AuthenticationStateMachine(status: status)
        let outcome = machine.handle(event)
        #expect(outcome == Self.expected(status, event))
        if status.state.isTerminal {
            #expect(machine.status == status, "a terminal state absorbs every event")
        }
    }

    @Test func onlyApprovalAuthenticates() {
        for event in AuthenticationEvent.allCases where event != .approve {
            var machine = AuthenticationStateMachine()
            if case .transition(let to) = machine.handle(event) {
                #expect(to.state != .authenticated, "\(event) must never authenticate")
            } else {
                Issue.record("PENDING must end on \(event)")
            }
        }
    }

    @Test func reasonsFitTheContract() {
        for event in AuthenticationEvent.allCases {
            if let reason = AuthenticationStateMachine.target(of: event)?.reason {
                #expect((1...64).contains(reason.count))
            }
        }
        #expect(AuthenticationReason.noAuthenticator.count <= 64)
    }

    @Test func firstEventWinsThenEverythingElseIsRefused() {
        var machine = AuthenticationStateMachine()
        #expect(machine.handle(.decline) == .transition(to: Self.declined))
        #expect(machine.handle(.approve) == .refused(current: Self.declined))
        #expect(machine.handle(.deadlinePassed) == .refused(current: Self.declined))
        #expect(machine.handle(.decline) == .repeated(Self.declined))
        #expect(machine.status == Self.declined)
    }
}
