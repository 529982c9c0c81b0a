import Dispatch
import Glibc
import Synchronization

/// One notification as libpq received it (`PGnotify`).
package struct PostgresNotification: Sendable, Hashable {
    package var channel: String
    package var payload: String
    /// The server process of the session that sent it.
    package var senderProcessID: Int32
}

/// LISTENs on one channel on a connection of its own (outside the pool, on a thread of its
/// own) and hands what arrives to `onEvent`, in the order it arrived.
///
/// Every `heartbeatInterval` it also sends `select pg_notify(channel, '')` on that connection and
/// reports, when that notification comes back, the monotonic time at which it was SENT. PostgreSQL
/// delivers notifications in the order their transactions committed, and only once their changes
/// are visible (https://www.postgresql.org/docs/current/sql-notify.html): when a heartbeat sent at
/// `s` comes back, every change committed before `s` has been delivered before it. A reader of
/// memory filled from these notifications is therefore at most `now − s` behind the database.
///
/// On any connection error it reports `.disconnected` (notifications may have been missed),
/// waits (backing off up to `maximumBackoff`), reconnects and LISTENs again, then reports
/// `.connected`. Call `shutdown()` when done.
package final class PostgresNotificationListener: Sendable {
    package enum Event: Sendable, Hashable {
        /// LISTEN is in effect: every change committed from now on will be delivered.
        case connected
        /// A non-empty payload on the channel.
        case notification(String)
        /// This listener's own heartbeat came back; it was sent at this `monotonicNanoseconds()`.
        case heartbeat(sentAtNanoseconds: UInt64)
        /// The connection failed or was lost: what was sent meanwhile may never arrive.
        case disconnected
    }

    package let channel: String
    private let configuration: PostgresConfiguration
    private let heartbeatNanoseconds: UInt64
    private let maximumBackoffNanoseconds: UInt64
    /// A heartbeat (statement or notification) outstanding this long means the session is stuck.
    private let stallNanoseconds: UInt64
    private let onEvent: @Sendable (Event) -> Void
    private let state = Mutex(State())
    /// Signalled by `shutdown()`, so a back-off wait ends at once.
    private let wakeup = DispatchSemaphore(value: 0)
    /// Signalled by the thread as it exits.
    private let finished = DispatchSemaphore(value: 0)

    private struct State {
        var started = false
        var stopping = false
        var backendProcessID: Int32?
    }

    /// `channel` is a plain lower-case identifier (letters, digits, `_`), so it needs no quoting rules.
    package init(configuration: PostgresConfiguration, channel: String, heartbeatInterval: Duration = .milliseconds(20),
                 maximumBackoff: Duration = .seconds(2), stallTimeout: Duration = .seconds(5),
                 onEvent: @escaping @Sendable (Event) -> Void) {
        precondition(!channel.isEmpty && channel.utf8.count < 64
                     && channel.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F },
                     "a channel is a lower-case identifier")
        self.configuration = configuration
        self.channel = channel
        self.heartbeatNanoseconds = max(1_000_000, Self.nanoseconds(heartbeatInterval))
        self.maximumBackoffNanoseconds = max(10_000_000, Self.nanoseconds(maximumBackoff))
        self.stallNanoseconds = max(self.heartbeatNanoseconds * 2, Self.nanoseconds(stallTimeout))
        self.onEvent = onEvent
    }

    /// CLOCK_MONOTONIC in nanoseconds: the time base of `Event.heartbeat`.
    package static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// The server process of the listening session while connected (for `pg_stat_activity`,
    /// and tests that terminate it).
    package var backendProcessID: Int32? { state.withLock { $0.backendProcessID } }

    /// Starts the thread; a second call does nothing.
    package func start() {
        let first = state.withLock { state -> Bool in
            guard !state.started, !state.stopping else { return false }
            state.started = true
            return true
        }
        guard first else { return }
        NamedThread.start("postgres-listen") { [self] in
            run()
            finished.signal()
        }
    }

    /// Stops the thread and closes its connection. Bounded: a connection attempt in progress
    /// ends within the connect timeout. Idempotent.
    package func shutdown() {
        let wasRunning = state.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.stopping = true
            return state.started
        }
        guard wasRunning else { return }
        wakeup.signal()
        _ = finished.wait(timeout: .now() + .seconds(max(configuration.connectTimeoutSeconds, 2) + 2))
    }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    private func run() {
        let initialBackoff: UInt64 = 50_000_000
        var backoff = initialBackoff
        while !isStopping {
            do {
                let connection = try PostgresConnection.connect(configuration)
                _ = try connection.query("listen \"\(channel)\"")
                // A heartbeat needs no durability: its commit need not wait for the WAL flush
                // (committing a NOTIFY holds a database-wide lock until the commit is done).
                _ = try connection.query("set synchronous_commit = off")
                backoff = initialBackoff
                state.withLock { $0.backendProcessID = connection.backendProcessID }
                onEvent(.connected)
                try listen(on: connection)
                state.withLock { $0.backendProcessID = nil }
                return
            } catch {
                state.withLock { $0.backendProcessID = nil }
                onEvent(.disconnected)
                if isStopping { return }
                _ = wakeup.wait(timeout: .now() + .nanoseconds(Int(backoff)))
                backoff = min(backoff * 2, maximumBackoffNanoseconds)
            }
        }
    }

    private struct Stalled: Error {}

    /// Sends heartbeats and hands on notifications until shutdown (returns) or an error (throws).
    private func listen(on connection: PostgresConnection) throws {
        let ownProcessID = connection.backendProcessID
        // Send times of our heartbeats not yet back. Our own notifications come back in the order
        // we sent them; if one never did, the next would be matched with an earlier send time,
        // which only understates freshness.
        var sentTimes: [UInt64] = []
        var statementInFlight = false
        var nextHeartbeat = Self.monotonicNanoseconds()
        while !isStopping {
            let now = Self.monotonicNanoseconds()
            if !statementInFlight, now >= nextHeartbeat {
                sentTimes.append(now)
                try connection.send("select pg_notify($1, '')", [channel])
                statementInFlight = true
                nextHeartbeat = now + heartbeatNanoseconds
            }
            if let oldest = sentTimes.first, now > oldest, now - oldest > stallNanoseconds { throw Stalled() }
            // Wake for the next heartbeat, or (its statement still running) within one interval.
            let wait = statementInFlight || nextHeartbeat <= now ? heartbeatNanoseconds : nextHeartbeat - now
            if try connection.waitUntilReadable(timeoutMilliseconds: Int32((wait + 999_999) / 1_000_000)) {
                try connection.consumeInput()
            }
            if statementInFlight, try connection.collectResults() { statementInFlight = false }
            for notification in connection.takeNotifications() where notification.channel == channel {
                if !notification.payload.isEmpty {
                    onEvent(.notification(notification.payload))
                } else if notification.senderProcessID == ownProcessID, !sentTimes.isEmpty {
                    onEvent(.heartbeat(sentAtNanoseconds: sentTimes.removeFirst()))
                }
                // Other instances' heartbeats (empty payloads from other sessions) mean nothing here.
            }
        }
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
    }
}
