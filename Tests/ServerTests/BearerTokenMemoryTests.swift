import Crypto
import Foundation
import Server
import Testing

/// A bearer header that passed full verification is remembered by its exact text; what can
/// change with time (`exp`, `nbf`) is checked on every request, and anything else is verified
/// in full.
@Suite struct BearerTokenMemoryTests {
    static let secret = Array("bearer-memory-test-secret-0123456789abcdef".utf8)

    static func authority() throws -> (TokenAuthority, JWTKeySet) {
        let keys = try JWTKeySet(keys: [JWTKey(kid: "k1", algorithm: .hs256, material: .hmac(secret))], signingKid: "k1")
        let configuration = TokenAuthority.Configuration(clients: [], keys: keys)
        return (TokenAuthority(configuration: configuration, logger: Logger(label: "test", minimumLevel: .error)), keys)
    }

    static func token(_ keys: JWTKeySet, scope: [String] = ["d1"], expiresIn: Int64) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return try keys.sign(JWTClaims(iss: "oob-engine", sub: "d1", aud: "oob-engine", scope: scope, issuers: ["*"],
                                       iat: now, nbf: now, exp: now + expiresIn, jti: UUID().uuidString))
    }

    @Test func aRememberedTokenIsRefusedOnceItExpires() throws {
        let (authority, keys) = try Self.authority()
        let header = "Bearer " + (try Self.token(keys, expiresIn: 2))
        guard case .success = authority.verifyBearer(header, scope: .d1) else {
            Issue.record("a fresh token was refused")
            return
        }
        // Remembered now; it must still stop working at `exp` (bounded wait, polled).
        let deadline = Date().addingTimeInterval(5)
        var refused = false
        while Date() < deadline {
            if case .failure(let box) = authority.verifyBearer(header, scope: .d1), case .invalid = box.failure {
                refused = true
                break
            }
            usleep(50_000)
        }
        #expect(refused)
    }

    @Test func aRememberedTokenStillNeedsTheRouteScope() throws {
        let (authority, keys) = try Self.authority()
        let header = "Bearer " + (try Self.token(keys, scope: ["app"], expiresIn: 600))
        guard case .success = authority.verifyBearer(header, scope: .app) else {
            Issue.record("a valid app token was refused")
            return
        }
        guard case .failure(let box) = authority.verifyBearer(header, scope: .d1),
              case .insufficientScope = box.failure else {
            Issue.record("an app token was accepted for d1 once remembered")
            return
        }
    }

    @Test func aTokenDifferingInOneByteIsVerifiedInFull() throws {
        let (authority, keys) = try Self.authority()
        let token = try Self.token(keys, expiresIn: 600)
        guard case .success = authority.verifyBearer("Bearer " + token, scope: .d1) else {
            Issue.record("a fresh token was refused")
            return
        }
        var bytes = Array(token.utf8)
        bytes[bytes.count - 2] = bytes[bytes.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let tampered = "Bearer " + String(decoding: bytes, as: UTF8.self)
        guard case .failure(let box) = authority.verifyBearer(tampered, scope: .d1), case .invalid = box.failure else {
            Issue.record("a tampered token was accepted")
            return
        }
        // Scheme spelling is still checked for headers never seen before.
        guard case .failure = authority.verifyBearer("Basic " + token, scope: .d1) else {
            Issue.record("a non-bearer header was accepted")
            return
        }
    }
}
