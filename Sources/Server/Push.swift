package import Crypto
import Dispatch
package import Engine
import Glibc
package import HTTP
package import JSON
package import Postgres
import Synchronization

/// One new challenge, as the bank's app backend receives it (webhook body).
package struct PushChallenge: Sendable, Hashable {
    package var issuerId: String
    package var consumerId: String
    package var authenticationId: String
    package var cardId: String?
    package var panSuffix: String?
    package var merchantName: String?
    package var amount: String?
    package var currencyCode: String?
    package var appInstanceIds: [String]
    package var createdAt: String
    package var expiresAt: String

    package var json: JSONValue {
        var purchase: [(String, JSONValue)] = []
        if let merchantName { purchase.append(("merchantName", .string(merchantName))) }
        if let amount { purchase.append(("amount", .string(amount))) }
        if let currencyCode { purchase.append(("currencyCode", .string(currencyCode))) }
        var members: [(String, JSONValue)] = [
            ("issuerId", .string(issuerId)), ("consumerId", .string(consumerId)),
            ("authenticationId", .string(authenticationId)),
        ]
        if let cardId { members.append(("cardId", .string(cardId))) }
        if let panSuffix { members.append(("panSuffix", .string(panSuffix))) }
        members.append(("purchase", .object(JSONObject(purchase))))
        members.append(("appInstanceIds", .array(appInstanceIds.map { .string($0) })))
        members.append(("createdAt", .string(createdAt)))
        members.append(("expiresAt", .string(expiresAt)))
        return .object(JSONObject(members))
    }
}

package enum PushOutcome: Sendable, Hashable {
    case delivered
    /// Worth another try (timeouts, refused connections, 5xx, 408, 429).
    case retryable(String)
    /// The app backend said no for good (another 4xx): the challenge fails at once.
    case permanent(String)
}

/// Delivers one challenge. Called on a delivery worker's own thread; may block up to its timeout.
package protocol PushAdapter: Sendable {
    func deliver(_ challenge: PushChallenge) -> PushOutcome
}

/// A signed JSON POST: `X-OOB-Signature: sha256=<hex HMAC-SHA-256 of the raw body>`, keyed with
/// the shared secret, within a timeout. Any 2xx is delivered; transport errors, timeouts, 5xx,
/// 408 and 429 are worth another try; any other status is a refusal for good. Blocks the
/// calling (delivery worker) thread until the answer or the timeout (which covers connect, TLS
/// handshake, sending and the response head; resolving a host name is not bounded by it).
/// `https://` verifies the server's certificate against the system's trusted roots (or
/// SSL_CERT_FILE / SSL_CERT_DIR when set) and that it names the URL's host.
package struct SignedWebhook: Sendable {
    let url: HTTPURL
    let key: HMACSHA256Key
    let timeoutMilliseconds: Int
    /// For https: the trust settings, or why they could not be set up (then every post is retried,
    /// so the fault shows in the logs and the outbox rather than stopping the engine).
    let tls: Result<TLSClientContext, TLSError>?

    /// `caFile`: trust only this PEM file's certificates (tests); nil for the system's roots.
    package init(url: HTTPURL, secret: String, timeoutMilliseconds: Int, caFile: String? = nil) {
        self.url = url
        self.key = HMACSHA256Key(Array(secret.utf8))
        self.timeoutMilliseconds = timeoutMilliseconds
        if url.scheme == .https {
            tls = Result { () throws(TLSError) in try TLSClientContext(caFile: caFile) }
        } else {
            tls = nil
        }
    }

    package static func signature(of body: [UInt8], key: HMACSHA256Key) -> String {
        "sha256=" + Hex.encode(key.authenticate(body))
    }

    package func post(_ body: [UInt8], headers: [(String, String)] = []) -> PushOutcome {
        var secureChannel: HTTPClientSecureChannel?
        switch tls {
        case .failure(let error): return .retryable("TLS: \(error)")
        case .success(let context):
            secureChannel = { fd, url, deadline in
                try TLSClientConnection(socket: fd, host: url.host, hostIsIPLiteral: url.hostIsIPLiteral,
                                        context: context, deadline: deadline)
            }
        case nil: secureChannel = nil
        }
        let allHeaders = [("Content-Type", "application/json"), ("X-OOB-Signature", Self.signature(of: body, key: key)),
                          ("User-Agent", "oob-engine")] + headers
        do {
            let response = try HTTPClient.post(url, headers: allHeaders, body: body,
                                               timeoutMilliseconds: timeoutMilliseconds, secureChannel: secureChannel)
            switch response.status {
            case 200..<300: return .delivered
            case 408, 429, 500...: return .retryable("HTTP \(response.status)")
            default: return .permanent("HTTP \(response.status)")
            }
        } catch {
            return .retryable(error.description)
        }
    }
}

