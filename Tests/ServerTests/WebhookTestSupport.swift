import Foundation
import Glibc
import Synchronization

struct WebhookTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work (the webhook client blocks its thread) on a thread of its own, so
/// Swift's cooperative pool stays free.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

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
        guard listening >= 0 else { throw WebhookTestError("socket failed") }
        port = try Self.bindLoopback(listening)
        guard listen(listening, 16) == 0 else { throw WebhookTestError("listen failed: errno \(errno)") }
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
        guard bound == 0 else { throw WebhookTestError("bind failed: errno \(errno)") }
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

/// Self-signed certificates made once per test process with the `openssl` CLI.
struct TestCertificates: Sendable {
    struct Pair: Sendable {
        var certificate: String
        var key: String
    }

    /// For localhost and 127.0.0.1.
    var loopback: Pair
    /// For wrong.example only.
    var otherName: Pair

    private static let made = Mutex<Result<TestCertificates, WebhookTestError>?>(nil)

    static func shared() throws -> TestCertificates {
        try made.withLock { made in
            if made == nil { made = Result { () throws(WebhookTestError) in try make() } }
            return try made!.get()
        }
    }

    private static func make() throws(WebhookTestError) -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("oob-tls-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func pair(_ name: String, subject: String, altNames: String) throws(WebhookTestError) -> Pair {
            let pair = Pair(certificate: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
            let status = run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                              "-nodes", "-days", "2", "-subj", "/CN=\(subject)",
                                              "-addext", "subjectAltName=\(altNames)",
                                              "-keyout", pair.key, "-out", pair.certificate])
            guard status == 0 else { throw WebhookTestError("openssl req failed (\(status)); is the openssl CLI installed?") }
            return pair
        }
        return TestCertificates(loopback: try pair("loopback", subject: "localhost", altNames: "DNS:localhost,IP:127.0.0.1"),
                                otherName: try pair("other", subject: "wrong.example", altNames: "DNS:wrong.example"))
    }

    /// Runs a short command to completion, output discarded (bounded: killed after 30 s).
    /// posix_spawn rather than Foundation's Process: Process.run on Linux (Swift 6.3.1) can read
    /// past a buffer while listing /proc/self/fd (a segmentation fault of the whole test process,
    /// seen when the tests running beside this one held many descriptors).
    static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, executable, &actions, nil, argv, environ) == 0 else { return -1 }
        let deadline = ContinuousClock.now + .seconds(30)
        var status: Int32 = 0
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { break }
            if done < 0, errno != EINTR { return -1 }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return -2
            }
            usleep(10_000)
        }
        // WIFEXITED / WEXITSTATUS by hand (the macros are not imported).
        return status & 0x7f == 0 ? (status >> 8) & 0xff : -1
    }
}

/// An HTTPS server on 127.0.0.1 (Python's http.server with ssl): `/status/NNN` answers NNN,
/// anything else 200. Prints its port on standard output once it listens; counts requests on
/// standard error. Killed by `stop()` (and exits when its standard input closes).
final class TLSTestServer: Sendable {
    static let script = #"""
        import http.server, ssl, sys, threading
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = int(self.path[8:]) if self.path.startswith("/status/") else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                sys.stderr.write("request\n"); sys.stderr.flush()
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        sys.stdin.read()
        """#

    let port: Int
    private let process: Process
    private let input: Pipe
    private let errors: Pipe

    init(certificate: TestCertificates.Pair) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, certificate.certificate, certificate.key]
        input = Pipe()
        errors = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // The port line, read with a bounded wait.
        let fd = output.fileHandleForReading.fileDescriptor
        var line: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while !line.contains(10), ContinuousClock.now < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) >= 0 else { continue }
            guard entry.revents != 0 else { continue }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { break }
            line.append(byte)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw WebhookTestError("the Python TLS server did not start (is python3 installed?)")
        }
        self.port = port
    }

    /// Requests answered so far (the server logs one line per request).
    var requestCount: Int {
        let fd = errors.fileHandleForReading.fileDescriptor
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<100 {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 50) > 0 else { break }
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { break }
            text += buffer[..<n]
        }
        return String(decoding: text, as: UTF8.self).split(separator: "\n").filter { $0 == "request" }.count
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
    }
}
