package import Engine
import Glibc
import HTTP
package import Postgres
import Synchronization

/// A metric's type, as its `# TYPE` line names it.
package enum MetricKind: String, Sendable {
    case counter, gauge, histogram, summary
}

/// One family ready to render: every sample line under one HELP and TYPE. The registry renders
/// its own families through this, and values read only at scrape time (database counts, pool,
/// process) are built as these directly.
package struct MetricFamily: Sendable {
    package struct Sample: Sendable {
        /// Appended to the family name: `""`, `_bucket`, `_sum`, `_count`.
        package var suffix: String
        package var labels: [(String, String)]
        package var value: Double

        package init(suffix: String = "", labels: [(String, String)] = [], value: Double) {
            self.suffix = suffix
            self.labels = labels
            self.value = value
        }
    }

    package var name: String
    package var help: String
    package var kind: MetricKind
    package var samples: [Sample]

    package init(name: String, help: String, kind: MetricKind, samples: [Sample] = []) {
        precondition(MetricsRegistry.isValidName(name), "invalid metric name \(name)")
        self.name = name
        self.help = help
        self.kind = kind
        self.samples = samples
    }

    /// A family with one unlabelled sample.
    package static func single(_ name: String, _ kind: MetricKind, help: String, _ value: Double) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: kind, samples: [Sample(value: value)])
    }

    /// A family with one sample per value of a single label.
    package static func labelled(_ name: String, _ kind: MetricKind, help: String, label: String,
                                 _ values: [(String, Double)]) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: kind,
                     samples: values.map { Sample(labels: [(label, $0.0)], value: $0.1) })
    }

    /// A histogram's lines from per-bucket (not cumulative) counts, the last one for +Inf.
    package mutating func appendHistogram(labels: [(String, String)], bounds: [Double], counts: [UInt64], sum: Double) {
        precondition(counts.count == bounds.count + 1, "one count per bound plus +Inf")
        var cumulative: UInt64 = 0
        for (index, count) in counts.enumerated() {
            cumulative += count
            let le = index < bounds.count ? MetricsRegistry.format(bounds[index]) : "+Inf"
            samples.append(Sample(suffix: "_bucket", labels: labels + [("le", le)], value: Double(cumulative)))
        }
        samples.append(Sample(suffix: "_sum", labels: labels, value: sum))
        samples.append(Sample(suffix: "_count", labels: labels, value: Double(cumulative)))
    }
}

