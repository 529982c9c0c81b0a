import CCrypto
import Synchronization

/// SHA-256 (FIPS 180-4) through libcrypto's EVP interface.
package enum SHA256 {
    package static let byteCount = 32

    package static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        let ok = bytes.withNonEmptyPointer { input, count in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input, count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        // Only fails when libcrypto cannot allocate or has no SHA-256 provider: nothing to recover.
        guard ok == 1, length == UInt32(byteCount) else { fatalError("EVP_Digest(SHA-256) failed") }
        return digest
    }
}

/// HMAC-SHA-256 (RFC 2104, RFC 4231) through libcrypto's one-shot `HMAC()`.
package enum HMACSHA256 {
    package static let byteCount = 32

    package static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        let result = key.withNonEmptyPointer { keyPointer, keyCount in
            message.withNonEmptyPointer { messagePointer, messageCount in
                mac.withUnsafeMutableBufferPointer { output in
                    HMAC(EVP_sha256(), keyPointer, Int32(keyCount), messagePointer, messageCount,
                         output.baseAddress, &length)
                }
            }
        }
        guard result != nil, length == UInt32(byteCount) else { fatalError("HMAC(SHA-256) failed") }
        return mac
    }
}

/// Bytes from libcrypto's CSPRNG (`RAND_bytes`, seeded from the OS).
package enum SecureRandom {
    package static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= Int(Int32.max), "SecureRandom.bytes: bad count")
        var bytes = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return bytes }
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        // Handing out predictable bytes as keys or token ids would be worse than stopping.
        guard ok == 1 else { fatalError("RAND_bytes failed: the CSPRNG is not available") }
        return bytes
    }
}

/// Compares two byte strings in time that depends only on their length (`CRYPTO_memcmp`),
/// so a secret's prefix cannot be learned from response timing. Lengths are not secret here
/// (digests and MACs have fixed sizes), so unequal lengths return at once.
package func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { left in
        b.withUnsafeBytes { right in
            CRYPTO_memcmp(left.baseAddress, right.baseAddress, a.count) == 0
        }
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a pointer that is never nil: libcrypto treats a NULL input as an error
    /// for some calls even when the length is 0, while an empty Swift array may have no storage.
    func withNonEmptyPointer<Result>(_ body: (UnsafePointer<UInt8>, Int) throws -> Result) rethrows -> Result {
        if isEmpty {
            var placeholder: UInt8 = 0
            return try body(&placeholder, 0)
        }
        return try withUnsafeBufferPointer { try body($0.baseAddress!, $0.count) }
    }
}

/// An HMAC-SHA-256 key prepared once: an `EVP_MAC_CTX` already keyed, duplicated for messages.
/// The one-shot `HMAC()` fetches the algorithm from the provider and derives the padded key
/// blocks on every call, which dominates the cost of verifying a short token.
///
/// Duplicates are kept and reused: `EVP_MAC_init` with no key restarts a context on the key it
/// already holds, about half the cost of a fresh `EVP_MAC_CTX_dup` and free per message
/// (0.45 against 0.95-1.2 µs for a 300-byte token on the benchmark machine, OpenSSL 3.0.19).
/// That restart is checked once against a fresh duplicate at init; a libcrypto where it gives
/// another MAC gets a fresh duplicate for every message instead.
package final class HMACSHA256Key: @unchecked Sendable {
    // @unchecked: `prepared` is written only in init; afterwards it is only read through
    // EVP_MAC_CTX_dup, which OpenSSL documents as safe on a context no one mutates. A spare
    // context is used by one caller at a time: it is out of `spares` while in use.
    private let prepared: OpaquePointer
    private let spares = Mutex<[SpareContext]>([])
    private let restartsOnSameKey: Bool
    /// Spares kept at most: one per thread that verifies at once is enough.
    private static let maxSpares = 16

    /// A spare context moves between threads through `spares`, used by one caller at a time.
    private struct SpareContext: @unchecked Sendable {
        var pointer: OpaquePointer
    }

    /// Fetched once per process; EVP_MAC objects are reference-counted and thread-safe.
    private nonisolated(unsafe) static let mac: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)

    package init(_ key: [UInt8]) {
        guard let mac = Self.mac, let context = EVP_MAC_CTX_new(mac) else { fatalError("EVP_MAC HMAC unavailable") }
        let ok = "SHA256".withCString { digestName -> Int32 in
            var params = [
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, UnsafeMutablePointer(mutating: digestName), 0),
                OSSL_PARAM_construct_end(),
            ]
            return key.withNonEmptyPointer { pointer, count in
                EVP_MAC_init(context, pointer, count, &params)
            }
        }
        guard ok == 1 else { fatalError("EVP_MAC_init(HMAC-SHA-256) failed") }
        prepared = context
        // A fresh duplicate's MAC against the same context's after a restart.
        let probe = Array("oob-engine HMAC context restart check".utf8)
        let reused = Self.duplicate(context)
        restartsOnSameKey = probe.withUnsafeBufferPointer { message in
            Self.finish(reused, message, restart: false) == Self.finish(reused, message, restart: true)
        }
        if restartsOnSameKey { spares.withLock { $0.append(SpareContext(pointer: reused)) } } else { EVP_MAC_CTX_free(reused) }
    }

    deinit {
        EVP_MAC_CTX_free(prepared)
        for context in spares.withLock({ $0 }) { EVP_MAC_CTX_free(context.pointer) }
    }

    package func authenticate(_ message: [UInt8]) -> [UInt8] {
        message.withNonEmptyPointer { pointer, count in authenticate(UnsafeBufferPointer(start: pointer, count: count)) }
    }

    package func authenticate(_ message: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard restartsOnSameKey else {
            let context = Self.duplicate(prepared)
            defer { EVP_MAC_CTX_free(context) }
            return Self.finish(context, message, restart: false)
        }
        let context = spares.withLock { $0.popLast() } ?? SpareContext(pointer: Self.duplicate(prepared))
        let mac = Self.finish(context.pointer, message, restart: true)
        let kept = spares.withLock { spares -> Bool in
            guard spares.count < Self.maxSpares else { return false }
            spares.append(context)
            return true
        }
        if !kept { EVP_MAC_CTX_free(context.pointer) }
        return mac
    }

    private static func duplicate(_ context: OpaquePointer) -> OpaquePointer {
        guard let copy = EVP_MAC_CTX_dup(context) else { fatalError("EVP_MAC_CTX_dup failed") }
        return copy
    }

    /// The MAC of `message` on `context`, restarted on its key first when `restart`.
    private static func finish(_ context: OpaquePointer, _ message: UnsafeBufferPointer<UInt8>, restart: Bool) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: HMACSHA256.byteCount)
        var length = 0
        let ok = mac.withUnsafeMutableBufferPointer { output -> Bool in
            (!restart || EVP_MAC_init(context, nil, 0, nil) == 1)
                && (message.isEmpty || EVP_MAC_update(context, message.baseAddress, message.count) == 1)
                && EVP_MAC_final(context, output.baseAddress, &length, HMACSHA256.byteCount) == 1
        }
        guard ok, length == HMACSHA256.byteCount else { fatalError("HMAC-SHA-256 failed") }
        return mac
    }
}
