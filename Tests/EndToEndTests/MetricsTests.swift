import Foundation
import Glibc
import JSON
import TestSupport
import Testing

/// `GET /metrics` on the ops listener, scraped from the real binary and parsed by a real
/// Prometheus text-format parser (`prometheus_client` from PyPI; scripts/test installs it).
/// Other tests run their own engines against the same database at the same time, so every
/// assertion compares two scrapes of this test's own engine, never absolute values of shared
/// state.
@Suite struct MetricsTests {
    /// One parsed scrape: samples by name, each with its labels.
    struct Scrape {
        struct Sample {
            /// The family as the parser names it (a counter's without `_total`).
            var family: String
            var name: String
            var labels: [String: String]
            var value: Double
        }

        var families: [String: (type: String, help: String)] = [:]
        var samples: [Sample] = []

        /// The sum of the samples of `name` whose labels include `labels` (0 when none: a series
        /// not yet created reads as zero, as Prometheus treats it).
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
            samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
                .reduce(0) { $0 + $1.value }
        }

        func has(_ name: String) -> Bool { samples.contains { $0.name == name } }
    }

    /// Reads stdin with `text_string_to_metric_families` and prints every family as JSON
    /// (non-finite values as strings: JSON has no Infinity).
    static let parserScript = """
        import json, math, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = []
        for family in text_string_to_metric_families(sys.stdin.read()):
            out.append({"name": family.name, "type": family.type, "help": family.documentation,
                        "samples": [{"name": s.name, "labels": s.labels,
                                     "value": s.value if math.isfinite(s.value) else str(s.value)}
                                    for s in family.samples]})
        print(json.dumps(out))
        """

    static func parse(_ text: String) throws -> Scrape {
        let input = NSTemporaryDirectory() + "oob-metrics-" + UUID().uuidString
        let output = input + ".json"
        try text.write(toFile: input, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let errors = input + ".err"
        defer { try? FileManager.default.removeItem(atPath: errors) }
        let status = try runParser(stdin: input, stdout: output, stderr: errors)
        guard status == 0 else {
            let stderr = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            throw TestSetupError("the Prometheus parser refused the scrape (exit \(status)): \(stderr)\n\(text)")
        }
        let json = try JSONParser.parse(Array(FileManager.default.contents(atPath: output) ?? Data()))
        guard case .array(let families) = json else { throw TestSetupError("unexpected parser output") }
        var scrape = Scrape()
        for case .object(let family) in families {
            guard case .string(let name)? = family["name"], case .string(let type)? = family["type"],
                  case .string(let help)? = family["help"], case .array(let samples)? = family["samples"] else { continue }
            scrape.families[name] = (type, help)
            for case .object(let sample) in samples {
                guard case .string(let sampleName)? = sample["name"], case .object(let labels)? = sample["labels"] else { continue }
                let value: Double
                switch sample["value"] {
                case .number(let number)?: value = number.double ?? .nan
                case .string(let text)?: value = text == "inf" ? .infinity : text == "-inf" ? -.infinity : .nan
                default: continue
                }
                var labelValues: [String: String] = [:]
                for (key, labelValue) in labels.members { if case .string(let text) = labelValue { labelValues[key] = text } }
                scrape.samples.append(.init(family: name, name: sampleName, labels: labelValues, value: value))
            }
        }
        return scrape
    }

    /// Runs python3 on the parser script with files as its standard streams; bounded to 30 s.
    static func runParser(stdin: String, stdout: String, stderr: String) throws -> Int32 {
        let parser = try ChildProcess("/usr/bin/env", ["python3", "-c", parserScript],
                                      standardInput: .file(stdin), standardOutput: .file(stdout), standardError: .file(stderr))
        guard let status = parser.wait(timeout: .seconds(30)) else {
            throw TestSetupError("the Prometheus parser did not finish within 30 s")
        }
        return status
    }

    /// One unlabelled sample read straight from the text, for wait loops: the parser (a Python
    /// start-up each time) checks the scrapes that are asserted on, not every poll.
    static func quickValue(_ engine: EngineProcess, _ name: String) throws -> Double? {
        let text = try HTTPClient(port: engine.opsPort).send("GET", "/metrics").text
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.dropFirst(name.count + 1)) }
    }

    static func scrape(_ engine: EngineProcess) throws -> (Scrape, RawHTTPConnection.Response) {
        let response = try HTTPClient(port: engine.opsPort).send("GET", "/metrics")
        guard response.status == 200 else { throw TestSetupError("GET /metrics answered \(response.status)") }
        return (try parse(response.text), response)
    }

    /// What every scrape must show, whatever the engine has done.
    static func checkShape(_ scrape: Scrape) {
        let expected: [(String, String)] = [
            ("oob_http_requests", "counter"), ("oob_http_request_duration_seconds", "histogram"),
            ("oob_authentications_created", "counter"), ("oob_authentications_ended", "counter"),
            ("oob_database_up", "gauge"), ("oob_timers_pending", "gauge"), ("oob_timers_fired", "counter"),
            ("oob_timer_lateness_seconds", "histogram"), ("oob_sweeper_ended", "counter"),
            ("oob_db_pool_size", "gauge"), ("oob_db_pool_connections_open", "gauge"), ("oob_db_pool_in_use", "gauge"),
            ("oob_db_pool_waiting", "gauge"), ("oob_db_pool_acquire_wait_seconds", "summary"),
            ("oob_db_pool_acquire_timeouts", "counter"), ("oob_process_uptime_seconds", "gauge"),
            ("oob_process_resident_memory_bytes", "gauge"), ("oob_poll_cache_hits", "counter"),
            ("oob_poll_cache_records", "gauge"), ("oob_poll_cache_invalidations", "counter"),
            ("oob_poll_cache_listener_connected", "gauge"), ("oob_db_batch_rows", "histogram"),
            ("oob_db_batch_seconds", "histogram"), ("oob_db_batch_queue_seconds", "histogram"),
        ]
        for (name, type) in expected {
            // The parser names a counter's family without `_total`.
            #expect(scrape.families[name]?.type == type, "\(name) is a \(type)")
            #expect(scrape.families[name]?.help.isEmpty == false, "\(name) has HELP")
        }
        for sample in scrape.samples where scrape.families[sample.family]?.type == "counter" {
            #expect(sample.name == sample.family + "_total")
        }
        // Histograms: buckets cumulative, +Inf equal to _count, for every series.
        for (name, family) in scrape.families where family.type == "histogram" {
            let buckets = scrape.samples.filter { $0.name == name + "_bucket" }
            var series: [String: [(Double, Double)]] = [:]
            for bucket in buckets {
                var labels = bucket.labels
                let le = labels.removeValue(forKey: "le").flatMap { $0 == "+Inf" ? Double.infinity : Double($0) } ?? .nan
                series[labels.sorted { $0.key < $1.key }.description, default: []].append((le, bucket.value))
            }
            for (labels, points) in series {
                #expect(points.last?.0 == .infinity, "\(name)\(labels) ends with +Inf")
                #expect(zip(points, points.dropFirst()).allSatisfy { $0.0 < $1.0 && $0.1 <= $1.1 }, "\(name)\(labels) is cumulative")
                let count = scrape.samples.first { $0.name == name + "_count" && $0.labels.sorted { $0.key < $1.key }.description == labels }
                #expect(count?.value == points.last?.1, "\(name)\(labels): +Inf equals _count")
            }
        }
        // No raw path or identifier in a label: routes are names.
        for sample in scrape.samples {
            #expect(!sample.labels.values.contains { $0.contains("/") || $0.hasPrefix("t-") }, "\(sample.name) \(sample.labels)")
        }
    }

    @Test(.timeLimit(.minutes(3))) func countersMoveAsRequestsAreMade() async throws {
        let engine = try await EngineProcess.start()
        let (before, response) = try Self.scrape(engine)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        Self.checkShape(before)
        #expect(before.value("oob_database_up") == 1)
        #expect(before.has("oob_authentications_pending"))
        #expect(before.has("oob_outbox_depth"))
        #expect(before.value("oob_process_resident_memory_bytes") > 1_000_000)
        #expect(before.value("oob_process_uptime_seconds") >= 0)
        #expect(before.value("oob_db_pool_size") == 16)
        var scrapes = 1

        // What the engine answers is tallied here, and the counters must agree with it.
        var answered: [String: Int] = [:]
        func tally(_ route: String, _ status: Int) { answered["\(route) \(status)", default: 0] += 1 }

        let d1 = try engine.d1Client()
        let app = HTTPClient(port: engine.apiPort, token: try engine.token(client: "app"))
        tally("oauth.token", 200)
        tally("oauth.token", 200)
        let pending = [TestEnvironment.uniqueID(), TestEnvironment.uniqueID()]
        for id in pending {
            let created = try d1.send("POST", D1.authenticationPath(), body: D1.authenticateBody(id))
            #expect(created.string("authenticationStatus") == "PENDING")
            tally("d1.authenticate", created.status)
        }
        let decision = try app.send("POST", "/app/v1/issuers/ISSUER0001/authentications/\(pending[0])/decision",
                                    body: #"{"decision": "APPROVE", "appInstanceId": "alice-phone"}"#)
        tally("app.decision", decision.status)
        let nobodys = TestEnvironment.uniqueID()
        let noAuthenticator = try d1.send("POST", D1.authenticationPath(consumer: "nobody"), body: D1.authenticateBody(nobodys))
        #expect(noAuthenticator.string("authenticationStatus") == "NO_AUTHENTICATOR")
        tally("d1.authenticate", noAuthenticator.status)
        for id in pending {
            tally("d1.authentication-result", try d1.send("GET", D1.authenticationPath() + "/" + id).status)
        }
        tally("d1.authentication-result", try d1.send("GET", D1.authenticationPath(consumer: "nobody") + "/" + nobodys).status)
        let unknown = try d1.send("GET", D1.authenticationPath() + "/" + TestEnvironment.uniqueID())
        #expect(unknown.status == 404)
        tally("d1.authentication-result", unknown.status)
        let nowhere = try d1.send("GET", "/no/such/path")
        #expect(nowhere.status == 404)
        tally("unmatched", nowhere.status)
        // ISSUER0002's challenges last 2 s: this instance's timer wheel ends it.
        let expiring = TestEnvironment.uniqueID()
        tally("d1.authenticate", try d1.send("POST", D1.authenticationPath(issuer: "ISSUER0002"),
                                             body: D1.authenticateBody(expiring)).status)

        // Another test's engine may sweep it first (its sweeper's grace can be 1 s): the
        // transitions log says who ended it.
        let database = try TestDatabase()
        defer { database.shutdown() }
        var endedBy: String?
        try await eventually(timeout: .seconds(30), interval: .milliseconds(100), "the 2 s challenge to end") {
            endedBy = try database.rows("""
                select t.actor from transitions t join authentications a on a.id = t.authentication_id
                where a.issuer_id = 'ISSUER0002' and a.authentication_id = $1 and t.from_state = 'PENDING'
                """, [expiring]).string(0, "actor")
            return endedBy != nil
        }
        let byOurTimer = endedBy?.hasPrefix("timer@") == true && endedBy?.hasSuffix(":\(engine.process.pid)") == true
        if byOurTimer {
            // The expirer counts once its statement has returned.
            try await eventually(timeout: .seconds(10), interval: .milliseconds(100), "the timer to be counted") {
                scrapes += 1
                return try Self.quickValue(engine, "oob_timers_fired_total") ?? 0 > before.value("oob_timers_fired_total")
            }
        }

        let (after, _) = try Self.scrape(engine)
        Self.checkShape(after)
        func delta(_ name: String, _ labels: [String: String] = [:]) -> Double {
            after.value(name, labels) - before.value(name, labels)
        }
        for (key, count) in answered {
            let parts = key.split(separator: " ").map(String.init)
            #expect(delta("oob_http_requests_total", ["listener": "api", "route": parts[0], "status": parts[1]]) == Double(count),
                    "requests \(key)")
        }
        #expect(delta("oob_http_requests_total", ["listener": "api"]) == Double(answered.values.reduce(0, +)))
        #expect(delta("oob_http_requests_total", ["listener": "ops", "route": "metrics", "status": "200"]) == Double(scrapes))
        #expect(delta("oob_http_request_duration_seconds_count", ["listener": "api", "route": "d1.authenticate"]) == 4)
        #expect(delta("oob_http_request_duration_seconds_bucket", ["listener": "api", "route": "d1.authenticate", "le": "+Inf"]) == 4)
        #expect(delta("oob_http_request_duration_seconds_sum", ["listener": "api", "route": "d1.authenticate"]) > 0)

        #expect(delta("oob_authentications_created_total", ["issuer": "ISSUER0001"]) == 3)
        #expect(delta("oob_authentications_created_total", ["issuer": "ISSUER0002"]) == 1)
        #expect(delta("oob_authentications_ended_total", ["state": "TECHNICAL_ERROR", "cause": "no-authenticator"]) == 1)
        // Another test's bulk expiry could end the challenge first: then the decision is refused.
        #expect(delta("oob_authentications_ended_total", ["state": "AUTHENTICATED", "cause": "decision"])
                == (decision.status == 200 ? 1 : 0))
        if byOurTimer {
            #expect(delta("oob_authentications_ended_total", ["state": "AUTHENTICATION_FAILED", "cause": "timer"]) >= 1)
            #expect(delta("oob_timers_fired_total") >= 1)
            #expect(delta("oob_timer_lateness_seconds_count") == delta("oob_timers_fired_total"))
        }
        // Every Authenticate went through the group commit once, as one row of a statement.
        #expect(delta("oob_db_batch_rows_sum", ["kind": "create"]) == 4)
        #expect(delta("oob_db_batch_queue_seconds_count", ["kind": "create"]) == 4)
        let createStatements = delta("oob_db_batch_seconds_count", ["kind": "create"])
        #expect(createStatements >= 1 && createStatements <= 4)
        #expect(delta("oob_db_batch_rows_count", ["kind": "create"]) == createStatements)
        // A decision refused from memory (the challenge already ended) sends no statement.
        #expect(delta("oob_db_batch_rows_sum", ["kind": "decision"]) == 1 || decision.status != 200)
        // Requests share pooled statements under load (group commit): at least one acquisition.
        #expect(delta("oob_db_pool_acquire_wait_seconds_count") >= 1)
        #expect(after.value("oob_database_up") == 1)
        // The decided and the NO_AUTHENTICATOR one were answered from memory.
        #expect(delta("oob_poll_cache_hits_total", ["state": "final"]) >= 2)
        #expect(after.value("oob_poll_cache_listener_connected") == 1)
        try await engine.stop()
    }

    /// With the database gone the scrape still answers: everything known, and `oob_database_up 0`.
    @Test(.timeLimit(.minutes(3))) func aScrapeWithTheDatabaseDownSaysSo() async throws {
        let cluster = try await PrivateCluster.start(name: "metrics")
        var options = EngineProcess.Options()
        options.databaseURL = cluster.url
        let engine = try await EngineProcess.start(options)
        let (up, _) = try Self.scrape(engine)
        #expect(up.value("oob_database_up") == 1)
        #expect(up.value("oob_authentications_pending") == 0)

        try await cluster.stopImmediately()
        let (down, response) = try Self.scrape(engine)
        #expect(response.status == 200)
        Self.checkShape(down)
        #expect(down.value("oob_database_up") == 0)
        #expect(!down.has("oob_authentications_pending"))
        #expect(!down.has("oob_outbox_depth"))
        #expect(down.value("oob_http_requests_total", ["listener": "ops", "route": "metrics", "status": "200"]) >= 1)

        try await cluster.start()
        try await eventually(timeout: .seconds(20), interval: .milliseconds(200), "the database to be back in the scrape") {
            try Self.quickValue(engine, "oob_database_up") == 1
        }
        #expect(try await engine.stop() == 0)
        await cluster.destroy()
    }
}
