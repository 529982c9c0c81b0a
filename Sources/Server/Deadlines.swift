import Dispatch
package import Engine
import Glibc
package import JSON
package import Postgres
import Synchronization

/// Wall-clock milliseconds: deadlines are absolute instants stored by PostgreSQL, so the wheel
/// counts in the same time base (the database's `deadline <= now()` stays the final word).
package enum WallClock {
    package static func milliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec / 1_000_000)
    }
}

/// One repeating `DispatchSourceTimer`, started at most once, safe to release unstarted
/// (libdispatch traps when a source that was never resumed is released).
final class RepeatingTimer: Sendable {
    // Dispatch sources are thread-safe; the protocol just isn't annotated Sendable.
    private nonisolated(unsafe) let source: any DispatchSourceTimer
    private let started = Mutex(false)
    private let interval: DispatchTimeInterval
    private let leeway: DispatchTimeInterval

    init(label: String, interval: DispatchTimeInterval, leeway: DispatchTimeInterval, strict: Bool = false) {
        source = DispatchSource.makeTimerSource(flags: strict ? .strict : [], queue: DispatchQueue(label: label))
        self.interval = interval
        self.leeway = leeway
    }

    func start(_ handler: @escaping @Sendable () -> Void) {
        guard started.withLock({ started in defer { started = true }; return !started }) else { return }
        source.schedule(deadline: .now() + interval, repeating: interval, leeway: leeway)
        source.setEventHandler(handler: handler)
        source.resume()
    }

    func stop() {
        if started.withLock({ $0 }) { source.cancel() }
    }

    deinit {
        if !started.withLock({ $0 }) {
            source.cancel()
            source.resume()
        }
    }
}

/// Counters for the operations endpoints: timers pending, fired, lateness (fire − deadline).
package final class DeadlineMetrics: Sendable {
    /// Upper bounds of the lateness histogram buckets, in milliseconds (+Inf implied).
    package static let latenessBuckets: [Int64] = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

    package struct Snapshot: Sendable {
        package var pending: Int
        package var fired: Int
        package var sweptEnded: Int
        package var pollEnded: Int
        package var latenessCounts: [Int]   // one per bucket, plus +Inf last
        package var latenessSumMilliseconds: Int64
    }

    private let state = Mutex(Snapshot(pending: 0, fired: 0, sweptEnded: 0, pollEnded: 0,
                                       latenessCounts: Array(repeating: 0, count: DeadlineMetrics.latenessBuckets.count + 1),
                                       latenessSumMilliseconds: 0))

    package init() {}

    package var snapshot: Snapshot { state.withLock { $0 } }

    func setPending(_ count: Int) { state.withLock { $0.pending = count } }

    func recordFired(latenessMilliseconds: [Int64]) {
        state.withLock { snapshot in
            snapshot.fired += latenessMilliseconds.count
            for lateness in latenessMilliseconds {
                let bucket = Self.latenessBuckets.firstIndex { lateness <= $0 } ?? Self.latenessBuckets.count
                snapshot.latenessCounts[bucket] += 1
                snapshot.latenessSumMilliseconds += max(0, lateness)
            }
        }
    }

    func recordSwept(_ count: Int) { state.withLock { $0.sweptEnded += count } }
}

