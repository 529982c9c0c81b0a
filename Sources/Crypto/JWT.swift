import JSON

/// The claims the engine puts in, and requires of, every access token (RFC 7519 §4.1 plus
/// `scope` from RFC 8693 §4.2 and the engine's own `issuers`: the card issuers the client may act for).
package struct JWTClaims: Sendable, Equatable {
    package var iss: String
    package var sub: String
    package var aud: String
    /// Carried as one space-separated string in the token (RFC 8693 §4.2).
    package var scope: [String]
    /// Carried as a JSON array of strings; `"*"` stands for every issuer.
    package var issuers: [String]
    package var iat: Int64
    package var nbf: Int64
    package var exp: Int64
    package var jti: String

    package init(iss: String, sub: String, aud: String, scope: [String], issuers: [String],
                 iat: Int64, nbf: Int64, exp: Int64, jti: String) {
        self.iss = iss
        self.sub = sub
        self.aud = aud
        self.scope = scope
        self.issuers = issuers
        self.iat = iat
        self.nbf = nbf
        self.exp = exp
        self.jti = jti
    }
}

/// The JWS algorithms the engine supports (RFC 7518 §3.1). `none` is deliberately absent.
package enum JWTAlgorithm: String, Sendable {
    case hs256 = "HS256"
    case es256 = "ES256"
}

/// One configured key, named by its `kid`.
package struct JWTKey: Sendable {
    package enum Material: Sendable {
        /// The shared HS256 secret (at least 32 bytes, RFC 7518 §3.2).
        case hmac([UInt8])
        case ecPrivate(ECP256PrivateKey)
        /// Verification only: for tokens signed elsewhere or by a retired key.
        case ecPublic(ECP256PublicKey)
    }

    package var kid: String
    package var algorithm: JWTAlgorithm
    package var material: Material

    package init(kid: String, algorithm: JWTAlgorithm, material: Material) {
        self.kid = kid
        self.algorithm = algorithm
        self.material = material
    }
}

/// Why a key set was refused. Names the `kid` (configuration, not a secret), never key material.
package enum JWTKeySetError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyKeyID
    case duplicateKeyID(String)
    case materialDoesNotMatchAlgorithm(String)
    case secretTooShort(String)
    case signingKeyMissing(String)
    case signingKeyCannotSign(String)

    package var description: String {
        switch self {
        case .emptyKeyID: "a key has an empty kid"
        case .duplicateKeyID(let kid): "kid \(kid) is configured twice"
        case .materialDoesNotMatchAlgorithm(let kid): "key \(kid): material does not fit its algorithm"
        case .secretTooShort(let kid): "key \(kid): an HS256 secret must be at least 32 bytes (RFC 7518 §3.2)"
        case .signingKeyMissing(let kid): "signing kid \(kid) is not among the keys"
        case .signingKeyCannotSign(let kid): "signing key \(kid) cannot sign (an ES256 public key)"
        }
    }
}

/// Why a token was refused. The description is safe to log and to return: it never quotes the
/// token, its claims or a key (claim names come from the engine's own list).
package enum JWTVerificationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Longer than `JWTKeySet.maxTokenLength`.
    case tooLong
    /// Not three strict base64url segments (RFC 7515 §7.1).
    case malformed
    /// The header is not a JSON object, or a member has the wrong type or value.
    case invalidHeader
    /// `alg` missing, not supported (e.g. `none`), or not the algorithm of the key `kid` names.
    case unsupportedAlgorithm
    /// A `crit` header asks for extensions this verifier does not implement (RFC 7515 §4.1.11).
    case unsupportedCriticalHeader
    /// `kid` missing or not configured.
    case unknownKey
    case badSignature
    /// The payload is not a JSON object.
    case invalidClaims
    case missingClaim(String)
    /// The claim is present with the wrong JSON type or an unusable value.
    case invalidClaim(String)
    case expired
    case notYetValid
    case issuedInFuture
    case wrongIssuer
    case wrongAudience

    package var description: String {
        switch self {
        case .tooLong: "token too long"
        case .malformed: "token is not three base64url segments"
        case .invalidHeader: "token header is invalid"
        case .unsupportedAlgorithm: "token algorithm is not accepted for its key"
        case .unsupportedCriticalHeader: "token has critical header parameters"
        case .unknownKey: "token key id is missing or unknown"
        case .badSignature: "token signature is invalid"
        case .invalidClaims: "token claims are not a JSON object"
        case .missingClaim(let name): "token claim \(name) is missing"
        case .invalidClaim(let name): "token claim \(name) has the wrong type"
        case .expired: "token expired"
        case .notYetValid: "token not yet valid"
        case .issuedInFuture: "token issued in the future"
        case .wrongIssuer: "token issuer does not match"
        case .wrongAudience: "token audience does not match"
        }
    }
}

