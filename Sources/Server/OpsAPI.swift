package import Engine
import HTTP
package import JSON
package import Postgres

/// What operators read and do, as plain blocking calls on a connection: the ops API wraps them
/// in the pool (`withConnection`), the `oob-engine ops` CLI calls them directly against
/// DATABASE_URL, so both work the same and the CLI works while the server is down.
package enum OpsQueries {
    package struct Filter: Sendable, Hashable {
        package var issuerId: String?
        package var state: String?
        package var consumerId: String?
        /// ISO 8601, already checked by `isTimestamp`.
        package var createdBefore: String?
        package var limit = 50
        /// The `nextCursor` of the previous page.
        package var cursor: UInt64?
        package init() {}
    }

    package struct Page: Sendable {
        package var items: [JSONValue]
        package var nextCursor: String?
    }

    package enum ExpireOutcome: Sendable {
        case expired(JSONValue)
        /// Already final: nothing changed (the refused attempt is logged).
        case alreadyFinal(state: String, reason: String?)
        case notFound
    }

    static let columns = """
        id, issuer_id, authentication_id, consumer_id, card_id, pan_suffix, acs_transaction_id, merchant_name, amount,
        currency_code, state, reason, version,
        to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at,
        to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as updated_at,
        to_char(deadline at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as deadline
        """

    static let list = PostgresStatement("ops_list", """
        select \(columns) from authentications
        where ($1::text is null or issuer_id = $1) and ($2::text is null or state = $2)
          and ($3::text is null or consumer_id = $3) and ($4::timestamptz is null or created_at < $4::timestamptz)
          and ($5::bigint is null or id < $5::bigint)
        order by id desc
        limit $6::int
        """)

    static let show = PostgresStatement("ops_show", """
        select \(columns) from authentications where issuer_id = $1 and authentication_id = $2
        """)

    static let history = PostgresStatement("ops_history", """
        select from_state, to_state, cause, actor, outcome, detail,
               to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at
        from transitions where authentication_id = $1::bigint order by id
        """)

    /// One bounded batch of the bulk expiry: locks what it ends (`SKIP LOCKED`: a decision or
    /// timer holding a row is not waited for; the next batch or run picks it up if still PENDING).
    static let expireBatch = PostgresStatement("ops_expire_batch", """
        with due as (
            select id from authentications
            where issuer_id = $1 and state = 'PENDING' and created_at < $2::timestamptz
            order by id limit $3::int
            for update skip locked
        ), ended as (
            update authentications a set state = 'AUTHENTICATION_FAILED', reason = '\(AuthenticationReason.expired)'
            from due where a.id = due.id and a.state = 'PENDING'
            returning a.id
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor, detail)
            select id, 'PENDING', 'AUTHENTICATION_FAILED', 'operator', $4, $5 from ended
        )
        select count(*) as count from ended
        """)

    static let states: Set<String> = ["PENDING", "AUTHENTICATED", "AUTHENTICATION_FAILED", "TECHNICAL_ERROR"]

    /// `2026-12-01`, `2026-12-01T10:00:00Z`, `2026-12-01T10:00:00.123+01:00` and the like.
    /// The grammar, checked byte by byte (PostgreSQL then checks the values):
    /// `DDDD-DD-DD([T ]DD:DD(:DD(.D{1,6})?)?(Z|[+-]DD(:?DD)?)?)?` with ASCII digits D.
    package static func isTimestamp(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count <= 40 else { return false }
        var index = 0
        func digits(_ count: Int) -> Bool {
            guard index + count <= bytes.count, bytes[index..<(index + count)].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            index += count
            return true
        }
        func byte(_ allowed: (UInt8) -> Bool) -> Bool {
            guard index < bytes.count, allowed(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard digits(4), byte({ $0 == UInt8(ascii: "-") }), digits(2), byte({ $0 == UInt8(ascii: "-") }), digits(2) else { return false }
        if index == bytes.count { return true }
        guard byte({ $0 == UInt8(ascii: "T") || $0 == UInt8(ascii: " ") }), digits(2), byte({ $0 == UInt8(ascii: ":") }), digits(2) else { return false }
        if byte({ $0 == UInt8(ascii: ":") }) {
            guard digits(2) else { return false }
            if byte({ $0 == UInt8(ascii: ".") }) {
                let start = index
                while index < bytes.count, index - start < 6, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
                guard index > start else { return false }
            }
        }
        if index == bytes.count { return true }
        if byte({ $0 == UInt8(ascii: "Z") }) { return index == bytes.count }
        guard byte({ $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }), digits(2) else { return false }
        if index == bytes.count { return true }
        _ = byte({ $0 == UInt8(ascii: ":") })
        return digits(2) && index == bytes.count
    }

    /// Checks an operator's free-text reason: required, 1 to 64 printable characters.
    package static func checkReason(_ reason: String?) -> String? {
        guard let reason, !reason.isEmpty else { return "reason is required" }
        guard Identifier.isPrintableText(reason, maxLength: 64) else { return "reason must be 1 to 64 printable characters" }
        return nil
    }

    static func record(_ rows: PostgresRows, _ row: Int) -> JSONValue {
        func text(_ column: String) -> JSONValue { rows.string(row, column).map { .string($0) } ?? .null }
        var purchase: [(String, JSONValue)] = []
        for (key, column) in [("merchantName", "merchant_name"), ("amount", "amount"), ("currencyCode", "currency_code")] {
            if let value = rows.string(row, column) { purchase.append((key, .string(value))) }
        }
        return .object(JSONObject([
            ("id", .number(JSONNumber(rows.int(row, "id") ?? 0))),
            ("issuerId", text("issuer_id")), ("authenticationId", text("authentication_id")),
            ("consumerId", text("consumer_id")), ("cardId", text("card_id")), ("panSuffix", text("pan_suffix")),
            ("acsTransactionId", text("acs_transaction_id")), ("purchase", .object(JSONObject(purchase))),
            ("state", text("state")), ("reason", text("reason")),
            ("createdAt", text("created_at")), ("updatedAt", text("updated_at")), ("deadline", text("deadline")),
            ("version", .number(JSONNumber(rows.int(row, "version") ?? 0))),
        ]))
    }

    package static func list(_ filter: Filter, on connection: PostgresConnection) throws -> Page {
        let limit = max(1, min(500, filter.limit))
        let rows = try connection.execute(Self.list, [filter.issuerId, filter.state, filter.consumerId, filter.createdBefore,
                                                      filter.cursor.map(String.init), String(limit)])
        let items = (0..<rows.count).map { record(rows, $0) }
        let next = rows.count == limit ? rows.int(rows.count - 1, "id").map(String.init) : nil
        return Page(items: items, nextCursor: next)
    }

    package static func show(issuerId: String, authenticationId: String, on connection: PostgresConnection) throws -> JSONValue? {
        let rows = try connection.execute(Self.show, [issuerId, authenticationId])
        guard rows.count == 1, case .object(var object) = record(rows, 0), let id = rows.int(0, "id") else { return nil }
        let history = try connection.execute(Self.history, [String(id)])
        object["transitions"] = .array((0..<history.count).map { row in
            func text(_ column: String) -> JSONValue { history.string(row, column).map { .string($0) } ?? .null }
            return .object(JSONObject([
                ("from", text("from_state")), ("to", text("to_state")), ("cause", text("cause")), ("actor", text("actor")),
                ("outcome", text("outcome")), ("detail", text("detail")), ("at", text("at")),
            ]))
        })
        return .object(object)
    }

    /// PENDING → AUTHENTICATION_FAILED (`expired`), cause `operator`; the operator's reason goes
    /// in the transitions log. Never anything else: nobody but the cardholder authenticates.
    package static func expire(issuerId: String, authenticationId: String, reason: String, actor: String,
                               on connection: PostgresConnection) throws -> ExpireOutcome {
        let request = TransitionRequest(issuerId: issuerId, authenticationId: authenticationId,
                                        to: AuthenticationStateMachine.target(of: .operatorExpire)!, cause: .operator,
                                        actor: actor, detail: reason)
        switch try PostgresAuthenticationStore.transition(request, on: connection) {
        case .applied:
            return .expired(try show(issuerId: issuerId, authenticationId: authenticationId, on: connection) ?? .null)
        case .unchanged(let record):
            _ = try connection.execute(PostgresAuthenticationStore.refused, [
                String(record.id), record.status.state.rawValue, AuthenticationState.authenticationFailed.rawValue,
                TransitionCause.operator.rawValue, actor, String("expire refused: \(reason)".prefix(256)),
            ])
            return .alreadyFinal(state: record.status.state.rawValue, reason: record.status.reason)
        case .notFound:
            return .notFound
        }
    }

    /// Ends every matching PENDING authentication in batches of `batchSize`; answers how many.
    /// Running it twice is harmless: the second run finds nothing PENDING.
    package static func expireAll(issuerId: String, createdBefore: String, reason: String, actor: String,
                                  batchSize: Int = 1000, on connection: PostgresConnection) throws -> Int {
        var total = 0
        for _ in 0..<100_000 {
            let rows = try connection.execute(Self.expireBatch, [issuerId, createdBefore, String(batchSize), actor, reason])
            let ended = rows.int(0, "count") ?? 0
            total += ended
            if ended < batchSize { break }
        }
        return total
    }
}

/// The ops API on the ops listener (scope `ops`). Every action is an audit event: in the
/// transitions log (cause `operator`, actor = the ops client id) and in the log stream (who,
/// what, from where, outcome).
package struct OpsRoutes: Sendable {
    package var pool: PostgresPool
    package var deadlines: any DeadlineTracker
    /// This instance's poll cache: an expiry here shows in its polls at once (other instances
    /// learn of it from the database's notification).
    package var cache: AuthenticationCache?

    package init(pool: PostgresPool, deadlines: any DeadlineTracker, cache: AuthenticationCache? = nil) {
        self.pool = pool
        self.deadlines = deadlines
        self.cache = cache
    }

    static let ops = RouteAuthorization.bearer(.ops, issuerParameter: nil)
    static let opsForIssuer = RouteAuthorization.bearer(.ops, issuerParameter: 0)

    package var routes: [Route] {
        [
            Route("GET", "/ops/v1/authentications", name: "ops.list", authorization: Self.ops) { context in
                await self.list(context)
            },
            Route("GET", "/ops/v1/issuers/{issuerId}/authentications/{authenticationId}", name: "ops.show",
                  authorization: Self.opsForIssuer) { context in
                await self.show(context)
            },
            Route("POST", "/ops/v1/issuers/{issuerId}/authentications/{authenticationId}/expire", name: "ops.expire",
                  authorization: Self.opsForIssuer) { context in
                await self.expire(context)
            },
            Route("POST", "/ops/v1/expire", name: "ops.expire-all", authorization: Self.ops) { context in
                await self.expireAll(context)
            },
        ]
    }

    func audit(_ context: RouteContext, _ action: String, _ outcome: String, _ fields: KeyValuePairs<String, String> = [:]) {
        var line = context.logger.with("audit", action).with("who", context.clientId ?? "-")
            .with("from", context.request.remoteAddress).with("outcome", outcome)
        for (key, value) in fields { line = line.with(key, value) }
        line.info("ops action")
    }

    func list(_ context: RouteContext) async -> HTTPResponse {
        var filter = OpsQueries.Filter()
        var query: [String: String] = [:]
        for pair in (context.request.query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = PercentDecoding.decode(parts[0].utf8),
                  let value = PercentDecoding.decode((parts.count > 1 ? parts[1] : "").utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 })
            else { return Responses.error(400, "the query string is not valid percent-encoded UTF-8") }
            guard query[key] == nil else { return Responses.error(400, "\(key) is given twice") }
            query[key] = value
        }
        let known: Set<String> = ["issuerId", "state", "consumerId", "createdBefore", "limit", "cursor"]
        if let unknown = query.keys.sorted().first(where: { !known.contains($0) }) {
            return Responses.error(400, "unknown query parameter \(unknown)")
        }
        if let issuerId = query["issuerId"] {
            guard Identifier.isValidIssuerID(issuerId) else { return Responses.error(400, "issuerId must be exactly 10 characters") }
            guard context.mayAct(for: issuerId) else { return Responses.notFound() }
            filter.issuerId = issuerId
        } else if !context.mayAct(for: "*") {
            return Responses.error(400, "issuerId is required for a client limited to some issuers")
        }
        if let state = query["state"] {
            guard OpsQueries.states.contains(state) else {
                return Responses.error(400, "state must be PENDING, AUTHENTICATED, AUTHENTICATION_FAILED or TECHNICAL_ERROR")
            }
            filter.state = state
        }
        if let consumerId = query["consumerId"] {
            guard Identifier.isValidToken64(consumerId) else { return Responses.error(400, "consumerId must match ^[A-Za-z0-9_-]{1,64}$") }
            filter.consumerId = consumerId
        }
        if let createdBefore = query["createdBefore"] {
            guard OpsQueries.isTimestamp(createdBefore) else { return Responses.error(400, "createdBefore must be an ISO 8601 timestamp") }
            filter.createdBefore = createdBefore
        }
        if let limit = query["limit"] {
            guard let value = Int(limit), (1...500).contains(value) else { return Responses.error(400, "limit must be a whole number from 1 to 500") }
            filter.limit = value
        }
        if let cursor = query["cursor"] {
            guard let value = UInt64(cursor), value < UInt64(Int64.max) else { return Responses.error(400, "cursor is not one this API gave") }
            filter.cursor = value
        }
        let chosen = filter
        do {
            let page = try await pool.withConnection { try OpsQueries.list(chosen, on: $0) }
            return Responses.json(200, [("authentications", .array(page.items)),
                                        ("nextCursor", page.nextCursor.map { .string($0) } ?? .null)])
        } catch {
            return opsFailure(error, context: context, operation: "ops list")
        }
    }

    func pathIds(_ context: RouteContext) -> Result<(String, String), HTTPResponseError> {
        let issuerId = context.parameters[0]
        let authenticationId = context.parameters[1]
        guard Identifier.isValidIssuerID(issuerId) else {
            return .failure(HTTPResponseError(Responses.error(400, "issuerId must be exactly 10 characters")))
        }
        guard Identifier.isValidToken64(authenticationId) else {
            return .failure(HTTPResponseError(Responses.error(400, "authenticationId must match ^[A-Za-z0-9_-]{1,64}$")))
        }
        return .success((issuerId, authenticationId))
    }

    func show(_ context: RouteContext) async -> HTTPResponse {
        let ids: (String, String)
        switch pathIds(context) {
        case .failure(let failure): return failure.response
        case .success(let found): ids = found
        }
        do {
            let found = try await pool.withConnection { try OpsQueries.show(issuerId: ids.0, authenticationId: ids.1, on: $0) }
            guard let found else { return Responses.notFound() }
            return Responses.json(200, found)
        } catch {
            return opsFailure(error, context: context, operation: "ops show")
        }
    }

    static func reason(from body: [UInt8]) -> Result<JSONObject, HTTPResponseError> {
        guard !body.isEmpty else { return .failure(HTTPResponseError(Responses.error(400, "empty body: a JSON object is required"))) }
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parse(body)
        } catch {
            return .failure(HTTPResponseError(Responses.error(400, error.description)))
        }
        guard case .object(let object) = parsed else {
            return .failure(HTTPResponseError(Responses.error(400, "body must be a JSON object")))
        }
        let reason: String? = if case .string(let text)? = object["reason"] { text } else { nil }
        if object["reason"] != nil, reason == nil { return .failure(HTTPResponseError(Responses.error(400, "reason must be a string"))) }
        if let problem = OpsQueries.checkReason(reason) { return .failure(HTTPResponseError(Responses.error(400, problem))) }
        return .success(object)
    }

    func expire(_ context: RouteContext) async -> HTTPResponse {
        let ids: (String, String)
        switch pathIds(context) {
        case .failure(let failure): return failure.response
        case .success(let found): ids = found
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let body: JSONObject
        switch Self.reason(from: context.request.body) {
        case .failure(let failure): return failure.response
        case .success(let object): body = object
        }
        let reason = body["reason"]?.stringValue ?? ""
        let actor = String((context.clientId ?? "ops").prefix(128))
        do {
            let outcome = try await pool.withConnection {
                try OpsQueries.expire(issuerId: ids.0, authenticationId: ids.1, reason: reason, actor: actor, on: $0)
            }
            cache?.invalidate(issuerId: ids.0, authenticationId: ids.1)
            switch outcome {
            case .expired(let record):
                if case .object(let object) = record, let id = object["id"]?.int64Value { deadlines.forget(id: UInt64(id)) }
                audit(context, "expire", "expired", ["issuer_id": ids.0, "authentication_id": ids.1])
                Metrics.authenticationsEnded(.authenticationFailed, cause: .operator, count: 1)
                return Responses.json(200, record)
            case .alreadyFinal(let state, let finalReason):
                audit(context, "expire", "refused: already final", ["issuer_id": ids.0, "authentication_id": ids.1])
                var members: [(String, JSONValue)] = [("error", .string("the authentication has already ended")),
                                                      ("authenticationStatus", .string(state))]
                if let finalReason { members.append(("reason", .string(finalReason))) }
                return Responses.json(409, members)
            case .notFound:
                audit(context, "expire", "not found", ["issuer_id": ids.0])
                return Responses.notFound()
            }
        } catch {
            return opsFailure(error, context: context, operation: "ops expire")
        }
    }

    func expireAll(_ context: RouteContext) async -> HTTPResponse {
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let body: JSONObject
        switch Self.reason(from: context.request.body) {
        case .failure(let failure): return failure.response
        case .success(let object): body = object
        }
        guard case .string(let issuerId)? = body["issuerId"] else { return Responses.error(400, "issuerId is required (a string)") }
        guard Identifier.isValidIssuerID(issuerId) else { return Responses.error(400, "issuerId must be exactly 10 characters") }
        guard context.mayAct(for: issuerId) else { return Responses.notFound() }
        guard case .string(let createdBefore)? = body["createdBefore"] else {
            return Responses.error(400, "createdBefore is required (an ISO 8601 timestamp)")
        }
        guard OpsQueries.isTimestamp(createdBefore) else { return Responses.error(400, "createdBefore must be an ISO 8601 timestamp") }
        let reason = body["reason"]?.stringValue ?? ""
        let actor = String((context.clientId ?? "ops").prefix(128))
        do {
            let count = try await pool.withConnection {
                try OpsQueries.expireAll(issuerId: issuerId, createdBefore: createdBefore, reason: reason, actor: actor, on: $0)
            }
            audit(context, "expire-all", "expired \(count)", ["issuer_id": issuerId, "created_before": createdBefore])
            Metrics.authenticationsEnded(.authenticationFailed, cause: .operator, count: count)
            return Responses.json(200, [("expired", .number(JSONNumber(count)))])
        } catch {
            return opsFailure(error, context: context, operation: "ops expire-all")
        }
    }

    /// A timestamp PostgreSQL still refuses (out of range, say) is the caller's error, not ours.
    func opsFailure(_ error: any Error, context: RouteContext, operation: String) -> HTTPResponse {
        if let database = error as? PostgresError, database.sqlState?.hasPrefix("22") == true {
            return Responses.error(400, "a value is out of range or not valid (\(database.sqlState!))")
        }
        return failureResponse(error, logger: context.logger, operation: operation)
    }
}
