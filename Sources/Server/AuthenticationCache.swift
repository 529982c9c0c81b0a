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
///   `authentications_announce_changes` trigger). A decision made on another instance therefore
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
    /// The channel the schema's trigger notifies (payload: `issuer_id/authentication_id` keys
    /// separated by spaces, those one statement changed).
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
        /// For PENDING: the listener session it was stored under (a record from an earlier
        /// session may have missed its change).
        var epoch: UInt64
    }

    /// The stored records: a slab of slots with a free list, an index from key to slot, and the
    /// insertion order as a ring of (slot, generation) pairs. All of it is reserved up front and
    /// never grows past that. A growing dictionary of records rehashes and moves every entry
    /// under the cache's lock: measured at 137 ms for 196,609 records, during which every poll
    /// and every write that fills the cache waited (the Authenticate p99 of 70-120 ms in
    /// scripts/bench's latency runs).
    struct Slab<Value> {
        private struct Slot {
            var key: String
            var value: Value
        }

        let capacity: Int
        private var index: [String: Int32] = [:]
        private var slots: [Slot?] = []
        /// Bumped each time a slot is taken, so a stale pair in `order` is recognised.
        private var generations: [UInt32] = []
        private var free: [Int32] = []
        /// Oldest first from `head`; pairs of slots since freed or retaken are skipped.
        private var order: [(slot: Int32, generation: UInt32)] = []
        private var head = 0
        private var ordered = 0
        private let orderCapacity: Int

        init(capacity: Int) {
            self.capacity = max(1, capacity)
            // Room for every live record plus as many stale pairs: a full ring only means many
            // records were dropped, and its oldest pair then goes (evicting it if still live).
            orderCapacity = 2 * self.capacity + 16
            // Reserved, not filled: pages are touched as records arrive, so an idle engine
            // does not pay for the capacity.
            index.reserveCapacity(self.capacity)
            slots.reserveCapacity(self.capacity)
            generations.reserveCapacity(self.capacity)
            free.reserveCapacity(self.capacity)
            order.reserveCapacity(orderCapacity)
        }

        var count: Int { index.count }

        subscript(key: String) -> Value? {
            guard let slot = index[key] else { return nil }
            return slots[Int(slot)]!.value
        }

        /// Replaces the value of a key that is stored, keeping its place in the order.
        mutating func update(_ key: String, _ value: Value) {
            guard let slot = index[key] else { return }
            slots[Int(slot)]!.value = value
        }

        /// Stores a new key as the newest, first evicting the oldest when full.
        mutating func insert(_ key: String, _ value: Value) {
            precondition(index[key] == nil, "insert of a stored key")
            if index.count >= capacity { evictOldest() }
            let slot: Int32
            if let reused = free.popLast() {
                slot = reused
            } else {
                slot = Int32(slots.count)
                slots.append(nil)
                generations.append(0)
            }
            generations[Int(slot)] &+= 1
            slots[Int(slot)] = Slot(key: key, value: value)
            index[key] = slot
            if ordered == orderCapacity { popOldest() }
            let tail = (head + ordered) % orderCapacity
            let pair = (slot: slot, generation: generations[Int(slot)])
            if tail == order.count { order.append(pair) } else { order[tail] = pair }
            ordered += 1
        }

        mutating func remove(_ key: String) {
            guard let slot = index.removeValue(forKey: key) else { return }
            slots[Int(slot)] = nil
            free.append(slot)
        }

        /// Evicts the oldest live record, skipping stale pairs.
        private mutating func evictOldest() {
            while ordered > 0 {
                if popOldest() { return }
            }
        }

        /// Takes the oldest pair off the ring; evicts its record if still live (true then).
        @discardableResult
        private mutating func popOldest() -> Bool {
            let (slot, generation) = order[head]
            head = (head + 1) % orderCapacity
            ordered -= 1
            guard generations[Int(slot)] == generation, let live = slots[Int(slot)] else { return false }
            remove(live.key)
            return true
        }
    }

    private struct Invalidation {
        var key: String
        var sequence: UInt64
    }

    private struct State {
        var entries: Slab<Entry>

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

        init(capacity: Int, ringCapacity: Int) {
            entries = Slab(capacity: capacity)
            ring = Array(repeating: nil, count: ringCapacity)
            latestInvalidation.reserveCapacity(ringCapacity)
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
        state = Mutex(State(capacity: self.capacity, ringCapacity: ringCapacity))
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
            if let entry = state.entries[key] {
                if entry.record.status.state != .pending { return }
                state.entries.update(key, Entry(record: record, epoch: state.epoch))
                return
            }
            state.entries.insert(key, Entry(record: record, epoch: state.epoch))
        }
    }

    private static func invalidated(_ key: String, since: UInt64, in state: State, ringCapacity: Int) -> Bool {
        if state.sequence == since { return false }
        // The ring holds the invalidations numbered (sequence − ringCapacity, sequence].
        if since > state.sequence || state.sequence - since > UInt64(ringCapacity) { return true }
        guard let latest = state.latestInvalidation[key] else { return false }
        return latest > since
    }

    // MARK: Invalidation

    /// The authentication changed (announced by the database, or ended by this instance): a
    /// PENDING record of it is dropped, a final one kept.
    package func invalidate(issuerId: String, authenticationId: String) {
        invalidate(key: Self.key(issuerId, authenticationId))
    }

    func invalidate(key: String) {
        state.withLock { state in invalidate(key: key, in: &state) }
    }

    private func invalidate(key: String, in state: inout State) {
        state.sequence += 1
        state.invalidations += 1
        let slot = Int(state.sequence % UInt64(ringCapacity))
        if let old = state.ring[slot], state.latestInvalidation[old.key] == old.sequence {
            state.latestInvalidation[old.key] = nil
        }
        state.ring[slot] = Invalidation(key: key, sequence: state.sequence)
        state.latestInvalidation[key] = state.sequence
        if let entry = state.entries[key], entry.record.status.state == .pending {
            state.entries.remove(key)
        }
    }

    /// What the `PostgresNotificationListener` reports.
    package func handle(_ event: PostgresNotificationListener.Event) {
        switch event {
        case .notification(let payload):
            // One notification per statement: the keys it changed, separated by spaces (no key
            // holds one: identifiers are URL path segments). Taken under one lock.
            let keys = payload.split(separator: " ")
            state.withLock { state in
                for key in keys { invalidate(key: String(key), in: &state) }
            }
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
            state.latestInvalidation.removeAll(keepingCapacity: true)
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
