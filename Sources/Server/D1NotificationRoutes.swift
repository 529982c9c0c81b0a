package import Engine
import HTTP
import JSON
package import Postgres
import Synchronization

/// Notify 3-D Secure Card Operation (contract notify-3-d-secure-card-operation.json): D1's final
/// word on every 3DS operation of a card. Stored idempotently on operationId. For
/// 3DS_CHALLENGE_OOB_ISSUER it is matched to the engine's authentication through
/// `details.acsTransactionId`: a still-PENDING one ends as AUTHENTICATION_FAILED (`ended by D1`,
/// never AUTHENTICATED: only the cardholder's decision authenticates), and a disagreement
/// between D1's status and the engine's state is logged and counted.
package struct D1NotificationRoutes: Sendable {
    package var pool: PostgresPool
    package var service: AuthenticationService
    package var issuers: [String: ConfigFile.Issuer]
    package var metrics: D1NotificationMetrics

    package init(pool: PostgresPool, service: AuthenticationService, issuers: [String: ConfigFile.Issuer],
                 metrics: D1NotificationMetrics) {
        self.pool = pool
        self.service = service
        self.issuers = issuers
        self.metrics = metrics
    }

    package static let path = "/notifications/d1/v1/issuers/{issuerId}/cards/{cardId}/3ds/notifications"

    package var routes: [Route] {
        [
            Route("POST", Self.path, name: "d1.card-3ds-notification", authorization: D1Routes.d1) { context in
                await self.notify(context)
            },
        ]
    }

    /// A card the engine knows: the app backend listed it for a consumer, or an Authenticate named it.
    static let cardKnown = PostgresStatement("card_known", """
        select exists (select 1 from consumer_cards where issuer_id = $1 and card_id = $2)
            or exists (select 1 from authentications where issuer_id = $1 and card_id = $2) as known,
               exists (select 1 from card_operations where issuer_id = $1 and operation_id = $3) as recorded
        """, planning: .generic)

    /// The authentication D1 speaks of: `acs_transaction_id` first, else the authenticationId
    /// (the contract makes them equal); an authentication of another card never matches.
    static let match = PostgresStatement("card_operation_match", """
        select \(PostgresAuthenticationStore.columns) from authentications
        where issuer_id = $1 and (acs_transaction_id = $2 or authentication_id = $2)
          and (card_id is null or card_id = $3)
        order by (acs_transaction_id = $2) desc nulls last, id desc
        limit 1
        """, planning: .generic)

    static let record = PostgresStatement("card_operation_record", """
        insert into card_operations (issuer_id, operation_id, card_id, consumer_id, operation, status, start_time,
                                     acs_transaction_id, trans_status, trans_status_reason, eci,
                                     authentication_id, engine_state, ended_by_d1, agreement, body)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::bigint, $13, $14::boolean, $15, $16)
        on conflict (issuer_id, operation_id) do nothing
        returning 1 as recorded
        """, planning: .generic)

    func notify(_ context: RouteContext) async -> HTTPResponse {
        let issuerId = context.parameters[0]
        let cardId = context.parameters[1]
        guard Identifier.isValidIssuerID(issuerId) else {
            return Responses.error(400, "issuerId must be exactly 10 characters")
        }
        guard Identifier.isValidCardID(cardId) else {
            return Responses.error(400, "cardId must match ^[A-Za-z0-9_-]{1,48}$")
        }
        guard let issuer = issuers[issuerId] else { return Responses.notFound() }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let notification: CardOperationNotification
        do {
            notification = try CardOperationNotification.decode(context.request.body)
        } catch {
            return Responses.error(400, error.message)
        }
        var logger = context.logger.with("issuer_id", issuer.id).with("operation_id", notification.operationId)
        do {
            let state = try await pool.withConnection {
                try $0.execute(Self.cardKnown, [issuer.id, cardId, notification.operationId])
            }
            if state.bool(0, "recorded") == true {
                metrics.count(\.duplicates)
                logger.info("card operation already recorded: retry ignored")
                return Responses.noContent()
            }
            guard state.bool(0, "known") == true else { return Responses.notFound() }

            var matched: AuthenticationRecord?
            var ended = false
            var agreement: String?
            if notification.operation == CardOperationNotification.oobIssuer, let acs = notification.acsTransactionId {
                let rows = try await pool.withConnection { try $0.execute(Self.match, [issuer.id, acs, cardId]) }
                if rows.count == 1 {
                    var record = try PostgresAuthenticationStore.record(rows, 0)
                    logger = logger.with("authentication_id", record.authenticationId)
                    if record.status.state == .pending {
                        (record, ended) = try await service.endByD1(record, actor: context.clientId ?? "d1")
                    }
                    matched = record
                    agreement = D1Agreement.compare(d1Successful: notification.isSuccessful, engine: record.status.state).rawValue
                } else {
                    agreement = "unmatched"
                }
            }

            let parameters: [String?] = [
                issuer.id, notification.operationId, cardId, notification.consumerId, notification.operation,
                notification.status, notification.startTime, notification.acsTransactionId, notification.transStatus,
                notification.transStatusReason, notification.eci, matched.map { String($0.id) },
                matched?.status.state.rawValue, ended ? "true" : "false", agreement,
                String(decoding: context.request.body, as: UTF8.self),
            ]
            let inserted = try await pool.withConnection { try $0.execute(Self.record, parameters) }
            guard inserted.count == 1 else {
                // A concurrent delivery of the same notification won the insert.
                metrics.count(\.duplicates)
                return Responses.noContent()
            }
            metrics.count(\.recorded)
            if ended {
                metrics.count(\.endedPending)
                logger.info("authentication ended by D1's notification", ["d1_status": notification.status])
            }
            switch agreement {
            case D1Agreement.disagreed.rawValue?:
                metrics.count(\.disagreements)
                logger.warning("D1 and the engine disagree on an authentication's outcome", [
                    "d1_status": notification.status, "trans_status": notification.transStatus ?? "-",
                    "engine_state": matched?.status.state.rawValue ?? "-", "ended_by_d1": ended ? "true" : "false",
                ])
            case "unmatched"?:
                metrics.count(\.unmatched)
                logger.warning("3DS_CHALLENGE_OOB_ISSUER notification matches no authentication", ["d1_status": notification.status])
            default:
                logger.info("card operation recorded", ["operation": notification.operation, "d1_status": notification.status])
            }
            return Responses.noContent()
        } catch {
            return failureResponse(error, logger: logger, operation: "card-3ds-notification")
        }
    }
}

/// Counters for D1's 3DS notifications; the ops issue exposes them as metrics.
package final class D1NotificationMetrics: Sendable {
    package struct Snapshot: Sendable, Hashable {
        package var recorded = 0
        package var duplicates = 0
        /// PENDING authentications that D1's notification ended.
        package var endedPending = 0
        /// D1's status and the engine's final state differ.
        package var disagreements = 0
        /// 3DS_CHALLENGE_OOB_ISSUER notifications that name no authentication of the engine.
        package var unmatched = 0
    }

    private let counters = Mutex(Snapshot())

    package init() {}

    package var snapshot: Snapshot { counters.withLock { $0 } }

    func count(_ counter: WritableKeyPath<Snapshot, Int>) {
        counters.withLock { $0[keyPath: counter] += 1 }
        let outcome = switch counter {
        case \.recorded: "recorded"
        case \.duplicates: "duplicate"
        case \.endedPending: "ended-pending"
        case \.disagreements: "disagreement"
        default: "unmatched"
        }
        Metrics.shared.increment("oob_d1_3ds_notifications_total", [outcome])
    }
}
