import Glibc

/// Everything tunable about one listener. Defaults:
/// host 127.0.0.1, port 8080 (0 picks a free port), body 64 KiB, header section 16 KiB,
/// request line 8 KiB, 100 header fields, 4,096 connections, 1,024 requests in flight,
/// 10 s to send a header section, 10 s to send a body, 60 s idle keep-alive,
/// 16 pipelined requests of read-ahead, min(2, cores) event loops.
package struct HTTPServerConfiguration: Sendable {
    /// An IPv4 or IPv6 literal (brackets optional), or "localhost" (= 127.0.0.1).
    package var host = "127.0.0.1"
    /// 0 binds an ephemeral port; `HTTPServer.start()` returns the real one.
    package var port = 8080
    /// Larger bodies get 413 as soon as `Content-Length` (or the chunk sizes) show it.
    package var maxBodyBytes = 65_536
    /// Header section (after the request line) larger than this: 431.
    package var maxHeaderBytes = 16_384
    /// Request line longer than this: 414.
    package var maxRequestLineBytes = 8_192
    /// More header fields than this: 431.
    package var maxHeaderCount = 100
    /// Beyond this many open connections, new ones get a 503 and are closed.
    package var maxConnections = 4_096
    /// Beyond this many requests waiting for the handler, new requests get 503 + Retry-After.
    package var maxInFlightRequests = 1_024
    /// From the first byte of a request to the end of its header section; then 408 and close.
    package var headerReadTimeout: Duration = .seconds(10)
    /// A keep-alive connection with no request for this long is closed silently. Also bounds how
    /// long a client may leave a response unread.
    package var idleTimeout: Duration = .seconds(60)
    /// From the end of the header section to the end of the body; then 408 and close.
    package var bodyReadTimeout: Duration = .seconds(10)
    /// Read-ahead while a request is being handled is capped at this many × 4 KiB of buffered
    /// bytes; beyond that the server stops reading the socket until it has answered.
    package var maxPipelinedRequests = 16
    /// Event-loop threads (each with its own epoll); at least 1.
    package var eventLoops = min(2, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))

    package init() {}
}

/// What the server reports about itself; one line each, nothing secret (no headers or bodies).
package enum HTTPServerLogEvent: Sendable, CustomStringConvertible {
    case listening(host: String, port: Int)
    case accepted(remoteAddress: String)
    case closed(remoteAddress: String)
    /// A connection or request refused for lack of capacity ("connections" or "requests").
    case rejectedOverload(String)
    /// A malformed request: status and reason; the connection is closed after the answer.
    case parseError(String)
    case timedOut(remoteAddress: String, phase: String)
    case acceptFailed(errno: Int32)
    case ioError(String)
    case shutdownTimedOut(openConnections: Int, requestsInFlight: Int)

    package var description: String {
        switch self {
        case .listening(let host, let port): "listening on \(host):\(port)"
        case .accepted(let remote): "accepted \(remote)"
        case .closed(let remote): "closed \(remote)"
        case .rejectedOverload(let what): "rejected: too many \(what)"
        case .parseError(let why): "bad request: \(why)"
        case .timedOut(let remote, let phase): "timed out \(remote) while \(phase)"
        case .acceptFailed(let code): "accept failed: errno \(code)"
        case .ioError(let what): "I/O error: \(what)"
        case .shutdownTimedOut(let connections, let requests):
            "shutdown wait ended with \(connections) connections and \(requests) requests still open"
        }
    }
}
