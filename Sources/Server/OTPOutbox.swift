import Dispatch
import Glibc
import HTTP
package import Postgres
import Synchronization

/// Delivers the outbox's OTP items (queued by Deliver OTP) to the bank's messaging service:
/// `webhook` POSTs the queued JSON with `X-OOB-Signature: sha256=<hex HMAC-SHA-256 of the body>`
/// (2xx delivered; timeouts, 5xx, 408, 429 retried with backoff until the item's deadline; other
/// 4xx failed); `simulated` marks it delivered. Whatever the outcome, the payload (which holds the
/// OTP value) is erased as the item finishes, and an item past its deadline is failed unsent.
/// The OTP value is never logged: log lines name the outbox item only.
package final class OTPOutbox: Sendable {
    static let claim = PostgresStatement("outbox_claim_otp", """
        update outbox o set lease_until = now() + make_interval(secs => $1::int), attempts = o.attempts + 1
        where o.id = (select id from outbox
                      where kind = 'otp' and state = 'pending' and next_attempt_at <= now()
                        and (lease_until is null or lease_until < now())
                      order by next_attempt_at, id
                      limit 1
                      for update skip locked)
        returning o.id, o.attempts, o.payload, o.delivery_deadline <= now() as overdue
        """, planning: .generic)

    private let pool: PostgresPool
    private let configuration: ConfigFile.OTP
    private let logger: Logger
    /// nil for the simulated kind.
    private let webhook: SignedWebhook?
    private let wakeUp = DispatchSemaphore(value: 0)
    private let stopping = Mutex(false)
    private let running = Mutex(0)

    package init(pool: PostgresPool, configuration: ConfigFile.OTP, logger: Logger) {
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
        if configuration.kind == .webhook, let secret = configuration.secret,
           let urlText = configuration.url, let url = HTTPURL(urlText) {
            webhook = SignedWebhook(url: url, secret: secret, timeoutMilliseconds: configuration.timeoutMilliseconds)
        } else {
            webhook = nil
        }
    }

    package func wake() { wakeUp.signal() }

    package func start(workers: Int = 2) {
        for index in 0..<workers {
            running.withLock { $0 += 1 }
            NamedThread.start("oob-otp-\(index)") { [self] in
                while !stopping.withLock({ $0 }) {
                    do {
                        if try processOne() { continue }
                    } catch {
                        logger.warning("otp outbox: claim failed", ["error": String(describing: error)])
                    }
                    _ = wakeUp.wait(timeout: .now() + .milliseconds(200))
                }
                running.withLock { $0 -= 1 }
            }
        }
    }

    package func stop(timeout: Duration = .seconds(10)) {
        let workers = running.withLock { $0 }
        stopping.withLock { $0 = true }
        for _ in 0..<max(1, workers) { wakeUp.signal() }
        let deadline = ContinuousClock.now + timeout
        while running.withLock({ $0 }) > 0, ContinuousClock.now < deadline { usleep(10_000) }
    }

    func processOne() throws -> Bool {
        let leaseSeconds = configuration.timeoutMilliseconds / 1000 + 10
        let rows = try pool.withConnectionBlocking { try $0.execute(Self.claim, [String(leaseSeconds)]) }
        guard rows.count == 1, let id = rows.string(0, "id") else { return false }
        let attempts = rows.int(0, "attempts") ?? 1
        let log = logger.with("outbox_id", id)
        if rows.bool(0, "overdue") == true {
            try finish(id, "failed", "delivery deadline passed")
            log.warning("otp not delivered by its deadline; erased")
            return true
        }
        let payload = Array((rows.string(0, "payload") ?? "").utf8)
        switch deliver(payload) {
        case .delivered:
            try finish(id, "delivered", nil)
            log.info("otp delivered", ["attempts": String(attempts)])
        case .retryable(let why):
            let delay = PushOutbox.backoffSeconds(attempt: attempts)
            _ = try pool.withConnectionBlocking { connection in
                try connection.execute(PushOutbox.retry, [id, String(delay), String(why.prefix(256))])
            }
            log.warning("otp delivery failed; will retry", ["attempts": String(attempts), "why": why])
        case .permanent(let why):
            try finish(id, "failed", why)
            log.warning("otp delivery refused for good; erased", ["why": why])
        }
        return true
    }

    private func finish(_ id: String, _ state: String, _ error: String?) throws {
        _ = try pool.withConnectionBlocking { try $0.execute(PushOutbox.finish, [id, state, error]) }
    }

    private func deliver(_ body: [UInt8]) -> PushOutcome {
        webhook?.post(body) ?? .delivered
    }
}
