import Dispatch
import Engine
import Glibc
import HTTP
import Postgres
import Synchronization

/// The `oob-engine` command line: serve, migrate, help.
package enum Commands {
    static let usage = """
        oob-engine: the issuer's engine for Thales D1 out-of-band 3-D Secure challenges.

        Usage:
          oob-engine serve      apply schema.sql, then serve D1's API and the ops listener
          oob-engine migrate    apply schema.sql to DATABASE_URL and exit (harmless to repeat)
          oob-engine ops ...    inspect and force-expire authentications, straight against DATABASE_URL
                                (list, show, expire, expire-all; `oob-engine ops --help`)
          oob-engine --help     this text

        Environment:
          DATABASE_URL     PostgreSQL URL, e.g. postgresql://oob@127.0.0.1:5432/oob (required)
          OOB_CONFIG       path of the JSON configuration file (required by serve)
          OOB_LISTEN       API listener, host:port (default 127.0.0.1:8080; port 0 = any free port)
          OOB_OPS_LISTEN   health/metrics/ops listener (default 127.0.0.1:8081)
          OOB_LOG_LEVEL    debug | info | warning | error (default info)
          OOB_EXIT_ON_STDIN_EOF  1 = shut down when standard input closes (for supervisors and tests)

        """

    package static func main(arguments: [String], environment: [String: String]) -> Int32 {
        let command = arguments.dropFirst().first ?? "--help"
        switch command {
        case "--help", "-h", "help":
            print(usage, terminator: "")
            return 0
        case "serve":
            if arguments.dropFirst(2).contains(where: { $0 == "--help" || $0 == "-h" }) {
                print(usage, terminator: "")
                return 0
            }
            return serve(environment: environment)
        case "migrate":
            return migrate(environment: environment)
        case "ops":
            return OpsCommand.main(arguments: Array(arguments.dropFirst(2)), environment: environment)
        default:
            ProcessSupport.writeToStandardError("oob-engine: unknown command '\(command)'\n\n\(usage)")
            return 64
        }
    }

    static func fail(_ message: String, code: Int32) -> Int32 {
        ProcessSupport.writeToStandardError("oob-engine: \(message)\n")
        return code
    }

    static func migrate(environment: [String: String]) -> Int32 {
        let url: String
        do {
            url = try EngineSettings.databaseURL(from: environment)
        } catch {
            return fail("configuration error: \(error)", code: 2)
        }
        let pool = PostgresPool(configuration: PostgresConfiguration(url: url, poolSize: 1))
        defer { pool.shutdown() }
        do {
            try pool.withConnectionBlocking { try Migration.apply($0) }
        } catch {
            return fail("migration failed: \(error)", code: 1)
        }
        print("schema applied (version \(Migration.schemaVersion))")
        return 0
    }

    static func serve(environment: [String: String]) -> Int32 {
        let settings: EngineSettings
        do {
            settings = try EngineSettings.load(environment: environment)
        } catch {
            return fail("configuration error: \(error)", code: 2)
        }
        let logger = Logger(label: "oob-engine", minimumLevel: settings.logLevel)
        if !settings.file.unknownKeys.isEmpty {
            logger.warning("configuration keys not used by this version", ["keys": settings.file.unknownKeys.joined(separator: ",")])
        }
        let pool = PostgresPool(configuration: PostgresConfiguration(
            url: settings.databaseURL, poolSize: settings.file.database.poolSize,
            acquireTimeout: .milliseconds(settings.file.database.acquireTimeoutMilliseconds),
            connectTimeoutSeconds: settings.file.database.connectTimeoutSeconds,
            statementTimeoutMilliseconds: settings.file.database.statementTimeoutMilliseconds))

        // The schema and the configured authenticators, before anything is served. The database
        // may still be starting (a restart, a container coming up): retry for a while.
        let startupDeadline = MonotonicTime.microseconds() + 30_000_000
        while true {
            do {
                try pool.withConnectionBlocking { connection in
                    try Migration.apply(connection)
                    try Migration.seed(settings.file.authenticators, on: connection)
                }
                break
            } catch let error as PostgresError where error.isUnavailable && MonotonicTime.microseconds() < startupDeadline {
                logger.warning("database not reachable yet; retrying", ["error": String(describing: error)])
                usleep(500_000)
            } catch {
                pool.shutdown()
                return fail("start-up failed: \(error)", code: 1)
            }
        }

        let tokens: TokenAuthority?
        do {
            tokens = try TokenAuthority.make(from: settings.file, logger: logger.with("component", "oauth"))
        } catch {
            pool.shutdown()
            return fail("configuration error: \(error)", code: 2)
        }
        if tokens == nil { logger.warning("no signingKeys configured: every protected route will answer 401") }

        // Deadlines: the wheel fires on time, the sweeper ends what a dead instance left,
        // recovery reloads PENDING deadlines while the server already answers.
        let instance = Commands.instanceName()
        let metrics = DeadlineMetrics()
        let expirer = DeadlineExpirer(pool: pool, instance: instance, logger: logger.with("component", "deadlines"),
                                      metrics: metrics)
        let scheduler = DeadlineScheduler(tickMilliseconds: settings.file.timer.tickMilliseconds, metrics: metrics) {
            expirer.expire($0)
        }
        expirer.attach(scheduler)
        let sweeper = DeadlineSweeper(pool: pool, configuration: settings.file.timer, instance: instance,
                                      logger: logger.with("component", "sweeper"), metrics: metrics, scheduler: scheduler)
        let recovery = DeadlineRecovery(pool: pool, scheduler: scheduler, logger: logger.with("component", "recovery"))

        // Polls are answered from memory when it is certain: finals always; PENDING while the
        // listener keeps this instance in step with the database (AuthenticationCache).
        let pendingCache = settings.file.database.pendingCache
        let cache = AuthenticationCache(cachesPending: pendingCache)
        var listenerConfiguration = pool.configuration
        listenerConfiguration.applicationName = "oob-engine-listen"
        let listenerLog = ListenerLog(logger: logger.with("component", "poll-cache"))
        let listener = pendingCache
            ? PostgresNotificationListener(configuration: listenerConfiguration, channel: AuthenticationCache.channel) { event in
                cache.handle(event)
                listenerLog.record(event)
            }
            : nil
        let store = PostgresAuthenticationStore(pool: pool, cache: cache)
        let service = AuthenticationService(store: store, deadlines: scheduler, onEnded: Metrics.authenticationEnded)
        // The push adapter and its durable outbox (nil: no push; the app lists challenges itself).
        var outbox: PushOutbox?
        if let push = settings.file.push {
            let adapter: any PushAdapter
            switch push.kind {
            case .webhook:
                adapter = WebhookPushAdapter(url: HTTPURL(push.url!)!, secret: push.secret!,
                                             timeoutMilliseconds: push.timeoutMilliseconds)
            case .simulated:
                adapter = SimulatedPushAdapter(service: service, decision: CardholderDecision(rawValue: push.decision)!,
                                               afterMilliseconds: push.afterMilliseconds)
            }
            outbox = PushOutbox(pool: pool, adapter: adapter, configuration: push, deadlines: scheduler,
                                instance: instance, logger: logger.with("component", "push"), cache: cache)
        }
        let wakeOutbox = outbox.map { box in { @Sendable in box.wake() } }
        let d1 = D1Routes(service: service, issuers: settings.file.issuers,
                          pushDeliveryDeadlineSeconds: settings.file.push?.deliveryDeadlineSeconds, onCreated: wakeOutbox)
        let app = AppRoutes(service: service, issuers: settings.file.issuers)
        let issuers = settings.file.issuers
        let otpOutbox = OTPOutbox(pool: pool, configuration: settings.file.otp, logger: logger.with("component", "otp"))
        let notificationMetrics = D1NotificationMetrics()
        let d1Rest = AuthenticatorRoutes(pool: pool, issuers: issuers).routes + ConsumerRoutes(pool: pool, issuers: issuers).routes
            + OTPRoutes(pool: pool, issuers: issuers, settings: settings.file.otp).routes
            + D1NotificationRoutes(pool: pool, service: service, issuers: issuers, metrics: notificationMetrics).routes
        Metrics.prepare(issuers: settings.file.issuers.keys)
        let api = HTTPServer(
            configuration: httpConfiguration(settings.listen, settings.file.http),
            handler: APIHandler(router: Router(TokenRoutes(tokens: tokens).routes + d1.routes + app.routes + d1Rest),
                                logger: logger.with("listener", "api"), tokens: tokens),
            log: httpLog(logger))
        let ops = HTTPServer(
            configuration: httpConfiguration(settings.opsListen, settings.file.http),
            handler: APIHandler(router: Router(HealthRoutes(pool: pool, recovery: recovery, metrics: metrics).routes
                                               + OpsRoutes(pool: pool, deadlines: scheduler, cache: cache).routes
                                               + MetricsRoutes(pool: pool, deadlines: metrics, outbox: outbox?.metrics,
                                                               cache: cache).routes),
                                logger: logger.with("listener", "ops"), tokens: tokens, listener: "ops"),
            log: httpLog(logger))

        listener?.start()
        let apiPort: Int
        let opsPort: Int
        do {
            apiPort = try api.start()
            opsPort = try ops.start()
        } catch {
            api.shutdown()
            listener?.shutdown()
            pool.shutdown()
            return fail("cannot listen: \(error)", code: 1)
        }
        let apiAddress = ListenAddress(host: settings.listen.host, port: apiPort)
        let opsAddress = ListenAddress(host: settings.opsListen.host, port: opsPort)
        scheduler.start()
        recovery.start()
        sweeper.start()
        outbox?.start()
        otpOutbox.start()
        logger.info("listening", ["api": apiAddress.description, "ops": opsAddress.description,
                                  "issuers": String(settings.file.issuers.count), "instance": instance])

        if environment["OOB_EXIT_ON_STDIN_EOF"] == "1" { exitWhenStandardInputCloses() }
        waitForTerminationSignal()
        logger.info("shutting down: no new connections, finishing requests in flight")
        api.shutdown()
        ops.shutdown()
        outbox?.stop()
        otpOutbox.stop()
        sweeper.stop()
        scheduler.stop()
        listener?.shutdown()
        pool.shutdown()
        logger.info("stopped")
        return 0
    }

    /// One log line when the poll cache's listener connects or is lost, not one per retry.
    final class ListenerLog: Sendable {
        private let logger: Logger
        private let connected = Mutex<Bool?>(nil)

        init(logger: Logger) {
            self.logger = logger
        }

        func record(_ event: PostgresNotificationListener.Event) {
            let now: Bool
            switch event {
            case .connected: now = true
            case .disconnected: now = false
            case .notification, .heartbeat: return
            }
            guard connected.withLock({ state in defer { state = now }; return state != now }) else { return }
            if now {
                logger.info("listening for changes: PENDING polls are answered from memory while in step")
            } else {
                logger.warning("change listener not connected: every PENDING poll reads the database until it is back")
            }
        }
    }

    /// Names this process in the transitions log (`timer@host:pid`), so an operator can tell
    /// which instance ended what.
    static func instanceName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "host"
        return "\(host.prefix(64)):\(getpid())"
    }

    static func httpConfiguration(_ address: ListenAddress, _ http: ConfigFile.HTTP) -> HTTPServerConfiguration {
        var configuration = HTTPServerConfiguration()
        configuration.host = address.host
        configuration.port = address.port
        configuration.maxBodyBytes = http.maxBodyBytes
        configuration.maxConnections = http.maxConnections
        configuration.maxInFlightRequests = http.maxInFlightRequests
        configuration.headerReadTimeout = .seconds(http.headerReadTimeoutSeconds)
        configuration.idleTimeout = .seconds(http.idleTimeoutSeconds)
        configuration.bodyReadTimeout = .seconds(http.bodyReadTimeoutSeconds)
        return configuration
    }

    static func httpLog(_ logger: Logger) -> @Sendable (HTTPServerLogEvent) -> Void {
        { event in logger.debug("http", ["event": String(describing: event)]) }
    }

    /// For supervisors and tests: when the parent closes our standard input (or dies), shut down
    /// as on SIGTERM, so no engine outlives the process that started it.
    static func exitWhenStandardInputCloses() {
        NamedThread.start("oob-stdin-watch") {
            var byte: UInt8 = 0
            while true {
                let n = read(0, &byte, 1)
                if n == 0 || (n < 0 && errno != EINTR) { break }
            }
            kill(getpid(), SIGTERM)
        }
    }

    /// Blocks until SIGTERM or SIGINT.
    static func waitForTerminationSignal() {
        let stop = DispatchSemaphore(value: 0)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let queue = DispatchQueue(label: "oob-engine.signals")
        let sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }
        stop.wait()
        sources.forEach { $0.cancel() }
    }
}
