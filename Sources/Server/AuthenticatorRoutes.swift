import Engine
import HTTP
import JSON
package import Postgres

/// The authenticator registry: D1's Notify Consumer Operation (ENROLL_AUTHN, contract
/// notify-consumer-operation-v1.json) and the bank's app backend enrolling and unenrolling app
/// instances directly. Authenticate answers NO_AUTHENTICATOR exactly when a consumer has no
/// active authenticator (PostgresAuthenticationStore.insert reads `authenticators.active`).
package struct AuthenticatorRoutes: Sendable {
    package var pool: PostgresPool
    package var issuers: [String: ConfigFile.Issuer]

    package init(pool: PostgresPool, issuers: [String: ConfigFile.Issuer]) {
        self.pool = pool
        self.issuers = issuers
    }

    package static let notificationsPath = "/banking/d1/v1/issuers/{issuerId}/consumers/{consumerId}/notifications"
    package static let authenticatorsPath = "/app/v1/issuers/{issuerId}/consumers/{consumerId}/authenticators"

    package var routes: [Route] {
        [
            Route("POST", Self.notificationsPath, name: "d1.consumer-notification", authorization: D1Routes.d1) { context in
                await self.notify(context)
            },
            Route("GET", Self.authenticatorsPath, name: "app.authenticators", authorization: AppAPI.app) { context in
                await self.list(context)
            },
            Route("PUT", Self.authenticatorsPath + "/{appInstanceId}", name: "app.authenticator-enrol",
                  authorization: AppAPI.app) { context in
                await self.enrol(context)
            },
            Route("DELETE", Self.authenticatorsPath + "/{appInstanceId}", name: "app.authenticator-unenrol",
                  authorization: AppAPI.app) { context in
                await self.unenrol(context)
            },
        ]
    }

    /// Records the notification and, for a SUCCESSFUL ENROLL_AUTHN, makes the app instance an
    /// active authenticator, in one statement. A retry (same operationId) finds the notification
    /// recorded and changes nothing, so an app the bank unenrolled meanwhile stays unenrolled.
    static let recordConsumerOperation = PostgresStatement("consumer_operation_record", """
        with recorded as (
            insert into consumer_operations (issuer_id, operation_id, consumer_id, operation, status,
                                             app_instance_id, authn_type, start_time, end_time, error)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            on conflict (issuer_id, operation_id) do nothing
            returning *
        ), enrolled as (
            insert into authenticators (issuer_id, consumer_id, app_instance_id, authn_type, active)
            select issuer_id, consumer_id, app_instance_id, authn_type, true from recorded
            where status = 'SUCCESSFUL' and operation = 'ENROLL_AUTHN'
            on conflict (issuer_id, consumer_id, app_instance_id)
            do update set authn_type = excluded.authn_type, active = true, updated_at = now()
            returning 1
        )
        select (select count(*) from recorded) as recorded, (select count(*) from enrolled) as enrolled
        """, planning: .generic)

    static let enrolStatement = PostgresStatement("authenticator_enrol", """
        insert into authenticators (issuer_id, consumer_id, app_instance_id, authn_type, active)
        values ($1, $2, $3, $4, true)
        on conflict (issuer_id, consumer_id, app_instance_id)
        do update set authn_type = excluded.authn_type, active = true, updated_at = now()
        returning (xmax = 0) as created
        """, planning: .generic)

    static let unenrolStatement = PostgresStatement("authenticator_unenrol", """
        update authenticators set active = false, updated_at = case when active then now() else updated_at end
        where issuer_id = $1 and consumer_id = $2 and app_instance_id = $3
        returning 1 as found
        """, planning: .generic)

    static let listStatement = PostgresStatement("authenticator_list", """
        select app_instance_id, authn_type, active,
               to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as updated_at
        from authenticators where issuer_id = $1 and consumer_id = $2
        order by created_at, app_instance_id
        """, planning: .generic)

    func notify(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        let consumerId: String
        switch AppAPI.issuerAndConsumer(context, issuers) {
        case .failure(let failure): return failure.response
        case .success(let found): (issuer, consumerId) = found
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let notification: ConsumerOperationNotification
        do {
            notification = try ConsumerOperationNotification.decode(context.request.body, consumerId: consumerId)
        } catch {
            return Responses.error(400, error.message)
        }
        let logger = context.logger.with("issuer_id", issuer.id).with("operation_id", notification.operationId)
        let parameters: [String?] = [
            issuer.id, notification.operationId, consumerId, notification.operation, notification.status,
            notification.appInstanceId, notification.authnType, notification.startTime, notification.endTime,
            notification.error,
        ]
        do {
            let rows = try await pool.withConnection { try $0.execute(Self.recordConsumerOperation, parameters) }
            if rows.int(0, "recorded") == 1 {
                logger.info("consumer operation recorded", [
                    "operation": notification.operation, "status": notification.status,
                    "enrolled": rows.int(0, "enrolled") == 1 ? "true" : "false",
                ])
            } else {
                logger.info("consumer operation already recorded: retry ignored")
            }
            return Responses.noContent()
        } catch {
            return failureResponse(error, logger: logger, operation: "consumer-notification")
        }
    }

    /// issuerId, consumerId and appInstanceId from an authenticator path, or the answer to a bad one.
    func appInstanceTarget(_ context: RouteContext) -> Result<(ConfigFile.Issuer, String, String), HTTPResponseError> {
        AppAPI.issuerAndConsumer(context, issuers).flatMap { issuer, consumerId in
            let appInstanceId = context.parameters[2]
            guard Identifier.isPrintableText(appInstanceId, maxLength: 128) else {
                return .failure(HTTPResponseError(Responses.error(400, "appInstanceId must be 1 to 128 printable characters")))
            }
            return .success((issuer, consumerId, appInstanceId))
        }
    }

    func enrol(_ context: RouteContext) async -> HTTPResponse {
        let (issuer, consumerId, appInstanceId): (ConfigFile.Issuer, String, String)
        switch appInstanceTarget(context) {
        case .failure(let failure): return failure.response
        case .success(let target): (issuer, consumerId, appInstanceId) = target
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let authnType: String
        do {
            let object = try RequestBody.object(context.request.body)
            authnType = try RequestFields.requiredEnum(object, "authnType", AuthnType.values)
        } catch {
            return Responses.error(400, error.message)
        }
        let logger = context.logger.with("issuer_id", issuer.id)
        do {
            let rows = try await pool.withConnection {
                try $0.execute(Self.enrolStatement, [issuer.id, consumerId, appInstanceId, authnType])
            }
            let created = rows.bool(0, "created") == true
            logger.info("authenticator enrolled", ["authn_type": authnType, "created": created ? "true" : "false"])
            return Responses.json(created ? 201 : 200, Self.authenticatorJSON(appInstanceId, authnType, active: true))
        } catch {
            return failureResponse(error, logger: logger, operation: "authenticator-enrol")
        }
    }

    func unenrol(_ context: RouteContext) async -> HTTPResponse {
        let (issuer, consumerId, appInstanceId): (ConfigFile.Issuer, String, String)
        switch appInstanceTarget(context) {
        case .failure(let failure): return failure.response
        case .success(let target): (issuer, consumerId, appInstanceId) = target
        }
        let logger = context.logger.with("issuer_id", issuer.id)
        do {
            let rows = try await pool.withConnection {
                try $0.execute(Self.unenrolStatement, [issuer.id, consumerId, appInstanceId])
            }
            guard rows.count == 1 else { return Responses.notFound() }
            logger.info("authenticator unenrolled")
            return Responses.noContent()
        } catch {
            return failureResponse(error, logger: logger, operation: "authenticator-unenrol")
        }
    }

    func list(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        let consumerId: String
        switch AppAPI.issuerAndConsumer(context, issuers) {
        case .failure(let failure): return failure.response
        case .success(let found): (issuer, consumerId) = found
        }
        do {
            let (rows, known) = try await pool.withConnection { connection in
                let rows = try connection.execute(Self.listStatement, [issuer.id, consumerId])
                if rows.count > 0 { return (rows, true) }
                return (rows, try AppAPI.isKnownConsumer(connection, issuerId: issuer.id, consumerId: consumerId))
            }
            guard known else { return Responses.notFound() }
            var items: [JSONValue] = []
            for row in 0..<rows.count {
                var members = Self.authenticatorJSON(rows.string(row, "app_instance_id") ?? "",
                                                     rows.string(row, "authn_type") ?? "", active: rows.bool(row, "active") == true)
                members.append(("updatedAt", .string(rows.string(row, "updated_at") ?? "")))
                items.append(.object(JSONObject(members)))
            }
            return Responses.json(200, [("authenticators", .array(items))])
        } catch {
            return failureResponse(error, logger: context.logger.with("issuer_id", issuer.id), operation: "authenticator-list")
        }
    }

    static func authenticatorJSON(_ appInstanceId: String, _ authnType: String, active: Bool) -> [(String, JSONValue)] {
        [("appInstanceId", .string(appInstanceId)), ("authnType", .string(authnType)), ("active", .bool(active))]
    }
}

/// What the consumer-scoped routes share (app backend, D1, ops): path checks and the JSON body rule.
enum AppAPI {
    /// Every app-backend route: scope `app`, and the token's issuers must include the path's issuerId.
    static let app = RouteAuthorization.bearer(.app, issuerParameter: 0)

    /// issuerId and consumerId from the path (parameters 0 and 1). An unknown issuer answers the
    /// 404 an unknown resource gets.
    static func issuerAndConsumer(_ context: RouteContext, _ issuers: [String: ConfigFile.Issuer])
        -> Result<(ConfigFile.Issuer, String), HTTPResponseError> {
        let issuerId = context.parameters[0]
        let consumerId = context.parameters[1]
        guard Identifier.isValidIssuerID(issuerId) else {
            return .failure(HTTPResponseError(Responses.error(400, "issuerId must be exactly 10 characters")))
        }
        guard Identifier.isValidToken64(consumerId) else {
            return .failure(HTTPResponseError(Responses.error(400, "consumerId must match ^[A-Za-z0-9_-]{1,64}$")))
        }
        guard let issuer = issuers[issuerId] else { return .failure(HTTPResponseError(Responses.notFound())) }
        return .success((issuer, consumerId))
    }

    /// 415 for a body declared as anything but JSON (no Content-Type is taken as JSON).
    static func refuseNonJSON(_ context: RouteContext) -> HTTPResponse? {
        if let contentType = context.request.headers["content-type"], !isJSON(contentType) {
            return Responses.error(415, "Content-Type must be application/json")
        }
        return nil
    }

    /// A consumer the engine knows: the app backend stored their information, or they have (or
    /// had) an authenticator.
    static let knownConsumer = PostgresStatement("consumer_known", """
        select exists (select 1 from consumers where issuer_id = $1 and consumer_id = $2)
            or exists (select 1 from authenticators where issuer_id = $1 and consumer_id = $2) as known
        """, planning: .generic)

    static func isKnownConsumer(_ connection: PostgresConnection, issuerId: String, consumerId: String) throws -> Bool {
        try connection.execute(knownConsumer, [issuerId, consumerId]).bool(0, "known") == true
    }
}
