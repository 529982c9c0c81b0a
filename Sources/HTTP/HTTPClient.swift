import Glibc

/// A connected byte stream layered over the client's socket: TLS, supplied by the caller (the
/// Crypto module wraps OpenSSL; this module never touches it). Every call must finish by
/// `deadline` or throw. Errors must be safe to log: they become the delivery's reason.
package protocol HTTPClientStream: AnyObject {
    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws
    /// Up to `maxCount` bytes; empty at end of stream.
    func read(maxCount: Int, deadline: ContinuousClock.Instant) throws -> [UInt8]
    /// Ends the session (the socket itself is closed by the client afterwards).
    func close()
}

/// Wraps the connected, non-blocking socket for `https://` URLs: (socket, host, deadline).
package typealias HTTPClientSecureChannel = @Sendable (Int32, HTTPURL, ContinuousClock.Instant) throws -> any HTTPClientStream

/// Why a request got no HTTP answer. Descriptions are safe to log: no bodies, no header values.
package struct HTTPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Kind: Sendable, Hashable { case timedOut, resolve, connect, tls, io, badResponse }
    package var kind: Kind
    package var detail: String

    package init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    package var description: String {
        switch kind {
        case .timedOut: "timed out (\(detail))"
        case .resolve: "cannot resolve host: \(detail)"
        case .connect: "connect failed: \(detail)"
        case .tls: "TLS: \(detail)"
        case .io: "transport: \(detail)"
        case .badResponse: "bad response: \(detail)"
        }
    }
}

package struct HTTPClientResponse: Sendable {
    package var status: Int
    /// As received, names lowercased.
    package var headers: [(name: String, value: String)]
}