/// The in-memory side of deadlines: a `TimerWheel` behind a lock, advanced by one
/// `DispatchSourceTimer`. What expires is handed to `DeadlineExpirer`, which ends it in
/// PostgreSQL with one conditional statement per tick. Memory only speeds things up: the
/// sweeper and every poll end authentications from the database alone.
package final class DeadlineScheduler: DeadlineTracker, Sendable {
    package let tickMilliseconds: Int64
    private let wheel: Mutex<TimerWheel>
    private let timer: RepeatingTimer
    private let onExpire: @Sendable ([TimerWheel.Expired]) -> Void
    private let metrics: DeadlineMetrics

    package init(tickMilliseconds: Int, metrics: DeadlineMetrics,
                 onExpire: @escaping @Sendable ([TimerWheel.Expired]) -> Void) {
        self.tickMilliseconds = Int64(max(1, tickMilliseconds))
        self.metrics = metrics
        self.onExpire = onExpire
        let now = WallClock.milliseconds() / Int64(max(1, tickMilliseconds))
        wheel = Mutex(TimerWheel(slotCount: 4096, startTick: now))
        timer = RepeatingTimer(label: "oob.deadlines.timer", interval: .milliseconds(tickMilliseconds),
                               leeway: .milliseconds(max(1, tickMilliseconds / 10)), strict: true)
    }

    /// The tick at which a deadline fires: the first tick boundary at or after it, so a timer
    /// never fires early by the engine's clock.
    func tick(forDeadline milliseconds: Int64) -> Int64 {
        (milliseconds + tickMilliseconds - 1) / tickMilliseconds
    }

    package func track(id: UInt64, deadlineUnixMilliseconds: Int64) {
        let tick = tick(forDeadline: deadlineUnixMilliseconds)
        let pending = wheel.withLock { wheel in
            wheel.schedule(id: id, at: tick)
            return wheel.count
        }
        metrics.setPending(pending)
    }

    /// Many at once under one lock (recovery).
    package func track(_ batch: [(id: UInt64, deadlineUnixMilliseconds: Int64)]) {
        let pending = wheel.withLock { wheel in
            for item in batch { wheel.schedule(id: item.id, at: tick(forDeadline: item.deadlineUnixMilliseconds)) }
            return wheel.count
        }
        metrics.setPending(pending)
    }

    package func forget(id: UInt64) {
        let pending = wheel.withLock { wheel in
            wheel.cancel(id: id)
            return wheel.count
        }
        metrics.setPending(pending)
    }

    package var pendingCount: Int { wheel.withLock { $0.count } }

    /// Advances to the current time and hands over what expired. Also what the Dispatch
    /// timer calls each tick.
    package func fireDue(nowMilliseconds: Int64 = WallClock.milliseconds()) {
        let now = nowMilliseconds / tickMilliseconds
        let (expired, pending) = wheel.withLock { wheel in
            (wheel.advance(to: now), wheel.count)
        }
        metrics.setPending(pending)
        if !expired.isEmpty { onExpire(expired) }
    }

    package func start() {
        timer.start { [weak self] in self?.fireDue() }
    }

    package func stop() {
        timer.stop()
    }
}

/// Ends expired authentications in PostgreSQL, in batches, off the cooperative thread pool.
package final class DeadlineExpirer: Sendable {
    /// Ends every listed authentication that is still PENDING and due by the database's clock,
    /// with its transition row, in one statement; returns what it ended (with lateness) and
    /// what the database does not consider due yet (clock skew between hosts).
    static let expireBatch = PostgresStatement("deadline_expire_batch", """
        with locked as (
            -- Row locks in id order, as the batched decisions take them: no deadlock between them.
            select id from authentications
            where id = any($1::bigint[]) and state = 'PENDING' and deadline <= now()
            order by id
            for update
        ), ended as (
            update authentications set state = 'AUTHENTICATION_FAILED', reason = '\(AuthenticationReason.expired)'
            where id in (select id from locked) and state = 'PENDING' and deadline <= now()
            returning id, deadline
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor)
            select id, 'PENDING', 'AUTHENTICATION_FAILED', 'timer', $2 from ended
        ), early as (
            select id, deadline from authentications
            where id = any($1::bigint[]) and state = 'PENDING' and deadline > now()
        )
        select 'ended' as kind, id, (extract(epoch from (clock_timestamp() - deadline)) * 1000)::bigint as ms from ended
        union all
        select 'early', id, (extract(epoch from deadline) * 1000)::bigint from early
        """, planning: .generic)

    static let maxBatch = 5000

    private let pool: PostgresPool
    private let queue = DispatchQueue(label: "oob.deadlines.expire")
    private let actor: String
    private let logger: Logger
    private let metrics: DeadlineMetrics
    /// Set after init (the scheduler and the expirer refer to each other).
    private let scheduler = Mutex<DeadlineScheduler?>(nil)

    package init(pool: PostgresPool, instance: String, logger: Logger, metrics: DeadlineMetrics) {
        self.pool = pool
        self.actor = "timer@" + instance
        self.logger = logger
        self.metrics = metrics
    }

    package func attach(_ scheduler: DeadlineScheduler) { self.scheduler.withLock { $0 = scheduler } }

    package func expire(_ expired: [TimerWheel.Expired]) {
        queue.async { [self] in
            var start = 0
            while start < expired.count {
                let batch = Array(expired[start..<min(expired.count, start + Self.maxBatch)])
                start += Self.maxBatch
                run(batch)
            }
        }
    }

    private func run(_ batch: [TimerWheel.Expired]) {
        let ids = "{" + batch.map { String($0.id) }.joined(separator: ",") + "}"
        do {
            let rows = try pool.withConnectionBlocking { connection in
                try connection.execute(Self.expireBatch, [ids, self.actor])
            }
            var lateness: [Int64] = []
            var early: [(UInt64, Int64)] = []
            for row in 0..<rows.count {
                guard let id = rows.int(row, "id"), let ms = rows.int(row, "ms") else { continue }
                if rows.string(row, "kind") == "ended" { lateness.append(Int64(ms)) } else { early.append((UInt64(id), Int64(ms))) }
            }
            metrics.recordFired(latenessMilliseconds: lateness)
            Metrics.authenticationsEnded(.authenticationFailed, cause: .timer, count: lateness.count)
            if let scheduler = scheduler.withLock({ $0 }) {
                for (id, deadline) in early { scheduler.track(id: id, deadlineUnixMilliseconds: deadline + scheduler.tickMilliseconds) }
            }
        } catch {
            // The database is the source of truth: retry in a second; meanwhile a poll or
            // another instance's sweeper may end them, which the conditional update tolerates.
            logger.warning("ending expired authentications failed; retrying", ["count": String(batch.count),
                                                                              "error": String(describing: error)])
            if let scheduler = scheduler.withLock({ $0 }) {
                let retryAt = WallClock.milliseconds() + 1000
                for item in batch { scheduler.track(id: item.id, deadlineUnixMilliseconds: retryAt) }
            }
        }
    }
}

