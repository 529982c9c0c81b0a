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

    package init(store: any AuthenticationStore, deadlines: any DeadlineTracker = NoDeadlineTracking()) {
        self.store = store
        self.deadlines = deadlines
    }

    /// Authenticate: create, or answer a retry with the current status. Idempotent on
    /// (issuerId, authenticationId); the same id with another consumer or other details is a
    /// conflict and changes nothing. `x-correlation-id` is never an idempotency key.
    package func authenticate(_ new: NewAuthentication) async throws -> AuthenticateAnswer {
        switch try await store.create(new) {
        case .created(let record):
            if record.status.state == .pending {
                deadlines.track(id: record.id, deadlineUnixMilliseconds: record.deadlineUnixMilliseconds)
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

    private func endIfPastDeadline(_ record: AuthenticationRecord) async throws -> AuthenticationRecord {
        guard record.status.state == .pending, record.isPastDeadline else { return record }
        var machine = AuthenticationStateMachine(status: record.status)
        guard case .transition(let target) = machine.handle(.deadlinePassed) else { return record }
        let request = TransitionRequest(issuerId: record.issuerId, authenticationId: record.authenticationId,
                                        to: target, cause: .poll, actor: "poll", onlyIfPastDeadline: true)
        switch try await store.transition(request) {
        case .applied(let ended):
            deadlines.forget(id: ended.id)
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
