import Engine
import Postgres
import Server
import Synchronization
import Testing

/// The rules of `AuthenticationCache`, on a clock driven by hand.
@Suite struct AuthenticationCacheTests {
    final class ManualClock: Sendable {
        let monotonic = Mutex<UInt64>(1_000_000_000_000)
        let wall = Mutex<Int64>(1_800_000_000_000)

        var clock: AuthenticationCache.Clock {
            AuthenticationCache.Clock(monotonicNanoseconds: { self.monotonic.withLock { $0 } },
                                      wallMilliseconds: { self.wall.withLock { $0 } })
        }

        var now: UInt64 { monotonic.withLock { $0 } }

        func advance(milliseconds: Int) {
            monotonic.withLock { $0 += UInt64(milliseconds) * 1_000_000 }
            wall.withLock { $0 += Int64(milliseconds) }
        }
    }

    let time = ManualClock()

    func cache(capacity: Int = 100, history: Int = 16, cachesPending: Bool = true) -> AuthenticationCache {
        AuthenticationCache(capacity: capacity, cachesPending: cachesPending, invalidationHistory: history, clock: time.clock)
    }

    func record(_ id: String, _ state: AuthenticationState = .pending, deadlineInMilliseconds: Int64 = 60_000,
                pastDeadline: Bool = false, consumer: String = "alice") -> AuthenticationRecord {
        AuthenticationRecord(
            id: 1, issuerId: "ISSUER0001", consumerId: consumer, request: AuthenticateRequest(authenticationId: id),
            status: AuthenticationStatus(state: state, reason: state == .authenticationFailed ? "expired" : nil),
            deadlineUnixMilliseconds: time.wall.withLock { $0 } + deadlineInMilliseconds, isPastDeadline: pastDeadline)
    }

    func get(_ cache: AuthenticationCache, _ id: String) -> AuthenticationState? {
        cache.get(issuerId: "ISSUER0001", authenticationId: id)?.status.state
    }

    /// Connected, with a heartbeat just back: PENDING can be answered.
    func inStep(_ cache: AuthenticationCache) {
        cache.handle(.connected)
        cache.handle(.heartbeat(sentAtNanoseconds: time.now))
    }

    @Test func finalsAreAnsweredAlwaysEvenWithoutAListener() {
        let cache = cache()
        cache.remember(record("a", .authenticated), since: cache.sequence)
        #expect(get(cache, "a") == .authenticated)
        cache.handle(.disconnected)
        time.advance(milliseconds: 3_600_000)
        #expect(get(cache, "a") == .authenticated)
        cache.invalidate(issuerId: "ISSUER0001", authenticationId: "a")
        #expect(get(cache, "a") == .authenticated, "a final never changes: an announcement does not drop it")
        #expect(cache.statistics.finalHits == 3)
    }

    @Test func pendingIsAnsweredOnlyWithinSeventyFiveMillisecondsOfTheLastHeartbeatSent() {
        let cache = cache()
        cache.remember(record("p"), since: cache.sequence)
        #expect(cache.count == 0, "not stored without a listener")
        cache.handle(.connected)
        cache.remember(record("p"), since: cache.sequence)
        #expect(cache.count == 1)
        #expect(get(cache, "p") == nil, "no heartbeat back yet")
        let sent = time.now
        time.advance(milliseconds: 30)
        cache.handle(.heartbeat(sentAtNanoseconds: sent))
        #expect(get(cache, "p") == .pending)
        time.advance(milliseconds: 44)
        #expect(get(cache, "p") == .pending, "74 ms after the heartbeat was sent")
        time.advance(milliseconds: 1)
        #expect(get(cache, "p") == nil, "75 ms after: not fresh")
        // An older heartbeat coming back late does not make it fresh again.
        cache.handle(.heartbeat(sentAtNanoseconds: sent - 1_000_000))
        #expect(get(cache, "p") == nil)
        cache.handle(.heartbeat(sentAtNanoseconds: time.now - 10_000_000))
        #expect(get(cache, "p") == .pending)
        #expect(cache.statistics.pendingHits == 3)
        #expect(cache.statistics.fresh)
    }

    @Test func pendingIsNeverAnsweredWithinOneSecondOfItsDeadline() {
        let cache = cache()
        inStep(cache)
        cache.remember(record("near", deadlineInMilliseconds: 1_050), since: cache.sequence)
        cache.remember(record("past", deadlineInMilliseconds: -5, pastDeadline: true), since: cache.sequence)
        #expect(get(cache, "near") == .pending)
        time.advance(milliseconds: 49)
        cache.handle(.heartbeat(sentAtNanoseconds: time.now))
        #expect(get(cache, "near") == .pending, "1001 ms before the deadline")
        time.advance(milliseconds: 1)
        #expect(get(cache, "near") == nil, "1000 ms before the deadline: the database decides")
        #expect(get(cache, "past") == nil)
    }

