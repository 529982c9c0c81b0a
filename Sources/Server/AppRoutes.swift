package import Engine
import HTTP
import JSON

/// The bank's app backend API: scope `app`, limited to the token's issuers.
package struct AppRoutes: Sendable {
    package var service: AuthenticationService
    package var issuers: [String: ConfigFile.Issuer]

    package init(service: AuthenticationService, issuers: [String: ConfigFile.Issuer]) {
        self.service = service
        self.issuers = issuers
    }

    static let app = RouteAuthorization.bearer(.app, issuerParameter: 0)

    package var routes: [Route] {
        [
            Route("POST", "/app/v1/issuers/{issuerId}/authentications/{authenticationId}/decision",
                  name: "app.decision", authorization: Self.app) { context in
                await self.decision(context)
            },
            Route("GET", "/app/v1/issuers/{issuerId}/consumers/{consumerId}/challenges",
                  name: "app.challenges", authorization: Self.app) { context in
                await self.challenges(context)
            },
        ]
    }

    static func statusMembers(_ status: AuthenticationStatus) -> [(String, JSONValue)] {
        var members: [(String, JSONValue)] = [("authenticationStatus", .string(status.state.rawValue))]
        if let reason = status.reason { members.append(("reason", .string(reason))) }
        return members
    }

    func issuer(_ context: RouteContext) -> Result<ConfigFile.Issuer, HTTPResponseError> {
        let issuerId = context.parameters[0]
        guard Identifier.isValidIssuerID(issuerId) else {
            return .failure(HTTPResponseError(Responses.error(400, "issuerId must be exactly 10 characters")))
        }
        guard let issuer = issuers[issuerId] else { return .failure(HTTPResponseError(Responses.notFound())) }
        return .success(issuer)
    }

    func decision(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        switch self.issuer(context) {
        case .failure(let failure): return failure.response
        case .success(let found): issuer = found
        }
        let authenticationId = context.parameters[1]
        guard Identifier.isValidToken64(authenticationId) else {
            return Responses.error(400, "authenticationId must match ^[A-Za-z0-9_-]{1,64}$")
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let decision: CardholderDecision
        let appInstanceId: String
        do {
            (decision, appInstanceId) = try DecisionRequest.decodeBody(context.request.body)
        } catch {
            return Responses.error(400, error.message)
        }
        let logger = context.logger.with("issuer_id", issuer.id).with("authentication_id", authenticationId)
        let request = DecisionRequest(issuerId: issuer.id, authenticationId: authenticationId, decision: decision,
                                      appInstanceId: appInstanceId, actor: context.clientId ?? "app")
        do {
            switch try await service.decide(request) {
            case .notFound:
                return Responses.notFound()
            case .notAnAuthenticator:
                logger.warning("decision from an app instance that is not an active authenticator")
                return Responses.error(403, "appInstanceId is not an active authenticator of this authentication's consumer")
            case .applied(let status):
                logger.info("cardholder decision applied", ["decision": decision.rawValue, "status": status.state.rawValue])
                return Responses.json(200, Self.statusMembers(status))
            case .repeated(let status):
                return Responses.json(200, Self.statusMembers(status))
            case .conflict(let status):
                logger.info("cardholder decision refused: the authentication had already ended",
                            ["decision": decision.rawValue, "status": status.state.rawValue])
                return Responses.json(409, [("error", .string("the authentication has already ended"))] + Self.statusMembers(status))
            }
        } catch {
            return failureResponse(error, logger: logger, operation: "decision")
        }
    }

    func challenges(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        switch self.issuer(context) {
        case .failure(let failure): return failure.response
        case .success(let found): issuer = found
        }
        let consumerId = context.parameters[1]
        guard Identifier.isValidToken64(consumerId) else {
            return Responses.error(400, "consumerId must match ^[A-Za-z0-9_-]{1,64}$")
        }
        do {
            let records = try await service.pendingChallenges(issuerId: issuer.id, consumerId: consumerId)
            let items: [JSONValue] = records.map { record in
                var members: [(String, JSONValue)] = [("authenticationId", .string(record.authenticationId))]
                if let cardId = record.request.cardId { members.append(("cardId", .string(cardId))) }
                if let panSuffix = record.request.panSuffix { members.append(("panSuffix", .string(panSuffix))) }
                var purchase: [(String, JSONValue)] = []
                if let merchant = record.request.merchantName { purchase.append(("merchantName", .string(merchant))) }
                if let amount = record.request.amount { purchase.append(("amount", .string(amount))) }
                if let currency = record.request.currencyCode { purchase.append(("currencyCode", .string(currency))) }
                members.append(("purchase", .object(JSONObject(purchase))))
                members.append(("createdAt", .string(ISO8601.format(unixMilliseconds: record.createdAtUnixMilliseconds))))
                members.append(("expiresAt", .string(ISO8601.format(unixMilliseconds: record.deadlineUnixMilliseconds))))
                return .object(JSONObject(members))
            }
            return Responses.json(200, [("challenges", .array(items))])
        } catch {
            return failureResponse(error, logger: context.logger, operation: "challenges")
        }
    }
}
