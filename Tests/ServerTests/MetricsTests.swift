import Engine
import Server
import Synchronization
import Testing

/// The registry and its text exposition format (Prometheus 0.0.4).
@Suite struct MetricsRegistryTests {
    func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init)
    }

    @Test func countersRenderHelpTypeAndLabelledSeries() {
        let registry = MetricsRegistry()
        registry.declare("test_requests_total", .counter, help: "Requests.", labels: ["route", "status"])
        registry.increment("test_requests_total", ["b", "200"])
        registry.increment("test_requests_total", ["a", "404"], by: 2)
        registry.increment("test_requests_total", ["b", "200"])
        #expect(lines(registry.render()) == [
            "# HELP test_requests_total Requests.",
            "# TYPE test_requests_total counter",
            #"test_requests_total{route="a",status="404"} 2"#,
            #"test_requests_total{route="b",status="200"} 2"#,
        ])
        #expect(registry.value("test_requests_total", ["b", "200"]) == 2)
    }

    @Test func gaugesAreSetNotAdded() {
        let registry = MetricsRegistry()
        registry.declare("test_level", .gauge, help: "A level.")
        registry.set("test_level", to: 5)
        registry.set("test_level", to: 3.5)
        #expect(lines(registry.render()).last == "test_level 3.5")
    }

    @Test func histogramsAreCumulativeWithInfSumAndCount() {
        let registry = MetricsRegistry()
        registry.declare("test_seconds", .histogram, help: "Durations.", labels: ["route"], buckets: [0.25, 1])
        for value in [0.125, 0.25, 0.5, 3] { registry.observe("test_seconds", ["r"], value) }
        #expect(lines(registry.render()) == [
            "# HELP test_seconds Durations.",
            "# TYPE test_seconds histogram",
            #"test_seconds_bucket{route="r",le="0.25"} 2"#,
            #"test_seconds_bucket{route="r",le="1"} 3"#,
            #"test_seconds_bucket{route="r",le="+Inf"} 4"#,
            #"test_seconds_sum{route="r"} 3.875"#,
            #"test_seconds_count{route="r"} 4"#,
        ])
    }

    @Test func labelValuesAndHelpAreEscaped() {
        let registry = MetricsRegistry()
        registry.declare("test_escaped_total", .counter, help: "Back\\slash and\nnewline.", labels: ["value"])
        registry.increment("test_escaped_total", ["a\\b\"c\nd"])
        #expect(lines(registry.render()) == [
            #"# HELP test_escaped_total Back\\slash and\nnewline."#,
            "# TYPE test_escaped_total counter",
            #"test_escaped_total{value="a\\b\"c\nd"} 1"#,
        ])
    }

    @Test func numbersUseTheFormatsSpellings() {
        #expect(MetricsRegistry.format(3) == "3")
        #expect(MetricsRegistry.format(-2) == "-2")
        #expect(MetricsRegistry.format(0.25) == "0.25")
        #expect(MetricsRegistry.format(.infinity) == "+Inf")
        #expect(MetricsRegistry.format(-.infinity) == "-Inf")
        #expect(MetricsRegistry.format(.nan) == "NaN")
        #expect(Double(MetricsRegistry.format(1e-7)) == 1e-7)
        #expect(Double(MetricsRegistry.format(1e20)) == 1e20)
    }

    @Test func namesAreChecked() {
        #expect(MetricsRegistry.isValidName("oob_http_requests_total"))
        #expect(MetricsRegistry.isValidName("a:b_c"))
        #expect(!MetricsRegistry.isValidName("9lives"))
        #expect(!MetricsRegistry.isValidName("has-dash"))
        #expect(!MetricsRegistry.isValidName(""))
    }

    @Test func unknownNamesWrongLabelCountsAndWrongKindsAreIgnored() {
        let registry = MetricsRegistry()
        registry.declare("test_total", .counter, help: "x", labels: ["a"])
        registry.increment("nothing_total")
        registry.increment("test_total", ["a", "b"])
        registry.observe("test_total", ["a"], 1)
        registry.set("test_total", ["a"], to: 4)
        #expect(lines(registry.render()) == ["# HELP test_total x", "# TYPE test_total counter"])
    }

    @Test func extraFamiliesFollowTheRegistrysOwn() {
        let registry = MetricsRegistry()
        registry.declare("test_a_total", .counter, help: "a")
        registry.increment("test_a_total")
        var summary = MetricFamily(name: "test_wait_seconds", help: "w", kind: .summary)
        summary.samples = [.init(suffix: "_sum", value: 1.5), .init(suffix: "_count", value: 3)]
        let text = registry.render(adding: [
            .labelled("test_depth", .gauge, help: "d", label: "kind", [("push", 2), ("otp", 0)]), summary,
        ])
        #expect(lines(text) == [
            "# HELP test_a_total a", "# TYPE test_a_total counter", "test_a_total 1",
            "# HELP test_depth d", "# TYPE test_depth gauge", #"test_depth{kind="push"} 2"#, #"test_depth{kind="otp"} 0"#,
            "# HELP test_wait_seconds w", "# TYPE test_wait_seconds summary", "test_wait_seconds_sum 1.5",
            "test_wait_seconds_count 3",
        ])
    }

    @Test func concurrentIncrementsAreAllCounted() async {
        let registry = MetricsRegistry()
        registry.declare("test_total", .counter, help: "x", labels: ["task"])
        registry.declare("test_seconds", .histogram, help: "y", buckets: [1])
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for _ in 0..<1000 {
                        registry.increment("test_total", [String(task % 2)])
                        registry.observe("test_seconds", [], 0.5)
                    }
                }
            }
        }
        #expect(registry.value("test_total", ["0"]) == 4000)
        #expect(registry.value("test_total", ["1"]) == 4000)
        #expect(registry.render().contains("test_seconds_count 8000\n"))
    }

    @Test func theEnginesFamiliesStartWithEveryEndingAtZero() {
        let text = Metrics.shared.render()
        #expect(text.contains("# TYPE oob_http_requests_total counter\n"))
        #expect(text.contains("# TYPE oob_http_request_duration_seconds histogram\n"))
        #expect(text.contains(#"oob_authentications_ended_total{state="TECHNICAL_ERROR",cause="push"} "#))
        #expect(text.contains(#"oob_authentications_ended_total{state="AUTHENTICATED",cause="decision"} "#))
    }

    @Test func processStatisticsComeFromProc() throws {
        let resident = try #require(ProcessStatistics.residentMemoryBytes())
        #expect(resident > 1 << 20)
        let uptime = try #require(ProcessStatistics.uptimeSeconds())
        #expect(uptime >= 0 && uptime < 24 * 3600)
    }
}

