import JSON

/// What Authenticate answers (contract authenticate.json: `authenticationStatus`).
package enum AuthenticateAnswer: Sendable, Hashable {
    case status(String, record: AuthenticationRecord, created: Bool)
    /// The authenticationId exists with another consumer or other details (403).
    case conflict
}

package enum PollAnswer: Sendable, Hashable {
    case status(AuthenticationStatus, record: AuthenticationRecord)
    /// Unknown, or belongs to another consumer (404: no oracle for other consumers' ids).
    case notFound
}

/// The store answered something its contract rules out. Safe to log.
package struct StoreStateError: Error, Sendable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// The cardholder's answer, from the bank's app backend.
package enum CardholderDecision: String, Sendable, Hashable {
    case approve = "APPROVE"
    case decline = "DECLINE"

    var event: AuthenticationEvent { self == .approve ? .approve : .decline }
}

package struct DecisionRequest: Sendable, Hashable {
    package var issuerId: String
    package var authenticationId: String
    package var decision: CardholderDecision
    package var appInstanceId: String
    /// Who sent it (the app backend's client id), for the transitions log.
    package var actor: String

    package init(issuerId: String, authenticationId: String, decision: CardholderDecision, appInstanceId: String,
                 actor: String) {
        self.issuerId = issuerId
        self.authenticationId = authenticationId
        self.decision = decision
        self.appInstanceId = appInstanceId
        self.actor = actor
    }
}

package enum DecisionAnswer: Sendable, Hashable {
    /// The decision ended the challenge.
    case applied(AuthenticationStatus)
    /// The same decision again: the same answer, nothing written.
    case repeated(AuthenticationStatus)
    /// Another decision, or any decision after the challenge ended some other way (timer,
    /// operator, push failure, D1): nothing changed, the attempt is logged as refused.
    case conflict(AuthenticationStatus)
    /// The app instance is not an active authenticator of the authentication's consumer.
    case notAnAuthenticator
    case notFound
}

/// Receives every deadline the engine learns of and every authentication that ends, so an
/// in-memory timer wheel can fire on time. PostgreSQL stays the source of truth.
package protocol DeadlineTracker: Sendable {
    func track(id: UInt64, deadlineUnixMilliseconds: Int64)
    func forget(id: UInt64)
}

package struct NoDeadlineTracking: DeadlineTracker {
    package init() {}
    package func track(id: UInt64, deadlineUnixMilliseconds: Int64) {}
    package func forget(id: UInt64) {}
}

