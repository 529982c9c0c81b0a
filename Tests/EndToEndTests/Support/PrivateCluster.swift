import Foundation
import TestSupport

/// A PostgreSQL cluster of the test's own (scripts/dev-db in a fresh folder on a free port), for
/// tests that stop and restart the server and must not disturb tests running beside them.
final class PrivateCluster: @unchecked Sendable {
    // @unchecked: every property is set once in init and never changes.
    let directory: String
    let port: String
    let url: String

    static func start(name: String) async throws -> PrivateCluster {
        let directory = TestEnvironment.repositoryRoot + "/.pgdata/private-" + name + "-" + UUID().uuidString.prefix(8)
        let port = String(try freePort())
        let output = try await run(TestEnvironment.repositoryRoot + "/scripts/dev-db", [directory, port])
        guard output.status == 0 else { throw TestSetupError("scripts/dev-db failed: \(output.text)") }
        return PrivateCluster(directory: directory, port: port)
    }

    private init(directory: String, port: String) {
        self.directory = directory
        self.port = port
        self.url = "postgresql://oob@127.0.0.1:\(port)/oob"
    }

    func stopImmediately() async throws { try await control("stop-immediate") }
    func start() async throws { try await control("start") }

    /// Stops the server and deletes its folder.
    func destroy() async {
        _ = try? await control("destroy")
    }

    private func control(_ action: String) async throws {
        let output = try await Self.run(TestEnvironment.repositoryRoot + "/scripts/pgctl", [directory, port, action])
        guard output.status == 0 else { throw TestSetupError("scripts/pgctl \(action) failed: \(output.text)") }
    }

    /// Runs a program to its end (bounded by `timeout`), off Swift's cooperative threads.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                    timeout: Duration = .seconds(120)) async throws -> (status: Int32, text: String) {
        try await runOffPool { try ChildProcess.run(executable, arguments, environment: environment, timeout: timeout) }
    }

    static func freePort() throws -> Int {
        let output = try ChildProcess.run("/usr/bin/env", ["python3", "-c",
            "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"], timeout: .seconds(30)).text
        guard let port = Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestSetupError("no free port") }
        return port
    }
}
