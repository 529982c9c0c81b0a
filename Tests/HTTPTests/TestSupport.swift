import Foundation
import Glibc
import HTTP
import Synchronization
import TestSupport

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 5 ms until it holds or `seconds` pass.
func waitUntil(seconds: Double = 5, _ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// A blocking raw-bytes client; every wait is bounded by SO_RCVTIMEO.
final class TestClient: @unchecked Sendable { // Used by one test at a time, from one thread at a time.
    let fd: Int32
    private var buffer: [UInt8] = []

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    init(port: Int, receiveTimeout seconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket errno \(errno)") }
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
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
            throw TestFailure("connect errno \(code)")
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TestFailure("send errno \(errno)")
            }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads more bytes; false on EOF. Throws on timeout or error.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return false }
            throw TestFailure("recv errno \(errno)")
        }
    }

    /// One response (Content-Length framed; `bodyExpected: false` for HEAD). nil on EOF before any byte.
    func readResponse(bodyExpected: Bool = true) throws -> Response? {
        while true {
            if let end = headEnd() {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
                let statusLine = lines.removeFirst()
                let parts = statusLine.split(separator: " ")
                guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
                    throw TestFailure("bad status line \(statusLine)")
                }
                var headers = HTTPHeaders()
                for line in lines where !line.isEmpty {
                    guard let colon = line.firstIndex(of: ":") else { throw TestFailure("bad header \(line)") }
                    headers.add(String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
                }
                let length = (status >= 200 && bodyExpected) ? Int(headers["Content-Length"] ?? "0") ?? 0 : 0
                while buffer.count < end + 4 + length {
                    guard try fill() else { throw TestFailure("EOF inside a body") }
                }
                let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                buffer.removeFirst(end + 4 + length)
                return Response(status: status, headers: headers, body: body)
            }
            guard try fill() else {
                if buffer.isEmpty { return nil }
                throw TestFailure("EOF inside a head")
            }
        }
    }

    /// True when the server closes (EOF or reset) with no further bytes.
    func readsEndOfFile() throws -> Bool {
        if !buffer.isEmpty { return false }
        return try !fill()
    }

    private func headEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for index in 0...(buffer.count - 4)
        where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
            return index
        }
        return nil
    }
}

func request(_ method: String, _ path: String, body: String? = nil, headers: [(String, String)] = []) -> String {
    var text = "\(method) \(path) HTTP/1.1\r\nHost: test\r\n"
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
    return text + "\r\n" + (body ?? "")
}

/// Answers `METHOD path?query body`; `/delay/N` answers after N ms (on a task, out of order with
/// respect to other connections); `/sync/...` answers inside `handle` on the loop thread;
/// `/loop/N` answers after N ms from a task on the loop's executor; `/drop` releases the
/// responder without answering.
struct EchoHandler: HTTPHandler {
    let seen = Seen()

    final class Seen: Sendable {
        let count = Atomic<Int>(0)
    }

    func handle(_ request: HTTPRequest, responder: HTTPResponder) {
        seen.count.wrappingAdd(1, ordering: .relaxed)
        var text = "\(request.method) \(request.path)"
        if let query = request.query { text += "?\(query)" }
        text += " " + String(decoding: request.body, as: UTF8.self)
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/plain")
        headers.add("X-Remote", request.remoteAddress)
        let response = HTTPResponse(status: 200, headers: headers, body: Array(text.utf8))
        if request.path == "/drop" { return }
        if request.path.hasPrefix("/sync/") {
            // Answered inside `handle`, on the loop's own thread.
            responder.respond(response)
            return
        }
        if request.path.hasPrefix("/loop/"), let milliseconds = Int(request.path.dropFirst(6)) {
            // A task on the receiving loop's executor, suspended in between like a database call.
            Task(executorPreference: responder.taskExecutor) {
                try? await Task.sleep(for: .milliseconds(milliseconds))
                responder.respond(response)
            }
            return
        }
        if request.path.hasPrefix("/delay/"), let milliseconds = Int(request.path.dropFirst(7)) {
            Task {
                try? await Task.sleep(for: .milliseconds(milliseconds))
                responder.respond(response)
            }
        } else {
            Task { responder.respond(response) }
        }
    }
}

/// Keeps every responder until `release` answers them all with 200.
final class HoldingHandler: HTTPHandler {
    private let held = Mutex<[HTTPResponder]>([])

    var heldCount: Int { held.withLock { $0.count } }

    func handle(_ request: HTTPRequest, responder: HTTPResponder) {
        held.withLock { $0.append(responder) }
    }

    func release() {
        let responders = held.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for responder in responders { responder.respond(HTTPResponse(status: 200, body: Array("released".utf8))) }
    }
}

final class LogCollector: Sendable {
    private let events = Mutex<[String]>([])

    var log: @Sendable (HTTPServerLogEvent) -> Void {
        { event in self.events.withLock { $0.append(event.description) } }
    }

    func count(prefix: String) -> Int { events.withLock { $0.filter { $0.hasPrefix(prefix) }.count } }
}

/// Starts a server on 127.0.0.1:0, runs `body`, and always shuts it down off the cooperative pool.
func withServer(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
                handler: any HTTPHandler = EchoHandler(), logs: LogCollector = LogCollector(),
                _ body: (Int, HTTPServer) async throws -> Void) async throws {
    var configuration = HTTPServerConfiguration()
    configuration.port = 0
    configure(&configuration)
    let server = HTTPServer(configuration: configuration, handler: handler, log: logs.log)
    let port = try server.start()
    do {
        try await body(port, server)
    } catch {
        _ = try? await runOffPool { server.shutdown() }
        throw error
    }
    _ = try await runOffPool { server.shutdown() }
}

/// SplitMix64: reproducible randomness for fuzz-like tests.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