/// A small blocking HTTP/1.1 client for the engine's webhooks: one request per connection
/// (`Connection: close`), one overall deadline covering connect, TLS handshake, write and
/// read of the response head (the body is not read). Name resolution (getaddrinfo) blocks
/// outside the deadline: the caller runs on its own delivery thread, and literal addresses
/// (or /etc/hosts names) resolve at once. Meant for the delivery workers' threads, never the
/// cooperative pool.
package enum HTTPClient {
    /// The response head may not exceed this (status line and headers).
    static let maxHeadBytes = 16_384

    package static func post(_ url: HTTPURL, headers: [(String, String)], body: [UInt8],
                             timeoutMilliseconds: Int,
                             secureChannel: HTTPClientSecureChannel?) throws(HTTPClientError) -> HTTPClientResponse {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        var head = "POST \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\n"
        for (name, value) in headers {
            guard !name.isEmpty, !(name + value).utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
                throw HTTPClientError(.io, "a request header is empty or holds a line break")
            }
            head += "\(name): \(value)\r\n"
        }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let request = Array(head.utf8) + body

        ignoreSIGPIPE
        let fd = try connect(url, deadline: deadline)
        defer { Glibc.close(fd) }
        let stream: any HTTPClientStream
        if url.scheme == .https {
            guard let secureChannel else { throw HTTPClientError(.tls, "no TLS support configured") }
            do {
                stream = try secureChannel(fd, url, deadline)
            } catch let error as HTTPClientError {
                throw error
            } catch {
                throw HTTPClientError(.tls, String(describing: error))
            }
        } else {
            stream = PlainStream(fd)
        }
        defer { stream.close() }
        do {
            try stream.write(request, deadline: deadline)
            return try readHead(stream, deadline: deadline)
        } catch let error as HTTPClientError {
            throw error
        } catch {
            throw HTTPClientError(url.scheme == .https ? .tls : .io, String(describing: error))
        }
    }

    /// OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a vanished peer must give EPIPE,
    /// not end the process. (The engine's server does the same when it starts.)
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// Milliseconds left for poll(2), at least 1 while any time remains; nil once the deadline passed.
    static func remainingMilliseconds(until deadline: ContinuousClock.Instant) -> Int32? {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return nil }
        let (seconds, attoseconds) = left.components
        return Int32(min(Int64(Int32.max), seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
    }

    /// Waits until `fd` is ready for `events` (POLLIN / POLLOUT) or throws at the deadline.
    package static func waitUntilReady(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant,
                                       doing step: String) throws(HTTPClientError) {
        for _ in 0..<1_000_000 {
            guard let timeout = remainingMilliseconds(until: deadline) else { throw HTTPClientError(.timedOut, step) }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&entry, 1, timeout)
            if result > 0 { return }
            if result < 0, errno != EINTR { throw HTTPClientError(.io, "poll: \(String(cString: strerror(errno)))") }
        }
        throw HTTPClientError(.timedOut, step)
    }

    private static func connect(_ url: HTTPURL, deadline: ContinuousClock.Instant) throws(HTTPClientError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard status == 0, let first = list else {
            throw HTTPClientError(.resolve, String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var lastError = HTTPClientError(.connect, "no address")
        var entry: UnsafeMutablePointer<addrinfo>? = first
        var tried = 0
        while let address = entry, tried < 16 {
            tried += 1
            entry = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family,
                            Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else {
                lastError = HTTPClientError(.connect, "socket: \(String(cString: strerror(errno)))")
                continue
            }
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            do throws(HTTPClientError) {
                if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
                    let code = errno
                    guard code == EINPROGRESS || code == EINTR else {
                        throw HTTPClientError(.connect, String(cString: strerror(code)))
                    }
                    try waitUntilReady(fd, events: Int16(POLLOUT), deadline: deadline, doing: "connect")
                    var failure: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
                    guard failure == 0 else { throw HTTPClientError(.connect, String(cString: strerror(failure))) }
                }
                return fd
            } catch {
                Glibc.close(fd)
                if error.kind == .timedOut { throw error }
                lastError = error
            }
        }
        throw lastError
    }

    /// Reads until the end of a final (non-1xx) response head; the body is left unread.
    static func readHead(_ stream: any HTTPClientStream, deadline: ContinuousClock.Instant) throws -> HTTPClientResponse {
        var buffer: [UInt8] = []
        for _ in 0..<10_000 {
            if let end = endOfHead(buffer) {
                let response = try parseHead(Array(buffer[..<end]))
                buffer.removeFirst(end)
                if (100..<200).contains(response.status) { continue }
                return response
            }
            guard buffer.count <= maxHeadBytes else { throw HTTPClientError(.badResponse, "response head over \(maxHeadBytes) bytes") }
            let chunk = try stream.read(maxCount: 4096, deadline: deadline)
            guard !chunk.isEmpty else {
                throw HTTPClientError(.io, buffer.isEmpty ? "connection closed with no response" : "connection closed inside the response head")
            }
            buffer += chunk
        }
        throw HTTPClientError(.badResponse, "too many reads for one response head")
    }

    /// The index just past the blank line that ends the head (CRLF CRLF, or bare LF LF).
    static func endOfHead(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            if bytes[index] == 10 {
                if index + 1 < bytes.count, bytes[index + 1] == 10 { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == 13, bytes[index + 2] == 10 { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    /// `HTTP/1.x SSS reason` and `name: value` lines.
    static func parseHead(_ head: [UInt8]) throws(HTTPClientError) -> HTTPClientResponse {
        let lines = head.split(separator: 10, omittingEmptySubsequences: true).map { line -> ArraySlice<UInt8> in
            line.last == 13 ? line.dropLast() : line
        }.filter { !$0.isEmpty }
        guard let statusLine = lines.first else { throw HTTPClientError(.badResponse, "empty status line") }
        let prefix = Array("HTTP/1.".utf8)
        guard statusLine.count >= 12, statusLine.starts(with: prefix),
              statusLine[statusLine.startIndex + 8] == UInt8(ascii: " ") else {
            throw HTTPClientError(.badResponse, "not an HTTP/1.x status line")
        }
        let code = statusLine[(statusLine.startIndex + 9)..<(statusLine.startIndex + 12)]
        guard code.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              statusLine.count == 12 || statusLine[statusLine.startIndex + 12] == UInt8(ascii: " "),
              let status = Int(String(decoding: code, as: UTF8.self)), (100...599).contains(status) else {
            throw HTTPClientError(.badResponse, "not an HTTP/1.x status line")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            let value = line[(colon + 1)...].drop(while: { $0 == 32 || $0 == 9 })
            let trimmed = value.reversed().drop(while: { $0 == 32 || $0 == 9 }).reversed()
            headers.append((name, String(decoding: trimmed, as: UTF8.self)))
        }
        return HTTPClientResponse(status: status, headers: headers)
    }
}

/// `http://`: the socket itself.
private final class PlainStream: HTTPClientStream {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }

    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var sent = 0
        for _ in 0..<1_000_000 where sent < bytes.count {
            let result = bytes.withUnsafeBytes { sendNonBlocking(fd, UnsafeRawBufferPointer(rebasing: $0[sent...])) }
            switch result {
            case .transferred(let count): sent += count
            case .wouldBlock: try HTTPClient.waitUntilReady(fd, events: Int16(POLLOUT), deadline: deadline, doing: "sending the request")
            case .failed(let code): throw HTTPClientError(.io, "send: \(String(cString: strerror(code)))")
            case .endOfFile: throw HTTPClientError(.io, "connection closed while sending")
            }
        }
        guard sent == bytes.count else { throw HTTPClientError(.io, "send made no progress") }
    }

    func read(maxCount: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxCount)
        for _ in 0..<1_000_000 {
            let result = buffer.withUnsafeMutableBytes { readNonBlocking(fd, into: $0) }
            switch result {
            case .transferred(let count): return Array(buffer[..<count])
            case .endOfFile: return []
            case .wouldBlock: try HTTPClient.waitUntilReady(fd, events: Int16(POLLIN), deadline: deadline, doing: "waiting for the response")
            case .failed(let code): throw HTTPClientError(.io, "read: \(String(cString: strerror(code)))")
            }
        }
        throw HTTPClientError(.io, "read made no progress")
    }

    func close() {}
}
