import Foundation
import Testing

/// Operations: the ops API on the ops listener and the `oob-engine ops` CLI, against a private
/// cluster (bulk expiry would otherwise reach other tests' PENDING authentications).
@Suite(.serialized) struct OpsTests {
    static func cli(_ arguments: [String], url: String) async throws -> (status: Int32, text: String) {
        var environment = ProcessInfo.processInfo.environment
        for key in ["OOB_CONFIG", "OOB_LISTEN", "OOB_OPS_LISTEN"] { environment[key] = nil }
        environment["DATABASE_URL"] = url
        return try await PrivateCluster.run(try TestEnvironment.engineBinary, ["ops"] + arguments, environment: environment,
                                            timeout: .seconds(60))
    }

    static func json(_ text: String) -> [String: Any]? {
        guard let start = text.firstIndex(of: "{") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: Any]
    }

    @Test(.timeLimit(.minutes(3))) func opsAPIListShowExpire() async throws {
        let cluster = try await PrivateCluster.start(name: "ops-api")
        defer { Task { await cluster.destroy() } }
        let engine = try await EngineProcess.start(.init(databaseURL: cluster.url))
        let d1 = try engine.d1Client()
        let ops = HTTPClient(port: engine.opsPort, token: try engine.token(client: "ops"))
        let ids = (0..<5).map { "ops-\($0)-" + UUID().uuidString.prefix(6) }
        for id in ids { _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)) }

        // Without the ops scope nothing is read or changed.
        #expect(try HTTPClient(port: engine.opsPort).send("GET", "/ops/v1/authentications").status == 401)
        #expect(try HTTPClient(port: engine.opsPort, token: try engine.token()).send("GET", "/ops/v1/authentications").status == 403)
        #expect(try HTTPClient(port: engine.opsPort, token: try engine.token()).send(
            "POST", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[0])/expire", body: #"{"reason": "x"}"#).status == 403)

        // List: newest first, keyset pages.
        let first = try ops.send("GET", "/ops/v1/authentications?issuerId=ISSUER0001&state=PENDING&limit=3")
        #expect(first.status == 200)
        let firstPage = try #require(Self.json(first.text))
        let firstItems = try #require(firstPage["authentications"] as? [[String: Any]])
        #expect(firstItems.map { $0["authenticationId"] as? String } == [ids[4], ids[3], ids[2]])
        let cursor = try #require(firstPage["nextCursor"] as? String)
        let second = try #require(Self.json(try ops.send("GET", "/ops/v1/authentications?issuerId=ISSUER0001&limit=3&cursor=\(cursor)").text))
        #expect((second["authentications"] as? [[String: Any]])?.map { $0["authenticationId"] as? String } == [ids[1], ids[0]])
        #expect(second["nextCursor"] is NSNull)
        for bad in ["state=DONE", "limit=0", "limit=abc", "createdBefore=yesterday", "issuerId=SHORT", "cursor=-1", "colour=red",
                    "consumerId=a%20b", "limit=1&limit=2"] {
            let response = try ops.send("GET", "/ops/v1/authentications?" + bad)
            #expect(response.status == 400, "\(bad)")
            #expect(response.string("error") != nil)
        }

        // Show: the record and its history.
        let shown = try #require(Self.json(try ops.send("GET", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[0])").text))
        #expect(shown["state"] as? String == "PENDING")
        #expect((shown["transitions"] as? [[String: Any]])?.first?["cause"] as? String == "create")
        #expect(try ops.send("GET", "/ops/v1/issuers/ISSUER0001/authentications/nope").status == 404)

        // Expire one: PENDING → AUTHENTICATION_FAILED, cause operator, actor the ops client; then 409.
        for body in ["{}", #"{"reason": ""}"#, #"{"reason": 7}"#, "{", #"{"reason": "\#(String(repeating: "x", count: 65))"}"#] {
            #expect(try ops.send("POST", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[0])/expire", body: body).status == 400, "\(body)")
        }
        let expired = try ops.send("POST", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[0])/expire",
                                   body: #"{"reason": "stuck: app backend outage INC-42"}"#)
        #expect(expired.status == 200)
        let polled = try d1.send("GET", D1.authenticationPath() + "/" + ids[0])
        #expect(polled.string("authenticationStatus") == "AUTHENTICATION_FAILED")
        #expect(polled.string("reason") == "expired")
        let again = try ops.send("POST", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[0])/expire", body: #"{"reason": "again"}"#)
        #expect(again.status == 409)
        #expect(again.string("authenticationStatus") == "AUTHENTICATION_FAILED")
        let history = try #require(Self.json(try ops.send("GET", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[0])").text)?["transitions"] as? [[String: Any]])
        #expect(history.count == 3)
        #expect(history[1]["cause"] as? String == "operator")
        #expect(history[1]["actor"] as? String == "ops")
        #expect(history[1]["detail"] as? String == "stuck: app backend outage INC-42")
        #expect(history[2]["outcome"] as? String == "refused")
        #expect(engine.logLines.contains { $0.contains("audit=expire") && $0.contains("who=ops") && $0.contains("outcome=expired") })

        // Bulk: every PENDING of the issuer created before now; twice is harmless.
        let before = ISO8601DateFormatter().string(from: Date().addingTimeInterval(1))
        let bulk = try ops.send("POST", "/ops/v1/expire", body: #"{"issuerId": "ISSUER0001", "createdBefore": "\#(before)", "reason": "drill"}"#)
        #expect(bulk.status == 200)
        #expect(Self.json(bulk.text)?["expired"] as? Int == 4)
        let twice = try ops.send("POST", "/ops/v1/expire", body: #"{"issuerId": "ISSUER0001", "createdBefore": "\#(before)", "reason": "drill"}"#)
        #expect(Self.json(twice.text)?["expired"] as? Int == 0)
        #expect(try ops.send("POST", "/ops/v1/expire", body: #"{"issuerId": "ISSUER0001", "reason": "drill"}"#).status == 400)
        #expect(try ops.send("POST", "/ops/v1/expire", body: #"{"issuerId": "ISSUER0001", "createdBefore": "soon", "reason": "drill"}"#).status == 400)
        // Nobody can make an authentication AUTHENTICATED here: there is no such operation.
        #expect(try ops.send("POST", "/ops/v1/issuers/ISSUER0001/authentications/\(ids[1])/approve", body: "{}").status == 404)
        try await engine.stop()
    }

    @Test(.timeLimit(.minutes(3))) func cliWorksStraightAgainstTheDatabase() async throws {
        let cluster = try await PrivateCluster.start(name: "ops-cli")
        defer { Task { await cluster.destroy() } }
        let engine = try await EngineProcess.start(.init(databaseURL: cluster.url))
        let d1 = try engine.d1Client()
        let ids = (0..<3).map { "cli-\($0)-" + UUID().uuidString.prefix(6) }
        for id in ids { _ = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id)) }
        try await engine.stop()   // the CLI needs only the database

        for command in [["--help"], ["list", "--help"], ["show", "--help"], ["expire", "--help"], ["expire-all", "--help"]] {
            let help = try await Self.cli(command, url: cluster.url)
            #expect(help.status == 0, "\(command)")
            #expect(help.text.contains("Usage: oob-engine ops"), "\(command)")
        }
        let table = try await Self.cli(["list", "--issuer", "ISSUER0001"], url: cluster.url)
        #expect(table.status == 0)
        #expect(table.text.contains("AUTHENTICATION") && table.text.contains(ids[2]) && table.text.contains("PENDING"))
        let listed = try await Self.cli(["list", "--issuer", "ISSUER0001", "--state", "PENDING", "--json"], url: cluster.url)
        #expect((Self.json(listed.text)?["authentications"] as? [[String: Any]])?.count == 3)

        let show = try await Self.cli(["show", "ISSUER0001", ids[0]], url: cluster.url)
        #expect(show.status == 0)
        #expect(show.text.contains("create"))
        #expect(try await Self.cli(["show", "ISSUER0001", "missing"], url: cluster.url).status == 3)

        #expect(try await Self.cli(["expire", "ISSUER0001", ids[0]], url: cluster.url).status == 64, "--reason is required")
        let expired = try await Self.cli(["expire", "ISSUER0001", ids[0], "--reason", "cli drill", "--json"], url: cluster.url)
        #expect(expired.status == 0)
        #expect(Self.json(expired.text)?["state"] as? String == "AUTHENTICATION_FAILED")
        #expect(try await Self.cli(["expire", "ISSUER0001", ids[0], "--reason", "again"], url: cluster.url).status == 4)
        let before = ISO8601DateFormatter().string(from: Date().addingTimeInterval(1))
        let bulk = try await Self.cli(["expire-all", "--issuer", "ISSUER0001", "--created-before", before, "--reason", "drill", "--json"],
                                      url: cluster.url)
        #expect(bulk.status == 0)
        #expect(Self.json(bulk.text)?["expired"] as? Int == 2)
        let shown = try await Self.cli(["show", "ISSUER0001", ids[1], "--json"], url: cluster.url)
        let history = Self.json(shown.text)?["transitions"] as? [[String: Any]]
        #expect(history?.last?["cause"] as? String == "operator")
        #expect((history?.last?["actor"] as? String)?.hasPrefix("cli:") == true)
        #expect(try await Self.cli(["list", "--state", "DONE"], url: cluster.url).status == 64)
        #expect(try await Self.cli(["frobnicate"], url: cluster.url).status == 64)
    }

    /// A bulk expiry of 10,000 PENDING while D1 polls them: each goes straight from PENDING to
    /// AUTHENTICATION_FAILED (expired), never to anything else, and D1 never sees it go back.
    @Test(.timeLimit(.minutes(5))) func bulkExpiryOfTenThousandWhileD1Polls() async throws {
        let cluster = try await PrivateCluster.start(name: "ops-bulk")
        defer { Task { await cluster.destroy() } }
        let engine = try await EngineProcess.start(.init(databaseURL: cluster.url))
        let prefix = "bulk-" + UUID().uuidString.prefix(8)
        let count = 10_000
        try await DeadlineTests.createMany(engine, prefix: prefix, count: count, issuer: "ISSUER0001")
        let token = try engine.token()
        let opsToken = try engine.token(client: "ops")
        let before = ISO8601DateFormatter().string(from: Date().addingTimeInterval(1))

        let done = Locked(false)
        let violations = Locked<[String]>([])
        let polls = Locked(0)
        let pollers = (0..<4).map { worker in
            Task.detached {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    Thread.detachNewThread {
                        continuation.resume(with: Result {
                            var connection = try RawHTTPConnection(port: engine.apiPort)
                            var seenFinal = Set<Int>()
                            // Bounded: at most 20 passes over this worker's share.
                            for pass in 0..<20 {
                                let finishing = done.withLock { $0 }
                                for index in stride(from: worker, to: count, by: 4) {
                                    let request = HTTPClient.request("GET", D1.authenticationPath() + "/\(prefix)-\(index)",
                                                                     headers: [("Authorization", "Bearer " + token)])
                                    if (try? connection.send(request)) == nil {
                                        connection = try RawHTTPConnection(port: engine.apiPort)
                                        try connection.send(request)
                                    }
                                    guard let response = try connection.readResponse() else { throw TestSetupError("no answer") }
                                    polls.withLock { $0 += 1 }
                                    let state = response.string("authenticationStatus")
                                    if state == "AUTHENTICATION_FAILED", response.string("reason") == "expired" {
                                        seenFinal.insert(index)
                                    } else if state != "PENDING" || seenFinal.contains(index) {
                                        violations.withLock { $0.append("\(index): \(state ?? "?") after \(seenFinal.contains(index) ? "final" : "pending") (pass \(pass))") }
                                    }
                                }
                                if finishing { break }
                            }
                        })
                    }
                }
            }
        }
        let bulk = try HTTPClient(port: engine.opsPort, token: opsToken).send(
            "POST", "/ops/v1/expire", body: #"{"issuerId": "ISSUER0001", "createdBefore": "\#(before)", "reason": "bulk drill"}"#)
        done.withLock { $0 = true }
        for poller in pollers { try await poller.value }
        #expect(bulk.status == 200)
        #expect(Self.json(bulk.text)?["expired"] as? Int == count)
        #expect(violations.withLock { $0 }.isEmpty, "\(violations.withLock { Array($0.prefix(5)) })")
        #expect(polls.withLock { $0 } >= count)

        let database = try TestDatabase(url: cluster.url)
        defer { database.shutdown() }
        let paths = try database.rows("""
            select count(*) filter (where t.from_state = 'PENDING' and t.to_state = 'AUTHENTICATION_FAILED' and t.cause = 'operator') as expired,
                   count(*) filter (where t.from_state is not null and not (t.to_state = 'AUTHENTICATION_FAILED' and t.cause = 'operator')) as other
            from authentications a join transitions t on t.authentication_id = a.id
            where a.authentication_id like $1
            """, [prefix + "-%"])
        #expect(paths.int(0, "expired") == count)
        #expect(paths.int(0, "other") == 0)
        try await engine.stop()
    }
}