/// A small Prometheus registry: counters, gauges and histograms keyed by name and label values,
/// rendered in the text exposition format 0.0.4. Thread-safe: one lock over the families, and
/// one per series, so a hot path can resolve its series once (`counter`, `histogram`) and then
/// record without hashing a label.
package final class MetricsRegistry: Sendable {
    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    struct Histogram: Sendable {
        var counts: [UInt64]
        var sum: Double
    }

    /// One counter or gauge series.
    package final class CounterCell: Sendable {
        private let value = Mutex<Double>(0)

        package func add(_ amount: Double) { value.withLock { $0 += amount } }

        func set(_ newValue: Double) { value.withLock { $0 = newValue } }

        var current: Double { value.withLock { $0 } }
    }

    /// One histogram series.
    package final class HistogramCell: Sendable {
        let bounds: [Double]
        private let state: Mutex<Histogram>

        init(bounds: [Double]) {
            self.bounds = bounds
            state = Mutex(Histogram(counts: Array(repeating: 0, count: bounds.count + 1), sum: 0))
        }

        package func observe(_ value: Double) {
            let bucket = bounds.firstIndex { value <= $0 } ?? bounds.count
            state.withLock { histogram in
                histogram.counts[bucket] += 1
                histogram.sum += value
            }
        }

        var snapshot: Histogram { state.withLock { $0 } }
    }

    struct Family: Sendable {
        var help: String
        var kind: MetricKind
        var labelNames: [String]
        var bounds: [Double]
        var values: [[String]: CounterCell] = [:]
        var histograms: [[String]: HistogramCell] = [:]
    }

    struct State: Sendable {
        /// In declaration order; `index` finds one by name. Mutated in place through the array,
        /// so adding a series never copies a family's others.
        var families: [Family] = []
        var names: [String] = []
        var index: [String: Int] = [:]

        /// The family's position if it exists with this kind test and label count.
        func position(_ name: String, labels: Int, _ kindTest: (MetricKind) -> Bool) -> Int? {
            guard let position = index[name], kindTest(families[position].kind),
                  families[position].labelNames.count == labels else { return nil }
            return position
        }

        /// The series, created at 0 on first use.
        mutating func counter(_ position: Int, _ labelValues: [String]) -> CounterCell {
            if let cell = families[position].values[labelValues] { return cell }
            let cell = CounterCell()
            families[position].values[labelValues] = cell
            return cell
        }

        mutating func histogram(_ position: Int, _ labelValues: [String]) -> HistogramCell {
            if let cell = families[position].histograms[labelValues] { return cell }
            let cell = HistogramCell(bounds: families[position].bounds)
            families[position].histograms[labelValues] = cell
            return cell
        }
    }

    private let state = Mutex(State())

    package init() {}

    /// Declares a family once; label values given later follow `labels`' order. `buckets` are
    /// a histogram's upper bounds, ascending (+Inf is implied).
    package func declare(_ name: String, _ kind: MetricKind, help: String, labels: [String] = [], buckets: [Double] = []) {
        precondition(Self.isValidName(name), "invalid metric name \(name)")
        precondition(kind != .summary, "summaries are built at scrape time (MetricFamily)")
        precondition(kind != .histogram || !buckets.isEmpty, "a histogram needs buckets")
        precondition(zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 }, "buckets must ascend")
        precondition(!labels.contains("le") && labels.allSatisfy(Self.isValidLabelName), "invalid label names")
        state.withLock { state in
            guard state.index[name] == nil else { return }
            state.index[name] = state.families.count
            state.names.append(name)
            state.families.append(Family(help: help, kind: kind, labelNames: labels, bounds: buckets))
        }
    }

    /// A counter's (or gauge's) series, to record into without looking it up again; nil for an
    /// unknown name or a wrong label count. The series shows (at 0) from this call on.
    package func counter(_ name: String, _ labelValues: [String]) -> CounterCell? {
        state.withLock { state in
            guard let position = state.position(name, labels: labelValues.count, { $0 != .histogram }) else { return nil }
            return state.counter(position, labelValues)
        }
    }

    /// A histogram's series, as `counter` is a counter's.
    package func histogram(_ name: String, _ labelValues: [String]) -> HistogramCell? {
        state.withLock { state in
            guard let position = state.position(name, labels: labelValues.count, { $0 == .histogram }) else { return nil }
            return state.histogram(position, labelValues)
        }
    }

    /// Adds to a counter (or a gauge). Unknown names and wrong label counts are ignored: a
    /// metric must never take a request down.
    package func increment(_ name: String, _ labelValues: [String] = [], by amount: Double = 1) {
        counter(name, labelValues)?.add(amount)
    }

    package func set(_ name: String, _ labelValues: [String] = [], to value: Double) {
        let cell: CounterCell? = state.withLock { state in
            guard let position = state.position(name, labels: labelValues.count, { $0 == .gauge }) else { return nil }
            return state.counter(position, labelValues)
        }
        cell?.set(value)
    }

    package func observe(_ name: String, _ labelValues: [String] = [], _ value: Double) {
        histogram(name, labelValues)?.observe(value)
    }

    /// The current value of one series (tests, and anything that wants to read a counter back).
    package func value(_ name: String, _ labelValues: [String] = []) -> Double? {
        state.withLock { state in state.index[name].flatMap { state.families[$0].values[labelValues] } }?.current
    }

    /// Every family, in declaration order; series sorted by their label values so scrapes diff well.
    package var families: [MetricFamily] {
        let state = self.state.withLock { $0 }
        return zip(state.names, state.families).map { name, family in
            var out = MetricFamily(name: name, help: family.help, kind: family.kind)
            if family.kind == .histogram {
                for (values, cell) in family.histograms.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                    let histogram = cell.snapshot
                    out.appendHistogram(labels: Array(zip(family.labelNames, values)), bounds: family.bounds,
                                        counts: histogram.counts, sum: histogram.sum)
                }
            } else {
                for (values, cell) in family.values.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                    out.samples.append(MetricFamily.Sample(labels: Array(zip(family.labelNames, values)), value: cell.current))
                }
            }
            return out
        }
    }

    /// The registry's families followed by `extra`, in the text exposition format.
    package func render(adding extra: [MetricFamily] = []) -> String {
        Self.render(families + extra)
    }

    package static func render(_ families: [MetricFamily]) -> String {
        var out = ""
        out.reserveCapacity(families.count * 256)
        for family in families {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += family.name
                out += sample.suffix
                if !sample.labels.isEmpty {
                    out += "{"
                    for (index, (name, value)) in sample.labels.enumerated() {
                        if index > 0 { out += "," }
                        out += name
                        out += "=\""
                        out += escapeLabelValue(value)
                        out += "\""
                    }
                    out += "}"
                }
                out += " "
                out += format(sample.value)
                out += "\n"
            }
        }
        return out
    }

    // MARK: Text format details

    /// Integers without a fraction, the rest in Swift's shortest round-tripping form, and the
    /// format's spellings of the special values.
    package static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Label values escape backslash, double quote and line feed.
    package static func escapeLabelValue(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return value }
        var out = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// HELP text escapes backslash and line feed.
    package static func escapeHelp(_ text: String) -> String {
        text.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }

    package static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(0x30...0x39).contains(first) else { return false }
        return name.utf8.allSatisfy { $0 == 0x5F || $0 == 0x3A || (0x30...0x39).contains($0)
            || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
    }

    static func isValidLabelName(_ name: String) -> Bool {
        isValidName(name) && !name.contains(":") && !name.hasPrefix("__")
    }
}

