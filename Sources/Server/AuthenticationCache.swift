package import Engine
package import Postgres
import Synchronization

/// Authentications as this instance last read or wrote them, so that polls can be answered from
/// memory. PostgreSQL stays the source of truth: whatever is missing here, or not certain, is
/// read from the database, and nothing here is needed after a crash or on another instance.
///
/// - Final states never change (the database refuses it): once read they are answered always.
/// - A PENDING record is answered only while this instance is provably in step with the
///   database: the `PostgresNotificationListener` is connected, and its last heartbeat that came
///   back was sent less than `freshness` (75 ms) ago, so every change committed before then has
///   been announced to us and has removed what it changed from here (the schema's
///   `authentications_notify_change` trigger). A decision made on another instance therefore
///   shows within 75 ms plus the delivery time. Never within `deadlineMargin` (1 s) of the
///   deadline by the local clock either: the poll that ends an authentication past its deadline
///   reads the database.
/// - A read that saw PENDING may complete after the change that ended it was announced; storing
///   it then would keep a stale PENDING. So a filler takes `sequence` before its statement is
///   sent and hands it back with the record: a PENDING record is stored only if its key was not
///   invalidated since (the most recent invalidations are kept in a ring; if the ring has wrapped
///   since, nothing is stored). Losing the listener drops every PENDING record and moves the
///   sequence past the ring, so reads in flight store nothing either.
///
/// Bounded: beyond `capacity` records, the oldest stored go first.
package final class AuthenticationCache: Sendable {
    /// The channel the schema's trigger notifies (payload `issuer_id/authentication_id`).
    package static let channel = "oob_authentication_changed"
    package static let freshness: Duration = .milliseconds(75)
    package static let deadlineMargin: Duration = .seconds(1)

    /// Time sources; tests drive them by hand.
    package struct Clock: Sendable {
        /// CLOCK_MONOTONIC nanoseconds, the time base of the listener's heartbeats.
        package var monotonicNanoseconds: @Sendable () -> UInt64
        /// Unix milliseconds, the time base of `AuthenticationRecord.deadlineUnixMilliseconds`.
        package var wallMilliseconds: @Sendable () -> Int64

        package init(monotonicNanoseconds: @escaping @Sendable () -> UInt64, wallMilliseconds: @escaping @Sendable () -> Int64) {
            self.monotonicNanoseconds = monotonicNanoseconds
            self.wallMilliseconds = wallMilliseconds
        }

        package static let system = Clock(monotonicNanoseconds: PostgresNotificationListener.monotonicNanoseconds,
                                          wallMilliseconds: WallClock.milliseconds)
    }

    package struct Statistics: Sendable, Hashable {
        package var records = 0
        /// Polls answered from here, by the state answered.
        package var finalHits = 0
        package var pendingHits = 0
        /// Keys announced changed (by the listener or by this instance).
        package var invalidations = 0
        /// Whether the listener is connected, and whether PENDING can be answered right now.
        package var listening = false
        package var fresh = false
    }

    private struct Entry {
        var record: AuthenticationRecord
        /// Position in `order`: an entry removed and stored again gets a new one.
        var generation: UInt64
        /// For PENDING: the listener session it was stored under (a record from an earlier
        /// session may have missed its change).
        var epoch: UInt64
    }

    private struct Invalidation {
        var key: String
        var sequence: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Insertion order, oldest first from `head`; stale (key, generation) pairs are skipped.
        var order: [(key: String, generation: UInt64)] = []
        var head = 0
        var nextGeneration: UInt64 = 0

        var listening = false
        var epoch: UInt64 = 0
        var lastHeartbeatSentAt: UInt64?

        var sequence: UInt64 = 0
        var ring: [Invalidation?]
        /// Each key's latest invalidation still in the ring.
        var latestInvalidation: [String: UInt64] = [:]

        var finalHits = 0
        var pendingHits = 0
        var invalidations = 0

        init(ringCapacity: Int) {
            ring = Array(repeating: nil, count: ringCapacity)
        }
    }

    private let capacity: Int
    private let ringCapacity: Int
    private let cachesPending: Bool
    private let freshnessNanoseconds: UInt64
    private let marginMilliseconds: Int64
    private let clock: Clock
    private let state: Mutex<State>

    /// `cachesPending: false` keeps final states only (no listener needed).
    package init(capacity: Int = 200_000, cachesPending: Bool = true, invalidationHistory: Int = 4096,
                 clock: Clock = .system) {
        self.capacity = max(1, capacity)
        self.ringCapacity = max(1, invalidationHistory)
        self.cachesPending = cachesPending
        self.clock = clock
        let (seconds, attoseconds) = Self.freshness.components
        freshnessNanoseconds = UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        marginMilliseconds = Self.deadlineMargin.components.seconds * 1000
        state = Mutex(State(ringCapacity: ringCapacity))
    }

    static func key(_ issuerId: String, _ authenticationId: String) -> String { issuerId + "/" + authenticationId }

    // MARK: Reading

    /// A final record always; a PENDING one only under the rules above; otherwise nil (read the
    /// database).
    package func get(issuerId: String, authenticationId: String) -> AuthenticationRecord? {
        let key = Self.key(issuerId, authenticationId)
        return state.withLock { state -> AuthenticationRecord? in
            guard let entry = state.entries[key] else { return nil }
            guard entry.record.status.state == .pending else {
                state.finalHits += 1
                return entry.record
            }
            guard entry.epoch == state.epoch, isFresh(state), !entry.record.isPastDeadline,
                  entry.record.deadlineUnixMilliseconds - clock.wallMilliseconds() > marginMilliseconds
            else { return nil }
            state.pendingHits += 1
            return entry.record
        }
    }

    private func isFresh(_ state: State) -> Bool {
        guard state.listening, let sentAt = state.lastHeartbeatSentAt else { return false }
        let now = clock.monotonicNanoseconds()
        return now < sentAt || now - sentAt < freshnessNanoseconds
    }

    /// Taken by a filler before it sends the statement whose results it will `remember`.
    package var sequence: UInt64 { state.withLock { $0.sequence } }

    // MARK: Filling

    /// Stores what a statement read or wrote. `since` is the `sequence` taken before that
    /// statement was sent: a PENDING record is dropped if its key changed since (or may have).
    /// A final record is always stored (and replaces a PENDING one); PENDING never replaces a final.
    package func remember(_ record: AuthenticationRecord, since: UInt64) {
        let key = Self.key(record.issuerId, record.authenticationId)
        let final = record.status.state != .pending
        if !final && (!cachesPending || record.isPastDeadline) { return }
        state.withLock { state in
            if !final {
                guard state.listening, !Self.invalidated(key, since: since, in: state, ringCapacity: ringCapacity) else { return }
            }
            if var entry = state.entries[key] {
                if entry.record.status.state != .pending { return }
                entry.record = record
                entry.epoch = state.epoch
                state.entries[key] = entry
                return
            }
            let generation = state.nextGeneration
            state.nextGeneration += 1
            state.entries[key] = Entry(record: record, generation: generation, epoch: state.epoch)
            state.order.append((key, generation))
            evictBeyondCapacity(&state)
        }
    }

    private static func invalidated(_ key: String, since: UInt64, in state: State, ringCapacity: Int) -> Bool {
        if state.sequence == since { return false }
        // The ring holds the invalidations numbered (sequence − ringCapacity, sequence].
        if since > state.sequence || state.sequence - since > UInt64(ringCapacity) { return true }
        guard let latest = state.latestInvalidation[key] else { return false }
        return latest > since
    }

    private func evictBeyondCapacity(_ state: inout State) {
        while state.entries.count > capacity, state.head < state.order.count {
            let (key, generation) = state.order[state.head]
            state.head += 1
            if state.entries[key]?.generation == generation { state.entries[key] = nil }
        }
        // Keys removed by invalidation leave stale pairs behind: keep `order` within bounds.
        if state.head > 1024, state.head * 2 > state.order.count {
            state.order.removeFirst(state.head)
            state.head = 0
        } else if state.order.count - state.head > 2 * capacity + 1024 {
            state.order = state.order[state.head...].filter { state.entries[$0.key]?.generation == $0.generation }
            state.head = 0
        }
    }

    // MARK: Invalidation

    /// The authentication changed (announced by the database, or ended by this instance): a
    /// PENDING record of it is dropped, a final one kept.
    package func invalidate(issuerId: String, authenticationId: String) {
        invalidate(key: Self.key(issuerId, authenticationId))
    }

    func invalidate(key: String) {
        state.withLock { state in
            state.sequence += 1
            state.invalidations += 1
            let slot = Int(state.sequence % UInt64(ringCapacity))
            if let old = state.ring[slot], state.latestInvalidation[old.key] == old.sequence {
                state.latestInvalidation[old.key] = nil
            }
            state.ring[slot] = Invalidation(key: key, sequence: state.sequence)
            state.latestInvalidation[key] = state.sequence
            if let entry = state.entries[key], entry.record.status.state == .pending {
                state.entries[key] = nil
            }
        }
    }

    /// What the `PostgresNotificationListener` reports.
    package func handle(_ event: PostgresNotificationListener.Event) {
        switch event {
        case .notification(let key):
            invalidate(key: key)
        case .heartbeat(let sentAt):
            state.withLock { state in
                if state.listening, sentAt > state.lastHeartbeatSentAt ?? 0 { state.lastHeartbeatSentAt = sentAt }
            }
        case .connected:
            startSession(listening: true)
        case .disconnected:
            startSession(listening: false)
        }
    }

    /// Changes may have gone unannounced: forget every PENDING record (by moving to a new epoch),
    /// and move the sequence past the ring so that reads in flight store nothing.
    private func startSession(listening: Bool) {
        state.withLock { state in
            state.listening = listening
            state.lastHeartbeatSentAt = nil
            state.epoch += 1
            state.sequence += UInt64(ringCapacity) + 1
            for index in state.ring.indices { state.ring[index] = nil }
            state.latestInvalidation.removeAll()
        }
    }

    package var statistics: Statistics {
        state.withLock { state in
            Statistics(records: state.entries.count, finalHits: state.finalHits, pendingHits: state.pendingHits,
                       invalidations: state.invalidations, listening: state.listening, fresh: isFresh(state))
        }
    }

    package var count: Int { state.withLock { $0.entries.count } }
}
