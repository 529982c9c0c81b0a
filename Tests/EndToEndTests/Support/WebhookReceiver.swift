import Foundation
import Glibc
import Synchronization

/// The bank's app backend as the engine's webhook sees it: a small HTTP/1.1 server on loopback
/// that records every request and answers with scripted statuses (to play "down", "up",
/// "refuses for good"). Each connection is served on its own thread; every read is bounded by
/// a receive timeout.
final class WebhookReceiver: Sendable {
    struct Delivery: Sendable {
        var headers: [String: String]
        var body: [UInt8]
        var status: Int
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    private struct State {
        var deliveries: [Delivery] = []
        var scripted: [Int] = []
        var defaultStatus = 200
        var listening: Int32 = -1
    }

    let port: Int
    private let state = Mutex(State())

    /// Listens on 127.0.0.1:`port` (0: any free port).
    init(port: Int = 0, defaultStatus: Int = 200) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else { close(fd); throw TestSetupError("bind/listen failed: errno \(errno)") }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        state.withLock {
            $0.listening = fd
            $0.defaultStatus = defaultStatus
        }
        Thread.detachNewThread { [self] in acceptLoop(fd) }
    }

    /// The next answers, in order; after them, `thenDefault` for everything.
    func script(_ statuses: [Int], thenDefault: Int) {
        state.withLock {
            $0.scripted = statuses
            $0.defaultStatus = thenDefault
        }
    }

    var deliveries: [Delivery] { state.withLock { $0.deliveries } }

    /// Deliveries whose body mentions `authenticationId` (the engine may serve other tests' items).
    func deliveries(for authenticationId: String) -> [Delivery] {
        deliveries.filter { $0.text.contains("\"authenticationId\":\"\(authenticationId)\"") }
    }

    /// Stops accepting (connections already open finish their current request).
    func stop() {
        let fd = state.withLock { state -> Int32 in
            defer { state.listening = -1 }
            return state.listening
        }
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    deinit { stop() }

    private func acceptLoop(_ listening: Int32) {
        for _ in 0..<100_000 {
            let client = accept(listening, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            Thread.detachNewThread { [self] in serve(client) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        for _ in 0..<1_000 {
            // Head.
            var headEnd: Int?
            while headEnd == nil {
                headEnd = Self.find([13, 10, 13, 10], in: buffer)
                if headEnd != nil { break }
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { return }
                buffer.append(contentsOf: chunk[0..<n])
            }
            let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
            var headers: [String: String] = [:]
            for line in head.components(separatedBy: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            buffer.removeFirst(headEnd! + 4)
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while buffer.count < length {
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { return }
                buffer.append(contentsOf: chunk[0..<n])
            }
            let body = Array(buffer[..<length])
            buffer.removeFirst(length)
            let status = state.withLock { state -> Int in
                let status = state.scripted.isEmpty ? state.defaultStatus : state.scripted.removeFirst()
                state.deliveries.append(Delivery(headers: headers, body: body, status: status))
                return status
            }
            let response = Array("HTTP/1.1 \(status) Scripted\r\nContent-Length: 0\r\n\r\n".utf8)
            guard send(fd, response, response.count, Int32(MSG_NOSIGNAL)) == response.count else { return }
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }
}