/// The configured keys: one signs, all verify. Signed tokens are JWS compact serialization
/// (RFC 7515 §7.1) of a JWT (RFC 7519); verification follows RFC 8725 (JWT best current practice):
/// the algorithm is the one configured for the key, never the one the token asks for.
package struct JWTKeySet: Sendable {
    /// Our tokens are about 400 bytes; the bound caps the work an unauthenticated request can cause.
    package static let maxTokenLength = 4096
    /// Clock skew tolerated for `iat` only; `exp` and `nbf` are exact.
    package static let issuedAtLeewaySeconds: Int64 = 60

    private enum Verifier: Sendable {
        case hmac(HMACSHA256Key)
        case ec(ECP256PublicKey)
    }

    private enum Signer: Sendable {
        case hmac(HMACSHA256Key)
        case ec(ECP256PrivateKey)
    }

    private struct VerificationKey: Sendable {
        var algorithm: JWTAlgorithm
        var verifier: Verifier
    }

    private let verificationKeys: [String: VerificationKey]
    /// The exact header segment this engine emits for each key, mapped to the key: a token
    /// carrying one of them needs no base64 decoding or JSON parsing of its header (the same
    /// bytes always parse to the same header, so this is a cache, not a shortcut in the rules).
    /// A list, not a dictionary: there are a handful of keys, and comparing 40 bytes costs less
    /// than hashing them.
    private let knownHeaders: [(header: [UInt8], key: VerificationKey)]
    private let signer: Signer
    /// The signing key's header, encoded once: `{"alg":..,"typ":"JWT","kid":..}` in base64url.
    private let encodedSigningHeader: String

    package init(keys: [JWTKey], signingKid: String) throws(JWTKeySetError) {
        var verificationKeys: [String: VerificationKey] = [:]
        var signer: Signer?
        for key in keys {
            guard !key.kid.isEmpty else { throw .emptyKeyID }
            guard verificationKeys[key.kid] == nil else { throw .duplicateKeyID(key.kid) }
            let verifier: Verifier
            var keySigner: Signer?
            switch (key.algorithm, key.material) {
            case (.hs256, .hmac(let secret)):
                guard secret.count >= 32 else { throw .secretTooShort(key.kid) }
                let prepared = HMACSHA256Key(secret)
                verifier = .hmac(prepared)
                keySigner = .hmac(prepared)
            case (.es256, .ecPrivate(let privateKey)):
                verifier = .ec(privateKey.publicKey)
                keySigner = .ec(privateKey)
            case (.es256, .ecPublic(let publicKey)):
                verifier = .ec(publicKey)
            default:
                throw .materialDoesNotMatchAlgorithm(key.kid)
            }
            verificationKeys[key.kid] = VerificationKey(algorithm: key.algorithm, verifier: verifier)
            if key.kid == signingKid {
                guard let keySigner else { throw .signingKeyCannotSign(signingKid) }
                signer = keySigner
            }
        }
        guard let signer, let signingKey = verificationKeys[signingKid] else { throw .signingKeyMissing(signingKid) }
        self.verificationKeys = verificationKeys
        self.knownHeaders = verificationKeys.map { kid, key in
            (Array(Self.encodedHeader(algorithm: key.algorithm, kid: kid).utf8), key)
        }
        self.signer = signer
        encodedSigningHeader = Self.encodedHeader(algorithm: signingKey.algorithm, kid: signingKid)
    }

    private static func encodedHeader(algorithm: JWTAlgorithm, kid: String) -> String {
        let header = JSONValue.object(JSONObject([
            ("alg", .string(algorithm.rawValue)),
            ("typ", .string("JWT")),
            ("kid", .string(kid)),
        ]))
        return Base64.encodeURL(header.serialized())
    }

    // MARK: Signing

    /// A compact JWS signed with the signing key. Fails only if libcrypto cannot sign (ES256).
    package func sign(_ claims: JWTClaims) throws(CryptoError) -> String {
        let payload = JSONValue.object(JSONObject([
            ("iss", .string(claims.iss)),
            ("sub", .string(claims.sub)),
            ("aud", .string(claims.aud)),
            ("scope", .string(claims.scope.joined(separator: " "))),
            ("issuers", .array(claims.issuers.map { .string($0) })),
            ("iat", .number(JSONNumber(claims.iat))),
            ("nbf", .number(JSONNumber(claims.nbf))),
            ("exp", .number(JSONNumber(claims.exp))),
            ("jti", .string(claims.jti)),
        ]))
        let signingInput = encodedSigningHeader + "." + Base64.encodeURL(payload.serialized())
        let signature: [UInt8]
        switch signer {
        case .hmac(let secret):
            signature = secret.authenticate(Array(signingInput.utf8))
        case .ec(let privateKey):
            signature = try privateKey.signature(for: Array(signingInput.utf8))
        }
        return signingInput + "." + Base64.encodeURL(signature)
    }

    // MARK: Verification

    /// Verifies `token` and returns its claims, or the first reason to refuse it.
    ///
    /// Order matters: the header is checked and the signature verified before the payload is
    /// parsed, so unauthenticated bytes only ever reach the (strict) JSON parser for the header.
    package func verify(_ token: String, now: Int64, issuer: String, audience: String) throws(JWTVerificationError) -> JWTClaims {
        let bytes = Array(token.utf8)
        guard bytes.count <= Self.maxTokenLength else { throw .tooLong }
        // Exactly two dots: three segments (RFC 7515 §7.1), any of them possibly empty.
        guard let firstDot = bytes.firstIndex(of: UInt8(ascii: ".")),
              let secondDot = bytes[(firstDot + 1)...].firstIndex(of: UInt8(ascii: ".")),
              !bytes[(secondDot + 1)...].contains(UInt8(ascii: "."))
        else { throw .malformed }
        let headerSegment = bytes[..<firstDot]
        guard let payloadBytes = Base64.decodeURL(bytes[(firstDot + 1)..<secondDot]),
              let signature = Base64.decodeURL(bytes[(secondDot + 1)...])
        else { throw .malformed }

        let key: VerificationKey
        if let known = knownHeaders.first(where: { $0.header.elementsEqual(headerSegment) }) {
            key = known.key
        } else {
            guard let headerBytes = Base64.decodeURL(headerSegment) else { throw .malformed }
            key = try Self.checkHeader(headerBytes, keys: verificationKeys)
        }
        // RFC 7515 §5.2 step 8: the signing input is the two encoded segments as sent.
        let signingInputLength = secondDot
        switch key.verifier {
        case .hmac(let secret):
            let expected = bytes.withUnsafeBufferPointer { secret.authenticate(UnsafeBufferPointer(rebasing: $0[..<signingInputLength])) }
            guard constantTimeEquals(expected, signature) else { throw .badSignature }
        case .ec(let publicKey):
            guard publicKey.isValidSignature(signature, for: Array(bytes[..<signingInputLength])) else { throw .badSignature }
        }

        let claims = try Self.readClaims(payloadBytes, audience: audience)
        guard claims.iss == issuer else { throw .wrongIssuer }
        guard claims.exp > now else { throw .expired }
        guard claims.nbf <= now else { throw .notYetValid }
        // Saturating: `now` near Int64.max must not trap the process.
        let (latestIssuedAt, overflow) = now.addingReportingOverflow(Self.issuedAtLeewaySeconds)
        guard overflow || claims.iat <= latestIssuedAt else { throw .issuedInFuture }
        return claims
    }

    private static func checkHeader(_ bytes: [UInt8], keys: [String: VerificationKey]) throws(JWTVerificationError) -> VerificationKey {
        guard let parsed = try? JSONParser.parse(bytes), case .object(let header) = parsed else { throw .invalidHeader }
        guard let algValue = header["alg"] else { throw .unsupportedAlgorithm }
        guard case .string(let algName) = algValue else { throw .invalidHeader }
        guard let algorithm = JWTAlgorithm(rawValue: algName) else { throw .unsupportedAlgorithm }
        // RFC 7515 §4.1.11: a recipient must refuse critical extensions it does not understand; it understands none.
        guard header["crit"] == nil else { throw .unsupportedCriticalHeader }
        if let typ = header["typ"] {
            // RFC 7519 §5.1: "JWT", compared case-insensitively (RFC 7515 §4.1.9).
            guard case .string(let type) = typ, type.lowercased() == "jwt" else { throw .invalidHeader }
        }
        guard let kidValue = header["kid"] else { throw .unknownKey }
        guard case .string(let kid) = kidValue else { throw .invalidHeader }
        guard let key = keys[kid] else { throw .unknownKey }
        // RFC 8725 §3.1: the key decides the algorithm; a token may not switch an ES256 key to HS256.
        guard key.algorithm == algorithm else { throw .unsupportedAlgorithm }
        return key
    }

    private static func readClaims(_ bytes: [UInt8], audience: String) throws(JWTVerificationError) -> JWTClaims {
        guard let parsed = try? JSONParser.parse(bytes), case .object(let payload) = parsed else { throw .invalidClaims }

        func string(_ name: String) throws(JWTVerificationError) -> String {
            guard let value = payload[name] else { throw .missingClaim(name) }
            guard case .string(let text) = value else { throw .invalidClaim(name) }
            return text
        }
        func integer(_ name: String) throws(JWTVerificationError) -> Int64 {
            guard let value = payload[name] else { throw .missingClaim(name) }
            // NumericDate (RFC 7519 §2) may have a fraction; the engine issues and accepts whole seconds only.
            guard case .number(let number) = value, let seconds = number.int64 else { throw .invalidClaim(name) }
            return seconds
        }

        let iss = try string("iss")
        let sub = try string("sub")
        // RFC 7519 §4.1.3: a single string or an array of strings, one of which must be ours.
        guard let audValue = payload["aud"] else { throw .missingClaim("aud") }
        let audiences: [String]
        switch audValue {
        case .string(let single):
            audiences = [single]
        case .array(let items):
            var names: [String] = []
            for item in items {
                guard case .string(let name) = item else { throw .invalidClaim("aud") }
                names.append(name)
            }
            audiences = names
        default:
            throw .invalidClaim("aud")
        }
        let scope = try string("scope")
        guard let issuersValue = payload["issuers"] else { throw .missingClaim("issuers") }
        guard case .array(let issuerItems) = issuersValue else { throw .invalidClaim("issuers") }
        var issuers: [String] = []
        for item in issuerItems {
            guard case .string(let issuerId) = item else { throw .invalidClaim("issuers") }
            issuers.append(issuerId)
        }
        let iat = try integer("iat")
        let nbf = try integer("nbf")
        let exp = try integer("exp")
        let jti = try string("jti")
        guard audiences.contains(audience) else { throw .wrongAudience }
        return JWTClaims(iss: iss, sub: sub, aud: audience,
                         scope: scope.split(separator: " ", omittingEmptySubsequences: true).map(String.init),
                         issuers: issuers, iat: iat, nbf: nbf, exp: exp, jti: jti)
    }
}
