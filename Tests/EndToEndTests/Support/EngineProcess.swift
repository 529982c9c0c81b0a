import Foundation
import Glibc
import Synchronization
import TestSupport

/// The real `oob-engine` binary, started on free loopback ports with its own config file.
/// Its log lines are kept (in memory and in OOB_TEST_LOG_DIR) for assertions.
final class EngineProcess: @unchecked Sendable {
    // @unchecked: every property is set once in init; the log lines are behind their own lock.
    let process: ChildProcess
    let apiPort: Int
    let opsPort: Int
    let configPath: String
    private let lines: LockedLines
    private let logFile: FileHandle?

    struct Options {
        var config: String = EngineProcess.defaultConfig
        var environment: [String: String] = [:]
        var databaseURL: String?
    }

    /// Test clients: `d1` for both issuers, `d1-two` for ISSUER0002 only, `app`, `app-two` for
    /// ISSUER0002 only, `ops`.
    static let clientSecrets = ["d1": "d1-secret-0123456789", "d1-two": "d1-two-secret-0123456789",
                                "app": "app-secret-0123456789", "ops": "ops-secret-0123456789",
                                "app-two": "app-two-secret-0123456789"]
    static let hmacKeyBase64 = "dGVzdC1zaWduaW5nLWtleS0wMTIzNDU2Nzg5LWFiY2RlZmdoaWprbG1ub3A="

    static let defaultConfig = """
        {
          "issuers": [{"id": "ISSUER0001", "challengeTTLSeconds": 300}, {"id": "ISSUER0002", "challengeTTLSeconds": 2}],
          "authenticators": [
            {"issuerId": "ISSUER0001", "consumerId": "alice", "appInstanceId": "alice-phone", "authnType": "BIOMETRIC"},
            {"issuerId": "ISSUER0002", "consumerId": "alice", "appInstanceId": "alice-phone", "authnType": "BIOMETRIC"}
          ],
          "clients": [
            {"id": "d1", "secret": "\(clientSecrets["d1"]!)", "scopes": ["d1"], "issuers": ["ISSUER0001", "ISSUER0002"]},
            {"id": "d1-two", "secret": "\(clientSecrets["d1-two"]!)", "scopes": ["d1"], "issuers": ["ISSUER0002"]},
            {"id": "app", "secret": "\(clientSecrets["app"]!)", "scopes": ["app"], "issuers": ["*"]},
            {"id": "ops", "secret": "\(clientSecrets["ops"]!)", "scopes": ["ops"], "issuers": ["*"]},
            {"id": "app-two", "secret": "\(clientSecrets["app-two"]!)", "scopes": ["app"], "issuers": ["ISSUER0002"]}
          ],
          "otp": {"kind": "simulated", "deliveryDeadlineSeconds": 120},
          "signingKeys": [{"kid": "k1", "alg": "HS256", "secret": "\(hmacKeyBase64)"}]
        }
        """

    /// A bearer token from the engine's own token endpoint.
    func token(client: String = "d1", scope: String? = nil) throws -> String {
        let credentials = Data("\(client):\(EngineProcess.clientSecrets[client]!)".utf8).base64EncodedString()
        let body = "grant_type=client_credentials" + (scope.map { "&scope=" + $0 } ?? "")
        let response = try HTTPClient(port: apiPort).send("POST", "/authz/d1/v1/oauth2/token", body: body,
                                                          headers: [("Authorization", "Basic " + credentials),
                                                                    ("Content-Type", "application/x-www-form-urlencoded")])
        guard response.status == 200, let token = response.string("access_token") else {
            throw TestSetupError("no token for \(client): \(response.status) \(response.text)")
        }
        return token
    }

    /// A client for the API listener that sends a `d1` bearer token on every request.
    func d1Client() throws -> HTTPClient {
        HTTPClient(port: apiPort, token: try token())
    }

