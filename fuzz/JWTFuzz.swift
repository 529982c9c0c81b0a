import Crypto
import JSON

/// libFuzzer target for the JWT parser and verifier. The first byte picks how the rest is used:
/// 0: a raw token; 1: header and payload JSON (split at the first 0x00), HMAC-signed with the
/// key, so the input reaches header checks and claims parsing; 2: a payload under the engine's
/// own header, signed. Verification never traps, and a token the set signs itself verifies.
private let keys: JWTKeySet = {
    let secret = Array("fuzz-signing-key-0123456789-abcdefghijklmnop".utf8)
    return try! JWTKeySet(keys: [JWTKey(kid: "k1", algorithm: .hs256, material: .hmac(secret))], signingKid: "k1")
}()
private let secret = Array("fuzz-signing-key-0123456789-abcdefghijklmnop".utf8)
private let now: Int64 = 1_800_000_000

@_cdecl("LLVMFuzzerTestOneInput")
public func jwtFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let token: String
    switch data[0] % 3 {
    case 0:
        token = String(decoding: rest, as: UTF8.self)
    case 1:
        let split = rest.firstIndex(of: 0) ?? rest.count
        let header = Array(rest[..<split])
        let payload = split < rest.count ? Array(rest[(split + 1)...]) : []
        token = signed(Base64.encodeURL(header) + "." + Base64.encodeURL(payload))
    default:
        let header = #"{"alg":"HS256","typ":"JWT","kid":"k1"}"#
        token = signed(Base64.encodeURL(Array(header.utf8)) + "." + Base64.encodeURL(rest))
    }
    _ = try? keys.verify(token, now: now, issuer: "oob-engine", audience: "d1")

    if data[0] == 0xFF, let sub = String(validating: rest.prefix(32), as: UTF8.self) {
        let claims = JWTClaims(iss: "oob-engine", sub: sub, aud: "d1", scope: ["d1"], issuers: ["ISSUER0001"],
                               iat: now, nbf: now, exp: now + 60, jti: "j")
        let own = try! keys.sign(claims)
        precondition((try? keys.verify(own, now: now, issuer: "oob-engine", audience: "d1")) == claims, "own token refused")
    }
    return 0
}

private func signed(_ input: String) -> String {
    input + "." + Base64.encodeURL(HMACSHA256.authenticate(Array(input.utf8), key: secret))
}
