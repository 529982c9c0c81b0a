/// One authentication as stored.
package struct AuthenticationRecord: Sendable, Hashable {
    /// The store's surrogate key: small, unique, used by the timer wheel and the transitions log.
    package var id: UInt64
    package var issuerId: String
    package var consumerId: String
    package var request: AuthenticateRequest
    package var status: AuthenticationStatus
    package var deadlineUnixMilliseconds: Int64
    /// Whether the deadline had passed when the store read the row, by the store's clock
    /// (PostgreSQL's `now()`, so every instance agrees).
    package var isPastDeadline: Bool
    package var createdAtUnixMilliseconds: Int64

    package init(id: UInt64, issuerId: String, consumerId: String, request: AuthenticateRequest,
                 status: AuthenticationStatus, deadlineUnixMilliseconds: Int64, isPastDeadline: Bool,
                 createdAtUnixMilliseconds: Int64 = 0) {
        self.createdAtUnixMilliseconds = createdAtUnixMilliseconds
        self.id = id
        self.issuerId = issuerId
        self.consumerId = consumerId
        self.request = request
        self.status = status
        self.deadlineUnixMilliseconds = deadlineUnixMilliseconds
        self.isPastDeadline = isPastDeadline
    }

    package var authenticationId: String { request.authenticationId }

    /// Created final because the consumer had no active authenticator.
    package var wasNoAuthenticator: Bool {
        status.state == .technicalError && status.reason == AuthenticationReason.noAuthenticator
    }
}

package struct NewAuthentication: Sendable, Hashable {
    package var issuerId: String
    package var consumerId: String
    package var request: AuthenticateRequest
    package var challengeTTLSeconds: Int
    /// Who asked (the OAuth client id), for the transitions log.
    package var actor: String
    /// When a push adapter is configured: queue the push in the same transaction, to be
    /// delivered within this many seconds (never past the challenge's own deadline).
    package var pushDeliveryDeadlineSeconds: Int?

    package init(issuerId: String, consumerId: String, request: AuthenticateRequest,
                 challengeTTLSeconds: Int, actor: String, pushDeliveryDeadlineSeconds: Int? = nil) {
        self.pushDeliveryDeadlineSeconds = pushDeliveryDeadlineSeconds
        self.issuerId = issuerId
        self.consumerId = consumerId
        self.request = request
        self.challengeTTLSeconds = challengeTTLSeconds
        self.actor = actor
    }
}

package enum CreateResult: Sendable, Hashable {
    /// Inserted now, with its creation transition, in one transaction.
    case created(AuthenticationRecord)
    /// (issuerId, authenticationId) existed already; nothing was written.
    case existing(AuthenticationRecord)
}

package enum TransitionResult: Sendable, Hashable {
    /// The compare-and-set from PENDING succeeded and its transition row is written.
    case applied(AuthenticationRecord)
    /// It was no longer PENDING (or, for a deadline transition, not yet due); here is what it is.
    case unchanged(AuthenticationRecord)
    case notFound
}

/// A request to move one authentication out of PENDING.
package struct TransitionRequest: Sendable, Hashable {
    package var issuerId: String
    package var authenticationId: String
    package var to: AuthenticationStatus
    package var cause: TransitionCause
    package var actor: String
    /// Free text for the log (an operator's reason); never answered to D1.
    package var detail: String?
    /// Apply only if the deadline has passed by the store's clock.
    package var onlyIfPastDeadline: Bool
    /// Apply only if the deadline has not passed by the store's clock (a cardholder's decision
    /// arriving after the deadline must not count).
    package var onlyIfBeforeDeadline: Bool

    package init(issuerId: String, authenticationId: String, to: AuthenticationStatus, cause: TransitionCause,
                 actor: String, detail: String? = nil, onlyIfPastDeadline: Bool = false, onlyIfBeforeDeadline: Bool = false) {
        self.onlyIfBeforeDeadline = onlyIfBeforeDeadline
        self.issuerId = issuerId
        self.authenticationId = authenticationId
        self.to = to
        self.cause = cause
        self.actor = actor
        self.detail = detail
        self.onlyIfPastDeadline = onlyIfPastDeadline
    }
}

/// Where authentications live. PostgreSQL in production (Server.PostgresAuthenticationStore);
/// `InMemoryAuthenticationStore` for unit tests of the logic above it.
package protocol AuthenticationStore: Sendable {
    /// Inserts a new authentication — PENDING if the consumer has an active authenticator,
    /// TECHNICAL_ERROR (`no authenticator enrolled`) otherwise — with its creation transition,
    /// atomically; or returns the existing row for (issuerId, authenticationId) untouched.
    func create(_ new: NewAuthentication) async throws -> CreateResult
    func find(issuerId: String, authenticationId: String) async throws -> AuthenticationRecord?
    /// One compare-and-set from PENDING plus its transition row, atomically.
    func transition(_ request: TransitionRequest) async throws -> TransitionResult
    /// The cardholder's decision as one compare-and-set from PENDING to `target` that counts
    /// only before the deadline and only from an active authenticator of the consumer.
    func applyDecision(_ request: DecisionRequest, target: AuthenticationStatus, actor: String) async throws -> DecisionApplyResult
    /// Whether `appInstanceId` is an active authenticator of the consumer.
    func isActiveAuthenticator(issuerId: String, consumerId: String, appInstanceId: String) async throws -> Bool
    /// Logs an attempt that changed nothing (outcome `refused`), for the audit trail.
    func recordRefused(_ attempt: RefusedAttempt) async throws
    /// The consumer's PENDING challenges whose deadline has not passed, newest first.
    func pendingChallenges(issuerId: String, consumerId: String, limit: Int) async throws -> [AuthenticationRecord]
    /// What `find` would answer, if the store can tell from memory at once without waiting and
    /// without it being stale (never PENDING past the deadline); nil sends the caller to `find`.
    func cachedRecord(issuerId: String, authenticationId: String) -> AuthenticationRecord?
}

extension AuthenticationStore {
    /// Stores without a memory of their own always go to `find`.
    package func cachedRecord(issuerId: String, authenticationId: String) -> AuthenticationRecord? { nil }
}

package enum DecisionApplyResult: Sendable, Hashable {
    case applied(AuthenticationRecord)
    /// Not applied (already final, or past the deadline): the record as it is.
    case unchanged(AuthenticationRecord)
    case notAnAuthenticator
    case notFound
}

/// A transition that was asked for and refused (the authentication had already ended).
package struct RefusedAttempt: Sendable, Hashable {
    package var recordId: UInt64
    package var from: AuthenticationState
    package var to: AuthenticationState
    package var cause: TransitionCause
    package var actor: String
    package var detail: String?

    package init(recordId: UInt64, from: AuthenticationState, to: AuthenticationState, cause: TransitionCause,
                 actor: String, detail: String? = nil) {
        self.recordId = recordId
        self.from = from
        self.to = to
        self.cause = cause
        self.actor = actor
        self.detail = detail
    }
}
