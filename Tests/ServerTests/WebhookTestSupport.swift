import Foundation
import Glibc
import Synchronization
import TestSupport

/// A scripted HTTP/1.1 server on 127.0.0.1: records each request and answers with the
/// scripted status, raw bytes, or nothing at all (holding the connection open until `stop`).
/// Every connection is served on its own thread; reads are bounded by a receive timeout.
final class LoopbackServer: Sendable {
    struct Request: Sendable {
        var head: String
        var body: [UInt8]
        var headers: [String: String] {
            var result: [String: String] = [:]
            for line in head.split(separator: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                result[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            return result
        }
    }

    enum Answer: Sendable { case status(Int), raw(String), silence }

    private struct State {
        var answer = Answer.status(200)
        var requests: [Request] = []
        var held: [Int32] = []
        var stopped = false
    }

    let port: Int
    private let listening: Int32
    private let state = Mutex(State())

    init() throws {
        listening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listening >= 0 else { throw TestSupportError("socket failed") }
        port = try Self.bindLoopback(listening)
        guard listen(listening, 16) == 0 else { throw TestSupportError("listen failed: errno \(errno)") }
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Binds `fd` to 127.0.0.1 on a free port and returns the port.
    static func bindLoopback(_ fd: Int32) throws -> Int {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw TestSupportError("bind failed: errno \(errno)") }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: actual.sin_port))
    }

    func answer(_ status: Int?) { state.withLock { $0.answer = status.map { .status($0) } ?? .silence } }
    func answerRaw(_ text: String) { state.withLock { $0.answer = .raw(text) } }
    var requests: [Request] { state.withLock { $0.requests } }

    func stop() {
        let held = state.withLock { state -> [Int32] in
            state.stopped = true
            return state.held
        }
        shutdown(listening, Int32(SHUT_RDWR))
        close(listening)
        held.forEach { close($0) }
    }

    private func acceptLoop() {
        for _ in 0..<10_000 {
            let client = accept(listening, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            Thread.detachNewThread { [self] in serve(client) }
        }
    }

    private func serve(_ fd: Int32) {
        let answer = state.withLock { $0.answer }
        if case .silence = answer {
            // Never answer: hold the connection until stop() closes it.
            let keep = state.withLock { state -> Bool in
                if !state.stopped { state.held.append(fd) }
                return !state.stopped
            }
            if !keep { close(fd) }
            return
        }
        defer { close(fd) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        var headEnd: Int?
        for _ in 0..<1_000 where headEnd == nil {
            if let range = buffer.firstRange(of: [13, 10, 13, 10]) { headEnd = range.lowerBound; break }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
        }
        guard let headEnd else { return }
        let head = String(decoding: buffer[..<headEnd], as: UTF8.self)
        var request = Request(head: head, body: [])
        let length = Int(request.headers["content-length"] ?? "0") ?? 0
        var body = Array(buffer[(headEnd + 4)...])
        for _ in 0..<1_000 where body.count < length {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return }
            body.append(contentsOf: chunk[0..<n])
        }
        request.body = body
        state.withLock { $0.requests.append(request) }
        let response: String
        switch answer {
        case .status(let status): response = "HTTP/1.1 \(status) Scripted\r\nContent-Length: 2\r\n\r\nok"
        case .raw(let text): response = text
        case .silence: return
        }
        let bytes = Array(response.utf8)
        _ = send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
    }
}
