import Crypto
import Testing

@Suite struct EncodingTests {
    // RFC 4648 §10 test vectors.
    static let rfc4648: [(String, String)] = [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
    ]

    @Test func base64RFC4648Vectors() {
        for (plain, encoded) in Self.rfc4648 {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
            #expect(Base64.decodeLenient(encoded) == Array(plain.utf8))
        }
    }

    @Test func base64URLRFC4648VectorsWithoutPadding() {
        for (plain, encoded) in Self.rfc4648 {
            let unpadded = String(encoded.filter { $0 != "=" })
            #expect(Base64.encodeURL(Array(plain.utf8)) == unpadded)
            #expect(Base64.decodeURL(unpadded) == Array(plain.utf8))
            #expect(Base64.decodeLenient(unpadded) == Array(plain.utf8))
        }
    }

    @Test func alphabetsDifferInTheLastTwoSymbols() {
        let bytes: [UInt8] = [0xfb, 0xff, 0xbf]
        #expect(Base64.encode(bytes) == "+/+/")
        #expect(Base64.encodeURL(bytes) == "-_-_")
        #expect(Base64.decode("-_-_") == nil)
        #expect(Base64.decodeURL("+/+/") == nil)
        #expect(Base64.decodeLenient("+/+/") == bytes)
        #expect(Base64.decodeLenient("-_-_") == bytes)
    }

    @Test func roundTripsEveryLengthUpTo64() {
        let source = SecureRandom.bytes(64)
        for length in 0...64 {
            let bytes = Array(source.prefix(length))
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
            #expect(Base64.decodeURL(Base64.encodeURL(bytes)) == bytes)
            #expect(Base64.decodeLenient(Base64.encode(bytes)) == bytes)
            #expect(Hex.decode(Hex.encode(bytes)) == bytes)
        }
    }

    @Test func strictBase64RejectsBadPaddingAndCharacters() {
        for bad in ["Zg", "Zg=", "Zg===", "Z===", "Zm9v=", "Zm=v", "=Zm9", "Zm9v\n", " Zm9v", "Zm9v!", "Zh=="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }

    @Test func strictBase64URLRejectsPaddingAndNonCanonicalBits() {
        // "Zh" and "Zm9" + "w" style endings carry non-zero unused bits: a second encoding of the same bytes.
        for bad in ["Zg==", "Zm8=", "Z", "Zm9vY", "Zh", "Zm9", "Zm+v", "Zm/v", "Zm9v.", "Zm 9v"] {
            #expect(Base64.decodeURL(bad) == nil, "\(bad)")
        }
        #expect(Base64.decodeURL("Zm8") == Array("fo".utf8))
    }

    @Test func lenientBase64RequiresConsistentPaddingWhenPresent() {
        #expect(Base64.decodeLenient("Zg=") == nil)
        #expect(Base64.decodeLenient("Z") == nil)
        #expect(Base64.decodeLenient("Zm9v!") == nil)
        #expect(Base64.decodeLenient("Zg") == Array("f".utf8))
    }

    @Test func hexEncodesLowercaseAndDecodesEitherCase() {
        #expect(Hex.encode([0x00, 0x0f, 0xa5, 0xff]) == "000fa5ff")
        #expect(Hex.decode("000FA5ff") == [0x00, 0x0f, 0xa5, 0xff])
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("0x00") == nil)
    }
}