/// The TLS session is the Crypto module's (the only one that calls OpenSSL); the HTTP client
/// only needs its byte-stream calls, which have the same shape.
extension TLSClientConnection: HTTPClientStream {}

/// POSTs each challenge as JSON through a `SignedWebhook`.
package struct WebhookPushAdapter: PushAdapter {
    let webhook: SignedWebhook

    package init(url: HTTPURL, secret: String, timeoutMilliseconds: Int) {
        webhook = SignedWebhook(url: url, secret: secret, timeoutMilliseconds: timeoutMilliseconds)
    }

    package func deliver(_ challenge: PushChallenge) -> PushOutcome {
        webhook.post(challenge.json.serialized(), headers: [("X-OOB-Authentication-Id", challenge.authenticationId)])
    }
}

/// For demos and tests without an app: "delivers" at once, then the cardholder decides after a
/// delay through the same decision path as the app backend's API.
package struct SimulatedPushAdapter: PushAdapter {
    let service: AuthenticationService
    let decision: CardholderDecision
    let afterMilliseconds: Int

    package init(service: AuthenticationService, decision: CardholderDecision, afterMilliseconds: Int) {
        self.service = service
        self.decision = decision
        self.afterMilliseconds = afterMilliseconds
    }

    package func deliver(_ challenge: PushChallenge) -> PushOutcome {
        guard let appInstanceId = challenge.appInstanceIds.first else { return .permanent("no app instance") }
        let request = DecisionRequest(issuerId: challenge.issuerId, authenticationId: challenge.authenticationId,
                                      decision: decision, appInstanceId: appInstanceId, actor: "simulated-app")
        let delay = afterMilliseconds
        let service = self.service
        Task.detached {
            try? await Task.sleep(for: .milliseconds(delay))
            _ = try? await service.decide(request)
        }
        return .delivered
    }
}

/// Counters for the operations endpoints.
package final class OutboxMetrics: Sendable {
    package struct Snapshot: Sendable {
        package var delivered = 0
        package var retried = 0
        package var failed = 0
        package var dropped = 0
    }
    private let state = Mutex(Snapshot())
    package init() {}
    package var snapshot: Snapshot { state.withLock { $0 } }
    func record(_ update: (inout Snapshot) -> Void) { state.withLock { update(&$0) } }
}

