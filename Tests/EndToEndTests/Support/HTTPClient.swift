import Foundation
import Glibc
import JSON
import TestSupport

/// A deliberately small blocking HTTP/1.1 client over a raw socket, so tests control every byte
/// (malformed requests, pipelining) and every wait is bounded by SO_RCVTIMEO.
final class RawHTTPConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }

        var json: JSONValue? { try? JSONParser.parse(body) }

        /// A top-level string member of a JSON object body.
        func string(_ key: String) -> String? {
            guard case .object(let object)? = json, case .string(let value)? = object[key] else { return nil }
            return value
        }

        var text: String { String(decoding: body, as: UTF8.self) }
    }

    init(port: Int, receiveTimeoutSeconds: Int = 15) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket() failed: errno \(errno)") }
        var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let code = errno
            // Not closed here: every stored property is set, so a throw still runs deinit, which
            // closes it. A second close could hit a descriptor another test has just opened.
            throw TestSetupError("connect to 127.0.0.1:\(port) failed: errno \(code)")
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TestSetupError("send failed: errno \(errno)")
            }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads one response (Content-Length framed). nil when the server closed the connection
    /// before sending anything.
    func readResponse() throws -> Response? {
        while true {
            if let end = headerEnd() {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst()
                let parts = statusLine.split(separator: " ", maxSplits: 2)
                guard parts.count >= 2, let status = Int(parts[1]) else { throw TestSetupError("bad status line: \(statusLine)") }
                var headers: [(String, String)] = []
                for line in lines where !line.isEmpty {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
                }
                let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
                while buffer.count < end + 4 + length {
                    guard try fill() else { throw TestSetupError("connection closed in the middle of a body") }
                }
                let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                buffer.removeFirst(end + 4 + length)
                return Response(status: status, headers: headers, body: body)
            }
            guard try fill() else {
                if buffer.isEmpty { return nil }
                throw TestSetupError("connection closed in the middle of a response head")
            }
        }
    }

    /// True when the server has closed its side (read returns 0) within the receive timeout.
    func isClosedByServer() -> Bool {
        var scratch = [UInt8](repeating: 0, count: 512)
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    private func headerEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffer.append(contentsOf: chunk[..<n]); return true }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return false }
            throw TestSetupError("recv failed or timed out: errno \(errno)")
        }
    }
}

/// Convenience for JSON APIs: one request per call on a fresh or kept connection.
struct HTTPClient: Sendable {
    var port: Int
    /// Sent as `Authorization: Bearer ...` unless the request sets Authorization itself.
    var token: String?

    init(port: Int, token: String? = nil) {
        self.port = port
        self.token = token
    }

    static func request(_ method: String, _ path: String, body: String? = nil, headers: [(String, String)] = []) -> [UInt8] {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body {
            if !headers.contains(where: { $0.0.lowercased() == "content-type" }) { text += "Content-Type: application/json\r\n" }
            text += "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        } else {
            text += "\r\n"
        }
        return Array(text.utf8)
    }

    func send(_ method: String, _ path: String, body: String? = nil, headers: [(String, String)] = []) throws -> RawHTTPConnection.Response {
        let connection = try RawHTTPConnection(port: port)
        var headers = headers
        if let token, !headers.contains(where: { $0.0.lowercased() == "authorization" }) {
            headers.append(("Authorization", "Bearer " + token))
        }
        try connection.send(Self.request(method, path, body: body, headers: headers))
        guard let response = try connection.readResponse() else { throw TestSetupError("no response to \(method) \(path)") }
        return response
    }

    /// Runs the blocking call off the cooperative pool.
    func asyncSend(_ method: String, _ path: String, body: String? = nil, headers: [(String, String)] = []) async throws -> RawHTTPConnection.Response {
        try await runOffPool { try self.send(method, path, body: body, headers: headers) }
    }
}
