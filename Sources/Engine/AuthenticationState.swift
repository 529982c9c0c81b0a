/// The life of one out-of-band authentication, as a pure value: no I/O, no clock, no logging.
///
/// PENDING → AUTHENTICATED | AUTHENTICATION_FAILED | TECHNICAL_ERROR. Terminal states absorb
/// every event (PSD2 RTS art. 4(1): a decision is applied at most once; a final state never
/// changes). Only the cardholder's approval can authenticate.
package enum AuthenticationState: String, Sendable, CaseIterable, Hashable {
    case pending = "PENDING"
    case authenticated = "AUTHENTICATED"
    case authenticationFailed = "AUTHENTICATION_FAILED"
    case technicalError = "TECHNICAL_ERROR"

    package var isTerminal: Bool { self != .pending }
}

/// Why a transition happened; stored in the transitions log's `cause` column.
package enum TransitionCause: String, Sendable, CaseIterable, Hashable {
    /// The row was created by Authenticate.
    case create
    /// Created already final because the consumer has no active authenticator.
    case noAuthenticator = "no-authenticator"
    /// The cardholder's decision, from the app backend (or the simulated push adapter).
    case decision
    /// The deadline passed and this instance's timer wheel fired.
    case timer
    /// The deadline had passed when D1 polled; the read ended it before answering.
    case poll
    /// The periodic sweeper ended what a dead instance left behind.
    case sweeper
    /// An operator forced a time-out.
    case `operator`
    /// The push could not be delivered.
    case push
    /// D1 reported the 3DS operation as finished.
    case d1Notification = "d1-notification"
}

/// Reasons, as answered to D1 (at most 64 characters, no personal data: contract
/// get-authentication-result.json, `reason`).
package enum AuthenticationReason {
    package static let expired = "expired"
    package static let declined = "declined by cardholder"
    package static let noAuthenticator = "no authenticator enrolled"
    package static let pushDeliveryFailed = "push delivery failed"
    package static let endedByD1 = "ended by D1"
}

/// Everything that can happen to an authentication.
package enum AuthenticationEvent: Sendable, Hashable, CaseIterable {
    case approve
    case decline
    /// The deadline passed (timer, sweeper or a poll that noticed it).
    case deadlinePassed
    /// An operator forced it to time out.
    case operatorExpire
    /// The push adapter gave up.
    case pushFailed
    /// D1 said the 3DS operation is over while we were still pending.
    case endedByD1
}

/// The state and the reason that goes with it: together they say how a final state was reached.
package struct AuthenticationStatus: Sendable, Hashable {
    package var state: AuthenticationState
    package var reason: String?

    package init(state: AuthenticationState, reason: String? = nil) {
        self.state = state
        self.reason = reason
    }

    package static let pending = AuthenticationStatus(state: .pending)
}

package enum TransitionOutcome: Sendable, Hashable {
    /// Move to this status (a compare-and-set from PENDING in the store).
    case transition(to: AuthenticationStatus)
    /// The event repeats the one that already ended the authentication: answer as before.
    case repeated(AuthenticationStatus)
    /// The authentication already ended otherwise; nothing changes.
    case refused(current: AuthenticationStatus)
}

package struct AuthenticationStateMachine: Sendable, Hashable {
    package private(set) var status: AuthenticationStatus

    package init(status: AuthenticationStatus = .pending) {
        self.status = status
    }

    /// What `event` does to the authentication. The caller carries the outcome out (a
    /// conditional UPDATE ... WHERE state = 'PENDING') and, if the store lost the race, feeds the
    /// status it found back in with `init(status:)` and asks again.
    package mutating func handle(_ event: AuthenticationEvent) -> TransitionOutcome {
        guard status.state == .pending else {
            if let same = Self.target(of: event), same == status {
                return .repeated(status)
            }
            return .refused(current: status)
        }
        // Pending: every event ends it; only the cardholder's approval authenticates.
        let next = Self.target(of: event)!
        status = next
        return .transition(to: next)
    }

    /// The status an event leads to from PENDING.
    package static func target(of event: AuthenticationEvent) -> AuthenticationStatus? {
        switch event {
        case .approve: AuthenticationStatus(state: .authenticated)
        case .decline: AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.declined)
        case .deadlinePassed: AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.expired)
        case .operatorExpire: AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.expired)
        case .pushFailed: AuthenticationStatus(state: .technicalError, reason: AuthenticationReason.pushDeliveryFailed)
        case .endedByD1: AuthenticationStatus(state: .authenticationFailed, reason: AuthenticationReason.endedByD1)
        }
    }
}
