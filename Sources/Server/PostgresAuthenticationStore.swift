package import Engine
package import Postgres

/// The production `AuthenticationStore`: every change is one statement (data-modifying CTEs),
/// so the row and its transition are written atomically in one round trip, and every
/// transition is a compare-and-set from PENDING (`... WHERE state = 'PENDING'`).
///
/// Under concurrency, creates, reads and decisions are group-committed (`Batcher`): the
/// requests waiting at the same moment share one multi-row statement. Every record read or
/// written goes into `cache`, which answers finals always and PENDING while it is provably in
/// step with the database (see `AuthenticationCache`).
package struct PostgresAuthenticationStore: AuthenticationStore {
    package let pool: PostgresPool
    package let cache: AuthenticationCache
    private let creates: Batcher<NewAuthentication, CreateResult>
    private let finds: Batcher<FindKey, AuthenticationRecord?>
    private let decisions: Batcher<DecisionInput, DecisionApplyResult>

    struct FindKey: Sendable, Hashable {
        var issuerId: String
        var authenticationId: String
    }

    package struct DecisionInput: Sendable {
        package var request: DecisionRequest
        package var target: AuthenticationStatus
        package var actor: String

        package init(request: DecisionRequest, target: AuthenticationStatus, actor: String) {
            self.request = request
            self.target = target
            self.actor = actor
        }
    }

    /// Statements in flight at once: `createsInFlight` batched inserts, `decisionsInFlight`
    /// batched decisions, `findsInFlight` batched reads; each carries up to `maxBatch` requests.
    /// Decisions: one. A decision's commit sends NOTIFY, and PostgreSQL lets one notifying
    /// transaction commit at a time (a cluster-wide lock held until its WAL is flushed), so a
    /// second batch in flight only queues there (p99 at about 70 % of the decision peak: 10.4 ms
    /// with one, 11.8 ms with two; mean of six runs each).
    /// Creates: one. A second drainer starts the moment a request arrives while the first one's
    /// statement runs, so at moderate rates it sends batches of two or three rows, each paying a
    /// whole statement's fixed cost on the cores the other batches need. In the 1:5:1 mix paced
    /// at 14,000-17,900 requests/s on 2 cores, two in flight gave a p99 of 17.7-21.3 ms with half
    /// the decisions over 10 ms; one gave 7.9-9.0 ms. Two raise the authenticate-only peak by
    /// about a fifth (overlapping one batch's round trip and commit with the next), which the mix
    /// and the latency targets outweigh.
    package init(pool: PostgresPool, findsInFlight: Int = 2, createsInFlight: Int = 1, decisionsInFlight: Int = 1,
                 maxBatch: Int = 256, cache: AuthenticationCache = AuthenticationCache()) {
        self.pool = pool
        self.cache = cache
        creates = Batcher(pool: pool, maxInFlight: createsInFlight, maxBatch: maxBatch,
                          key: { $0.issuerId + "/" + $0.request.authenticationId },
                          metrics: BatchMetrics(kind: "create")) { items, connection in
            try Self.createBatch(items, on: connection, cache: cache)
        }
        finds = Batcher(pool: pool, maxInFlight: findsInFlight, maxBatch: maxBatch,
                        metrics: BatchMetrics(kind: "find")) { items, connection in
            try Self.findBatch(items, on: connection, cache: cache)
        }
        decisions = Batcher(pool: pool, maxInFlight: decisionsInFlight, maxBatch: maxBatch,
                            key: { $0.request.issuerId + "/" + $0.request.authenticationId },
                            metrics: BatchMetrics(kind: "decision")) { items, connection in
            try Self.decideBatch(items, on: connection, cache: cache)
        }
    }

    static let columns = """
        id, issuer_id, consumer_id, authentication_id, card_id, pan_suffix, acs_transaction_id, merchant_name, \
        amount, currency_code, state, reason, \
        (extract(epoch from deadline) * 1000)::bigint as deadline_ms, deadline <= now() as past_deadline, \
        (extract(epoch from created_at) * 1000)::bigint as created_ms
        """

    /// Inserts PENDING (or TECHNICAL_ERROR when the consumer has no active authenticator) with
    /// its creation transition. `on conflict do nothing` leaves an existing row untouched.
    package static let insert = PostgresStatement("authentication_insert", """
        with enrolled as (
            select exists (select 1 from authenticators
                           where issuer_id = $1 and consumer_id = $3 and active) as yes
        ), inserted as (
            insert into authentications (issuer_id, authentication_id, consumer_id, card_id, pan_suffix,
                                         acs_transaction_id, merchant_name, amount, currency_code, state, reason, deadline)
            select $1, $2, $3, $4, $5, $6, $7, $8, $9,
                   case when yes then 'PENDING' else 'TECHNICAL_ERROR' end,
                   case when yes then null else '\(AuthenticationReason.noAuthenticator)' end,
                   now() + make_interval(secs => $10::int)
            from enrolled
            on conflict (issuer_id, authentication_id) do nothing
            returning *
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor)
            select id, null, state, case when state = 'PENDING' then 'create' else 'no-authenticator' end, $11
            from inserted
        ), queued as (
            insert into outbox (authentication_id, kind, delivery_deadline)
            select id, 'push', least(deadline, now() + make_interval(secs => $12::int))
            from inserted where state = 'PENDING' and $12::int is not null
        )
        select \(columns) from inserted
        """, planning: .generic)

    package static let select = PostgresStatement("authentication_select", """
        select \(columns) from authentications where issuer_id = $1 and authentication_id = $2
        """, planning: .generic)

    /// The compare-and-set: PENDING → $3 with reason $4, optionally only once the deadline has
    /// passed by the database's clock (every instance agrees on it), plus the transition row.
    static let transition = PostgresStatement("authentication_transition", """
        with updated as (
            update authentications set state = $3, reason = $4
            where issuer_id = $1 and authentication_id = $2 and state = 'PENDING'
              and (not $7::boolean or deadline <= now())
              and (not $9::boolean or deadline > now())
            returning *
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor, detail)
            select id, 'PENDING', state, $5, $6, $8 from updated
        )
        select \(columns) from updated
        """, planning: .generic)

    package func create(_ new: NewAuthentication) async throws -> CreateResult {
        try await creates.submit(new)
    }

    package func find(issuerId: String, authenticationId: String) async throws -> AuthenticationRecord? {
        if let known = cache.get(issuerId: issuerId, authenticationId: authenticationId) { return known }
        return try await finds.submit(FindKey(issuerId: issuerId, authenticationId: authenticationId))
    }

    package func cachedRecord(issuerId: String, authenticationId: String) -> AuthenticationRecord? {
        cache.get(issuerId: issuerId, authenticationId: authenticationId)
    }

    package func applyDecision(_ request: DecisionRequest, target: AuthenticationStatus, actor: String) async throws -> DecisionApplyResult {
        try await decisions.submit(DecisionInput(request: request, target: target, actor: actor))
    }

    /// One statement for many creates; what neither got inserted nor was visible (a concurrent
    /// insert committed after the statement's snapshot) is retried one by one.
    package static func createBatch(_ items: [NewAuthentication], on connection: PostgresConnection,
                            cache: AuthenticationCache) throws -> [Result<CreateResult, any Error>] {
        func column(_ value: (NewAuthentication) -> String?) -> String? { PostgresArray.text(items.map(value)) }
        let parameters: [String?] = [
            column { $0.issuerId }, column { $0.request.authenticationId }, column { $0.consumerId },
            column { $0.request.cardId }, column { $0.request.panSuffix }, column { $0.request.acsTransactionId },
            column { $0.request.merchantName }, column { $0.request.amount }, column { $0.request.currencyCode },
            PostgresArray.integers(items.map { $0.challengeTTLSeconds }), column { $0.actor },
            PostgresArray.integers(items.map { $0.pushDeliveryDeadlineSeconds }),
        ]
        let since = cache.sequence
        let rows = try connection.execute(BatchedStatements.insert, parameters)
        var found: [String: CreateResult] = [:]
        for row in 0..<rows.count {
            let record = try Self.record(rows, row)
            cache.remember(record, since: since)
            found[record.issuerId + "/" + record.authenticationId] = .created(record)
        }
        if rows.count < items.count {
            // Retries of ids that exist: a new statement (a new snapshot) reads them all at once.
            let existing = items.filter { found[$0.issuerId + "/" + $0.request.authenticationId] == nil }
                .map { FindKey(issuerId: $0.issuerId, authenticationId: $0.request.authenticationId) }
            for case .success(let record?) in try findBatch(existing, on: connection, cache: cache) {
                found[record.issuerId + "/" + record.authenticationId] = .existing(record)
            }
        }
        return items.map { item in
            if let result = found[item.issuerId + "/" + item.request.authenticationId] { return .success(result) }
            return Result { try createOne(item, on: connection) }
        }
    }

    static func createOne(_ new: NewAuthentication, on connection: PostgresConnection) throws -> CreateResult {
        let request = new.request
        let parameters: [String?] = [
            new.issuerId, request.authenticationId, new.consumerId, request.cardId, request.panSuffix,
            request.acsTransactionId, request.merchantName, request.amount, request.currencyCode,
            String(new.challengeTTLSeconds), new.actor, new.pushDeliveryDeadlineSeconds.map(String.init),
        ]
        // A new statement is a new snapshot: it sees the concurrent winner, or inserts.
        for _ in 0..<3 {
            let existing = try connection.execute(Self.select, [new.issuerId, request.authenticationId])
            if existing.count == 1 { return .existing(try Self.record(existing, 0)) }
            let inserted = try connection.execute(Self.insert, parameters)
            if inserted.count == 1 { return .created(try Self.record(inserted, 0)) }
        }
        throw StoreError.inconsistent("authentication neither inserted nor found")
    }

    static func findBatch(_ keys: [FindKey], on connection: PostgresConnection,
                          cache: AuthenticationCache) throws -> [Result<AuthenticationRecord?, any Error>] {
        let since = cache.sequence
        let rows = try connection.execute(BatchedStatements.find, [PostgresArray.text(keys.map(\.issuerId)),
                                                                   PostgresArray.text(keys.map(\.authenticationId))])
        var found: [FindKey: AuthenticationRecord] = [:]
        for row in 0..<rows.count {
            let record = try Self.record(rows, row)
            cache.remember(record, since: since)
            found[FindKey(issuerId: record.issuerId, authenticationId: record.authenticationId)] = record
        }
        return keys.map { .success(found[$0]) }
    }

    package static func decideBatch(_ items: [DecisionInput], on connection: PostgresConnection,
                            cache: AuthenticationCache) throws -> [Result<DecisionApplyResult, any Error>] {
        let parameters: [String?] = [
            PostgresArray.text(items.map { $0.request.issuerId }), PostgresArray.text(items.map { $0.request.authenticationId }),
            PostgresArray.text(items.map { $0.request.appInstanceId }), PostgresArray.text(items.map { $0.target.state.rawValue }),
            PostgresArray.text(items.map { $0.target.reason }), PostgresArray.text(items.map { $0.actor }),
        ]
        let since = cache.sequence
        let rows = try connection.execute(BatchedStatements.decide, parameters)
        var found: [String: DecisionApplyResult] = [:]
        var stale: [FindKey] = []
        for row in 0..<rows.count {
            let record = try Self.record(rows, row)
            cache.remember(record, since: since)
            let key = record.issuerId + "/" + record.authenticationId
            if rows.string(row, "kind") == "applied" {
                found[key] = .applied(record)
            } else if rows.bool(row, "allowed") != true {
                found[key] = .notAnAuthenticator
            } else {
                found[key] = .unchanged(record)
                // PENDING and in time, yet not updated: another transaction ended it after this
                // statement's snapshot was taken (the update waited for it, then found it final).
                if record.status.state == .pending && !record.isPastDeadline {
                    stale.append(FindKey(issuerId: record.issuerId, authenticationId: record.authenticationId))
                }
            }
        }
        if !stale.isEmpty {
            // A new statement is a new snapshot: it sees what the other transaction committed.
            for case .success(let fresh?) in try findBatch(stale, on: connection, cache: cache) {
                found[fresh.issuerId + "/" + fresh.authenticationId] = .unchanged(fresh)
            }
        }
        return items.map { .success(found[$0.request.issuerId + "/" + $0.request.authenticationId] ?? .notFound) }
    }

    package func transition(_ request: TransitionRequest) async throws -> TransitionResult {
        let since = cache.sequence
        let result = try await pool.withConnection { connection in try Self.transition(request, on: connection) }
        switch result {
        case .applied(let record), .unchanged(let record): cache.remember(record, since: since)
        case .notFound: break
        }
        return result
    }

    /// The compare-and-set on a connection the caller holds (background workers on their own
    /// threads use it with `withConnectionBlocking`).
    package static func transition(_ request: TransitionRequest, on connection: PostgresConnection) throws -> TransitionResult {
        let parameters: [String?] = [
            request.issuerId, request.authenticationId, request.to.state.rawValue, request.to.reason,
            request.cause.rawValue, request.actor, request.onlyIfPastDeadline ? "true" : "false", request.detail,
            request.onlyIfBeforeDeadline ? "true" : "false",
        ]
        let updated = try connection.execute(Self.transition, parameters)
        if updated.count == 1 { return .applied(try Self.record(updated, 0)) }
        let current = try connection.execute(Self.select, [request.issuerId, request.authenticationId])
        return current.count == 1 ? .unchanged(try Self.record(current, 0)) : .notFound
    }

    static let activeAuthenticator = PostgresStatement("authenticator_active", """
        select exists (select 1 from authenticators
                       where issuer_id = $1 and consumer_id = $2 and app_instance_id = $3 and active) as active
        """, planning: .generic)

    package static let refused = PostgresStatement("transition_refused", """
        insert into transitions (authentication_id, from_state, to_state, cause, actor, outcome, detail)
        values ($1::bigint, $2, $3, $4, $5, 'refused', $6)
        """, planning: .generic)

    static let pending = PostgresStatement("authentication_pending_for_consumer", """
        select \(columns) from authentications
        where issuer_id = $1 and consumer_id = $2 and state = 'PENDING' and deadline > now()
        order by id desc limit $3::int
        """, planning: .generic)

    package func isActiveAuthenticator(issuerId: String, consumerId: String, appInstanceId: String) async throws -> Bool {
        try await pool.withConnection { connection in
            try connection.execute(Self.activeAuthenticator, [issuerId, consumerId, appInstanceId]).bool(0, "active") ?? false
        }
    }

    package func recordRefused(_ attempt: RefusedAttempt) async throws {
        let parameters: [String?] = [String(attempt.recordId), attempt.from.rawValue, attempt.to.rawValue,
                                     attempt.cause.rawValue, attempt.actor, attempt.detail.map { String($0.prefix(256)) }]
        _ = try await pool.withConnection { connection in try connection.execute(Self.refused, parameters) }
    }

    package func pendingChallenges(issuerId: String, consumerId: String, limit: Int) async throws -> [AuthenticationRecord] {
        try await pool.withConnection { connection in
            let rows = try connection.execute(Self.pending, [issuerId, consumerId, String(limit)])
            return try (0..<rows.count).map { try Self.record(rows, $0) }
        }
    }

    static func record(_ rows: PostgresRows, _ row: Int) throws -> AuthenticationRecord {
        guard let id = rows.int(row, "id"), let issuerId = rows.string(row, "issuer_id"),
              let consumerId = rows.string(row, "consumer_id"),
              let authenticationId = rows.string(row, "authentication_id"),
              let stateText = rows.string(row, "state"), let state = AuthenticationState(rawValue: stateText),
              let deadline = rows.int(row, "deadline_ms"), let past = rows.bool(row, "past_deadline")
        else { throw StoreError.inconsistent("unexpected authentication row") }
        let request = AuthenticateRequest(
            authenticationId: authenticationId, cardId: rows.string(row, "card_id"),
            panSuffix: rows.string(row, "pan_suffix"), acsTransactionId: rows.string(row, "acs_transaction_id"),
            merchantName: rows.string(row, "merchant_name"), amount: rows.string(row, "amount"),
            currencyCode: rows.string(row, "currency_code"))
        return AuthenticationRecord(
            id: UInt64(id), issuerId: issuerId, consumerId: consumerId, request: request,
            status: AuthenticationStatus(state: state, reason: rows.string(row, "reason")),
            deadlineUnixMilliseconds: Int64(deadline), isPastDeadline: past,
            createdAtUnixMilliseconds: Int64(rows.int(row, "created_ms") ?? 0))
    }
}

/// The database answered something the engine's own schema rules out. Safe to log.
package enum StoreError: Error, Sendable, CustomStringConvertible {
    case inconsistent(String)
    package var description: String {
        switch self {
        case .inconsistent(let what): "store inconsistency: \(what)"
        }
    }
}