/// The D1 authenticate → poll flow over any store.
package struct AuthenticationService: Sendable {
    package var store: any AuthenticationStore
    package var deadlines: any DeadlineTracker
    /// Told of every authentication this service ends (and of one created already final), with
    /// the final status and the cause: the Server counts them for /metrics.
    package var onEnded: (@Sendable (AuthenticationStatus, TransitionCause) -> Void)?

    package init(store: any AuthenticationStore, deadlines: any DeadlineTracker = NoDeadlineTracking(),
                 onEnded: (@Sendable (AuthenticationStatus, TransitionCause) -> Void)? = nil) {
        self.store = store
        self.deadlines = deadlines
        self.onEnded = onEnded
    }

    /// Authenticate: create, or answer a retry with the current status. Idempotent on
    /// (issuerId, authenticationId); the same id with another consumer or other details is a
    /// conflict and changes nothing. `x-correlation-id` is never an idempotency key.
    package func authenticate(_ new: NewAuthentication) async throws -> AuthenticateAnswer {
        switch try await store.create(new) {
        case .created(let record):
            if record.status.state == .pending {
                deadlines.track(id: record.id, deadlineUnixMilliseconds: record.deadlineUnixMilliseconds)
            } else {
                onEnded?(record.status, .noAuthenticator)
            }
            return .status(Self.authenticateStatus(of: record), record: record, created: true)
        case .existing(var record):
            guard record.consumerId == new.consumerId, record.request == new.request else { return .conflict }
            record = try await endIfPastDeadline(record)
            return .status(Self.authenticateStatus(of: record), record: record, created: false)
        }
    }

    /// Get Authentication Result. Never answers PENDING once the deadline has passed: if nothing
    /// ended it yet, this read ends it first (conditional update, cause `poll`).
    package func poll(issuerId: String, consumerId: String, authenticationId: String) async throws -> PollAnswer {
        guard var record = try await store.find(issuerId: issuerId, authenticationId: authenticationId),
              record.consumerId == consumerId
        else { return .notFound }
        record = try await endIfPastDeadline(record)
        return .status(record.status, record: record)
    }

    /// `poll` answered from the store's memory without waiting, or nil when only `poll` can
    /// answer (nothing in memory, or a PENDING the store cannot vouch for right now).
    package func pollFromMemory(issuerId: String, consumerId: String, authenticationId: String) -> PollAnswer? {
        guard let record = store.cachedRecord(issuerId: issuerId, authenticationId: authenticationId) else { return nil }
        guard record.consumerId == consumerId else { return .notFound }
        // Past its deadline a PENDING must be ended first, which only `poll` does.
        if record.status.state == .pending && record.isPastDeadline { return nil }
        return .status(record.status, record: record)
    }

    /// The cardholder's decision: one compare-and-set from PENDING that only counts before the
    /// deadline (by the database's clock). Repeating it answers the same; anything else that
    /// finds the challenge ended is refused, logged, and changes nothing.
    package func decide(_ request: DecisionRequest) async throws -> DecisionAnswer {
        let target = AuthenticationStateMachine.target(of: request.decision.event)!
        let actor = String((request.actor + "/" + request.appInstanceId).prefix(128))
        var current: AuthenticationRecord?
        // A store may report a row it saw PENDING and in time but could not change (another
        // writer got there in between): ask again, boundedly, to get the decided answer.
        for _ in 0..<3 where current == nil || (current!.status.state == .pending && !current!.isPastDeadline) {
            switch try await store.applyDecision(request, target: target, actor: actor) {
            case .notFound:
                return .notFound
            case .notAnAuthenticator:
                return .notAnAuthenticator
            case .applied(let ended):
                deadlines.forget(id: ended.id)
                onEnded?(ended.status, .decision)
                return .applied(ended.status)
            case .unchanged(let record):
                current = record
            }
        }
        guard var current else { return .notFound }
        // Still PENDING means the deadline passed: end it as expired before answering.
        current = try await endIfPastDeadline(current)
        guard current.status.state != .pending else {
            throw StoreStateError("a decision found the authentication still PENDING after retries")
        }
        var machine = AuthenticationStateMachine(status: current.status)
        switch machine.handle(request.decision.event) {
        case .repeated(let status):
            return .repeated(status)
        case .transition, .refused:
            try await store.recordRefused(RefusedAttempt(recordId: current.id, from: current.status.state, to: target.state,
                                                         cause: .decision, actor: actor,
                                                         detail: "\(request.decision.rawValue) refused: already \(current.status.state.rawValue)"))
            return .conflict(current.status)
        }
    }

    package func pendingChallenges(issuerId: String, consumerId: String, limit: Int = 100) async throws -> [AuthenticationRecord] {
        try await store.pendingChallenges(issuerId: issuerId, consumerId: consumerId, limit: limit)
    }

    private func endIfPastDeadline(_ record: AuthenticationRecord) async throws -> AuthenticationRecord {
        guard record.status.state == .pending, record.isPastDeadline else { return record }
        var machine = AuthenticationStateMachine(status: record.status)
        guard case .transition(let target) = machine.handle(.deadlinePassed) else { return record }
        let request = TransitionRequest(issuerId: record.issuerId, authenticationId: record.authenticationId,
                                        to: target, cause: .poll, actor: "poll", onlyIfPastDeadline: true)
        switch try await store.transition(request) {
        case .applied(let ended):
            deadlines.forget(id: ended.id)
            onEnded?(ended.status, .poll)
            return ended
        case .unchanged(let current):
            return current
        case .notFound:
            return record
        }
    }

    /// Authenticate's enum is AUTHENTICATED | PENDING | NO_AUTHENTICATOR; a retry of one that has
    /// since failed answers its current state (the poll enum), which is what D1 needs to know.
    static func authenticateStatus(of record: AuthenticationRecord) -> String {
        record.wasNoAuthenticator ? "NO_AUTHENTICATOR" : record.status.state.rawValue
    }
}

extension DecisionRequest {
    /// The app backend's body: `{"decision": "APPROVE" | "DECLINE", "appInstanceId": "..."}`.
    package static func decodeBody(_ body: [UInt8]) throws(ValidationError) -> (CardholderDecision, String) {
        guard !body.isEmpty else { throw ValidationError("empty body: a JSON object is required") }
        let root: JSONValue
        do {
            root = try JSONParser.parse(body)
        } catch {
            throw ValidationError(error.description)
        }
        let object = try RequestFields.object(root, "body")
        let decisionText = try RequestFields.requiredString(object, "decision")
        guard let decision = CardholderDecision(rawValue: decisionText) else {
            throw ValidationError("decision must be APPROVE or DECLINE")
        }
        let appInstanceId = try RequestFields.requiredString(object, "appInstanceId")
        guard Identifier.isPrintableText(appInstanceId, maxLength: 128) else {
            throw ValidationError("appInstanceId must be 1 to 128 printable characters")
        }
        return (decision, appInstanceId)
    }
}
