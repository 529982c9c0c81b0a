import Crypto
import Testing

@Suite struct DigestTests {
    // FIPS 180-2 Appendix B.1 and the empty-string digest.
    @Test func sha256OfABC() {
        #expect(Hex.encode(SHA256.hash(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func sha256OfEmptyInput() {
        #expect(Hex.encode(SHA256.hash([]))
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func sha256OfTwoBlockMessage() {
        let message = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        #expect(Hex.encode(SHA256.hash(Array(message.utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    // RFC 4231 §4.2, test case 1.
    @Test func hmacRFC4231Case1() {
        let mac = HMACSHA256.authenticate(Array("Hi There".utf8), key: [UInt8](repeating: 0x0b, count: 20))
        #expect(Hex.encode(mac) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    // RFC 4231 §4.3, test case 2 (key shorter than the block).
    @Test func hmacRFC4231Case2() {
        let mac = HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        #expect(Hex.encode(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    // RFC 4231 §4.7, test case 6 (key longer than the block is hashed first).
    @Test func hmacRFC4231Case6() {
        let mac = HMACSHA256.authenticate(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
                                          key: [UInt8](repeating: 0xaa, count: 131))
        #expect(Hex.encode(mac) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    /// The prepared key gives the same MACs as the one-shot call, and stays correct when used
    /// again and from several threads at once (each call works on its own duplicate context).
    @Test func preparedKeyMatchesOneShot() async {
        let cases: [([UInt8], [UInt8])] = [
            (Array("Hi There".utf8), [UInt8](repeating: 0x0b, count: 20)),
            (Array("what do ya want for nothing?".utf8), Array("Jefe".utf8)),
            (Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8), [UInt8](repeating: 0xaa, count: 131)),
            ([], []),
        ]
        for (message, key) in cases {
            let prepared = HMACSHA256Key(key)
            #expect(prepared.authenticate(message) == HMACSHA256.authenticate(message, key: key))
            #expect(prepared.authenticate(message) == HMACSHA256.authenticate(message, key: key))
        }
        let prepared = HMACSHA256Key(Array("Jefe".utf8))
        let expected = HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    (0..<200).allSatisfy { _ in prepared.authenticate(Array("what do ya want for nothing?".utf8)) == expected }
                }
            }
            for await ok in group { #expect(ok) }
        }
    }

    @Test func hmacWithEmptyKeyAndMessage() {
        // Well-known value of HMAC-SHA256("", "").
        #expect(Hex.encode(HMACSHA256.authenticate([], key: []))
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    @Test func secureRandomGivesRequestedLengthAndVaries() {
        #expect(SecureRandom.bytes(0).isEmpty)
        let first = SecureRandom.bytes(32)
        let second = SecureRandom.bytes(32)
        #expect(first.count == 32)
        #expect(first != second)
    }

    @Test func constantTimeEqualsComparesContentAndLength() {
        #expect(constantTimeEquals([], []))
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!constantTimeEquals([], [0]))
    }
}
