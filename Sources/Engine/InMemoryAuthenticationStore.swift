import Synchronization

/// The in-memory twin of the PostgreSQL store, for unit tests of the logic above the store.
/// Same contract: compare-and-set from PENDING, creation and transitions atomic, a log of every
/// transition. Never used by the running engine.
package final class InMemoryAuthenticationStore: AuthenticationStore {
    package struct LoggedTransition: Sendable, Hashable {
        package var id: UInt64
        package var from: AuthenticationState?
        package var to: AuthenticationState
        package var cause: TransitionCause
        package var actor: String
        package var refused = false
    }

    private struct State {
        var rows: [String: AuthenticationRecord] = [:]
        var nextID: UInt64 = 1
        var log: [LoggedTransition] = []
        var activeAuthenticators: Set<String> = []
        var nowMilliseconds: Int64 = 1_700_000_000_000
    }

    private let state = Mutex(State())

    package init() {}

    package func enrol(issuerId: String, consumerId: String) {
        state.withLock { _ = $0.activeAuthenticators.insert(issuerId + "/" + consumerId) }
    }

    package func advanceClock(milliseconds: Int64) {
        state.withLock { $0.nowMilliseconds += milliseconds }
    }

    package var transitions: [LoggedTransition] { state.withLock { $0.log } }

    package func create(_ new: NewAuthentication) async throws -> CreateResult {
        state.withLock { s in
            let key = new.issuerId + "/" + new.request.authenticationId
            if let existing = s.rows[key] { return .existing(Self.refreshed(existing, now: s.nowMilliseconds)) }
            let hasAuthenticator = s.activeAuthenticators.contains(new.issuerId + "/" + new.consumerId)
            let status = hasAuthenticator
                ? AuthenticationStatus.pending
                : AuthenticationStatus(state: .technicalError, reason: AuthenticationReason.noAuthenticator)
            let record = AuthenticationRecord(
                id: s.nextID, issuerId: new.issuerId, consumerId: new.consumerId, request: new.request,
                status: status, deadlineUnixMilliseconds: s.nowMilliseconds + Int64(new.challengeTTLSeconds) * 1000,
                isPastDeadline: false)
            s.nextID += 1
            s.rows[key] = record
            s.log.append(LoggedTransition(id: record.id, from: nil, to: status.state,
                                          cause: hasAuthenticator ? .create : .noAuthenticator, actor: new.actor))
            return .created(record)
        }
    }

    package func find(issuerId: String, authenticationId: String) async throws -> AuthenticationRecord? {
        state.withLock { s in s.rows[issuerId + "/" + authenticationId].map { Self.refreshed($0, now: s.nowMilliseconds) } }
    }

    package func transition(_ request: TransitionRequest) async throws -> TransitionResult {
        state.withLock { s in
            let key = request.issuerId + "/" + request.authenticationId
            guard var record = s.rows[key].map({ Self.refreshed($0, now: s.nowMilliseconds) }) else { return .notFound }
            guard record.status.state == .pending, !request.onlyIfPastDeadline || record.isPastDeadline,
                  !request.onlyIfBeforeDeadline || !record.isPastDeadline else {
                return .unchanged(record)
            }
            record.status = request.to
            s.rows[key] = record
            s.log.append(LoggedTransition(id: record.id, from: .pending, to: request.to.state,
                                          cause: request.cause, actor: request.actor))
            return .applied(record)
        }
    }

    package func applyDecision(_ request: DecisionRequest, target: AuthenticationStatus, actor: String) async throws -> DecisionApplyResult {
        guard let record = try await find(issuerId: request.issuerId, authenticationId: request.authenticationId) else { return .notFound }
        guard try await isActiveAuthenticator(issuerId: record.issuerId, consumerId: record.consumerId,
                                              appInstanceId: request.appInstanceId) else { return .notAnAuthenticator }
        let transition = TransitionRequest(issuerId: request.issuerId, authenticationId: request.authenticationId, to: target,
                                           cause: .decision, actor: actor, onlyIfBeforeDeadline: true)
        switch try await self.transition(transition) {
        case .applied(let ended): return .applied(ended)
        case .unchanged(let current): return .unchanged(current)
        case .notFound: return .notFound
        }
    }

    package func isActiveAuthenticator(issuerId: String, consumerId: String, appInstanceId: String) async throws -> Bool {
        // The in-memory twin enrols consumers, not app instances: any instance of an enrolled consumer counts.
        state.withLock { $0.activeAuthenticators.contains(issuerId + "/" + consumerId) }
    }

    package func recordRefused(_ attempt: RefusedAttempt) async throws {
        state.withLock {
            $0.log.append(LoggedTransition(id: attempt.recordId, from: attempt.from, to: attempt.to, cause: attempt.cause,
                                           actor: attempt.actor, refused: true))
        }
    }

    package func pendingChallenges(issuerId: String, consumerId: String, limit: Int) async throws -> [AuthenticationRecord] {
        state.withLock { s in
            s.rows.values.map { Self.refreshed($0, now: s.nowMilliseconds) }
                .filter { $0.issuerId == issuerId && $0.consumerId == consumerId && $0.status.state == .pending && !$0.isPastDeadline }
                .sorted { $0.id > $1.id }.prefix(limit).map { $0 }
        }
    }

    private static func refreshed(_ record: AuthenticationRecord, now: Int64) -> AuthenticationRecord {
        var copy = record
        copy.isPastDeadline = now >= record.deadlineUnixMilliseconds
        return copy
    }
}
