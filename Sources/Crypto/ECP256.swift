import CCrypto

/// Why a key could not be loaded or used. The description never holds key material.
package struct CryptoError: Error, CustomStringConvertible, Equatable {
    package var description: String

    init(_ description: String) {
        self.description = description
    }

    /// The failing call plus libcrypto's error queue (which it also empties, so a stale entry
    /// cannot be blamed on a later call on this thread). OpenSSL's reason strings name the failure,
    /// never the key bytes.
    static func openSSL(_ call: String) -> CryptoError {
        var reasons: [String] = []
        for _ in 0..<16 {
            let code = ERR_get_error()
            if code == 0 { break }
            if let reason = ERR_reason_error_string(code) { reasons.append(String(cString: reason)) }
        }
        ERR_clear_error()
        return CryptoError(reasons.isEmpty ? "\(call) failed" : "\(call) failed: \(reasons.joined(separator: ", "))")
    }
}

/// Owns one `EVP_PKEY` and frees it with the last reference.
///
/// `@unchecked Sendable`: the key is never modified after it is loaded or generated, and
/// OpenSSL 3 allows concurrent use of a const `EVP_PKEY` from several threads (each operation
/// gets its own `EVP_MD_CTX`).
final class EVPKeyBox: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        EVP_PKEY_free(pointer)
    }

    /// EC keys on the NIST P-256 curve only (RFC 7518 §3.4: ES256 is ECDSA with P-256 and SHA-256).
    var isP256: Bool {
        guard EVP_PKEY_is_a(pointer, "EC") == 1 else { return false }
        var name = [CChar](repeating: 0, count: 64)
        var length = 0
        let ok = name.withUnsafeMutableBufferPointer {
            EVP_PKEY_get_utf8_string_param(pointer, "group", $0.baseAddress, $0.count, &length)
        }
        guard ok == 1 else { ERR_clear_error(); return false }
        let group = String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return group == "prime256v1" || group == "P-256" || group == "secp256r1"
    }

    static func loadPEM(_ pem: String, _ read: (OpaquePointer) -> OpaquePointer?) throws(CryptoError) -> EVPKeyBox {
        let bytes = Array(pem.utf8)
        guard !bytes.isEmpty, bytes.count <= 64 * 1024 else { throw CryptoError("PEM text is empty or too long") }
        let key: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return read(bio)
        }
        guard let key else { throw CryptoError.openSSL("PEM_read_bio") }
        ERR_clear_error()
        let box = EVPKeyBox(key)
        guard box.isP256 else { throw CryptoError("the key is not an EC P-256 key") }
        return box
    }

    /// Drains a memory BIO into a string (PEM output is ASCII).
    static func readAll(_ bio: OpaquePointer) -> String {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        // A PEM key is far below 64 KiB; the bound keeps the loop finite whatever BIO_read does.
        for _ in 0..<16 {
            let count = chunk.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
            if count <= 0 { break }
            output.append(contentsOf: chunk.prefix(Int(count)))
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// A passphrase callback that refuses: without it OpenSSL would prompt on the terminal for an
/// encrypted PEM. Encrypted keys are therefore rejected.
private func refusePassphrase(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int32, _ writing: Int32,
                              _ context: UnsafeMutableRawPointer?) -> Int32 {
    0
}

/// An ECDSA P-256 private key (ES256 signing, RFC 7518 §3.4).
package struct ECP256PrivateKey: Sendable {
    let box: EVPKeyBox
    package let publicKey: ECP256PublicKey

    /// PKCS#8 (`BEGIN PRIVATE KEY`) or SEC 1 (`BEGIN EC PRIVATE KEY`), unencrypted, on P-256.
    package init(pem: String) throws(CryptoError) {
        let box = try EVPKeyBox.loadPEM(pem) { bio in
            PEM_read_bio_PrivateKey(bio, nil, refusePassphrase, nil)
        }
        try self.init(box: box)
    }

    private init(box: EVPKeyBox) throws(CryptoError) {
        self.box = box
        self.publicKey = try ECP256PublicKey(publicPartOf: box)
    }

    /// A fresh random key (tests, key generation tooling).
    package static func generate() -> ECP256PrivateKey {
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { fatalError("EVP_PKEY_CTX_new_from_name(EC) failed") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(context) == 1,
              EVP_PKEY_CTX_set_group_name(context, "P-256") == 1,
              EVP_PKEY_generate(context, &key) == 1,
              let key
        else { fatalError("EC P-256 key generation failed") }
        do {
            return try ECP256PrivateKey(box: EVPKeyBox(key))
        } catch {
            fatalError("EC P-256 key generation produced an unusable key: \(error)")
        }
    }

    /// Unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    package var pemRepresentation: String {
        guard let bio = BIO_new(BIO_s_mem()) else { fatalError("BIO_new failed") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PKCS8PrivateKey(bio, box.pointer, nil, nil, 0, nil, nil) == 1 else {
            fatalError("PEM_write_bio_PKCS8PrivateKey failed")
        }
        return EVPKeyBox.readAll(bio)
    }

    /// ECDSA over SHA-256(`message`), as the fixed-size `r || s` (32 + 32 bytes, big-endian) that
    /// JWS uses (RFC 7518 §3.4) instead of OpenSSL's DER `ECDSA-Sig-Value`.
    package func signature(for message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError.openSSL("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, box.pointer) == 1 else {
            throw CryptoError.openSSL("EVP_DigestSignInit")
        }
        // 72 bytes is the largest DER encoding of a P-256 signature; ask OpenSSL for its bound anyway.
        var derLength = 0
        let sized = message.withNonEmptyPointer { EVP_DigestSign(context, nil, &derLength, $0, $1) }
        guard sized == 1, derLength > 0 else { throw CryptoError.openSSL("EVP_DigestSign") }
        var der = [UInt8](repeating: 0, count: derLength)
        let signed = message.withNonEmptyPointer { input, count in
            der.withUnsafeMutableBufferPointer { EVP_DigestSign(context, $0.baseAddress, &derLength, input, count) }
        }
        guard signed == 1 else { throw CryptoError.openSSL("EVP_DigestSign") }
        return try Self.rawSignature(fromDER: Array(der.prefix(derLength)))
    }

    private static func rawSignature(fromDER der: [UInt8]) throws(CryptoError) -> [UInt8] {
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_ECDSA_SIG(nil, &cursor, buffer.count)
        }
        guard let parsed else { throw CryptoError.openSSL("d2i_ECDSA_SIG") }
        defer { ECDSA_SIG_free(parsed) }
        var r: OpaquePointer? = nil
        var s: OpaquePointer? = nil
        ECDSA_SIG_get0(parsed, &r, &s)
        var raw = [UInt8](repeating: 0, count: 64)
        let written = raw.withUnsafeMutableBufferPointer { buffer in
            (BN_bn2binpad(r, buffer.baseAddress, 32), BN_bn2binpad(s, buffer.baseAddress! + 32, 32))
        }
        guard written == (32, 32) else { throw CryptoError.openSSL("BN_bn2binpad") }
        return raw
    }
}

/// An ECDSA P-256 public key (ES256 verification).
package struct ECP256PublicKey: Sendable {
    let box: EVPKeyBox

    /// SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`) on P-256.
    package init(pem: String) throws(CryptoError) {
        box = try EVPKeyBox.loadPEM(pem) { bio in
            PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
    }

    /// Copies only the public point out of a private key (through its DER SubjectPublicKeyInfo),
    /// so that a verifier never holds the private scalar.
    init(publicPartOf privateKey: EVPKeyBox) throws(CryptoError) {
        var derPointer: UnsafeMutablePointer<UInt8>? = nil
        let length = i2d_PUBKEY(privateKey.pointer, &derPointer)
        guard length > 0, let derPointer else { throw CryptoError.openSSL("i2d_PUBKEY") }
        defer { CRYPTO_free(derPointer, #fileID, #line) }
        var cursor: UnsafePointer<UInt8>? = UnsafePointer(derPointer)
        guard let key = d2i_PUBKEY(nil, &cursor, Int(length)) else { throw CryptoError.openSSL("d2i_PUBKEY") }
        box = EVPKeyBox(key)
    }

    /// SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
    package var pemRepresentation: String {
        guard let bio = BIO_new(BIO_s_mem()) else { fatalError("BIO_new failed") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PUBKEY(bio, box.pointer) == 1 else { fatalError("PEM_write_bio_PUBKEY failed") }
        return EVPKeyBox.readAll(bio)
    }

    /// Checks a raw `r || s` signature (exactly 64 bytes) over SHA-256(`message`). `r` and `s`
    /// must each lie in [1, n-1] (SEC 1 §4.1.4 step 1); anything else is rejected before libcrypto.
    package func isValidSignature(_ rawSignature: [UInt8], for message: [UInt8]) -> Bool {
        guard rawSignature.count == 64 else { return false }
        let rBytes = Array(rawSignature[0..<32])
        let sBytes = Array(rawSignature[32..<64])
        guard P256Order.isInRange(rBytes), P256Order.isInRange(sBytes),
              let der = Self.derSignature(r: rBytes, s: sBytes)
        else { return false }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, box.pointer) == 1 else {
            ERR_clear_error()
            return false
        }
        let verified = der.withUnsafeBufferPointer { signature in
            message.withNonEmptyPointer { input, count in
                EVP_DigestVerify(context, signature.baseAddress, signature.count, input, count)
            }
        }
        if verified != 1 { ERR_clear_error() }
        return verified == 1
    }

    /// DER `ECDSA-Sig-Value` (RFC 3279 §2.2.3) for OpenSSL, built by libcrypto itself.
    private static func derSignature(r: [UInt8], s: [UInt8]) -> [UInt8]? {
        guard let signature = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(signature) }
        guard let rNumber = BN_bin2bn(r, 32, nil) else { return nil }
        guard let sNumber = BN_bin2bn(s, 32, nil) else { BN_free(rNumber); return nil }
        // ECDSA_SIG_set0 takes ownership of both numbers on success only.
        guard ECDSA_SIG_set0(signature, rNumber, sNumber) == 1 else {
            BN_free(rNumber)
            BN_free(sNumber)
            return nil
        }
        var derPointer: UnsafeMutablePointer<UInt8>? = nil
        let length = i2d_ECDSA_SIG(signature, &derPointer)
        guard length > 0, let derPointer else { return nil }
        defer { CRYPTO_free(derPointer, #fileID, #line) }
        return Array(UnsafeBufferPointer(start: derPointer, count: Int(length)))
    }
}

/// The order n of the P-256 base point, read once from libcrypto's curve parameters.
enum P256Order {
    static let bytes: [UInt8] = {
        guard let group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1) else { fatalError("P-256 group unavailable") }
        defer { EC_GROUP_free(group) }
        guard let order = EC_GROUP_get0_order(group) else { fatalError("P-256 order unavailable") }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard bytes.withUnsafeMutableBufferPointer({ BN_bn2binpad(order, $0.baseAddress, 32) }) == 32 else {
            fatalError("P-256 order does not fit 32 bytes")
        }
        return bytes
    }()

    /// Whether the 32-byte big-endian `value` satisfies 1 <= value < n. Signatures are public,
    /// so an ordinary (variable-time) comparison is fine.
    static func isInRange(_ value: [UInt8]) -> Bool {
        guard value.contains(where: { $0 != 0 }) else { return false }
        return value.lexicographicallyPrecedes(bytes)
    }
}
