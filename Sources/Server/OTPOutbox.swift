import Crypto
import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
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
        """)

    private let pool: PostgresPool
    private let configuration: ConfigFile.OTP
    private let logger: Logger
    private let session: URLSession?
    private let key: HMACSHA256Key?
    private let wakeUp = DispatchSemaphore(value: 0)
    private let stopping = Mutex(false)
    private let running = Mutex(0)

    package init(pool: PostgresPool, configuration: ConfigFile.OTP, logger: Logger) {
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
        if configuration.kind == .webhook, let secret = configuration.secret {
            let sessionConfiguration = URLSessionConfiguration.ephemeral
            sessionConfiguration.timeoutIntervalForRequest = Double(configuration.timeoutMilliseconds) / 1000
            sessionConfiguration.timeoutIntervalForResource = Double(configuration.timeoutMilliseconds) / 1000
            sessionConfiguration.httpCookieStorage = nil
            sessionConfiguration.urlCache = nil
            session = URLSession(configuration: sessionConfiguration)
            key = HMACSHA256Key(Array(secret.utf8))
        } else {
            session = nil
            key = nil
        }
    }

    package func wake() { wakeUp.signal() }

    package func start(workers: Int = 2) {
        for index in 0..<workers {
            running.withLock { $0 += 1 }
            let thread = Thread { [self] in
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
            thread.name = "oob-otp-\(index)"
            thread.start()
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
        guard let session, let key, let urlText = configuration.url, let url = URL(string: urlText) else { return .delivered }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(WebhookPushAdapter.signature(of: body, key: key), forHTTPHeaderField: "X-OOB-Signature")
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<PushOutcome>(.retryable("no answer"))
        let task = session.dataTask(with: request) { _, response, error in
            let result: PushOutcome
            if let error {
                result = .retryable("transport: \((error as NSError).code)")
            } else if let http = response as? HTTPURLResponse {
                switch http.statusCode {
                case 200..<300: result = .delivered
                case 408, 429, 500...: result = .retryable("HTTP \(http.statusCode)")
                default: result = .permanent("HTTP \(http.statusCode)")
                }
            } else {
                result = .retryable("no HTTP response")
            }
            outcome.withLock { $0 = result }
            done.signal()
        }
        task.resume()
        done.wait()
        return outcome.withLock { $0 }
    }
}
