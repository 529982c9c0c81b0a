import Crypto
import JSON

/// Keys, claims and a token forger for the JWT tests. The forger builds tokens byte by byte, so
/// tests can sign content that `JWTKeySet.sign` would never produce.
enum JWTFixtures {
    static let now: Int64 = 1_800_000_000
    static let issuer = "https://oob.example-bank.test"
    static let audience = "thales-d1"
    static let hmacSecret = [UInt8](repeating: 0x5a, count: 32)
    static let otherHMACSecret = [UInt8](repeating: 0x5b, count: 32)
    static let ecKey = ECP256PrivateKey.generate()
    static let otherECKey = ECP256PrivateKey.generate()

    /// hs1 signs; es1 (private) and es-pub (public only, of `otherECKey`) verify.
    static let hmacSet = try! JWTKeySet(keys: [
        JWTKey(kid: "hs1", algorithm: .hs256, material: .hmac(hmacSecret)),
        JWTKey(kid: "es1", algorithm: .es256, material: .ecPrivate(ecKey)),
        JWTKey(kid: "es-pub", algorithm: .es256, material: .ecPublic(otherECKey.publicKey)),
    ], signingKid: "hs1")

    static let ecSet = try! JWTKeySet(keys: [
        JWTKey(kid: "hs1", algorithm: .hs256, material: .hmac(hmacSecret)),
        JWTKey(kid: "es1", algorithm: .es256, material: .ecPrivate(ecKey)),
    ], signingKid: "es1")

    static let claims = JWTClaims(iss: issuer, sub: "client-1", aud: audience,
                                  scope: ["d1.authenticate", "d1.status"], issuers: ["BANK1", "BANK2"],
                                  iat: now, nbf: now, exp: now + 600, jti: "0123456789abcdef")

    static func claimsObject() -> JSONObject {
        JSONObject([
            ("iss", .string(issuer)),
            ("sub", .string("client-1")),
            ("aud", .string(audience)),
            ("scope", .string("d1.authenticate d1.status")),
            ("issuers", .array([.string("BANK1"), .string("BANK2")])),
            ("iat", .number(JSONNumber(now))),
            ("nbf", .number(JSONNumber(now))),
            ("exp", .number(JSONNumber(now + 600))),
            ("jti", .string("0123456789abcdef")),
        ])
    }

    static func claimsText(_ edit: (inout JSONObject) -> Void = { _ in }) -> String {
        var object = claimsObject()
        edit(&object)
        return JSONValue.object(object).serializedString()
    }

    enum Signer {
        case hmac([UInt8])
        case ec(ECP256PrivateKey)
        case raw([UInt8])
    }

    static let hs1Header = #"{"alg":"HS256","typ":"JWT","kid":"hs1"}"#
    static let es1Header = #"{"alg":"ES256","typ":"JWT","kid":"es1"}"#

    /// header.payload.signature from raw JSON texts.
    static func forge(header: String = hs1Header, payload: String = claimsText(), signer: Signer = .hmac(hmacSecret)) -> String {
        forge(headerBytes: Array(header.utf8), payloadBytes: Array(payload.utf8), signer: signer)
    }

    static func forge(headerBytes: [UInt8], payloadBytes: [UInt8], signer: Signer) -> String {
        let input = Base64.encodeURL(headerBytes) + "." + Base64.encodeURL(payloadBytes)
        let signature: [UInt8]
        switch signer {
        case .hmac(let secret): signature = HMACSHA256.authenticate(Array(input.utf8), key: secret)
        case .ec(let key): signature = try! key.signature(for: Array(input.utf8))
        case .raw(let bytes): signature = bytes
        }
        return input + "." + Base64.encodeURL(signature)
    }

    static func verify(_ token: String, set: JWTKeySet = hmacSet, now: Int64 = now,
                       issuer: String = issuer, audience: String = audience) -> Result<JWTClaims, JWTVerificationError> {
        do throws(JWTVerificationError) {
            return .success(try set.verify(token, now: now, issuer: issuer, audience: audience))
        } catch {
            return .failure(error)
        }
    }

    static func rejection(_ token: String, set: JWTKeySet = hmacSet, now: Int64 = now,
                          issuer: String = issuer, audience: String = audience) -> JWTVerificationError? {
        if case .failure(let error) = verify(token, set: set, now: now, issuer: issuer, audience: audience) { return error }
        return nil
    }

    /// Replaces one base64url segment of `token`.
    static func replacingSegment(_ index: Int, of token: String, with segment: String) -> String {
        var parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        parts[index] = segment
        return parts.joined(separator: ".")
    }

    static func segment(_ index: Int, of token: String) -> String {
        String(token.split(separator: ".", omittingEmptySubsequences: false)[index])
    }
}
