package import Postgres
import Synchronization

/// Application-level group commit: concurrent requests for the same kind of write are combined
/// into one multi-row statement (one round trip, one commit), and nobody is answered before
/// that statement has committed. With one request at a time it degenerates to one statement
/// per request; under load, batches form naturally while earlier ones are in flight (no timer,
/// no added latency).
///
/// Up to `maxInFlight` drainers each hold a pool connection and take up to `maxBatch` queued
/// items per statement until the queue is empty. Items with the same `key` never share a batch
/// (the later one waits for the next), so one statement never carries two changes to one row.
package final class Batcher<Item: Sendable, Output: Sendable>: Sendable {
    package typealias Run = @Sendable ([Item], PostgresConnection) throws -> [Result<Output, any Error>]

    private struct Waiter {
        var item: Item
        var key: String?
        /// `MonotonicTime` microseconds, for `oob_db_batch_queue_seconds`.
        var submittedAt: Int64
        var continuation: CheckedContinuation<Output, any Error>
    }

    private struct State {
        var queue: [Waiter] = []
        var inFlight = 0
    }

    private let pool: PostgresPool
    private let maxInFlight: Int
    private let maxBatch: Int
    private let key: (@Sendable (Item) -> String)?
    private let run: Run
    private let metrics: BatchMetrics?
    private let state = Mutex(State())

    /// `metrics`: where each statement's size and times are recorded (none in unit tests).
    package init(pool: PostgresPool, maxInFlight: Int, maxBatch: Int, key: (@Sendable (Item) -> String)? = nil,
                 metrics: BatchMetrics? = nil, run: @escaping Run) {
        self.pool = pool
        self.maxInFlight = max(1, maxInFlight)
        self.maxBatch = max(1, maxBatch)
        self.key = key
        self.run = run
        self.metrics = metrics
    }

    package func submit(_ item: Item) async throws -> Output {
        let itemKey = key?(item)
        let submittedAt = MonotonicTime.microseconds()
        return try await withCheckedThrowingContinuation { continuation in
            let launch = state.withLock { state -> Bool in
                state.queue.append(Waiter(item: item, key: itemKey, submittedAt: submittedAt, continuation: continuation))
                guard state.inFlight < maxInFlight else { return false }
                state.inFlight += 1
                return true
            }
            if launch { startDrainer() }
        }
    }

    /// The drainer runs on the pool's thread itself (no task in between).
    private func startDrainer() {
        pool.run { [self] connection in
            switch connection {
            case .success(let connection):
                drain(connection)
            case .failure(let error):
                // No connection (database down, pool saturated): everyone waiting gets the error
                // now rather than a hang; the next submit starts afresh.
                let waiting = state.withLock { state -> [Waiter] in
                    state.inFlight -= 1
                    guard state.inFlight == 0 else { return [] }
                    defer { state.queue.removeAll() }
                    return state.queue
                }
                for waiter in waiting { waiter.continuation.resume(throwing: error) }
            }
        }
    }

    /// Takes the next batch, or ends this drainer when nothing is queued.
    private func nextBatch() -> [Waiter]? {
        state.withLock { state -> [Waiter]? in
            guard !state.queue.isEmpty else {
                state.inFlight -= 1
                return nil
            }
            var batch: [Waiter] = []
            var keys = Set<String>()
            var deferred: [Waiter] = []
            var taken = 0
            for waiter in state.queue {
                if batch.count == maxBatch {
                    deferred.append(waiter)
                } else if let key = waiter.key, !keys.insert(key).inserted {
                    deferred.append(waiter)
                } else {
                    batch.append(waiter)
                }
                taken += 1
            }
            state.queue = deferred
            return batch
        }
    }

    /// How often a batch that PostgreSQL rolled back as a deadlock or serialization failure is
    /// run again before its requests get the error. The statements take their locks in one
    /// order, so this is a second line of defence, not the expected path.
    static var rolledBackRetries: Int { 2 }

    private func drain(_ connection: PostgresConnection) {
        while let batch = nextBatch() {
            let sentAt = MonotonicTime.microseconds()
            let outcome = Result { try runRetryingRollbacks(batch.map(\.item), connection) }
            metrics?.record(submittedAt: batch.lazy.map(\.submittedAt), sentAt: sentAt,
                            committedAt: MonotonicTime.microseconds())
            switch outcome {
            case .success(let results):
                for (waiter, result) in zip(batch, results) { waiter.continuation.resume(with: result) }
                if results.count < batch.count {
                    for waiter in batch[results.count...] {
                        waiter.continuation.resume(throwing: StoreError.inconsistent("batch answered fewer items"))
                    }
                }
            case .failure(let error):
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }

    /// A single statement that PostgreSQL rolled back (40P01, 40001) wrote nothing, so running
    /// it again cannot apply anything twice.
    private func runRetryingRollbacks(_ items: [Item], _ connection: PostgresConnection) throws -> [Result<Output, any Error>] {
        var attempt = 0
        while true {
            do {
                return try run(items, connection)
            } catch let error as PostgresError where error.kind == .queryFailed && error.isRetryable
                && attempt < Self.rolledBackRetries {
                attempt += 1
            }
        }
    }
}