/// Ends what no wheel will: authentications left PENDING past their deadline plus a grace by
/// an instance that died. Every instance runs one; `FOR UPDATE SKIP LOCKED` keeps them from
/// queueing behind each other, and the `state = 'PENDING'` condition makes a double firing
/// harmless.
package final class DeadlineSweeper: Sendable {
    static let sweep = PostgresStatement("deadline_sweep", """
        with due as (
            select id from authentications
            where state = 'PENDING' and deadline < now() - make_interval(secs => $1::int)
            order by deadline
            limit $2::int
            for update skip locked
        ), ended as (
            update authentications a set state = 'AUTHENTICATION_FAILED', reason = '\(AuthenticationReason.expired)'
            from due where a.id = due.id and a.state = 'PENDING'
            returning a.id
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor)
            select id, 'PENDING', 'AUTHENTICATION_FAILED', 'sweeper', $3 from ended
        )
        select id from ended
        """)

    private let pool: PostgresPool
    private let configuration: ConfigFile.Timer
    private let actor: String
    private let logger: Logger
    private let metrics: DeadlineMetrics
    private let scheduler: DeadlineScheduler?
    private let timer: RepeatingTimer

    package init(pool: PostgresPool, configuration: ConfigFile.Timer, instance: String, logger: Logger,
                 metrics: DeadlineMetrics, scheduler: DeadlineScheduler?) {
        self.pool = pool
        self.configuration = configuration
        self.actor = "sweeper@" + instance
        self.logger = logger
        self.metrics = metrics
        self.scheduler = scheduler
        self.timer = RepeatingTimer(label: "oob.deadlines.sweep", interval: .seconds(configuration.sweepIntervalSeconds),
                                    leeway: .milliseconds(100))
    }

    /// One pass: repeats while batches come back full, at most 100 batches per pass.
    @discardableResult
    package func sweepOnce() throws -> Int {
        var total = 0
        for _ in 0..<100 {
            let rows = try pool.withConnectionBlocking { connection in
                try connection.execute(Self.sweep, [String(self.configuration.sweepGraceSeconds),
                                                    String(self.configuration.sweepBatchSize), self.actor])
            }
            for row in 0..<rows.count { if let id = rows.int(row, "id") { scheduler?.forget(id: UInt64(id)) } }
            total += rows.count
            if rows.count < configuration.sweepBatchSize { break }
        }
        if total > 0 {
            metrics.recordSwept(total)
            Metrics.authenticationsEnded(.authenticationFailed, cause: .sweeper, count: total)
            logger.info("sweeper ended authentications left past their deadline", ["count": String(total)])
        }
        return total
    }

    package func start() {
        timer.start { [weak self] in
            guard let self else { return }
            do {
                try self.sweepOnce()
            } catch {
                self.logger.warning("sweep failed; next pass in \(self.configuration.sweepIntervalSeconds) s",
                                    ["error": String(describing: error)])
            }
        }
    }

    package func stop() {
        timer.stop()
    }
}

