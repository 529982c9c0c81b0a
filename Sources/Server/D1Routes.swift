package import Engine
import HTTP
import JSON
import Synchronization

/// D1's outbound API (D1 → issuer), ../shared/d1-contract/.
package struct D1Routes: Sendable {
    package var service: AuthenticationService
    package var issuers: [String: ConfigFile.Issuer]
    /// With a push adapter: each new challenge queues a push in its own creating statement.
    package var pushDeliveryDeadlineSeconds: Int?
    /// Called after a challenge was created (wakes the push outbox's workers).
    package var onCreated: (@Sendable () -> Void)?

    package init(service: AuthenticationService, issuers: [String: ConfigFile.Issuer],
                 pushDeliveryDeadlineSeconds: Int? = nil, onCreated: (@Sendable () -> Void)? = nil) {
        self.service = service
        self.issuers = issuers
        self.pushDeliveryDeadlineSeconds = pushDeliveryDeadlineSeconds
        self.onCreated = onCreated
    }

    package static let authenticationPath = "/banking/d1/v1/issuers/{issuerId}/consumers/{consumerId}/authentication"

    /// Every D1 route: scope `d1`, and the token's issuers must include the path's issuerId.
    static let d1 = RouteAuthorization.bearer(.d1, issuerParameter: 0)

    package var routes: [Route] {
        [
            Route("POST", Self.authenticationPath, name: "d1.authenticate", authorization: Self.d1) { context in
                await self.authenticate(context)
            },
            Route("GET", Self.authenticationPath + "/{authenticationId}", name: "d1.authentication-result",
                  authorization: Self.d1, immediate: { context in self.pollFromMemory(context) }) { context in
                await self.poll(context)
            },
        ]
    }

    /// Checks issuerId and consumerId from the path (the checks every consumer route shares).
    func issuerAndConsumer(_ context: RouteContext) -> Result<(ConfigFile.Issuer, String), HTTPResponseError> {
        AppAPI.issuerAndConsumer(context, issuers)
    }

    func authenticate(_ context: RouteContext) async -> HTTPResponse {
        let issuer: ConfigFile.Issuer
        let consumerId: String
        switch issuerAndConsumer(context) {
        case .failure(let failure): return failure.response
        case .success(let found): (issuer, consumerId) = found
        }
        if let refused = AppAPI.refuseNonJSON(context) { return refused }
        let request: AuthenticateRequest
        do {
            request = try AuthenticateRequest.decode(context.request.body)
        } catch {
            return Responses.error(400, error.message)
        }
        let logger = context.logger.with("issuer_id", issuer.id).with("authentication_id", request.authenticationId)
        let new = NewAuthentication(issuerId: issuer.id, consumerId: consumerId, request: request,
                                    challengeTTLSeconds: issuer.challengeTTLSeconds, actor: context.clientId ?? "d1",
                                    pushDeliveryDeadlineSeconds: pushDeliveryDeadlineSeconds)
        do {
            switch try await service.authenticate(new) {
            case .conflict:
                logger.warning("authenticationId reused with another consumer or other details")
                return Responses.error(403, "authenticationId already used for another consumer or other details")
            case .status(let status, let record, let created):
                if created {
                    Metrics.authenticationCreated(issuerId: issuer.id)
                    logger.info("authentication created", ["status": status, "id": String(record.id)])
                    if record.status.state == .pending { onCreated?() }
                }
                return Responses.json(200, [("authenticationStatus", .string(status))])
            }
        } catch {
            return failureResponse(error, logger: logger, operation: "authenticate")
        }
    }

    /// The poll's issuer, consumerId and authenticationId from the path, or the answer to a bad one.
    func pollTarget(_ context: RouteContext) -> Result<(ConfigFile.Issuer, String, String), HTTPResponseError> {
        switch issuerAndConsumer(context) {
        case .failure(let failure):
            return .failure(failure)
        case .success(let (issuer, consumerId)):
            let authenticationId = context.parameters[2]
            guard Identifier.isValidToken64(authenticationId) else {
                return .failure(HTTPResponseError(Responses.error(400, "authenticationId must match ^[A-Za-z0-9_-]{1,64}$")))
            }
            return .success((issuer, consumerId, authenticationId))
        }
    }

    func poll(_ context: RouteContext) async -> HTTPResponse {
        let (issuer, consumerId, authenticationId): (ConfigFile.Issuer, String, String)
        switch pollTarget(context) {
        case .failure(let failure): return failure.response
        case .success(let target): (issuer, consumerId, authenticationId) = target
        }
        do {
            return Self.pollResponse(try await service.poll(issuerId: issuer.id, consumerId: consumerId,
                                                            authenticationId: authenticationId))
        } catch {
            return failureResponse(error, logger: context.logger.with("issuer_id", issuer.id), operation: "poll")
        }
    }

    /// The poll answered on the event-loop thread when the path is bad or the store's memory
    /// knows the answer (see `AuthenticationCache`); nil hands it to `poll`.
    func pollFromMemory(_ context: RouteContext) -> HTTPResponse? {
        switch pollTarget(context) {
        case .failure(let failure):
            return failure.response
        case .success(let (issuer, consumerId, authenticationId)):
            return service.pollFromMemory(issuerId: issuer.id, consumerId: consumerId, authenticationId: authenticationId)
                .map(Self.pollResponse)
        }
    }

    /// The answers without a reason, serialised once.
    private static let plainStatusResponses: [AuthenticationState: HTTPResponse] = Dictionary(
        uniqueKeysWithValues: [AuthenticationState.pending, .authenticated].map { state in
            (state, Responses.json(200, [("authenticationStatus", .string(state.rawValue))]))
        })

    /// Final answers with a reason, serialised once each: a final state never changes, its
    /// reasons come from a short list, and D1 polls each authentication until it sees one.
    /// Bounded: past the limit an answer is serialised each time.
    private static let reasonResponses = Mutex<[ReasonKey: HTTPResponse]>([:])
    private static let reasonResponseLimit = 256

    private struct ReasonKey: Hashable {
        var state: AuthenticationState
        var reason: String
    }

    static func pollResponse(_ answer: PollAnswer) -> HTTPResponse {
        switch answer {
        case .notFound:
            return Responses.notFound()
        case .status(let status, _):
            guard let reason = status.reason, status.state == .authenticationFailed || status.state == .technicalError else {
                if let ready = plainStatusResponses[status.state] { return ready }
                return Responses.json(200, [("authenticationStatus", .string(status.state.rawValue))])
            }
            let key = ReasonKey(state: status.state, reason: reason)
            if let ready = reasonResponses.withLock({ $0[key] }) { return ready }
            let response = Responses.json(200, [("authenticationStatus", .string(status.state.rawValue)),
                                                ("reason", .string(reason))])
            reasonResponses.withLock { responses in
                if responses.count < reasonResponseLimit { responses[key] = response }
            }
            return response
        }
    }
}

/// A ready answer carried through `Result`.
struct HTTPResponseError: Error {
    var response: HTTPResponse
    init(_ response: HTTPResponse) { self.response = response }
}

/// `application/json`, optionally with parameters (`; charset=utf-8`), case-insensitive.
func isJSON(_ contentType: String) -> Bool {
    let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingSpaces().lowercased() } ?? ""
    return media == "application/json"
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
