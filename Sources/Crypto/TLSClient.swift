import CCrypto
import Glibc

/// Why a TLS session failed. Safe to log: OpenSSL's reason strings and verification results
/// name no keys or payloads.
package struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    package var message: String
    /// True when the deadline passed (a time-out rather than a refusal).
    package var timedOut: Bool

    init(_ message: String, timedOut: Bool = false) {
        self.message = message
        self.timedOut = timedOut
    }

    package var description: String { message }
}

/// The trust settings shared by every client session of one webhook: TLS 1.2 or later, peer
/// verification on, trusted roots from OpenSSL's default locations (which honour the
/// SSL_CERT_FILE and SSL_CERT_DIR environment variables) or, for tests, one CA file.
/// An SSL_CTX may be shared across threads once configured.
package final class TLSClientContext: @unchecked Sendable { // Immutable after init; SSL_CTX is thread-safe for SSL_new.
    let context: OpaquePointer

    package init(caFile: String? = nil) throws(TLSError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError(Self.openSSLReason("SSL_CTX_new")) }
        self.context = context
        guard SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil) == 1 else {
            throw TLSError(Self.openSSLReason("cannot require TLS 1.2"))
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        let loaded = if let caFile {
            SSL_CTX_load_verify_locations(context, caFile, nil)
        } else {
            SSL_CTX_set_default_verify_paths(context)
        }
        guard loaded == 1 else { throw TLSError(Self.openSSLReason("cannot load trusted certificates")) }
    }

    deinit { SSL_CTX_free(context) }

    /// The first queued OpenSSL error's reason (then the queue is cleared), or `fallback`.
    static func openSSLReason(_ fallback: String) -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0, let reason = ERR_reason_error_string(code) else { return fallback }
        return "\(fallback): \(String(cString: reason))"
    }
}

/// One client TLS session over a connected, non-blocking socket that the caller owns (and
/// closes after `close()`). Every step waits with poll(2) and gives up at the deadline. Used on
/// one thread at a time.
package final class TLSClientConnection {
    private let ssl: OpaquePointer
    private let fd: Int32

    /// Handshakes with SNI (for names) and verifies the certificate chain and that it names
    /// `host` (DNS name, or the IP address for a literal).
    package init(socket fd: Int32, host: String, hostIsIPLiteral: Bool, context: TLSClientContext,
                 deadline: ContinuousClock.Instant) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else { throw TLSError(TLSClientContext.openSSLReason("SSL_new failed")) }
        self.ssl = ssl
        self.fd = fd
        if hostIsIPLiteral {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                throw TLSError(TLSClientContext.openSSLReason("bad IP address for verification"))
            }
        } else {
            let named = host.withCString { name in
                SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
            }
            guard named == 1, SSL_set1_host(ssl, host) == 1 else {
                throw TLSError(TLSClientContext.openSSLReason("bad host name for verification"))
            }
        }
        guard SSL_set_fd(ssl, fd) == 1 else { throw TLSError(TLSClientContext.openSSLReason("SSL_set_fd failed")) }
        _ = try perform("handshake", deadline: deadline) { SSL_connect(ssl) }
    }

    deinit { SSL_free(ssl) }

    package func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var sent = 0
        for _ in 0..<1_000_000 where sent < bytes.count {
            let count = try bytes.withUnsafeBytes { buffer throws(TLSError) in
                try perform("sending the request", deadline: deadline) {
                    SSL_write(ssl, buffer.baseAddress! + sent, Int32(min(buffer.count - sent, Int(Int32.max))))
                }
            }
            sent += Int(count)
        }
    }

    /// Up to `maxCount` bytes; empty once the server closed the session.
    package func read(maxCount: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxCount)
        let count = try buffer.withUnsafeMutableBytes { raw throws(TLSError) in
            try perform("waiting for the response", deadline: deadline, endOfStreamIsZero: true) {
                SSL_read(ssl, raw.baseAddress, Int32(raw.count))
            }
        }
        return Array(buffer[..<Int(count)])
    }

    /// Sends close_notify if the socket takes it at once; never waits.
    package func close() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// Runs one OpenSSL I/O call until it succeeds, polling the socket for what it wants.
    private func perform(_ step: String, deadline: ContinuousClock.Instant, endOfStreamIsZero: Bool = false,
                         _ call: () -> Int32) throws(TLSError) -> Int32 {
        for _ in 0..<1_000_000 {
            ERR_clear_error()
            let result = call()
            if result > 0 { return result }
            let failure = SSL_get_error(ssl, result)
            let events: Int16
            switch failure {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            case SSL_ERROR_ZERO_RETURN where endOfStreamIsZero: return 0
            default: throw TLSError(reason(step, failure: failure))
            }
            try wait(events, deadline: deadline, step: step)
        }
        throw TLSError("\(step): no progress")
    }

    private func wait(_ events: Int16, deadline: ContinuousClock.Instant, step: String) throws(TLSError) {
        for _ in 0..<1_000_000 {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw TLSError("timed out (\(step))", timedOut: true) }
            let (seconds, attoseconds) = left.components
            let timeout = Int32(min(Int64(Int32.max), seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&entry, 1, timeout)
            if result > 0 { return }
            if result < 0, errno != EINTR { throw TLSError("poll failed: \(String(cString: strerror(errno)))") }
        }
        throw TLSError("timed out (\(step))", timedOut: true)
    }

    /// Certificate problems first (the usual cause, e.g. "certificate not trusted: self-signed
    /// certificate", "certificate not trusted: hostname mismatch"), then OpenSSL's own reason.
    private func reason(_ step: String, failure: Int32) -> String {
        let verification = SSL_get_verify_result(ssl)
        if verification != X509_V_OK, let text = X509_verify_cert_error_string(verification) {
            ERR_clear_error()
            return "certificate not trusted: \(String(cString: text))"
        }
        if failure == SSL_ERROR_SYSCALL, ERR_peek_error() == 0 {
            let code = errno
            return code == 0 ? "\(step): connection closed by the server" : "\(step): \(String(cString: strerror(code)))"
        }
        if failure == SSL_ERROR_ZERO_RETURN { return "\(step): connection closed by the server" }
        return TLSClientContext.openSSLReason("\(step) failed")
    }
}
