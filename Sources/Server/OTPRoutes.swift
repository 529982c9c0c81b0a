import Engine
import HTTP
import JSON
package import Postgres

/// Deliver OTP (contract deliver-otp.json): validated, then queued in the durable outbox (kind
/// `otp`) for the OTP delivery adapter; 204 once the insert has committed. The OTP value lives
/// only in the outbox payload, which the delivery worker erases once delivered or expired; it is
/// never logged.
package struct OTPRoutes: Sendable {
    package var pool: PostgresPool
    package var issuers: [String: ConfigFile.Issuer]
    package var settings: ConfigFile.OTP

    package init(pool: PostgresPool, issuers: [String: ConfigFile.Issuer], settings: ConfigFile.OTP) {
        self.pool = pool
        self.issuers = issuers
        self.settings = settings
    }

    package static let path = "/banking/d1/v1/issuers/{issuerId}/consumers/{consumerId}/otp"

    package var routes: [Route] {
        [
            Route("POST", Self.path, name: "d1.deliver-otp", authorization: D1Routes.d1) { context in
                await self.deliver(context)
            },
        ]
    }

    /// Queues the OTP only for a consumer the engine knows (one statement: no row, no queue).
    /// OTPs are per consumer, not per authentication: `authentication_id` stays null.
    static let enqueue = PostgresStatement("otp_enqueue", """
        insert into outbox (kind, payload, delivery_deadline)
        select 'otp', $3, now() + make_interval(secs => $4::int)
        where exists (select 1 from consumers where issuer_id = $1 and consumer_id = $2)
           or exists (select 1 from authenticators where issuer_id = $1 and consumer_id = $2)
        returning id
        """, planning: .generic)

    func deliver(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        let consumerId: String
        switch AppAPI.issuerAndConsumer(context, issuers) {
        case .failure(let failure): return failure.response
        case .success(let found): (issuer, consumerId) = found
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let request: DeliverOTPRequest
        do {
            request = try DeliverOTPRequest.decode(context.request.body)
        } catch {
            return Responses.error(400, error.message)
        }
        let payload = request.payload(issuerId: issuer.id, consumerId: consumerId)
        let logger = context.logger.with("issuer_id", issuer.id)
        do {
            let rows = try await pool.withConnection {
                try $0.execute(Self.enqueue, [issuer.id, consumerId, payload, String(settings.deliveryDeadlineSeconds)])
            }
            guard rows.count == 1 else { return Responses.notFound() }
            logger.info("OTP queued for delivery", ["outbox_id": rows.string(0, "id") ?? "-", "reason": request.reason,
                                                    "channel": request.deliveryChannel])
            return Responses.noContent()
        } catch {
            return failureResponse(error, logger: logger, operation: "deliver-otp")
        }
    }
}