    @Test func anAnnouncementDropsAPendingRecord() {
        let cache = cache()
        inStep(cache)
        cache.remember(record("p"), since: cache.sequence)
        cache.remember(record("q"), since: cache.sequence)
        cache.handle(.notification("ISSUER0001/p"))
        #expect(get(cache, "p") == nil)
        #expect(get(cache, "q") == .pending)
        // The database's answer after the change is final, and stays.
        cache.remember(record("p", .authenticated), since: cache.sequence)
        #expect(get(cache, "p") == .authenticated)
        #expect(cache.statistics.invalidations == 1)
    }

    @Test func oneAnnouncementOfSeveralKeysDropsEachPendingRecord() {
        let cache = cache()
        inStep(cache)
        for id in ["p", "q", "r"] { cache.remember(record(id), since: cache.sequence) }
        let since = cache.sequence
        // One statement's keys, as the schema's trigger sends them.
        cache.handle(.notification("ISSUER0001/p ISSUER0001/r ISSUER0001/unknown"))
        #expect(get(cache, "p") == nil)
        #expect(get(cache, "q") == .pending)
        #expect(get(cache, "r") == nil)
        #expect(cache.statistics.invalidations == 3)
        // A read in flight across the announcement is not stored for any of its keys.
        cache.remember(record("r"), since: since)
        #expect(get(cache, "r") == nil, "stale PENDING kept")
    }

    @Test func aReadThatSawPendingBeforeTheChangeIsNotStoredAfterIt() {
        let cache = cache()
        inStep(cache)
        // The poll's statement is sent, a decision commits and is announced, then the poll's
        // PENDING result arrives.
        let since = cache.sequence
        cache.handle(.notification("ISSUER0001/p"))
        cache.remember(record("p"), since: since)
        #expect(get(cache, "p") == nil, "stale PENDING kept")
        // Changes to other keys in between do not matter.
        let later = cache.sequence
        cache.handle(.notification("ISSUER0001/other"))
        cache.invalidate(issuerId: "ISSUER0001", authenticationId: "another")
        cache.remember(record("p"), since: later)
        #expect(get(cache, "p") == .pending)
        // Nor does a change to the key from before the read.
        cache.handle(.notification("ISSUER0001/q"))
        let afterChange = cache.sequence
        cache.remember(record("q"), since: afterChange)
        #expect(get(cache, "q") == .pending)
    }

    @Test func whenTheRingOfRecentChangesWrappedNothingPendingIsStored() {
        let cache = cache(history: 4)
        inStep(cache)
        let since = cache.sequence
        for index in 0..<4 { cache.handle(.notification("ISSUER0001/x\(index)")) }
        cache.remember(record("p"), since: since)
        #expect(get(cache, "p") == .pending, "4 changes since: all still in the ring")
        let since2 = cache.sequence
        for index in 0..<5 { cache.handle(.notification("ISSUER0001/y\(index)")) }
        cache.remember(record("q"), since: since2)
        #expect(get(cache, "q") == nil, "5 changes since: the ring no longer tells")
        // A key changed long ago (out of the ring) does not block a fresh read.
        cache.handle(.notification("ISSUER0001/r"))
        for index in 0..<4 { cache.handle(.notification("ISSUER0001/z\(index)")) }
        let since3 = cache.sequence
        cache.remember(record("r"), since: since3)
        #expect(get(cache, "r") == .pending)
    }

    @Test func losingTheListenerDropsEveryPendingAndReadsInFlight() {
        let cache = cache()
        inStep(cache)
        cache.remember(record("p"), since: cache.sequence)
        cache.remember(record("f", .authenticationFailed), since: cache.sequence)
        let inFlight = cache.sequence
        cache.handle(.disconnected)
        #expect(get(cache, "p") == nil)
        #expect(get(cache, "f") == .authenticationFailed)
        #expect(!cache.statistics.listening)
        cache.remember(record("q"), since: cache.sequence)
        #expect(cache.statistics.records == 2, "nothing PENDING is stored while disconnected")
        // Back in step: what was held before, and reads sent before, may have missed a change.
        inStep(cache)
        #expect(get(cache, "p") == nil)
        cache.remember(record("s"), since: inFlight)
        #expect(get(cache, "s") == nil)
        cache.remember(record("p"), since: cache.sequence)
        #expect(get(cache, "p") == .pending)
    }

    @Test func aPendingNeverReplacesAFinalAndAFinalReplacesAPending() {
        let cache = cache()
        inStep(cache)
        cache.remember(record("a", .authenticated), since: cache.sequence)
        cache.remember(record("a"), since: cache.sequence)
        #expect(get(cache, "a") == .authenticated)
        cache.remember(record("b"), since: cache.sequence)
        cache.remember(record("b", .technicalError), since: cache.sequence)
        #expect(get(cache, "b") == .technicalError)
    }

    @Test func withoutThePendingCacheOnlyFinalsAreKept() {
        let cache = cache(cachesPending: false)
        inStep(cache)
        cache.remember(record("p"), since: cache.sequence)
        cache.remember(record("f", .authenticated), since: cache.sequence)
        #expect(get(cache, "p") == nil)
        #expect(get(cache, "f") == .authenticated)
        #expect(cache.count == 1)
    }