    private init(process: ChildProcess, apiPort: Int, opsPort: Int, configPath: String, lines: LockedLines, logFile: FileHandle?) {
        self.process = process
        self.apiPort = apiPort
        self.opsPort = opsPort
        self.configPath = configPath
        self.lines = lines
        self.logFile = logFile
    }

    static func start(_ options: Options = Options(), timeout: Duration = .seconds(60)) async throws -> EngineProcess {
        let binary = try TestEnvironment.engineBinary
        let configPath = NSTemporaryDirectory() + "oob-config-" + UUID().uuidString + ".json"
        try options.config.write(toFile: configPath, atomically: true, encoding: .utf8)

        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_URL"] = try options.databaseURL ?? TestEnvironment.databaseURL
        environment["OOB_LISTEN"] = "127.0.0.1:0"
        environment["OOB_OPS_LISTEN"] = "127.0.0.1:0"
        environment["OOB_CONFIG"] = configPath
        environment["OOB_EXIT_ON_STDIN_EOF"] = "1"   // dies with the test process, never orphaned
        for (key, value) in options.environment { environment[key] = value }
        // Our end of its stdin stays open as long as the ChildProcess lives (this EngineProcess):
        // EOF tells the engine we are gone.
        let process = try ChildProcess(binary, ["serve"], environment: environment,
                                       standardInput: .pipe, standardOutput: .null, standardError: .pipe)

        let lines = LockedLines()
        let logPath = TestEnvironment.logDirectory + "/engine-" + UUID().uuidString + ".log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logFile = FileHandle(forWritingAtPath: logPath)
        // A thread of its own reads the engine's stderr until EOF (the engine exited); it holds
        // the ChildProcess, which closes the descriptor, until then.
        Thread.detachNewThread {
            let fd = process.errorOutput!
            var chunk = [UInt8](repeating: 0, count: 65536)
            var pending: [UInt8] = []
            while true {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                logFile?.write(Data(chunk[..<n]))
                pending.append(contentsOf: chunk[..<n])
                var complete: [String] = []
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    complete.append(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                if !complete.isEmpty { lines.withLock { $0.append(contentsOf: complete) } }
            }
        }

        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let line = lines.withLock({ $0.first(where: { $0.contains("msg=listening") }) }),
               let api = field("api", in: line).flatMap(port), let ops = field("ops", in: line).flatMap(port) {
                return EngineProcess(process: process, apiPort: api, opsPort: ops, configPath: configPath,
                                     lines: lines, logFile: logFile)
            }
            if !process.isRunning {
                let output = lines.withLock { $0.joined(separator: "\n") }
                throw TestSetupError("oob-engine exited with \(process.terminationStatus ?? -1) before listening:\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.signal(SIGKILL)
        throw TestSetupError("oob-engine did not report listening within \(timeout)")
    }

    var logLines: [String] { lines.withLock { $0 } }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit status.
    @discardableResult
    func stop(timeout: Duration = .seconds(20)) async throws -> Int32 {
        process.terminate()
        try await eventually(timeout: timeout, "oob-engine to exit after SIGTERM") { !process.isRunning }
        return process.terminationStatus ?? -1
    }

    /// SIGKILL: no chance to clean up.
    func kill() async throws {
        process.signal(SIGKILL)
        try await eventually(timeout: .seconds(10), "oob-engine to die after SIGKILL") { !process.isRunning }
    }

    deinit {
        process.signal(SIGKILL)
        process.closeInput()
        try? FileManager.default.removeItem(atPath: configPath)
    }

    private static func field(_ key: String, in line: String) -> String? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return String(line[range.upperBound...].prefix { $0 != " " })
    }

    private static func port(_ address: String) -> Int? {
        address.split(separator: ":").last.flatMap { Int($0) }
    }
}

/// The engine's log lines so far, shared between the reading handler and the test.
final class LockedLines: Sendable {
    private let lines = Mutex<[String]>([])
    func withLock<T>(_ body: (inout [String]) -> T) -> T { lines.withLock { body(&$0) } }
}
