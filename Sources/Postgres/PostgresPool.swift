import Dispatch
import Synchronization

/// A snapshot of the pool, for metrics and tests.
package struct PostgresPoolStatistics: Sendable, Equatable, CustomStringConvertible {
    /// Connections currently open.
    package var open: Int
    /// Pool threads parked, waiting for work.
    package var idle: Int
    /// Pool threads running a request (or opening its connection).
    package var busy: Int
    /// Requests queued for a free thread.
    package var waiting: Int
    /// Requests that got a connection so far, and their total wait for it (queue time).
    package var acquired: Int = 0
    package var acquireWaitSeconds: Double = 0
    /// Requests that gave up waiting (`.poolTimeout`).
    package var acquireTimeouts: Int = 0

    package var description: String {
        "open=\(open) idle=\(idle) busy=\(busy) waiting=\(waiting) acquired=\(acquired) timeouts=\(acquireTimeouts)"
    }
}

/// A bounded pool of PostgreSQL connections, each owned by its own dedicated thread.
///
/// libpq blocks the calling thread for every round trip, so the work never runs on Swift's
/// cooperative thread pool (a few slow queries would starve every task in the process): each of
/// up to `poolSize` threads owns one connection and runs queued closures on it, and the waiting
/// task is resumed through a continuation. Threads and connections start lazily.
///
/// A dead connection (server restart, `pg_terminate_backend`, network) is noticed before use
/// when possible and replaced by a new one; a statement already sent on a connection that dies
/// fails with `.connectionLost` and is never retried here (it may have committed).
///
/// Call `shutdown()` when done: the threads keep the pool alive until then.
package final class PostgresPool: Sendable {
    package let configuration: PostgresConfiguration
    private let state: Mutex<State>
    /// One per worker slot; signalled when that parked worker is handed a job or must exit.
    private let workerWakeups: [DispatchSemaphore]
    /// Signalled when the queue gains a new head (the timeout watcher re-arms) or on shutdown.
    private let watcherWakeup = DispatchSemaphore(value: 0)
    /// Signalled on shutdown, so the stalled-call watchdog exits at once.
    private let watchdogWakeup = DispatchSemaphore(value: 0)
    private let workersRunning = DispatchGroup()

    package init(configuration: PostgresConfiguration) {
        var configuration = configuration
        configuration.poolSize = max(configuration.poolSize, 1)
        configuration.maxQueueLength = max(configuration.maxQueueLength, 0)
        self.configuration = configuration
        self.workerWakeups = (0..<configuration.poolSize).map { _ in DispatchSemaphore(value: 0) }
        self.state = Mutex(State(slots: configuration.poolSize))
    }

    // MARK: Running work

    /// Runs `body` with a connection on one of the pool's threads and returns its result.
    /// Throws `.poolTimeout` after waiting `acquireTimeout` for a free connection, `.queueFull`
    /// when too many requests already wait, `.connectionFailed` when no connection can be opened.
    package func withConnection<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit(Job(deadline: deadline(),
                       run: { connection in continuation.resume(with: Result { try body(connection) }) },
                       fail: { error in continuation.resume(throwing: error) }))
        }
    }

    /// Runs `body` on one of the pool's threads with a connection, or with the error that kept
    /// it from getting one (the same errors as `withConnection`). No task is involved: callers
    /// that only hand results on (group commit) save a hop through Swift's cooperative pool.
    package func run(_ body: @escaping @Sendable (Result<PostgresConnection, PostgresError>) -> Void) {
        submit(Job(deadline: deadline(), run: { connection in body(.success(connection)) },
                   fail: { error in body(.failure(error)) }))
    }

    /// The same for synchronous callers (start-up, migration): blocks the calling thread.
    /// Never call it from a closure already running on this pool (it would wait for itself).
    package func withConnectionBlocking<T>(_ body: @escaping (PostgresConnection) throws -> T) throws -> T {
        let call = BlockingCall(body)
        submit(Job(deadline: deadline(), run: { call.run($0) }, fail: { call.fail($0) }))
        return try call.waitForResult()
    }

    /// `withConnection` around `PostgresConnection.transaction`.
    @discardableResult
    package func transaction<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) throws -> T
    ) async throws -> T {
        try await withConnection { try $0.transaction(body) }
    }

    /// Stops the pool: waiting requests fail with `.poolClosed`, running ones finish, then the
    /// threads close their connections and exit. Later requests fail with `.poolClosed`.
    /// Idempotent; waits (boundedly) for running requests.
    package func shutdown() {
        let (parked, queued, first) = state.withLock { state -> ([Int], [Job], Bool) in
            guard !state.closed else { return ([], [], false) }
            state.closed = true
            let parked = state.parkedWorkers
            state.parkedWorkers = []
            return (parked, state.queue.removeAll(), true)
        }
        guard first else { return }
        let closed = PostgresError(kind: .poolClosed, operation: "acquire", detailMessage: "the pool is shut down")
        for job in queued { job.fail(closed) }
        for worker in parked { workerWakeups[worker].signal() }
        watcherWakeup.signal()
        watchdogWakeup.signal()
        // A running request ends within the statement timeout (or connect timeout) at worst.
        let limit = Double(configuration.statementTimeoutMilliseconds) / 1000
            + Double(configuration.connectTimeoutSeconds) + 2
        _ = workersRunning.wait(timeout: .now() + limit)
    }

    package var statistics: PostgresPoolStatistics {
        state.withLock { state in
            PostgresPoolStatistics(open: state.openConnections, idle: state.parkedWorkers.count,
                                   busy: state.busyWorkers, waiting: state.queue.count, acquired: state.acquired,
                                   acquireWaitSeconds: Double(state.acquireWaitNanoseconds) / 1e9,
                                   acquireTimeouts: state.acquireTimeouts)
        }
    }

    // MARK: Scheduling

    /// One request: exactly one of `run` and `fail` is called, once, by whoever took the job
    /// out of the shared state.
    struct Job: Sendable {
        /// `DispatchTime` uptime nanoseconds after which waiting for a connection has failed.
        let deadline: UInt64
        let run: @Sendable (PostgresConnection) -> Void
        let fail: @Sendable (PostgresError) -> Void
    }

    struct State: ~Copyable {
        var closed = false
        var queue = JobQueue()
        /// Workers waiting on their semaphore (LIFO: the most recently used connection is warmest).
        var parkedWorkers: [Int] = []
        /// A job handed directly to a worker, taken by that worker when it wakes.
        var handedOver: [Job?]
        var startedWorkers = 0
        var busyWorkers = 0
        var openConnections = 0
        var watcherStarted = false
        var acquired = 0
        var acquireWaitNanoseconds: UInt64 = 0
        var acquireTimeouts = 0
        /// Each worker's open connection's call watch, for the stalled-call watchdog.
        var callWatches: [CallWatch?]

        init(slots: Int) {
            handedOver = Array(repeating: nil, count: slots)
            callWatches = Array(repeating: nil, count: slots)
        }
    }

    private enum Placement: Sendable {
        case wake(Int)
        case start(Int)
        case queued(startWatcher: Bool, newHead: Bool)
        case rejected(PostgresError)
    }

    private func deadline() -> UInt64 {
        DispatchTime.now().uptimeNanoseconds &+ configuration.acquireTimeoutNanoseconds
    }

    private func submit(_ job: Job) {
        let placement = state.withLock { state -> Placement in
            if state.closed {
                return .rejected(PostgresError(kind: .poolClosed, operation: "acquire", detailMessage: "the pool is shut down"))
            }
            if let worker = state.parkedWorkers.popLast() {
                state.handedOver[worker] = job
                state.busyWorkers += 1
                state.acquired += 1
                return .wake(worker)
            }
            if state.startedWorkers < configuration.poolSize {
                let worker = state.startedWorkers
                state.startedWorkers += 1
                state.handedOver[worker] = job
                state.busyWorkers += 1
                state.acquired += 1
                workersRunning.enter()
                return .start(worker)
            }
            guard state.queue.count < configuration.maxQueueLength else {
                return .rejected(PostgresError(kind: .queueFull, operation: "acquire",
                                               detailMessage: "\(state.queue.count) requests already wait for a connection"))
            }
            state.queue.append(job)
            let startWatcher = !state.watcherStarted
            state.watcherStarted = true
            return .queued(startWatcher: startWatcher, newHead: state.queue.count == 1)
        }
        switch placement {
        case .wake(let worker):
            workerWakeups[worker].signal()
        case .start(let worker):
            NamedThread.start("postgres-\(worker)") { [self] in workerLoop(worker) }
            if worker == 0, let limit = configuration.stalledCallLimitNanoseconds {
                NamedThread.start("postgres-watchdog") { [self] in watchdogLoop(limit: limit) }
            }
        case .queued(let startWatcher, let newHead):
            if startWatcher {
                NamedThread.start("postgres-timeouts") { [self] in watcherLoop() }
            } else if newHead {
                watcherWakeup.signal()
            }
        case .rejected(let error):
            job.fail(error)
        }
    }

    // MARK: Worker threads

    private func workerLoop(_ worker: Int) {
        var connection: PostgresConnection?
        while let job = nextJob(for: worker) {
            serve(job, worker: worker, on: &connection)
        }
        if connection != nil { discard(&connection, worker: worker) }
        workersRunning.leave()
    }

    private enum Step: Sendable {
        case run(Job, expired: [Job])
        case park(expired: [Job])
        case exit(expired: [Job])
    }

    /// The next job for this worker, parking it until one comes; nil once the pool is closed.
    /// The worker counts as busy from the moment a job is taken until `serve` returns.
    private func nextJob(for worker: Int) -> Job? {
        while true {
            let step = state.withLock { state -> Step in
                if let job = state.handedOver[worker] {
                    state.handedOver[worker] = nil
                    return .run(job, expired: [])
                }
                let now = DispatchTime.now().uptimeNanoseconds
                var expired: [Job] = []
                while let job = state.queue.popFirst() {
                    if job.deadline <= now {
                        expired.append(job)
                        continue
                    }
                    state.busyWorkers += 1
                    state.acquired += 1
                    // Every job's deadline is its submission time plus the same timeout.
                    state.acquireWaitNanoseconds &+= (now &+ configuration.acquireTimeoutNanoseconds) &- job.deadline
                    return .run(job, expired: expired)
                }
                if state.closed { return .exit(expired: expired) }
                state.parkedWorkers.append(worker)
                return .park(expired: expired)
            }
            switch step {
            case .run(let job, let expired):
                failTimedOut(expired)
                return job
            case .park(let expired):
                failTimedOut(expired)
                workerWakeups[worker].wait()
            case .exit(let expired):
                failTimedOut(expired)
                return nil
            }
        }
    }

    /// Runs one job on this worker's connection, opening or replacing the connection first.
    private func serve(_ job: Job, worker: Int, on connection: inout PostgresConnection?) {
        defer { finishedJob() }
        if let existing = connection, !existing.probeIsAlive() {
            discard(&connection, worker: worker)
        }
        if connection == nil {
            do {
                let opened = try PostgresConnection.connect(configuration)
                connection = opened
                state.withLock {
                    $0.openConnections += 1
                    $0.callWatches[worker] = opened.callWatch
                }
            } catch {
                job.fail(error)
                return
            }
        }
        guard let active = connection else { return }
        job.run(active)
        if !active.resetAfterUse() {
            discard(&connection, worker: worker)
        }
    }

    /// Closes this worker's connection. It leaves the watchdog's sight (under the lock) before
    /// `PQfinish` closes its socket, so the watchdog never shuts down a reused descriptor.
    private func discard(_ connection: inout PostgresConnection?, worker: Int) {
        state.withLock {
            $0.openConnections -= 1
            $0.callWatches[worker] = nil
        }
        connection = nil
    }

    // MARK: Stalled calls

    /// Every 250 ms, ends calls that have waited longer than the statement timeout allows (the
    /// server would have answered by then if its answer could reach us; see `CallWatch`).
    private func watchdogLoop(limit: UInt64) {
        while true {
            let closed = state.withLock { state -> Bool in
                if state.closed { return true }
                let now = DispatchTime.now().uptimeNanoseconds
                for watch in state.callWatches {
                    _ = watch?.interruptIfStuck(now: now, limit: limit)
                }
                return false
            }
            if closed { return }
            _ = watchdogWakeup.wait(timeout: .now() + .milliseconds(250))
        }
    }

    private func finishedJob() {
        state.withLock { $0.busyWorkers -= 1 }
    }

    // MARK: Acquire timeouts

    /// Fails queued jobs whose deadline passed while every worker was busy. All jobs share the
    /// same timeout, so the queue is in deadline order and only its head needs a timer.
    private func watcherLoop() {
        while true {
            let (expired, nextDeadline, exit) = state.withLock { state -> ([Job], UInt64?, Bool) in
                if state.closed { return ([], nil, true) }
                let now = DispatchTime.now().uptimeNanoseconds
                var expired: [Job] = []
                while let head = state.queue.first, head.deadline <= now {
                    expired.append(head)
                    _ = state.queue.popFirst()
                }
                return (expired, state.queue.first?.deadline, false)
            }
            failTimedOut(expired)
            if exit { return }
            if let nextDeadline {
                _ = watcherWakeup.wait(timeout: DispatchTime(uptimeNanoseconds: nextDeadline))
            } else {
                watcherWakeup.wait()
            }
        }
    }

    private func failTimedOut(_ jobs: [Job]) {
        guard !jobs.isEmpty else { return }
        state.withLock { $0.acquireTimeouts += jobs.count }
        let error = PostgresError(kind: .poolTimeout, operation: "acquire",
                                  detailMessage: "no connection became free within \(configuration.acquireTimeout)")
        for job in jobs { job.fail(error) }
    }
}