/// The engine's metrics: one process-wide registry and what the code paths record in it.
/// Labels carry only bounded sets (listener, route names, status codes, configured issuers,
/// states, causes), never a raw path or an identifier.
package enum Metrics {
    /// Finer around 10 ms, the latency the API is expected to keep at its p99, so that a scrape
    /// tells on which side of it a tail lies.
    package static let requestDurationBuckets: [Double] =
        [0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Every final state a cause can produce: these series start at 0, so `rate()` sees the
    /// first increment.
    static let endings: [(AuthenticationState, TransitionCause)] = [
        (.authenticated, .decision), (.authenticationFailed, .decision), (.authenticationFailed, .timer),
        (.authenticationFailed, .poll), (.authenticationFailed, .sweeper), (.authenticationFailed, .operator),
        (.authenticationFailed, .d1Notification), (.technicalError, .push), (.technicalError, .noAuthenticator),
    ]

    package static let shared: MetricsRegistry = {
        let registry = MetricsRegistry()
        registry.declare(requestsTotal, .counter, help: "HTTP requests answered, by listener, route and status.",
                         labels: ["listener", "route", "status"])
        registry.declare(requestDuration, .histogram,
                         help: "Time from a request's arrival to its answer, by listener and route.",
                         labels: ["listener", "route"], buckets: requestDurationBuckets)
        registry.declare("oob_authentications_created_total", .counter,
                         help: "Authentications created by D1's Authenticate, by issuer.", labels: ["issuer"])
        registry.declare("oob_authentications_ended_total", .counter,
                         help: "Authentications that reached a final state, by that state and the cause, as seen by this instance.",
                         labels: ["state", "cause"])
        for (state, cause) in endings {
            registry.increment("oob_authentications_ended_total", [state.rawValue, cause.rawValue], by: 0)
        }
        registry.declare("oob_d1_3ds_notifications_total", .counter,
                         help: "D1's 3-D Secure card notifications, by outcome (disagreement: D1's final status and the engine's differ).",
                         labels: ["outcome"])
        for outcome in ["recorded", "duplicate", "ended-pending", "disagreement", "unmatched"] {
            registry.increment("oob_d1_3ds_notifications_total", [outcome], by: 0)
        }
        declareBatchFamilies(in: registry)
        return registry
    }()

    /// The group commit's families (`BatchMetrics` records into them).
    package static func declareBatchFamilies(in registry: MetricsRegistry) {
        registry.declare(batchRows, .histogram,
                         help: "Requests carried by each group-committed statement, by kind (create, decision, find).",
                         labels: ["kind"], buckets: batchRowsBuckets)
        registry.declare(batchSeconds, .histogram,
                         help: "Time from sending a group-committed statement to its commit (its rows, for a find), by kind.",
                         labels: ["kind"], buckets: databaseDurationBuckets)
        registry.declare(batchQueueSeconds, .histogram,
                         help: "Time a request waited for its group-committed statement to be sent, by kind.",
                         labels: ["kind"], buckets: databaseDurationBuckets)
    }

    static let batchRowsBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    /// Finer than the request buckets below 50 ms, where a commit's time on a healthy disk lies.
    package static let databaseDurationBuckets: [Double] =
        [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    static let batchRows = "oob_db_batch_rows"
    static let batchSeconds = "oob_db_batch_seconds"
    static let batchQueueSeconds = "oob_db_batch_queue_seconds"

    static let requestsTotal = "oob_http_requests_total"
    static let requestDuration = "oob_http_request_duration_seconds"

    /// `issuerId` is a configured issuer (the route checked it), so the label set stays bounded.
    package static func authenticationCreated(issuerId: String) {
        shared.increment("oob_authentications_created_total", [issuerId])
    }

    /// Starts each configured issuer's series at 0.
    package static func prepare(issuers: some Sequence<String>) {
        for issuerId in issuers { shared.increment("oob_authentications_created_total", [issuerId], by: 0) }
    }

    package static func authenticationEnded(_ status: AuthenticationStatus, cause: TransitionCause) {
        authenticationsEnded(status.state, cause: cause, count: 1)
    }

    package static func authenticationsEnded(_ state: AuthenticationState, cause: TransitionCause, count: Int) {
        guard count > 0 else { return }
        shared.increment("oob_authentications_ended_total", [state.rawValue, cause.rawValue], by: Double(count))
    }
}

/// One listener's request metrics (`oob_http_requests_total`, `oob_http_request_duration_seconds`),
/// kept per route: answering a request records into series resolved on the route's first
/// answer with that status, without hashing a label (it runs for every request). A series
/// appears in the registry once its route has answered.
package final class RequestMetrics: Sendable {
    private final class RouteSeries: Sendable {
        struct Cells: Sendable {
            var duration: MetricsRegistry.HistogramCell?
            /// One per status answered so far: a handful, so a linear search.
            var byStatus: [(status: Int, count: MetricsRegistry.CounterCell)] = []
        }

        let registry: MetricsRegistry
        let listener: String
        let route: String
        private let cells = Mutex(Cells())

        init(registry: MetricsRegistry, listener: String, route: String) {
            self.registry = registry
            self.listener = listener
            self.route = route
        }

        func record(status: Int, seconds: Double) {
            let (count, duration) = cells.withLock { cells -> (MetricsRegistry.CounterCell?, MetricsRegistry.HistogramCell?) in
                if cells.duration == nil {
                    cells.duration = registry.histogram(Metrics.requestDuration, [listener, route])
                }
                for known in cells.byStatus where known.status == status { return (known.count, cells.duration) }
                let count = registry.counter(Metrics.requestsTotal, [listener, route, String(status)])
                if let count { cells.byStatus.append((status: status, count: count)) }
                return (count, cells.duration)
            }
            count?.add(1)
            duration?.observe(seconds)
        }
    }

    private let routes: [RouteSeries]
    private let unmatched: RouteSeries

    /// `routeNames` in the router's order (a route's `position`).
    package init(registry: MetricsRegistry = Metrics.shared, listener: String, routeNames: [String]) {
        routes = routeNames.map { RouteSeries(registry: registry, listener: listener, route: $0) }
        unmatched = RouteSeries(registry: registry, listener: listener, route: "unmatched")
    }

    /// One answered request; `routePosition` nil when no route matched.
    package func record(routePosition: Int?, status: Int, seconds: Double) {
        let series = routePosition.flatMap { routes.indices.contains($0) ? routes[$0] : nil } ?? unmatched
        series.record(status: status, seconds: seconds)
    }
}

/// One kind of group commit's series (`oob_db_batch_rows`, `oob_db_batch_seconds`,
/// `oob_db_batch_queue_seconds`), resolved once: they show from the `Batcher`'s creation on, at 0.
package struct BatchMetrics: Sendable {
    private let rows: MetricsRegistry.HistogramCell?
    private let seconds: MetricsRegistry.HistogramCell?
    private let queueSeconds: MetricsRegistry.HistogramCell?

    package init(kind: String, registry: MetricsRegistry = Metrics.shared) {
        rows = registry.histogram(Metrics.batchRows, [kind])
        seconds = registry.histogram(Metrics.batchSeconds, [kind])
        queueSeconds = registry.histogram(Metrics.batchQueueSeconds, [kind])
    }

    /// One statement: sent at `sentAt`, committed at `committedAt` (`MonotonicTime`
    /// microseconds), carrying requests submitted at `submittedAt`.
    package func record(submittedAt: some Collection<Int64>, sentAt: Int64, committedAt: Int64) {
        rows?.observe(Double(submittedAt.count))
        seconds?.observe(Double(committedAt - sentAt) / 1e6)
        guard let queueSeconds else { return }
        for submitted in submittedAt { queueSeconds.observe(Double(sentAt - min(submitted, sentAt)) / 1e6) }
    }
}

/// `GET /metrics` on the ops listener, without authentication: the registry plus what is read
/// at scrape time (database counts, the pool, deadlines, the outbox, the process).
package struct MetricsRoutes: Sendable {
    package var pool: PostgresPool
    package var deadlines: DeadlineMetrics?
    package var outbox: OutboxMetrics?
    package var cache: AuthenticationCache?
    package var registry: MetricsRegistry

    package init(pool: PostgresPool, deadlines: DeadlineMetrics? = nil, outbox: OutboxMetrics? = nil,
                 cache: AuthenticationCache? = nil, registry: MetricsRegistry = Metrics.shared) {
        self.pool = pool
        self.deadlines = deadlines
        self.outbox = outbox
        self.cache = cache
        self.registry = registry
    }

    package var routes: [Route] {
        [
            Route("GET", "/metrics", name: "metrics") { context in
                await self.scrape(context)
            },
        ]
    }

    /// Both counts use partial indexes (PENDING deadlines, pending outbox items); the short
    /// statement timeout keeps a slow database from holding a scrape (and a pool connection).
    static let databaseCounts = PostgresStatement("metrics_counts", """
        select 'pending' as what, count(*) as n from authentications where state = 'PENDING'
        union all
        select 'outbox:' || kind, count(*) from outbox where state = 'pending' group by kind
        """)

    static let outboxKinds = ["push", "otp"]

    func scrape(_ context: RouteContext) async -> HTTPResponse {
        // The pool as the scrape found it, before its own query takes a connection.
        var families = Self.poolFamilies(pool)
        // The database may be down: everything else is still worth reporting.
        do {
            let rows = try await pool.withConnection { connection in
                try connection.transaction { connection in
                    _ = try connection.query("set local statement_timeout = 2000")
                    return try connection.execute(Self.databaseCounts)
                }
            }
            var pending = 0
            var outboxDepth = Dictionary(uniqueKeysWithValues: Self.outboxKinds.map { ($0, 0) })
            for row in 0..<rows.count {
                guard let what = rows.string(row, "what"), let count = rows.int(row, "n") else { continue }
                if what == "pending" { pending = count } else if what.hasPrefix("outbox:") { outboxDepth[String(what.dropFirst(7))] = count }
            }
            families.append(.single("oob_database_up", .gauge, help: "1 when this scrape's database queries succeeded, else 0.", 1))
            families.append(.single("oob_authentications_pending", .gauge,
                                    help: "PENDING authentications in the database (all instances).", Double(pending)))
            families.append(.labelled("oob_outbox_depth", .gauge, help: "Outbox items waiting for delivery, by kind (all instances).",
                                      label: "kind", outboxDepth.sorted { $0.key < $1.key }.map { ($0.key, Double($0.value)) }))
        } catch {
            context.logger.warning("metrics: database counts unavailable", ["error": String(describing: error)])
            families.append(.single("oob_database_up", .gauge, help: "1 when this scrape's database queries succeeded, else 0.", 0))
        }
        if let deadlines { families += Self.deadlineFamilies(deadlines.snapshot) }
        if let outbox { families += Self.outboxFamilies(outbox.snapshot) }
        if let cache { families += Self.cacheFamilies(cache.statistics) }
        families += Self.processFamilies()

        var headers = HTTPHeaders()
        headers.add("Content-Type", MetricsRegistry.contentType)
        headers.add("Cache-Control", "no-store")
        return HTTPResponse(status: 200, headers: headers, body: Array(registry.render(adding: families).utf8))
    }

    static func poolFamilies(_ pool: PostgresPool) -> [MetricFamily] {
        let statistics = pool.statistics
        var wait = MetricFamily(name: "oob_db_pool_acquire_wait_seconds", help: "Time requests waited for a free database connection.",
                                kind: .summary)
        wait.samples = [.init(suffix: "_sum", value: statistics.acquireWaitSeconds),
                        .init(suffix: "_count", value: Double(statistics.acquired))]
        return [
            .single("oob_db_pool_size", .gauge, help: "Configured database connections at most.", Double(pool.configuration.poolSize)),
            .single("oob_db_pool_connections_open", .gauge, help: "Database connections open.", Double(statistics.open)),
            .single("oob_db_pool_in_use", .gauge, help: "Database connections running a request.", Double(statistics.busy)),
            .single("oob_db_pool_waiting", .gauge, help: "Requests queued for a free database connection.", Double(statistics.waiting)),
            wait,
            .single("oob_db_pool_acquire_timeouts_total", .counter,
                    help: "Requests that gave up waiting for a database connection.", Double(statistics.acquireTimeouts)),
        ]
    }

    static func deadlineFamilies(_ snapshot: DeadlineMetrics.Snapshot) -> [MetricFamily] {
        var lateness = MetricFamily(name: "oob_timer_lateness_seconds", help: "How long after its deadline the timer wheel ended an authentication.",
                                    kind: .histogram)
        lateness.appendHistogram(labels: [], bounds: DeadlineMetrics.latenessBuckets.map { Double($0) / 1000 },
                                 counts: snapshot.latenessCounts.map { UInt64($0) },
                                 sum: Double(snapshot.latenessSumMilliseconds) / 1000)
        return [
            .single("oob_timers_pending", .gauge, help: "Deadlines waiting on this instance's timer wheel.", Double(snapshot.pending)),
            .single("oob_timers_fired_total", .counter, help: "Authentications this instance's timer wheel ended at their deadline.",
                    Double(snapshot.fired)),
            lateness,
            .single("oob_sweeper_ended_total", .counter,
                    help: "Authentications this instance's sweeper ended (left past their deadline).", Double(snapshot.sweptEnded)),
        ]
    }

    static func outboxFamilies(_ snapshot: OutboxMetrics.Snapshot) -> [MetricFamily] {
        [.labelled("oob_push_deliveries_total", .counter,
                   help: "Push delivery attempts by outcome: delivered, retried, failed (for good), dropped (the challenge had ended).",
                   label: "outcome", [("delivered", Double(snapshot.delivered)), ("dropped", Double(snapshot.dropped)),
                                      ("failed", Double(snapshot.failed)), ("retried", Double(snapshot.retried))])]
    }

    static func cacheFamilies(_ statistics: AuthenticationCache.Statistics) -> [MetricFamily] {
        [
            .labelled("oob_poll_cache_hits_total", .counter,
                      help: "Polls answered from this instance's memory, by the state answered (final, or PENDING while in step with the database).",
                      label: "state", [("final", Double(statistics.finalHits)), ("pending", Double(statistics.pendingHits))]),
            .single("oob_poll_cache_records", .gauge, help: "Authentications held in this instance's poll cache.",
                    Double(statistics.records)),
            .single("oob_poll_cache_invalidations_total", .counter,
                    help: "Changes of state announced to this instance (each drops a cached PENDING).", Double(statistics.invalidations)),
            .single("oob_poll_cache_listener_connected", .gauge,
                    help: "1 while the LISTEN connection that keeps cached PENDING answers in step is up, else 0.",
                    statistics.listening ? 1 : 0),
        ]
    }

    static func processFamilies() -> [MetricFamily] {
        var families: [MetricFamily] = []
        if let uptime = ProcessStatistics.uptimeSeconds() {
            families.append(.single("oob_process_uptime_seconds", .gauge, help: "Seconds since this process started.",
                                    (uptime * 100).rounded() / 100))
        }
        if let resident = ProcessStatistics.residentMemoryBytes() {
            families.append(.single("oob_process_resident_memory_bytes", .gauge, help: "Resident memory of this process.", Double(resident)))
        }
        return families
    }
}

/// What Linux's /proc tells about this process.
package enum ProcessStatistics {
    /// /proc/self/statm's second field (resident pages) times the page size.
    package static func residentMemoryBytes() -> Int? {
        guard let text = read("/proc/self/statm") else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The system's uptime (/proc/uptime) less the process's start (field 22 of /proc/self/stat,
    /// in clock ticks since boot): right even if nothing recorded the start.
    package static func uptimeSeconds() -> Double? {
        guard let stat = read("/proc/self/stat"), let uptime = read("/proc/uptime"),
              let systemUptime = uptime.split(separator: " ").first.flatMap({ Double($0) }),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3 (state).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let startTicks = Double(fields[19]) else { return nil }
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard ticksPerSecond > 0 else { return nil }
        return max(0, systemUptime - startTicks / ticksPerSecond)
    }

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<16 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[..<n]
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self).trimmingNewline()
    }
}

private extension String {
    func trimmingNewline() -> String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