/// The service tells the Server of every authentication it ends, with the cause.
@Suite struct AuthenticationEndingHookTests {
    final class Endings: Sendable {
        let seen = Mutex<[(AuthenticationState, TransitionCause)]>([])
        var all: [String] { seen.withLock { $0.map { "\($0.0.rawValue)/\($0.1.rawValue)" } } }
    }

    func new(_ id: String, consumer: String = "alice") -> NewAuthentication {
        NewAuthentication(issuerId: "ISSUER0001", consumerId: consumer,
                          request: AuthenticateRequest(authenticationId: id, amount: "100", currencyCode: "EUR"),
                          challengeTTLSeconds: 300, actor: "d1")
    }

    @Test func decisionPollAndNoAuthenticatorAreReported() async throws {
        let store = InMemoryAuthenticationStore()
        store.enrol(issuerId: "ISSUER0001", consumerId: "alice")
        let endings = Endings()
        let service = AuthenticationService(store: store, onEnded: { status, cause in
            endings.seen.withLock { $0.append((status.state, cause)) }
        })
        _ = try await service.authenticate(new("a1"))
        _ = try await service.authenticate(new("a2"))
        #expect(endings.all.isEmpty)
        let approve = DecisionRequest(issuerId: "ISSUER0001", authenticationId: "a1", decision: .approve,
                                      appInstanceId: "phone", actor: "app")
        _ = try await service.decide(approve)
        _ = try await service.decide(approve)   // repeated: nothing new ended
        #expect(endings.all == ["AUTHENTICATED/decision"])
        _ = try await service.authenticate(new("a3", consumer: "bob"))
        #expect(endings.all == ["AUTHENTICATED/decision", "TECHNICAL_ERROR/no-authenticator"])
        store.advanceClock(milliseconds: 301_000)
        _ = try await service.poll(issuerId: "ISSUER0001", consumerId: "alice", authenticationId: "a2")
        _ = try await service.poll(issuerId: "ISSUER0001", consumerId: "alice", authenticationId: "a2")
        #expect(endings.all == ["AUTHENTICATED/decision", "TECHNICAL_ERROR/no-authenticator", "AUTHENTICATION_FAILED/poll"])
    }
}
