package import Crypto
import Engine
package import HTTP
import JSON
import Synchronization

/// Scopes a client may hold: D1 itself, the bank's app backend, the bank's operators.
package enum Scope: String, Sendable, CaseIterable {
    case d1, app, ops
}

/// An OAuth2 client from the configuration file.
package struct OAuthClient: Sendable {
    package var id: String
    /// SHA-256 of the secret: compared in constant time, and the plain secret need not be kept.
    package var secretDigest: [UInt8]
    package var scopes: [Scope]
    /// Issuers this client may act for; `["*"]` for all.
    package var issuers: [String]
}

/// Issues and verifies the engine's bearer JWTs (RFC 6749 client credentials, RFC 7519 JWT).
package final class TokenAuthority: Sendable {
    package struct Configuration: Sendable {
        package var clients: [OAuthClient]
        package var keys: JWTKeySet
        /// `iss` of issued tokens and the only one accepted. Default "oob-engine".
        package var issuer: String = "oob-engine"
        /// `aud` of issued tokens and the only one accepted. Default "oob-engine".
        package var audience: String = "oob-engine"
        /// Token lifetime; default 900 s, never above 3600 s.
        package var tokenTTLSeconds: Int = 900
        /// PCI DSS 8.3.4: lock a client id after 10 failed attempts, for 15 minutes.
        package var maxFailures: Int = 10
        package var lockoutSeconds: Int64 = 900

        package init(clients: [OAuthClient], keys: JWTKeySet) {
            self.clients = clients
            self.keys = keys
        }
    }

    struct Throttle {
        var failures = 0
        var lockedUntil: Int64 = 0
    }

    let configuration: Configuration
    let clientsByID: [String: OAuthClient]
    let throttles = Mutex<[String: Throttle]>([:])
    let logger: Logger

    package init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.clientsByID = Dictionary(configuration.clients.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        self.logger = logger
    }

    static func nowSeconds() -> Int64 { WallClock.milliseconds() / 1000 }

    // MARK: Token endpoint

    /// `POST /authz/d1/v1/oauth2/token` (spec D1-Public-OUT-v1-Auth2; RFC 6749 §4.4, errors §5.2).
    package func tokenEndpoint(_ context: RouteContext) -> HTTPResponse {
        let request = context.request
        let logger = context.logger
        // Client authentication first (RFC 6749 §2.3.1): HTTP Basic, id and secret form-urlencoded.
        guard let (clientId, secret) = Self.basicCredentials(request.headers["authorization"]) else {
            logger.warning("token request without valid client authentication", ["remote": request.remoteAddress])
            return Self.oauthError(401, "invalid_client", "client authentication failed",
                                   headers: [("WWW-Authenticate", "Basic realm=\"oob-engine\", charset=\"UTF-8\"")])
        }
        let now = Self.nowSeconds()
        guard let client = authenticate(clientId: clientId, secret: secret, now: now, logger: logger, remote: request.remoteAddress) else {
            return Self.oauthError(401, "invalid_client", "client authentication failed",
                                   headers: [("WWW-Authenticate", "Basic realm=\"oob-engine\", charset=\"UTF-8\"")])
        }
        if let contentType = request.headers["content-type"],
           contentType.split(separator: ";").first.map({ $0.trimmingSpaces().lowercased() }) != "application/x-www-form-urlencoded" {
            return Self.oauthError(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        }
        guard let form = FormURLEncoded.parse(request.body) else {
            return Self.oauthError(400, "invalid_request", "the body is not valid application/x-www-form-urlencoded")
        }
        // RFC 6749 §3.2: parameters must not be included more than once.
        var seen = Set<String>()
        for (name, _) in form where !seen.insert(name).inserted {
            return Self.oauthError(400, "invalid_request", "parameter \(name) appears more than once")
        }
        let parameters = Dictionary(form, uniquingKeysWith: { first, _ in first })
        guard let grantType = parameters["grant_type"], !grantType.isEmpty else {
            return Self.oauthError(400, "invalid_request", "grant_type is required")
        }
        guard grantType == "client_credentials" else {
            return Self.oauthError(400, "unsupported_grant_type", "only client_credentials is supported")
        }
        guard !client.scopes.isEmpty else {
            return Self.oauthError(400, "unauthorized_client", "this client may not use the client_credentials grant")
        }
        var granted = client.scopes
        if let requested = parameters["scope"] {
            let names = requested.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard !names.isEmpty else { return Self.oauthError(400, "invalid_scope", "scope is empty") }
            var scopes: [Scope] = []
            for name in names {
                guard let scope = Scope(rawValue: name), client.scopes.contains(scope) else {
                    return Self.oauthError(400, "invalid_scope", "a requested scope is unknown or not granted to this client")
                }
                if !scopes.contains(scope) { scopes.append(scope) }
            }
            granted = scopes
        }
        let ttl = Int64(min(configuration.tokenTTLSeconds, 3600))
        let claims = JWTClaims(iss: configuration.issuer, sub: client.id, aud: configuration.audience,
                               scope: granted.map(\.rawValue), issuers: client.issuers,
                               iat: now, nbf: now, exp: now + ttl,
                               jti: Hex.encode(SecureRandom.bytes(16)))
        let token: String
        do {
            token = try configuration.keys.sign(claims)
        } catch {
            logger.error("token signing failed", ["error": String(describing: error)])
            return Responses.error(500, "internal error")
        }
        logger.info("token issued", ["client_id": client.id, "scope": granted.map(\.rawValue).joined(separator: " ")])
        return Responses.json(200, [
            ("access_token", .string(token)),
            ("token_type", .string("Bearer")),
            ("expires_in", .string(String(ttl))),
            ("expires_at", .string(ISO8601.format(unixSeconds: now + ttl))),
            ("scope", .string(granted.map(\.rawValue).joined(separator: " "))),
        ], headers: [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
    }

    /// Constant-time secret check with lock-out after repeated failures. Unknown ids cost the
    /// same work as known ones and are not tracked (an attacker cannot fill memory with them).
    func authenticate(clientId: String, secret: String, now: Int64, logger: Logger, remote: String) -> OAuthClient? {
        let presented = SHA256.hash(Array(secret.utf8))
        guard let client = clientsByID[clientId] else {
            _ = constantTimeEquals(presented, Self.dummyDigest)
            logger.warning("token request for an unknown client id", ["remote": remote])
            return nil
        }
        let locked = throttles.withLock { ($0[clientId]?.lockedUntil ?? 0) > now }
        if locked {
            logger.warning("token request for a locked client", ["client_id": clientId, "remote": remote])
            return nil
        }
        if constantTimeEquals(presented, client.secretDigest) {
            throttles.withLock { $0[clientId] = nil }
            return client
        }
        let failures = throttles.withLock { table -> Int in
            var entry = table[clientId] ?? Throttle()
            entry.failures += 1
            if entry.failures >= configuration.maxFailures {
                entry.lockedUntil = now + configuration.lockoutSeconds
                entry.failures = 0
            }
            table[clientId] = entry
            return entry.lockedUntil > now ? configuration.maxFailures : entry.failures
        }
        logger.warning("client authentication failed", ["client_id": clientId, "remote": remote, "failures": String(failures)])
        if failures >= configuration.maxFailures {
            logger.warning("client locked after repeated failures", ["client_id": clientId, "seconds": String(configuration.lockoutSeconds)])
        }
        return nil
    }

    static let dummyDigest = SHA256.hash(Array("oob-engine-unknown-client".utf8))

    /// Spaces and tabs around the value, as Foundation's `.whitespaces` trimmed them (tab and
    /// Unicode space separators).
    static func trimmingBlanks(_ text: Substring) -> String {
        func isBlank(_ scalar: Unicode.Scalar) -> Bool { scalar == "\t" || scalar.properties.generalCategory == .spaceSeparator }
        var scalars = text.unicodeScalars[...]
        while let first = scalars.first, isBlank(first) { scalars = scalars.dropFirst() }
        while let last = scalars.last, isBlank(last) { scalars = scalars.dropLast() }
        return String(String.UnicodeScalarView(scalars))
    }

    /// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`. Thales calls the value
    /// "base64URL", so both alphabets are accepted, padded or not.
    package static func basicCredentials(_ header: String?) -> (String, String)? {
        guard let header, header.count <= 4096 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let decoded = Base64.decodeLenient(trimmingBlanks(parts[1])),
              let text = String(validating: decoded, as: UTF8.self),
              let colon = text.firstIndex(of: ":")
        else { return nil }
        guard let id = FormURLEncoded.decodeComponent(Substring(text[..<colon])),
              let secret = FormURLEncoded.decodeComponent(Substring(text[text.index(after: colon)...])),
              !id.isEmpty
        else { return nil }
        return (id, secret)
    }

    package static func oauthError(_ status: Int, _ code: String, _ description: String, headers: [(String, String)] = []) -> HTTPResponse {
        Responses.json(status, [("error", .string(code)), ("error_description", .string(description))],
                       headers: headers + [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
    }

    // MARK: Bearer tokens

    package enum BearerFailure: Sendable {
        case missing
        case invalid(String)
        case insufficientScope
    }

    /// Verifies `Authorization: Bearer <jwt>` for `scope` (RFC 6750). The algorithm comes from
    /// the configured key selected by `kid`, never from the token.
    package func verifyBearer(_ header: String?, scope: Scope) -> Result<JWTClaims, BearerFailureBox> {
        guard let header else { return .failure(BearerFailureBox(.missing)) }
        let now = Self.nowSeconds()
        let claims: JWTClaims
        if let known = verifiedTokens.withLock({ $0[VerifiedTokenKey(header)] }), known.exp > now, known.nbf <= now {
            // Verified before: the signature and the fixed claims cannot have changed (the key
            // is the header's exact text); only the time window is checked again.
            claims = known
        } else {
            let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                return .failure(BearerFailureBox(.invalid("not a bearer token")))
            }
            do {
                claims = try configuration.keys.verify(String(parts[1]), now: now,
                                                       issuer: configuration.issuer, audience: configuration.audience)
            } catch {
                return .failure(BearerFailureBox(.invalid(String(describing: error))))
            }
            verifiedTokens.withLock { tokens in
                // Bounded: a flood of distinct valid tokens only costs re-verification.
                if tokens.count >= Self.verifiedTokenCapacity { tokens.removeAll(keepingCapacity: true) }
                tokens[VerifiedTokenKey(header)] = claims
            }
        }
        guard claims.scope.contains(scope.rawValue) else { return .failure(BearerFailureBox(.insufficientScope)) }
        return .success(claims)
    }

    /// Tokens that passed full verification, by their `Authorization` header: D1 and the app
    /// backend reuse one token for many requests, so a repeat costs a lookup instead of an HMAC
    /// and a JSON parse (≈ 15 % of a cached poll's CPU).
    private let verifiedTokens = Mutex<[VerifiedTokenKey: JWTClaims]>([:])

    /// An `Authorization` header as a dictionary key that hashes only its last 64 bytes (the
    /// signature's end, which differs between tokens) and compares the whole text: hashing a
    /// 300-byte header on every request cost more than the rest of the lookup.
    private struct VerifiedTokenKey: Hashable {
        let header: String

        init(_ header: String) { self.header = header }

        func hash(into hasher: inout Hasher) {
            var header = header
            header.withUTF8 { bytes in
                hasher.combine(bytes: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes.suffix(64))))
            }
        }

        static func == (lhs: VerifiedTokenKey, rhs: VerifiedTokenKey) -> Bool { lhs.header == rhs.header }
    }
    private static let verifiedTokenCapacity = 1_024

    package static func bearerFailureResponse(_ failure: BearerFailure) -> HTTPResponse {
        switch failure {
        case .missing:
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            return Responses.error(401, "authentication required", headers: [("WWW-Authenticate", "Bearer realm=\"oob-engine\"")])
        case .invalid:
            return Responses.error(401, "invalid_token",
                                   headers: [("WWW-Authenticate", "Bearer realm=\"oob-engine\", error=\"invalid_token\"")])
        case .insufficientScope:
            return Responses.error(403, "insufficient_scope",
                                   headers: [("WWW-Authenticate", "Bearer realm=\"oob-engine\", error=\"insufficient_scope\"")])
        }
    }
}

package struct BearerFailureBox: Error {
    package var failure: TokenAuthority.BearerFailure
    init(_ failure: TokenAuthority.BearerFailure) { self.failure = failure }
}

extension JWTClaims {
    /// Whether the token may act for `issuerId` (`"*"` means every issuer).
    package func allows(issuer issuerId: String) -> Bool {
        issuers.contains("*") || issuers.contains(issuerId)
    }
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5): `+` is a space, `%XX` a byte.
package enum FormURLEncoded {
    package static func parse(_ body: [UInt8]) -> [(String, String)]? {
        guard let text = String(validating: body, as: UTF8.self) else { return nil }
        var pairs: [(String, String)] = []
        for part in text.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decodeComponent(pieces[0]),
                  let value = pieces.count > 1 ? decodeComponent(pieces[1]) : ""
            else { return nil }
            pairs.append((name, value))
        }
        return pairs
    }

    package static func decodeComponent(_ text: Substring) -> String? {
        PercentDecoding.decode(Array(text.utf8).map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 })
    }
}

/// ISO 8601 / RFC 3339 UTC timestamps (`2026-11-22T15:00:00Z`).
package enum ISO8601 {
    package static func format(unixSeconds: Int64) -> String {
        let text = LogClock.format(unixMilliseconds: unixSeconds * 1000)
        return String(text.prefix(19)) + "Z"
    }

    /// With milliseconds: `2026-12-01T12:00:00.123Z`.
    package static func format(unixMilliseconds: Int64) -> String {
        let text = LogClock.format(unixMilliseconds: unixMilliseconds)
        return String(text.prefix(23)) + "Z"
    }
}