/// Delivers the durable outbox's push items: claims one due item at a time with a lease
/// (`FOR UPDATE SKIP LOCKED`, so with several instances an item is attempted by one worker
/// at a time, and a crashed worker's lease simply runs out), delivers it, and records the
/// outcome. Retries back off exponentially with jitter; if nothing was delivered by the
/// item's delivery deadline, or the backend refuses for good, the challenge ends as
/// TECHNICAL_ERROR (`push delivery failed`) so D1 can fall back quickly. An item whose
/// challenge already ended is dropped.
package final class PushOutbox: Sendable {
    static let claim = PostgresStatement("outbox_claim_push", """
        with claimed as (
            update outbox o set lease_until = now() + make_interval(secs => $1::int), attempts = o.attempts + 1
            where o.id = (select id from outbox
                          where kind = 'push' and state = 'pending' and next_attempt_at <= now()
                            and (lease_until is null or lease_until < now())
                          order by next_attempt_at, id
                          limit 1
                          for update skip locked)
            returning o.id, o.authentication_id, o.attempts, o.delivery_deadline <= now() as overdue,
                      (extract(epoch from o.delivery_deadline) * 1000)::bigint as delivery_deadline_ms
        )
        select c.id as outbox_id, c.attempts, c.overdue, c.delivery_deadline_ms,
               a.id, a.issuer_id, a.consumer_id, a.authentication_id, a.card_id, a.pan_suffix, a.merchant_name,
               a.amount, a.currency_code, a.state,
               to_char(a.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at,
               to_char(a.deadline at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as expires_at,
               array_to_string(array(select app_instance_id from authenticators au
                                     where au.issuer_id = a.issuer_id and au.consumer_id = a.consumer_id and au.active
                                     order by app_instance_id), chr(9)) as app_instance_ids
        from claimed c join authentications a on a.id = c.authentication_id
        """, planning: .generic)

    static let finish = PostgresStatement("outbox_finish", """
        update outbox set state = $2, finished_at = now(), lease_until = null, payload = null,
                          last_error = coalesce($3, last_error)
        where id = $1::bigint and state = 'pending'
        """, planning: .generic)

    /// The next attempt, never later than the delivery deadline (so the failure is declared on time).
    static let retry = PostgresStatement("outbox_retry", """
        update outbox set next_attempt_at = least(delivery_deadline, now() + make_interval(secs => $2::double precision)),
                          lease_until = null, last_error = $3
        where id = $1::bigint and state = 'pending'
        """, planning: .generic)

    private let pool: PostgresPool
    private let adapter: any PushAdapter
    private let configuration: ConfigFile.Push
    private let deadlines: any DeadlineTracker
    private let actor: String
    private let logger: Logger
    package let metrics: OutboxMetrics
    /// This instance's poll cache: a challenge ended here shows in its polls at once.
    private let cache: AuthenticationCache?
    private let wakeUp = DispatchSemaphore(value: 0)
    private let stopping = Mutex(false)
    private let running = Mutex(0)

    package init(pool: PostgresPool, adapter: any PushAdapter, configuration: ConfigFile.Push,
                 deadlines: any DeadlineTracker, instance: String, logger: Logger, metrics: OutboxMetrics = OutboxMetrics(),
                 cache: AuthenticationCache? = nil) {
        self.cache = cache
        self.pool = pool
        self.adapter = adapter
        self.configuration = configuration
        self.deadlines = deadlines
        self.actor = "push@" + instance
        self.logger = logger
        self.metrics = metrics
    }

    /// A new item was queued: let an idle worker look now rather than at its next poll.
    package func wake() { wakeUp.signal() }

    package func start() {
        for index in 0..<configuration.workers {
            running.withLock { $0 += 1 }
            NamedThread.start("oob-push-\(index)") { [self] in
                work()
                running.withLock { $0 -= 1 }
            }
        }
    }

    /// Stops taking new items and waits (bounded) for deliveries in progress.
    package func stop(timeout: Duration = .seconds(10)) {
        stopping.withLock { $0 = true }
        for _ in 0..<configuration.workers { wakeUp.signal() }
        let deadline = ContinuousClock.now + timeout
        while running.withLock({ $0 }) > 0, ContinuousClock.now < deadline { usleep(10_000) }
    }

    private var isStopping: Bool { stopping.withLock { $0 } }

    private func work() {
        while !isStopping {
            do {
                if try processOne() { continue }
            } catch {
                logger.warning("push outbox: claim failed", ["error": String(describing: error)])
            }
            _ = wakeUp.wait(timeout: .now() + .milliseconds(200))
        }
    }

    /// Claims and handles one due item; false when none was due.
    func processOne() throws -> Bool {
        // The lease outlasts one delivery attempt with room to record its outcome.
        let leaseSeconds = configuration.timeoutMilliseconds / 1000 + 10
        let rows = try pool.withConnectionBlocking { connection in
            try connection.execute(Self.claim, [String(leaseSeconds)])
        }
        guard rows.count == 1, let outboxId = rows.string(0, "outbox_id"), let state = rows.string(0, "state"),
              let issuerId = rows.string(0, "issuer_id"), let authenticationId = rows.string(0, "authentication_id")
        else { return false }
        let log = logger.with("issuer_id", issuerId).with("authentication_id", authenticationId)
        guard state == AuthenticationState.pending.rawValue else {
            try finish(outboxId, "dropped", nil)
            metrics.record { $0.dropped += 1 }
            return true
        }
        if rows.bool(0, "overdue") == true {
            try fail(outboxId, issuerId: issuerId, authenticationId: authenticationId, why: "delivery deadline passed", log: log)
            return true
        }
        let challenge = PushChallenge(
            issuerId: issuerId, consumerId: rows.string(0, "consumer_id") ?? "", authenticationId: authenticationId,
            cardId: rows.string(0, "card_id"), panSuffix: rows.string(0, "pan_suffix"),
            merchantName: rows.string(0, "merchant_name"), amount: rows.string(0, "amount"),
            currencyCode: rows.string(0, "currency_code"),
            appInstanceIds: (rows.string(0, "app_instance_ids") ?? "").split(separator: "\t").map(String.init),
            createdAt: rows.string(0, "created_at") ?? "", expiresAt: rows.string(0, "expires_at") ?? "")
        let attempts = rows.int(0, "attempts") ?? 1
        switch adapter.deliver(challenge) {
        case .delivered:
            try finish(outboxId, "delivered", nil)
            metrics.record { $0.delivered += 1 }
            log.info("push delivered", ["attempts": String(attempts)])
        case .retryable(let why):
            let delay = Self.backoffSeconds(attempt: attempts)
            _ = try pool.withConnectionBlocking { connection in
                try connection.execute(Self.retry, [outboxId, String(delay), String(why.prefix(256))])
            }
            metrics.record { $0.retried += 1 }
            log.warning("push delivery failed; will retry", ["attempts": String(attempts), "why": why,
                                                             "retry_in_ms": String(Int(delay * 1000))])
        case .permanent(let why):
            try fail(outboxId, issuerId: issuerId, authenticationId: authenticationId, why: why, log: log)
        }
        return true
    }

    /// Exponential backoff from 250 ms, capped at 30 s, with full jitter over its upper half so
    /// that many items failing together do not retry together.
    static func backoffSeconds(attempt: Int) -> Double {
        let base = min(30.0, 0.25 * pow(2.0, Double(max(0, attempt - 1))))
        return base * Double.random(in: 0.5...1.0)
    }

    private func finish(_ outboxId: String, _ state: String, _ error: String?) throws {
        _ = try pool.withConnectionBlocking { connection in
            try connection.execute(Self.finish, [outboxId, state, error.map { String($0.prefix(256)) }])
        }
    }

    private func fail(_ outboxId: String, issuerId: String, authenticationId: String, why: String, log: Logger) throws {
        let request = TransitionRequest(
            issuerId: issuerId, authenticationId: authenticationId,
            to: AuthenticationStateMachine.target(of: .pushFailed)!, cause: .push, actor: actor,
            detail: String(why.prefix(256)))
        let result = try pool.withConnectionBlocking { connection in
            try PostgresAuthenticationStore.transition(request, on: connection)
        }
        cache?.invalidate(issuerId: issuerId, authenticationId: authenticationId)
        if case .applied(let record) = result {
            deadlines.forget(id: record.id)
            Metrics.authenticationEnded(record.status, cause: .push)
        }
        try finish(outboxId, "failed", why)
        metrics.record { $0.failed += 1 }
        log.warning("push delivery failed for good; challenge ended as TECHNICAL_ERROR", ["why": why])
    }
}