    @Test func boundedTheOldestGoFirst() {
        let cache = cache(capacity: 3)
        inStep(cache)
        for id in ["a", "b", "c"] { cache.remember(record(id, .authenticated), since: cache.sequence) }
        cache.remember(record("p"), since: cache.sequence)
        #expect(cache.count == 3)
        #expect(get(cache, "a") == nil)
        #expect(get(cache, "b") == .authenticated)
        // A dropped PENDING leaves room; stored again, it is the newest.
        cache.handle(.notification("ISSUER0001/p"))
        #expect(cache.count == 2)
        cache.remember(record("d", .authenticated), since: cache.sequence)
        cache.remember(record("p", .authenticated), since: cache.sequence)
        #expect(cache.count == 3)
        #expect(get(cache, "b") == nil)
        #expect(get(cache, "c") == .authenticated && get(cache, "d") == .authenticated && get(cache, "p") == .authenticated)
        // Many more than the capacity, with churn: the count stays bounded.
        for index in 0..<10_000 {
            cache.remember(record("n\(index)"), since: cache.sequence)
            if index % 2 == 0 { cache.handle(.notification("ISSUER0001/n\(index)")) }
        }
        #expect(cache.count <= 3)
        #expect(get(cache, "n9999") == .pending)
    }

    /// The insertion order is a fixed ring: many laps around it keep exact oldest-first eviction,
    /// and a slot freed by an invalidation is taken again without disturbing the order.
    @Test func evictionStaysOldestFirstOverManyLapsOfTheRing() {
        let capacity = 5
        let cache = cache(capacity: capacity)
        inStep(cache)
        for index in 0..<1_000 {
            cache.remember(record("f\(index)", .authenticated), since: cache.sequence)
            #expect(cache.count == min(index + 1, capacity))
        }
        for index in 0..<1_000 {
            let expected: AuthenticationState? = index >= 1_000 - capacity ? .authenticated : nil
            #expect(get(cache, "f\(index)") == expected, "f\(index)")
        }
        // Interleaved: a PENDING stored then dropped each time, finals kept.
        var kept: [String] = []
        for index in 0..<500 {
            cache.remember(record("p\(index)"), since: cache.sequence)
            cache.handle(.notification("ISSUER0001/p\(index)"))
            if index % 7 == 0 {
                cache.remember(record("k\(index)", .authenticated), since: cache.sequence)
                kept.append("k\(index)")
            }
            #expect(cache.count <= capacity)
        }
        #expect(get(cache, "p499") == nil)
        for (position, id) in kept.enumerated() {
            // Only the newest finals survive; how many depends on how often stale pairs lapped
            // the ring, but never more than the capacity and always the most recent one.
            if position == kept.count - 1 { #expect(get(cache, id) == .authenticated) }
        }
        let survivors = kept.filter { get(cache, $0) != nil }
        #expect(survivors.count <= capacity && survivors == Array(kept.suffix(survivors.count)), "\(survivors)")
    }

    @Test func anotherConsumersRecordIsNotFoundFromMemory() {
        let cache = cache()
        let store = CachedOnlyStore(cache: cache)
        let service = AuthenticationService(store: store)
        cache.remember(record("a", .authenticated, consumer: "bob"), since: cache.sequence)
        #expect(service.pollFromMemory(issuerId: "ISSUER0001", consumerId: "alice", authenticationId: "a") == .notFound)
        guard case .status(let status, _)? = service.pollFromMemory(issuerId: "ISSUER0001", consumerId: "bob", authenticationId: "a") else {
            Issue.record("bob's own record is answered from memory")
            return
        }
        #expect(status.state == .authenticated)
        #expect(service.pollFromMemory(issuerId: "ISSUER0001", consumerId: "bob", authenticationId: "unknown") == nil)
        let memoryless = AuthenticationService(store: InMemoryAuthenticationStore())
        #expect(memoryless.pollFromMemory(issuerId: "ISSUER0001", consumerId: "bob", authenticationId: "a") == nil)
    }
}

/// A store whose only answers come from a cache (the rest is never called here).
struct CachedOnlyStore: AuthenticationStore {
    let cache: AuthenticationCache
    struct Unused: Error {}
    func create(_ new: NewAuthentication) async throws -> CreateResult { throw Unused() }
    func find(issuerId: String, authenticationId: String) async throws -> AuthenticationRecord? { throw Unused() }
    func transition(_ request: TransitionRequest) async throws -> TransitionResult { throw Unused() }
    func applyDecision(_ request: DecisionRequest, target: AuthenticationStatus, actor: String) async throws -> DecisionApplyResult {
        throw Unused()
    }
    func isActiveAuthenticator(issuerId: String, consumerId: String, appInstanceId: String) async throws -> Bool { throw Unused() }
    func recordRefused(_ attempt: RefusedAttempt) async throws { throw Unused() }
    func pendingChallenges(issuerId: String, consumerId: String, limit: Int) async throws -> [AuthenticationRecord] { throw Unused() }
    func cachedRecord(issuerId: String, authenticationId: String) -> AuthenticationRecord? {
        cache.get(issuerId: issuerId, authenticationId: authenticationId)
    }
}
