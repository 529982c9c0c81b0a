import Foundation
import Testing

/// The executable itself: commands, settings, shutdown, and surviving crashes of itself and of
/// PostgreSQL.
@Suite struct LifecycleTests {
    func runEngine(_ arguments: [String], environment: [String: String]) async throws -> (status: Int32, text: String) {
        var base = ProcessInfo.processInfo.environment
        for key in ["DATABASE_URL", "OOB_CONFIG", "OOB_LISTEN", "OOB_OPS_LISTEN"] { base[key] = nil }
        for (key, value) in environment { base[key] = value }
        return try await PrivateCluster.run(try TestEnvironment.engineBinary, arguments, environment: base, timeout: .seconds(60))
    }

    @Test func helpDescribesCommandsAndSettings() async throws {
        let output = try await runEngine(["--help"], environment: [:])
        #expect(output.status == 0)
        for word in ["serve", "migrate", "DATABASE_URL", "OOB_LISTEN", "OOB_OPS_LISTEN", "OOB_CONFIG"] {
            #expect(output.text.contains(word), "help mentions \(word)")
        }
    }

    @Test func migrateTwiceIsHarmless() async throws {
        let url = try TestEnvironment.databaseURL
        let first = try await runEngine(["migrate"], environment: ["DATABASE_URL": url])
        let second = try await runEngine(["migrate"], environment: ["DATABASE_URL": url])
        #expect(first.status == 0, "\(first.text)")
        #expect(second.status == 0, "\(second.text)")
    }

    @Test(arguments: [
        ([String: String](), "DATABASE_URL"),
        (["DATABASE_URL": "not-a-url"], "DATABASE_URL"),
        (["DATABASE_URL": "postgresql://x@127.0.0.1:1/x"], "OOB_CONFIG"),
        (["DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "OOB_CONFIG": "/nonexistent.json"], "OOB_CONFIG"),
        (["DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "OOB_CONFIG": "/dev/null", "OOB_LISTEN": "localhost"], "OOB_LISTEN"),
        (["DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "OOB_CONFIG": "/dev/null", "OOB_OPS_LISTEN": "127.0.0.1:99999"], "OOB_OPS_LISTEN"),
    ])
    func aMissingOrInvalidSettingIsNamed(environment: [String: String], setting: String) async throws {
        let output = try await runEngine(["serve"], environment: environment)
        #expect(output.status == 2)
        #expect(output.text.contains(setting), "\(output.text)")
    }

    @Test func anInvalidConfigFileNamesTheKey() async throws {
        let path = NSTemporaryDirectory() + "bad-config-\(UUID().uuidString).json"
        try #"{"issuers":[{"id":"SHORT","challengeTTLSeconds":300}]}"#.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try await runEngine(["serve"], environment: ["DATABASE_URL": try TestEnvironment.databaseURL, "OOB_CONFIG": path])
        #expect(output.status == 2)
        #expect(output.text.contains("issuers[0].id"), "\(output.text)")
    }

    @Test func sigtermFinishesGracefullyWithExitZero() async throws {
        let engine = try await EngineProcess.start()
        // Not ready until its PENDING deadlines are loaded (many, in a database other tests
        // have used): until then 503 with that reason, never anything else.
        try await eventually(timeout: .seconds(30), "the engine to be ready") {
            let ready = try HTTPClient(port: engine.opsPort).send("GET", "/health/ready")
            if ready.status == 503 {
                #expect(ready.text.contains("recovering deadlines"), "\(ready.text)")
                #expect(ready.header("Retry-After") == "1")
            }
            return ready.status == 200
        }
        #expect(try HTTPClient(port: engine.opsPort).send("GET", "/health/live").status == 200)
        #expect(try await engine.stop() == 0)
        #expect(engine.logLines.contains { $0.contains("msg=stopped") })
    }

    /// A 200 to Authenticate means the row survives kill -9 of the engine followed by an
    /// immediate stop and restart of PostgreSQL; meanwhile the engine answers 503 + Retry-After,
    /// and it reconnects by itself.
    @Test(.timeLimit(.minutes(3))) func acknowledgedCreatesSurviveCrashesAndTheEngineReconnects() async throws {
        let cluster = try await PrivateCluster.start(name: "durability")
        var options = EngineProcess.Options()
        options.databaseURL = cluster.url
        var engine: EngineProcess? = try await EngineProcess.start(options)
        let ids = (0..<20).map { _ in TestEnvironment.uniqueID() }
        for id in ids {
            let response = try engine!.d1Client().send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
            #expect(response.status == 200)
        }
        try await engine!.kill()
        try await cluster.stopImmediately()
        try await cluster.start()

        let database = try TestDatabase(url: cluster.url)
        for id in ids {
            #expect(try database.state(issuer: "ISSUER0001", authenticationId: id) == "PENDING", "acknowledged \(id) survived")
        }
        database.shutdown()

        // A fresh engine, then the database goes away under it and comes back.
        engine = try await EngineProcess.start(options)
        let client = try engine!.d1Client()
        #expect(try client.send("GET", D1.authenticationPath() + "/" + ids[0]).status == 200)
        try await cluster.stopImmediately()
        let during = try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(TestEnvironment.uniqueID()))
        #expect(during.status == 503)
        #expect(during.header("Retry-After") != nil)
        #expect(during.string("error") != nil)
        let notReady = try HTTPClient(port: engine!.opsPort).send("GET", "/health/ready")
        #expect(notReady.status == 503)
        try await cluster.start()
        try await eventually(timeout: .seconds(20), interval: .milliseconds(200), "the engine to reconnect") {
            try client.send("GET", D1.authenticationPath() + "/" + ids[0]).status == 200
        }
        let after = try client.send("POST", D1.authenticationPath(), body: D1.authenticateBody(TestEnvironment.uniqueID()))
        #expect(after.string("authenticationStatus") == "PENDING")
        #expect(try await engine!.stop() == 0)
        engine = nil
        await cluster.destroy()
    }
}
