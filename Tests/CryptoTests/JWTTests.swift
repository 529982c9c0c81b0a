import Crypto
import JSON
import Testing

private typealias F = JWTFixtures

@Suite struct JWTSigningTests {
    @Test func hs256TokenRoundTrips() throws {
        let token = try F.hmacSet.sign(F.claims)
        #expect(try F.hmacSet.verify(token, now: F.now, issuer: F.issuer, audience: F.audience) == F.claims)
    }

    @Test func es256TokenRoundTrips() throws {
        let token = try F.ecSet.sign(F.claims)
        #expect(try F.ecSet.verify(token, now: F.now, issuer: F.issuer, audience: F.audience) == F.claims)
        // Another set holding the same ES256 key verifies it too.
        #expect(try F.hmacSet.verify(token, now: F.now, issuer: F.issuer, audience: F.audience) == F.claims)
    }

    @Test func publicOnlyKeyVerifies() throws {
        let signing = try JWTKeySet(keys: [JWTKey(kid: "es-pub", algorithm: .es256, material: .ecPrivate(F.otherECKey))],
                                    signingKid: "es-pub")
        let token = try signing.sign(F.claims)
        #expect(F.verify(token) == .success(F.claims))
    }

    @Test func headerIsAlgTypKidInThatOrder() throws {
        let token = try F.hmacSet.sign(F.claims)
        let header = try #require(Base64.decodeURL(F.segment(0, of: token)))
        #expect(String(decoding: header, as: UTF8.self) == #"{"alg":"HS256","typ":"JWT","kid":"hs1"}"#)
        let esHeader = try #require(Base64.decodeURL(F.segment(0, of: try F.ecSet.sign(F.claims))))
        #expect(String(decoding: esHeader, as: UTF8.self) == #"{"alg":"ES256","typ":"JWT","kid":"es1"}"#)
    }

    @Test func payloadCarriesScopeAsStringAndIssuersAsArray() throws {
        let token = try F.hmacSet.sign(F.claims)
        let payload = try #require(Base64.decodeURL(F.segment(1, of: token)))
        let object = try #require(try JSONParser.parse(payload).objectValue)
        #expect(object.keys == ["iss", "sub", "aud", "scope", "issuers", "iat", "nbf", "exp", "jti"])
        #expect(object["scope"] == .string("d1.authenticate d1.status"))
        #expect(object["issuers"] == .array([.string("BANK1"), .string("BANK2")]))
        #expect(object["exp"]?.int64Value == F.now + 600)
    }

    @Test func es256SignatureSegmentIsRaw64Bytes() throws {
        let token = try F.ecSet.sign(F.claims)
        #expect(Base64.decodeURL(F.segment(2, of: token))?.count == 64)
    }

    @Test func forgedTokenWithTheRightKeyIsAccepted() {
        // Guards the forger itself: the negative tests below differ from this in one respect each.
        #expect(F.verify(F.forge()) == .success(F.claims))
        #expect(F.verify(F.forge(header: F.es1Header, signer: .ec(F.ecKey))) == .success(F.claims))
    }

    @Test func extraClaimsAndHeaderParametersAreIgnored() {
        let header = #"{"alg":"HS256","typ":"JWT","kid":"hs1","x5u":"https://attacker.test/key"}"#
        let payload = F.claimsText { $0["extra"] = .array([.null]) }
        #expect(F.verify(F.forge(header: header, payload: payload)) == .success(F.claims))
    }

    @Test func typIsOptionalAndCaseInsensitive() {
        #expect(F.verify(F.forge(header: #"{"alg":"HS256","kid":"hs1"}"#)) == .success(F.claims))
        #expect(F.verify(F.forge(header: #"{"alg":"HS256","typ":"jwt","kid":"hs1"}"#)) == .success(F.claims))
    }

    @Test func audienceArrayContainingOursIsAccepted() throws {
        let payload = F.claimsText { $0["aud"] = .array([.string("someone-else"), .string(F.audience)]) }
        let claims = try F.verify(F.forge(payload: payload)).get()
        #expect(claims.aud == F.audience)
    }

    @Test func boundaryTimesAreAccepted() {
        // exp is the first second the token is invalid; nbf the first it is valid; iat may lead by 60 s.
        #expect(F.rejection(F.forge(), now: F.now + 599) == nil)
        #expect(F.rejection(F.forge(payload: F.claimsText { $0["iat"] = .number(JSONNumber(F.now + 60)) })) == nil)
    }