/// Start-up recovery: loads every PENDING deadline into the wheel, in keyset-paginated
/// batches over the partial index on PENDING deadlines, while the server already answers.
package final class DeadlineRecovery: Sendable {
    package enum Phase: String, Sendable { case waiting, running, done, failed }

    package struct Progress: Sendable {
        package var phase: Phase = .waiting
        package var loaded = 0
        package var batches = 0
        package var elapsedMilliseconds: Int64 = 0
        package var error: String?
    }

    /// One streaming read of every PENDING deadline; rows are parsed from COPY's text bytes
    /// without building strings and handed to the wheel in batches. `date_part` (a double) is
    /// much cheaper than `extract` (numeric) over a million rows; `ceil` keeps the millisecond
    /// at or after the real deadline, so nothing is scheduled early.
    static let copyPending = """
        copy (select id, ceil(date_part('epoch', deadline) * 1000)::bigint from authentications
              where state = 'PENDING') to stdout
        """

    private let pool: PostgresPool
    private let scheduler: DeadlineScheduler
    private let logger: Logger
    private let batchSize: Int
    private let state = Mutex(Progress())

    package init(pool: PostgresPool, scheduler: DeadlineScheduler, logger: Logger, batchSize: Int = 10_000) {
        self.pool = pool
        self.scheduler = scheduler
        self.logger = logger
        self.batchSize = batchSize
    }

    package var progress: Progress { state.withLock { $0 } }

    /// Runs on its own thread; retries while the database is unavailable.
    package func start() {
        NamedThread.start("oob-recovery") { [self] in run() }
    }

    package func run() {
        let started = MonotonicTime.microseconds()
        state.withLock { $0.phase = .running }
        var attempts = 0
        while true {
            do {
                state.withLock { $0.loaded = 0; $0.batches = 0 }
                try pool.withConnectionBlocking { connection in
                    var batch: [(id: UInt64, deadlineUnixMilliseconds: Int64)] = []
                    batch.reserveCapacity(self.batchSize)
                    try connection.copyOutRaw(Self.copyPending) { row in
                        guard let parsed = Self.parseRow(row) else { throw StoreError.inconsistent("unexpected recovery row") }
                        batch.append(parsed)
                        if batch.count == self.batchSize { self.flush(&batch, started: started) }
                    }
                    self.flush(&batch, started: started)
                }
                break
            } catch {
                // Rescheduling what is already on the wheel is harmless, so start over.
                attempts += 1
                state.withLock { $0.error = String(describing: error) }
                logger.warning("deadline recovery failed; retrying", ["error": String(describing: error)])
                if attempts > 120 {
                    state.withLock { $0.phase = .failed }
                    return
                }
                usleep(500_000)
            }
        }
        // Deadlines already past fire on the wheel's next tick.
        let progress = state.withLock { progress -> Progress in
            progress.phase = .done
            progress.error = nil
            progress.elapsedMilliseconds = (MonotonicTime.microseconds() - started) / 1000
            return progress
        }
        logger.info("deadline recovery done", ["loaded": String(progress.loaded),
                                                "ms": String(progress.elapsedMilliseconds)])
    }

    private func flush(_ batch: inout [(id: UInt64, deadlineUnixMilliseconds: Int64)], started: Int64) {
        guard !batch.isEmpty else { return }
        scheduler.track(batch)
        let count = batch.count
        state.withLock {
            $0.loaded += count
            $0.batches += 1
            $0.elapsedMilliseconds = (MonotonicTime.microseconds() - started) / 1000
        }
        batch.removeAll(keepingCapacity: true)
    }

    /// `<id>\t<milliseconds>\n`: two decimal integers (the deadline may be negative in theory).
    package static func parseRow(_ row: UnsafeRawBufferPointer) -> (id: UInt64, deadlineUnixMilliseconds: Int64)? {
        var index = 0
        var id: UInt64 = 0
        var digits = 0
        while index < row.count, row[index] >= 0x30, row[index] <= 0x39 {
            id = id &* 10 &+ UInt64(row[index] - 0x30)
            index += 1
            digits += 1
        }
        guard digits > 0, digits <= 19, index < row.count, row[index] == 0x09 else { return nil }
        index += 1
        var negative = false
        if index < row.count, row[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var value: Int64 = 0
        digits = 0
        while index < row.count, row[index] >= 0x30, row[index] <= 0x39 {
            value = value &* 10 &+ Int64(row[index] - 0x30)
            index += 1
            digits += 1
        }
        guard digits > 0, digits <= 18, index == row.count || (index == row.count - 1 && row[index] == 0x0A) else { return nil }
        return (id, negative ? -value : value)
    }

    package var json: JSONValue {
        let progress = self.progress
        var members: [(String, JSONValue)] = [
            ("state", .string(progress.phase.rawValue)), ("loaded", .number(JSONNumber(progress.loaded))),
            ("elapsedMilliseconds", .number(JSONNumber(progress.elapsedMilliseconds))),
        ]
        if let error = progress.error { members.append(("lastError", .string(error))) }
        return .object(JSONObject(members))
    }
}
