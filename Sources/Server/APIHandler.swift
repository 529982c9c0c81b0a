import Engine
package import HTTP
import Postgres

/// Bridges the HTTP server to the routes: matches, checks `x-correlation-id`, runs the route on
/// a Swift task, logs one access line, and turns unexpected errors into safe answers.
package final class APIHandler: HTTPHandler {
    let router: Router
    let logger: Logger
    let tokens: TokenAuthority?
    /// `api` or `ops`: the `listener` label of the request metrics.
    let listener: String
    let metrics: RequestMetrics

    /// `tokens` verifies bearer JWTs; without it every route that needs one answers 401.
    package init(router: Router, logger: Logger, tokens: TokenAuthority?, listener: String = "api") {
        self.router = router
        self.logger = logger
        self.tokens = tokens
        self.listener = listener
        metrics = RequestMetrics(listener: listener, routeNames: router.routes.map(\.name))
    }

    package func handle(_ request: HTTPRequest, responder: HTTPResponder) {
        let started = MonotonicTime.microseconds()
        var logger = self.logger
        if let correlationId = request.headers["x-correlation-id"] {
            // Contract: ^[A-Za-z0-9_-]{1,64}$. For tracing only, never an idempotency key.
            guard Identifier.isValidToken64(correlationId) else {
                respond(Responses.error(400, "x-correlation-id must match ^[A-Za-z0-9_-]{1,64}$"),
                        route: nil, request: request, logger: logger, started: started, responder: responder)
                return
            }
            logger = logger.with("correlation_id", correlationId)
        }
        switch router.match(method: request.method, path: request.path) {
        case .notFound:
            respond(Responses.notFound(), route: nil, request: request, logger: logger,
                    started: started, responder: responder)
        case .badPath:
            respond(Responses.error(400, "the path is not valid percent-encoded UTF-8"), route: nil, request: request,
                    logger: logger, started: started, responder: responder)
        case .methodNotAllowed(let allowed):
            respond(Responses.error(405, "method not allowed", headers: [("Allow", allowed.joined(separator: ", "))]),
                    route: nil, request: request, logger: logger, started: started, responder: responder)
        case .found(let route, let parameters):
            var clientId: String?
            var tokenIssuers: [String] = []
            if case .bearer(let scope, let issuerParameter) = route.authorization {
                guard let tokens else {
                    respond(TokenAuthority.bearerFailureResponse(.invalid("no keys configured")), route: route,
                            request: request, logger: logger, started: started, responder: responder)
                    return
                }
                switch tokens.verifyBearer(request.headers["authorization"], scope: scope) {
                case .failure(let box):
                    if case .invalid(let why) = box.failure {
                        logger.warning("bearer token refused", ["route": route.name, "why": why, "remote": request.remoteAddress])
                    }
                    respond(TokenAuthority.bearerFailureResponse(box.failure), route: route, request: request,
                            logger: logger, started: started, responder: responder)
                    return
                case .success(let claims):
                    // A valid token for another issuer gets exactly what an unknown resource gets.
                    // A malformed issuerId is nobody's: the route answers it with a 400.
                    if let index = issuerParameter, Identifier.isValidIssuerID(parameters[index]),
                       !claims.allows(issuer: parameters[index]) {
                        respond(Responses.notFound(), route: route, request: request,
                                logger: logger, started: started, responder: responder)
                        return
                    }
                    clientId = claims.sub
                    tokenIssuers = claims.issuers
                    logger = logger.with("client_id", claims.sub)
                }
            }
            let context = RouteContext(request: request, parameters: parameters, logger: logger, clientId: clientId,
                                       tokenIssuers: tokenIssuers)
            if let immediate = route.immediate, let response = immediate(context) {
                respond(response, route: route, request: request, logger: logger, started: started,
                        responder: responder)
                return
            }
            // On the receiving loop's thread: the database thread's answer hops straight back.
            Task(executorPreference: responder.taskExecutor) {
                let response = await route.handler(context)
                self.respond(response, route: route, request: request, logger: logger, started: started,
                             responder: responder)
            }
        }
    }

    /// `route` nil: no route matched.
    private func respond(_ response: HTTPResponse, route: Route?, request: HTTPRequest, logger: Logger,
                         started: Int64, responder: HTTPResponder) {
        let elapsed = MonotonicTime.microseconds() - started
        metrics.record(routePosition: route?.position, status: response.status, seconds: Double(elapsed) / 1e6)
        let level: Logger.Level = response.status >= 500 ? .warning : .info
        if level >= logger.minimumLevel {
            logger.log(level, "request", [
                "method": request.method, "route": route?.name ?? "-", "status": String(response.status),
                "duration_us": String(elapsed), "remote": request.remoteAddress,
            ])
        }
        responder.respond(response)
    }
}

/// Maps an error thrown below a route to an answer; logs it (errors are safe to log).
package func failureResponse(_ error: any Error, logger: Logger, operation: String) -> HTTPResponse {
    if let database = error as? PostgresError, database.isUnavailable {
        logger.warning("database unavailable", ["operation": operation, "error": String(describing: database)])
        return Responses.unavailable()
    }
    logger.error("internal error", ["operation": operation, "error": String(describing: error)])
    return Responses.error(500, "internal error")
}