/// FIFO of waiting jobs without `removeFirst`'s O(n) shifting.
struct JobQueue: ~Copyable {
    private var items: [PostgresPool.Job?] = []
    private var head = 0

    var count: Int { items.count - head }
    var first: PostgresPool.Job? { head < items.count ? items[head] : nil }

    mutating func append(_ job: PostgresPool.Job) {
        items.append(job)
    }

    mutating func popFirst() -> PostgresPool.Job? {
        guard head < items.count else { return nil }
        let job = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64, head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return job
    }

    mutating func removeAll() -> [PostgresPool.Job] {
        let jobs = items[head...].compactMap { $0 }
        items = []
        head = 0
        return jobs
    }
}

/// Carries a synchronous caller's closure to a pool thread and its result back.
/// @unchecked Sendable: `body` and `result` are touched by the pool thread only before
/// `done.signal()`, and by the caller only after `done.wait()` returns.
private final class BlockingCall<T>: @unchecked Sendable {
    private let body: (PostgresConnection) throws -> T
    private var result: Result<T, any Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping (PostgresConnection) throws -> T) {
        self.body = body
    }

    func run(_ connection: PostgresConnection) {
        result = Result { try body(connection) }
        done.signal()
    }

    func fail(_ error: PostgresError) {
        result = .failure(error)
        done.signal()
    }

    func waitForResult() throws -> T {
        done.wait()
        return try result!.get()
    }
}
