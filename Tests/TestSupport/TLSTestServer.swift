import Foundation
import Glibc
import Synchronization

/// Self-signed certificates made once per test process with the `openssl` CLI.
public struct TestCertificates: Sendable {
    public struct Pair: Sendable {
        public var certificate: String
        public var key: String
    }

    /// For localhost and 127.0.0.1.
    public var loopback: Pair
    /// For wrong.example only.
    public var otherName: Pair

    private static let made = Mutex<Result<TestCertificates, TestSupportError>?>(nil)

    public static func shared() throws -> TestCertificates {
        try made.withLock { made in
            if made == nil { made = Result { () throws(TestSupportError) in try make() } }
            return try made!.get()
        }
    }

    private static func make() throws(TestSupportError) -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("oob-tls-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func pair(_ name: String, subject: String, altNames: String) throws(TestSupportError) -> Pair {
            let pair = Pair(certificate: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
            let result = Result { try ChildProcess.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "ec",
                                                                        "-pkeyopt", "ec_paramgen_curve:P-256",
                                                                        "-nodes", "-days", "2", "-subj", "/CN=\(subject)",
                                                                        "-addext", "subjectAltName=\(altNames)",
                                                                        "-keyout", pair.key, "-out", pair.certificate],
                                                            timeout: .seconds(30)) }
            guard case .success(let run) = result, run.status == 0 else {
                throw TestSupportError("openssl req failed (is the openssl CLI installed?): \(result)")
            }
            return pair
        }
        return TestCertificates(loopback: try pair("loopback", subject: "localhost", altNames: "DNS:localhost,IP:127.0.0.1"),
                                otherName: try pair("other", subject: "wrong.example", altNames: "DNS:wrong.example"))
    }
}

/// An HTTPS server on 127.0.0.1 (Python's http.server with ssl): `/status/NNN` answers NNN,
/// anything else 200. Prints its port on standard output once it listens; counts requests on
/// standard error. Killed by `stop()` (and exits when its standard input closes).
public final class TLSTestServer: Sendable {
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

    public let port: Int
    private let process: ChildProcess
    /// Request lines read from its standard error so far.
    private let requestsSeen = Mutex(0)

    public init(certificate: TestCertificates.Pair) throws {
        process = try ChildProcess("/usr/bin/env", ["python3", "-c", Self.script, certificate.certificate, certificate.key],
                                   standardInput: .pipe, standardOutput: .pipe, standardError: .pipe)
        // The port line, read with a bounded wait.
        let fd = process.output!
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
            process.signal(SIGKILL)
            throw TestSupportError("the Python TLS server did not start (is python3 installed?)")
        }
        self.port = port
    }

    /// Requests answered so far (the server logs one line per request).
    public var requestCount: Int {
        let fd = process.errorOutput!
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<100 {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 50) > 0 else { break }
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { break }
            text += buffer[..<n]
        }
        let new = String(decoding: text, as: UTF8.self).split(separator: "\n").filter { $0 == "request" }.count
        return requestsSeen.withLock { seen in
            seen += new
            return seen
        }
    }

    public func stop() {
        process.closeInput()
        process.terminate()
        process.wait(timeout: .seconds(5))
    }
}