    @Test func scopeSplitsOnSpaces() throws {
        let payload = F.claimsText { $0["scope"] = .string("a  b") }
        #expect(try F.verify(F.forge(payload: payload)).get().scope == ["a", "b"])
        let empty = F.claimsText { $0["scope"] = .string("") }
        #expect(try F.verify(F.forge(payload: empty)).get().scope == [])
    }
}

@Suite struct JWTKeySetTests {
    static let secret = [UInt8](repeating: 1, count: 32)

    @Test func signingKidMustExist() {
        #expect(throws: JWTKeySetError.signingKeyMissing("nope")) {
            try JWTKeySet(keys: [JWTKey(kid: "hs1", algorithm: .hs256, material: .hmac(Self.secret))], signingKid: "nope")
        }
        #expect(throws: JWTKeySetError.signingKeyMissing("x")) { try JWTKeySet(keys: [], signingKid: "x") }
    }

    @Test func signingKeyMustBeAbleToSign() {
        #expect(throws: JWTKeySetError.signingKeyCannotSign("pub")) {
            try JWTKeySet(keys: [JWTKey(kid: "pub", algorithm: .es256, material: .ecPublic(F.ecKey.publicKey))], signingKid: "pub")
        }
    }

    @Test func duplicateKidIsRefused() {
        #expect(throws: JWTKeySetError.duplicateKeyID("k")) {
            try JWTKeySet(keys: [JWTKey(kid: "k", algorithm: .hs256, material: .hmac(Self.secret)),
                                 JWTKey(kid: "k", algorithm: .es256, material: .ecPrivate(F.ecKey))], signingKid: "k")
        }
    }

    @Test func shortHMACSecretIsRefused() {
        #expect(throws: JWTKeySetError.secretTooShort("k")) {
            try JWTKeySet(keys: [JWTKey(kid: "k", algorithm: .hs256, material: .hmac([UInt8](repeating: 1, count: 31)))], signingKid: "k")
        }
    }

    @Test func materialMustMatchAlgorithm() {
        #expect(throws: JWTKeySetError.materialDoesNotMatchAlgorithm("k")) {
            try JWTKeySet(keys: [JWTKey(kid: "k", algorithm: .hs256, material: .ecPrivate(F.ecKey))], signingKid: "k")
        }
        #expect(throws: JWTKeySetError.materialDoesNotMatchAlgorithm("k")) {
            try JWTKeySet(keys: [JWTKey(kid: "k", algorithm: .es256, material: .hmac(Self.secret))], signingKid: "k")
        }
    }

    @Test func emptyKidIsRefused() {
        #expect(throws: JWTKeySetError.emptyKeyID) {
            try JWTKeySet(keys: [JWTKey(kid: "", algorithm: .hs256, material: .hmac(Self.secret))], signingKid: "")
        }
    }
}

/// Each test forges or damages a token in one way and asserts the specific reason it is refused.
@Suite struct JWTRejectionTests {
    // MARK: Shape and encoding

