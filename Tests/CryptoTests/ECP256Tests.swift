import Crypto
import Testing

@Suite struct ECP256Tests {
    let message = Array("header.payload".utf8)

    @Test func signatureRoundTripsWithAGeneratedKey() throws {
        let key = ECP256PrivateKey.generate()
        let signature = try key.signature(for: message)
        #expect(signature.count == 64)
        #expect(key.publicKey.isValidSignature(signature, for: message))
    }

    @Test func tamperedMessageIsRejected() throws {
        let key = ECP256PrivateKey.generate()
        let signature = try key.signature(for: message)
        #expect(!key.publicKey.isValidSignature(signature, for: Array("header.payloaD".utf8)))
    }

    @Test func flippedSignatureBitIsRejected() throws {
        let key = ECP256PrivateKey.generate()
        var signature = try key.signature(for: message)
        signature[40] ^= 0x01
        #expect(!key.publicKey.isValidSignature(signature, for: message))
    }

    @Test func wrongKeyIsRejected() throws {
        let signature = try ECP256PrivateKey.generate().signature(for: message)
        #expect(!ECP256PrivateKey.generate().publicKey.isValidSignature(signature, for: message))
    }

    @Test func signaturesOfTheWrongSizeAreRejected() throws {
        let key = ECP256PrivateKey.generate()
        let signature = try key.signature(for: message)
        #expect(!key.publicKey.isValidSignature([], for: message))
        #expect(!key.publicKey.isValidSignature(Array(signature.prefix(63)), for: message))
        #expect(!key.publicKey.isValidSignature(signature + [0], for: message))
        #expect(!key.publicKey.isValidSignature([0] + signature, for: message))
    }

    @Test func zeroAndOutOfRangeScalarsAreRejected() throws {
        let key = ECP256PrivateKey.generate()
        let signature = try key.signature(for: message)
        let zero = [UInt8](repeating: 0, count: 32)
        let ones = [UInt8](repeating: 0xff, count: 32)
        // n, the group order: valid scalars are 1...n-1.
        let order = Hex.decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")!
        #expect(!key.publicKey.isValidSignature(zero + signature.suffix(32), for: message))
        #expect(!key.publicKey.isValidSignature(signature.prefix(32) + zero, for: message))
        #expect(!key.publicKey.isValidSignature(ones + signature.suffix(32), for: message))
        #expect(!key.publicKey.isValidSignature(order + signature.suffix(32), for: message))
        #expect(!key.publicKey.isValidSignature(signature.prefix(32) + order, for: message))
    }

    @Test func verifiesASignatureMadeByTheOpenSSLCommandLine() throws {
        let publicKey = try ECP256PublicKey(pem: Fixtures.p256Public)
        let signature = try #require(Hex.decode(Fixtures.openSSLSignatureHex))
        #expect(publicKey.isValidSignature(signature, for: Array(Fixtures.openSSLSignedMessage.utf8)))
        #expect(!publicKey.isValidSignature(signature, for: Array("eyJhbGciOiJFUzI1NiJ9.e31".utf8)))
    }

    @Test func loadsPKCS8AndSEC1PrivateKeysAndTheirPublicKey() throws {
        let pkcs8 = try ECP256PrivateKey(pem: Fixtures.p256PKCS8)
        let sec1 = try ECP256PrivateKey(pem: Fixtures.p256SEC1)
        let publicKey = try ECP256PublicKey(pem: Fixtures.p256Public)
        let signature = try pkcs8.signature(for: message)
        #expect(sec1.publicKey.isValidSignature(signature, for: message))
        #expect(publicKey.isValidSignature(signature, for: message))
        #expect(pkcs8.publicKey.pemRepresentation == Fixtures.p256Public + "\n")
    }

    @Test func pemRepresentationsRoundTrip() throws {
        let key = ECP256PrivateKey.generate()
        #expect(key.pemRepresentation.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        let reloaded = try ECP256PrivateKey(pem: key.pemRepresentation)
        let publicKey = try ECP256PublicKey(pem: key.publicKey.pemRepresentation)
        #expect(publicKey.isValidSignature(try reloaded.signature(for: message), for: message))
    }

    @Test func rejectsKeysThatAreNotP256() {
        #expect(throws: (any Error).self) { try ECP256PrivateKey(pem: Fixtures.p384PKCS8) }
        #expect(throws: (any Error).self) { try ECP256PrivateKey(pem: Fixtures.ed25519PKCS8) }
        #expect(throws: (any Error).self) { try ECP256PublicKey(pem: Fixtures.p384Public) }
    }

    @Test func rejectsMalformedPEM() {
        let truncated = String(Fixtures.p256PKCS8.prefix(80))
        for bad in ["", "not a key", truncated, String(Fixtures.p256PKCS8.map { $0 == "T" ? "U" : $0 })] {
            #expect(throws: (any Error).self) { try ECP256PrivateKey(pem: bad) }
            #expect(throws: (any Error).self) { try ECP256PublicKey(pem: bad) }
        }
    }

    @Test func publicKeyPEMIsNotAPrivateKeyAndViceVersa() {
        #expect(throws: (any Error).self) { try ECP256PrivateKey(pem: Fixtures.p256Public) }
        #expect(throws: (any Error).self) { try ECP256PublicKey(pem: Fixtures.p256PKCS8) }
    }

    @Test func encryptedPrivateKeyIsRefusedWithoutPrompting() {
        #expect(throws: (any Error).self) { try ECP256PrivateKey(pem: Fixtures.p256Encrypted) }
    }

    @Test func concurrentSigningAndVerifyingShareOneKey() async throws {
        let key = ECP256PrivateKey.generate()
        let message = self.message
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    guard let signature = try? key.signature(for: message) else { return false }
                    return key.publicKey.isValidSignature(signature, for: message)
                }
            }
            var all: [Bool] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(results.count == 8 && results.allSatisfy { $0 })
    }
}