    @Test func emptyString() { #expect(F.rejection("") == .malformed) }
    @Test func onlyDots() { #expect(F.rejection("..") == .invalidHeader) }  // three empty segments: an empty header
    @Test func twoSegments() {
        let token = F.forge()
        #expect(F.rejection(String(token[..<token.lastIndex(of: ".")!])) == .malformed)
    }
    @Test func fourSegments() { #expect(F.rejection(F.forge() + ".AAAA") == .malformed) }
    @Test func trailingDot() { #expect(F.rejection(F.forge() + ".") == .malformed) }
    @Test func paddedSignature() { #expect(F.rejection(F.forge() + "=") == .malformed) }
    @Test func paddedHeader() {
        let token = F.forge(header: #"{"alg":"HS256","kid":"hs1"} "#)  // 28 bytes: padding needed
        let header = F.segment(0, of: token)
        #expect(F.rejection(F.replacingSegment(0, of: token, with: header + "=")) == .malformed)
    }
    @Test func standardAlphabetCharacters() {
        let token = F.forge()
        let signature = F.segment(2, of: token)
        let swapped = String(signature.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        let forced = signature.dropLast() + "+"
        #expect(F.rejection(F.replacingSegment(2, of: token, with: swapped == signature ? String(forced) : swapped)) == .malformed)
    }
    @Test func whitespaceInsideToken() { #expect(F.rejection(F.forge().replacingFirstDot(with: ". ")) == .malformed) }
    @Test func bearerPrefixLeftOn() { #expect(F.rejection("Bearer " + F.forge()) == .malformed) }
    @Test func nonASCIICharacter() { #expect(F.rejection("é" + F.forge()) == .malformed) }
    @Test func nonCanonicalTrailingBitsInSignature() {
        // 32 bytes take 43 symbols whose last 2 bits are unused: set them and the bytes stay the same.
        let token = F.forge()
        let signature = F.segment(2, of: token)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let last = alphabet.firstIndex(of: signature.last!)!
        let sibling = String(signature.dropLast()) + String(alphabet[last | 1])
        #expect(F.rejection(F.replacingSegment(2, of: token, with: sibling)) == .malformed)
    }
    @Test func oneSymbolSegment() { #expect(F.rejection(F.replacingSegment(2, of: F.forge(), with: "A")) == .malformed) }

    @Test func oversizedGarbage() { #expect(F.rejection(String(repeating: "A", count: 4097)) == .tooLong) }
    @Test func oversizedButCorrectlySigned() {
        let payload = F.claimsText { $0["pad"] = .string(String(repeating: "x", count: 3000)) }
        let token = F.forge(payload: payload)
        #expect(token.utf8.count > JWTKeySet.maxTokenLength)
        #expect(F.rejection(token) == .tooLong)
    }

    // MARK: Header

    @Test func algNone() {
        let token = F.forge(header: #"{"alg":"none","typ":"JWT","kid":"hs1"}"#, signer: .raw([]))
        #expect(F.rejection(token) == .unsupportedAlgorithm)
    }
    @Test func algNoneCapitalised() {
        for alg in ["None", "NONE", "nOnE"] {
            let token = F.forge(header: #"{"alg":"\#(alg)","kid":"hs1"}"#, signer: .raw([]))
            #expect(F.rejection(token) == .unsupportedAlgorithm, "\(alg)")
        }
    }
    @Test func algNoneWithoutKid() {
        #expect(F.rejection(F.forge(header: #"{"alg":"none"}"#, signer: .raw([]))) == .unsupportedAlgorithm)
    }
    @Test func algLowercase() { #expect(F.rejection(F.forge(header: #"{"alg":"hs256","kid":"hs1"}"#)) == .unsupportedAlgorithm) }
    @Test func algRS256() { #expect(F.rejection(F.forge(header: #"{"alg":"RS256","kid":"hs1"}"#)) == .unsupportedAlgorithm) }
    @Test func algHS512() { #expect(F.rejection(F.forge(header: #"{"alg":"HS512","kid":"hs1"}"#)) == .unsupportedAlgorithm) }
    @Test func algMissing() { #expect(F.rejection(F.forge(header: #"{"typ":"JWT","kid":"hs1"}"#)) == .unsupportedAlgorithm) }
    @Test func algNotAString() { #expect(F.rejection(F.forge(header: #"{"alg":256,"kid":"hs1"}"#)) == .invalidHeader) }
    @Test func algArray() { #expect(F.rejection(F.forge(header: #"{"alg":["HS256"],"kid":"hs1"}"#)) == .invalidHeader) }

    @Test func hs256PresentedForES256KeyMACedWithItsPublicKey() {
        // The classic confusion attack: HMAC keyed with the verifier's public key PEM or its raw bytes.
        let header = #"{"alg":"HS256","typ":"JWT","kid":"es1"}"#
        let pem = Array(F.ecKey.publicKey.pemRepresentation.utf8)
        #expect(F.rejection(F.forge(header: header, signer: .hmac(pem))) == .unsupportedAlgorithm)
        #expect(F.rejection(F.forge(header: header, signer: .hmac(F.hmacSecret))) == .unsupportedAlgorithm)
    }
    @Test func es256PresentedForHS256Key() {
        let header = #"{"alg":"ES256","typ":"JWT","kid":"hs1"}"#
        #expect(F.rejection(F.forge(header: header, signer: .ec(F.ecKey))) == .unsupportedAlgorithm)
    }
    @Test func es256SignedByTheWrongKeyUnderAnotherKid() {
        let header = #"{"alg":"ES256","typ":"JWT","kid":"es-pub"}"#
        #expect(F.rejection(F.forge(header: header, signer: .ec(F.ecKey))) == .badSignature)
    }

    @Test func kidMissing() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","typ":"JWT"}"#)) == .unknownKey) }
    @Test func kidUnknown() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":"hs2"}"#)) == .unknownKey) }
    @Test func kidCaseDiffers() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":"HS1"}"#)) == .unknownKey) }
    @Test func kidNotAString() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":1}"#)) == .invalidHeader) }
    @Test func kidNull() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":null}"#)) == .invalidHeader) }

    @Test func critHeader() {
        let header = #"{"alg":"HS256","kid":"hs1","crit":["b64"],"b64":false}"#
        #expect(F.rejection(F.forge(header: header)) == .unsupportedCriticalHeader)
    }
    @Test func critEmptyArray() {
        #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":"hs1","crit":[]}"#)) == .unsupportedCriticalHeader)
    }
    @Test func typNotJWT() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","typ":"JWE","kid":"hs1"}"#)) == .invalidHeader) }
    @Test func typNotAString() { #expect(F.rejection(F.forge(header: #"{"alg":"HS256","typ":1,"kid":"hs1"}"#)) == .invalidHeader) }

    @Test func headerNotJSON() { #expect(F.rejection(F.forge(header: "alg=HS256")) == .invalidHeader) }
    @Test func headerEmpty() { #expect(F.rejection(F.forge(header: "")) == .invalidHeader) }
    @Test func headerIsAnArray() { #expect(F.rejection(F.forge(header: #"["HS256","hs1"]"#)) == .invalidHeader) }
    @Test func headerIsAString() { #expect(F.rejection(F.forge(header: #""HS256""#)) == .invalidHeader) }
    @Test func headerDuplicateAlg() {
        // Two parsers could disagree on which alg counts; the strict parser refuses the document.
        #expect(F.rejection(F.forge(header: #"{"alg":"none","alg":"HS256","kid":"hs1"}"#)) == .invalidHeader)
    }
    @Test func headerDuplicateKid() {
        #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":"es1","kid":"hs1"}"#)) == .invalidHeader)
    }
    @Test func headerTrailingGarbage() { #expect(F.rejection(F.forge(header: F.hs1Header + "x")) == .invalidHeader) }
    @Test func headerTruncated() { #expect(F.rejection(F.forge(header: String(F.hs1Header.dropLast()))) == .invalidHeader) }
    @Test func headerInvalidUTF8() {
        let token = F.forge(headerBytes: [0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d], payloadBytes: Array(F.claimsText().utf8),
                            signer: .hmac(F.hmacSecret))
        #expect(F.rejection(token) == .invalidHeader)
    }
    @Test func headerTooDeep() {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(F.rejection(F.forge(header: #"{"alg":"HS256","kid":"hs1","x":\#(deep)}"#)) == .invalidHeader)
    }

    // MARK: Signature

    @Test func hs256SignatureBitFlipped() {
        let token = F.forge()
        var signature = Base64.decodeURL(F.segment(2, of: token))!
        signature[0] ^= 0x80
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(signature))) == .badSignature)
    }
    @Test func hs256SignatureLastBitFlipped() {
        let token = F.forge()
        var signature = Base64.decodeURL(F.segment(2, of: token))!
        signature[31] ^= 0x01
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(signature))) == .badSignature)
    }
    @Test func es256SignatureBitFlipped() {
        let token = F.forge(header: F.es1Header, signer: .ec(F.ecKey))
        var signature = Base64.decodeURL(F.segment(2, of: token))!
        signature[63] ^= 0x01
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(signature))) == .badSignature)
    }
    @Test func hs256SignatureTruncated() {
        let token = F.forge()
        let signature = Base64.decodeURL(F.segment(2, of: token))!
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(Array(signature.prefix(31))))) == .badSignature)
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(Array(signature.prefix(16))))) == .badSignature)
    }
    @Test func hs256SignatureExtended() {
        let token = F.forge()
        let signature = Base64.decodeURL(F.segment(2, of: token))!
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(signature + [0]))) == .badSignature)
    }
    @Test func signatureEmpty() { #expect(F.rejection(F.replacingSegment(2, of: F.forge(), with: "")) == .badSignature) }
    @Test func es256SignatureEmpty() {
        let token = F.forge(header: F.es1Header, signer: .raw([]))
        #expect(F.rejection(token) == .badSignature)
    }
    @Test func es256SignatureAllZero() {
        #expect(F.rejection(F.forge(header: F.es1Header, signer: .raw([UInt8](repeating: 0, count: 64)))) == .badSignature)
    }
    @Test func es256SignatureInDERForm() throws {
        // A raw r || s re-encoded as DER (what OpenSSL emits) is not the JWS form (RFC 7518 §3.4).
        let token = F.forge(header: F.es1Header, signer: .ec(F.ecKey))
        let raw = Base64.decodeURL(F.segment(2, of: token))!
        let der = Self.derSequence(r: Array(raw.prefix(32)), s: Array(raw.suffix(32)))
        #expect(F.rejection(F.replacingSegment(2, of: token, with: Base64.encodeURL(der))) == .badSignature)
    }
    @Test func signedWithAnotherSecret() { #expect(F.rejection(F.forge(signer: .hmac(F.otherHMACSecret))) == .badSignature) }
    @Test func payloadChangedAfterSigning() {
        let token = F.forge()
        let widened = Base64.encodeURL(Array(F.claimsText { $0["issuers"] = .array([.string("*")]) }.utf8))
        #expect(F.rejection(F.replacingSegment(1, of: token, with: widened)) == .badSignature)
    }
    @Test func headerChangedAfterSigning() {
        let token = F.forge()
        let other = Base64.encodeURL(Array(#"{"alg":"HS256","kid":"hs1"}"#.utf8))
        #expect(F.rejection(F.replacingSegment(0, of: token, with: other)) == .badSignature)
    }
    @Test func signatureSegmentsSwappedBetweenTokens() throws {
        let first = try F.hmacSet.sign(F.claims)
        var otherClaims = F.claims
        otherClaims.sub = "client-2"
        let second = try F.hmacSet.sign(otherClaims)
        #expect(F.rejection(F.replacingSegment(2, of: first, with: F.segment(2, of: second))) == .badSignature)
    }

    // MARK: Claims (correctly signed, so only the claim checks can refuse them)

    @Test func payloadNotJSON() { #expect(F.rejection(F.forge(payload: "sub=client-1")) == .invalidClaims) }
    @Test func payloadEmpty() { #expect(F.rejection(F.forge(payload: "")) == .invalidClaims) }
    @Test func payloadIsAnArray() { #expect(F.rejection(F.forge(payload: "[" + F.claimsText() + "]")) == .invalidClaims) }
    @Test func payloadIsNull() { #expect(F.rejection(F.forge(payload: "null")) == .invalidClaims) }
    @Test func payloadDuplicateClaim() {
        let text = F.claimsText()
        let duplicated = String(text.dropLast()) + #","sub":"admin"}"#
        #expect(F.rejection(F.forge(payload: duplicated)) == .invalidClaims)
    }
    @Test func payloadDuplicateAudience() {
        let text = F.claimsText { $0["aud"] = nil }
        let duplicated = String(text.dropLast()) + #","aud":"elsewhere","aud":"thales-d1"}"#
        #expect(F.rejection(F.forge(payload: duplicated)) == .invalidClaims)
    }
    @Test func payloadInvalidUTF8() {
        var bytes = Array(F.claimsText().utf8)
        bytes[bytes.count - 3] = 0xc0
        #expect(F.rejection(F.forge(headerBytes: Array(F.hs1Header.utf8), payloadBytes: bytes, signer: .hmac(F.hmacSecret))) == .invalidClaims)
    }

    @Test(arguments: ["iss", "sub", "aud", "scope", "issuers", "iat", "nbf", "exp", "jti"])
    func missingClaim(_ name: String) {
        #expect(F.rejection(F.forge(payload: F.claimsText { $0[name] = nil })) == .missingClaim(name))
    }

    static let wrongTypes: [(String, JSONValue)] = [
        ("iss", .number(JSONNumber(1))), ("iss", .null), ("sub", .array([.string("client-1")])),
        ("aud", .number(JSONNumber(1))), ("aud", .array([.string("thales-d1"), .number(JSONNumber(1))])),
        ("aud", .object(JSONObject([("aud", .string("thales-d1"))]))),
        ("scope", .array([.string("d1.authenticate")])), ("issuers", .string("BANK1")),
        ("issuers", .array([.string("BANK1"), .null])), ("iat", .bool(true)), ("nbf", .string("1800000000")),
        ("exp", .string("1800000600")), ("exp", .number(JSONNumber(1_800_000_600.5)!)),
        ("exp", .null), ("jti", .number(JSONNumber(7))),
    ]

    @Test(arguments: wrongTypes.indices)
    func claimOfTheWrongType(_ index: Int) {
        let (name, value) = Self.wrongTypes[index]
        #expect(F.rejection(F.forge(payload: F.claimsText { $0[name] = value })) == .invalidClaim(name), "\(name) = \(value)")
    }

    @Test func expInExponentFormIsNotAnInteger() {
        let text = F.claimsText().replacingFirst(#""exp":1800000600"#, with: #""exp":1.8000006e9"#)
        #expect(F.rejection(F.forge(payload: text)) == .invalidClaim("exp"))
    }

    @Test func expOverflowingInt64() {
        let text = F.claimsText().replacingFirst(#""exp":1800000600"#, with: #""exp":99999999999999999999"#)
        #expect(F.rejection(F.forge(payload: text)) == .invalidClaim("exp"))
    }

    // MARK: Time, issuer, audience

    @Test func expiredAtExactlyExp() { #expect(F.rejection(F.forge(), now: F.now + 600) == .expired) }
    @Test func expiredLongAgo() {
        #expect(F.rejection(F.forge(payload: F.claimsText { $0["exp"] = .number(JSONNumber(F.now - 1)) })) == .expired)
    }
    @Test func notYetValid() {
        #expect(F.rejection(F.forge(payload: F.claimsText { $0["nbf"] = .number(JSONNumber(F.now + 1)) })) == .notYetValid)
    }
    @Test func issuedTooFarInTheFuture() {
        #expect(F.rejection(F.forge(payload: F.claimsText { $0["iat"] = .number(JSONNumber(F.now + 61)) })) == .issuedInFuture)
    }
    @Test func extremeTimesNeitherTrapNorPass() {
        let maxIat = F.forge(payload: F.claimsText { $0["iat"] = .number(JSONNumber(Int64.max)) })
        #expect(F.rejection(maxIat) == .issuedInFuture)
        let minExp = F.forge(payload: F.claimsText { $0["exp"] = .number(JSONNumber(Int64.min)) })
        #expect(F.rejection(minExp) == .expired)
        let maxExp = F.forge(payload: F.claimsText { $0["exp"] = .number(JSONNumber(Int64.max)) })
        #expect(F.rejection(maxExp, now: Int64.max - 1) == nil)
        #expect(F.rejection(F.forge(), now: Int64.max) == .expired)
    }
    @Test func wrongIssuer() { #expect(F.rejection(F.forge(), issuer: "https://other.test") == .wrongIssuer) }
    @Test func issuerDiffersOnlyInCase() {
        let payload = F.claimsText { $0["iss"] = .string(F.issuer.uppercased()) }
        #expect(F.rejection(F.forge(payload: payload)) == .wrongIssuer)
    }
    @Test func wrongAudience() { #expect(F.rejection(F.forge(), audience: "other-audience") == .wrongAudience) }
    @Test func audienceArrayWithoutOurs() {
        let payload = F.claimsText { $0["aud"] = .array([.string("a"), .string("b")]) }
        #expect(F.rejection(F.forge(payload: payload)) == .wrongAudience)
    }
    @Test func audienceEmptyArray() {
        #expect(F.rejection(F.forge(payload: F.claimsText { $0["aud"] = .array([]) })) == .wrongAudience)
    }

    // MARK: Errors are safe to log

    @Test func descriptionsQuoteNothingFromTheToken() {
        let payload = F.claimsText { $0["sub"] = .string("SECRET-SUBJECT"); $0["exp"] = .number(JSONNumber(F.now - 1)) }
        let token = F.forge(header: #"{"alg":"HS256","kid":"SECRET-KID"}"#, payload: payload)
        for error in [F.rejection(token), F.rejection(F.forge(payload: payload))].compactMap({ $0 }) {
            #expect(!String(describing: error).contains("SECRET"))
        }
    }

    /// DER `SEQUENCE { INTEGER r, INTEGER s }` for short-form lengths, built by hand only as test input.
    static func derSequence(r: [UInt8], s: [UInt8]) -> [UInt8] {
        func integer(_ bytes: [UInt8]) -> [UInt8] {
            var value = Array(bytes.drop(while: { $0 == 0 }))
            if value.first.map({ $0 & 0x80 != 0 }) ?? true { value.insert(0, at: 0) }
            return [0x02, UInt8(value.count)] + value
        }
        let body = integer(r) + integer(s)
        return [0x30, UInt8(body.count)] + body
    }
}

extension String {
    fileprivate func replacingFirstDot(with replacement: String) -> String {
        guard let dot = firstIndex(of: ".") else { return self }
        return String(self[..<dot]) + replacement + String(self[index(after: dot)...])
    }

    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return String(self[..<range.lowerBound]) + replacement + String(self[range.upperBound...])
    }
}
