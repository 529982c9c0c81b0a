// oob-bench: the engine's micro- and database benchmarks, run by scripts/bench in an optimised
// build. Prints one line per benchmark and writes them all as JSON (bench/results.json).
// Figures are measured here, never asserted in tests.
import Crypto
import Engine
import Foundation
import HTTP
import JSON
import Postgres
import Server

func nanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Resident set size in bytes, from /proc/self/statm.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

struct Result {
    var name: String
    var value: Double
    var unit: String
    var target: String?
    var note: String?
}

nonisolated(unsafe) var results: [Result] = []

func record(_ name: String, _ value: Double, _ unit: String, target: String? = nil, note: String? = nil) {
    results.append(Result(name: name, value: value, unit: unit, target: target, note: note))
    let rounded = value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
    print("\(name.padding(toLength: 44, withPad: " ", startingAt: 0)) \(rounded) \(unit)"
          + (target.map { "   (target \($0))" } ?? "") + (note.map { "   \($0)" } ?? ""))
}

/// Best of `rounds` runs of `body` (after one warm-up run), which performs `operations`
/// operations: ns per operation. Best-of filters out the other tenants of a shared machine.
func measure(rounds: Int = 7, operations: Int, _ body: () -> Void) -> Double {
    body()
    var best = Double.infinity
    for _ in 0..<rounds {
        let start = nanoseconds()
        body()
        best = min(best, Double(nanoseconds() - start) / Double(operations))
    }
    return best
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

// MARK: - JWT

func benchJWT() throws {
    let secret = SecureRandom.bytes(32)
    let keys = try JWTKeySet(keys: [JWTKey(kid: "k1", algorithm: .hs256, material: .hmac(secret))], signingKid: "k1")
    let now = Int64(Date().timeIntervalSince1970)
    let claims = JWTClaims(iss: "oob-engine", sub: "d1", aud: "oob-engine", scope: ["d1"], issuers: ["ISSUER0001"],
                           iat: now, nbf: now, exp: now + 900, jti: Hex.encode(SecureRandom.bytes(16)))
    let token = try keys.sign(claims)
    let count = 100_000
    let verify = measure(operations: count) {
        for _ in 0..<count { blackHole(try? keys.verify(token, now: now, issuer: "oob-engine", audience: "oob-engine")) }
    }
    record("jwt.hs256.verify", verify / 1000, "µs/op", target: "< 5 µs")
    if only.contains("jwt-verify-only") { return }
    let sign = measure(operations: count) {
        for _ in 0..<count { blackHole(try? keys.sign(claims)) }
    }
    record("jwt.hs256.sign", sign / 1000, "µs/op")

    let ecKey = ECP256PrivateKey.generate()
    let ecKeys = try JWTKeySet(keys: [JWTKey(kid: "e1", algorithm: .es256, material: .ecPrivate(ecKey))], signingKid: "e1")
    let ecToken = try ecKeys.sign(claims)
    let ecCount = 5_000
    let ecVerify = measure(rounds: 3, operations: ecCount) {
        for _ in 0..<ecCount { blackHole(try? ecKeys.verify(ecToken, now: now, issuer: "oob-engine", audience: "oob-engine")) }
    }
    record("jwt.es256.verify", ecVerify / 1000, "µs/op")
}

// MARK: - Timer wheel

func benchTimerWheel() {
    let count = 1_000_000
    var generator = SystemRandomNumberGenerator()

    /// ns per schedule and per cancel of `ids` at `deadlines`, best of 5, and the memory figure.
    func scheduleAndCancel(_ ids: [UInt64], _ deadlines: [Int64]) -> (Double, Double, Double) {
        var schedule = Double.infinity
        var cancel = Double.infinity
        var bytesPerTimer = 0.0
        // One wheel for all rounds: after the first, its storage has grown to size, as in a
        // running engine; best of 5 is that steady state.
        var wheel = TimerWheel()
        for _ in 0..<5 {
            var start = nanoseconds()
            for index in 0..<ids.count { wheel.schedule(id: ids[index], at: deadlines[index]) }
            schedule = min(schedule, Double(nanoseconds() - start) / Double(ids.count))
            bytesPerTimer = wheel.bytesPerTimer
            start = nanoseconds()
            for index in 0..<ids.count { wheel.cancel(id: ids[index]) }
            cancel = min(cancel, Double(nanoseconds() - start) / Double(ids.count))
            precondition(wheel.isEmpty)
        }
        return (schedule, cancel, bytesPerTimer)
    }

    // As the engine uses it: ids are the database's sequential bigints, deadlines are creation
    // time + the challenge TTL (300 s = 6,000 ticks of 50 ms), 1,000 creations per tick.
    let sequentialIds = (0..<count).map { UInt64(1_000_000_000 + $0) }
    let ttlDeadlines = (0..<count).map { Int64(6_000 + $0 / 1_000) }
    let (schedule, cancel, bytesPerTimer) = scheduleAndCancel(sequentialIds, ttlDeadlines)
    record("timerwheel.schedule (1M timers)", schedule, "ns/op", target: "≤ 60 ns", note: "sequential ids, deadline = now + TTL")
    record("timerwheel.cancel (1M timers)", cancel, "ns/op", target: "≤ 30 ns", note: "sequential ids")
    record("timerwheel.memory per pending timer", bytesPerTimer, "bytes", target: "< 96 bytes", note: "slab + id index + slots, capacity included")

    // The worst case for caches: scattered ids and uniformly random deadlines.
    let scatteredIds = (0..<count).map { UInt64($0) &* 2_654_435_761 &+ (generator.next() & 0xFF) << 40 }
    let randomDeadlines = (0..<count).map { _ in 1 + Int64(generator.next() % 6_000) }
    let (scatteredSchedule, scatteredCancel, _) = scheduleAndCancel(scatteredIds, randomDeadlines)
    record("timerwheel.schedule, scattered ids", scatteredSchedule, "ns/op", note: "random ids and deadlines: cache misses")
    record("timerwheel.cancel, scattered ids", scatteredCancel, "ns/op")
    let ids = scatteredIds
    let deadlines = randomDeadlines

    // Index cost for comparison: a Dictionary keyed by UUID.
    var dictionary: [UUID: Int64] = [:]
    let uuids = (0..<count).map { _ in UUID() }
    let before = residentBytes()
    let dictionaryStart = nanoseconds()
    for (index, uuid) in uuids.enumerated() { dictionary[uuid] = Int64(index) }
    let dictionaryInsert = Double(nanoseconds() - dictionaryStart) / Double(count)
    let dictionaryBytes = Double(residentBytes() - before) / Double(count)
    record("comparison: Dictionary<UUID, Int64> insert", dictionaryInsert, "ns/op", note: String(format: "≈ %.0f bytes/entry (RSS)", dictionaryBytes))
    blackHole(dictionary)

    // advance() tick by tick with 1,000,000 pending spread over 6,000 ticks.
    var wheel = TimerWheel(expectedCount: count)
    for index in 0..<count { wheel.schedule(id: ids[index], at: deadlines[index] + 10_000) }
    let ticks = 2_000
    // Timed once, directly: a wheel cannot be advanced over the same ticks twice.
    var start = nanoseconds()
    for tick in 1...ticks { blackHole(wheel.advance(to: Int64(tick))) }
    let advance = Double(nanoseconds() - start) / Double(ticks)
    record("timerwheel.advance one tick (1M pending)", advance / 1000, "µs/tick", note: "nothing due; one slot visited")

    // Expiry catch-up: everything due at once (a backlog after a stall).
    start = nanoseconds()
    let fired = wheel.advance(to: 1_000_000).count
    let catchUp = Double(nanoseconds() - start) / Double(count)
    precondition(fired == count)
    record("timerwheel.expiry catch-up", 1e9 / catchUp, "expired/s", target: "≥ 30,000/s")
}

// MARK: - HTTP parsing and JSON decoding

let authenticateBody = Array("""
    {"authenticationId":"acs-0001-abcdef","operation":"3DS_CHALLENGE_OOB_ISSUER",\
    "details":{"cardId":"card-1","panSuffix":"1234","acsTransactionId":"acs-0001-abcdef",\
    "purchase":{"merchantName":"Books & Co","amount":"78999","currencyCode":"EUR"}}}
    """.utf8)

func benchHTTPParsing() {
    let head = "POST /banking/d1/v1/issuers/ISSUER0001/consumers/demo-consumer/authentication HTTP/1.1\r\n"
        + "Host: 127.0.0.1:8080\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.e30.c2ln\r\n"
        + "Content-Type: application/json\r\nx-correlation-id: demo-1\r\nContent-Length: \(authenticateBody.count)\r\n\r\n"
    let bytes = Array(head.utf8) + authenticateBody
    let count = 200_000
    let perRequest = measure(operations: count) {
        var parser = HTTPRequestParser()
        for _ in 0..<count {
            parser.append(bytes)
            guard case .request(let request, _) = parser.next() else { fatalError("parse failed") }
            blackHole(request)
        }
    }
    record("http.parse authenticate request (\(bytes.count) B)", perRequest, "ns/op")
}

func benchJSONDecoding() throws {
    let count = 200_000
    let perBody = measure(operations: count) {
        for _ in 0..<count { blackHole(try? AuthenticateRequest.decode(authenticateBody)) }
    }
    _ = try AuthenticateRequest.decode(authenticateBody)
    record("json.decode Authenticate body (\(authenticateBody.count) B)", perBody, "ns/op")
}

// MARK: - Database

/// Removes the benchmark issuer's rows, with what refers to them (an earlier load run leaves
/// transitions and outbox items); the append-only and no-delete triggers are off meanwhile.
func deleteBenchAuthentications(_ connection: PostgresConnection) throws {
    _ = try connection.query("alter table authentications disable trigger user")
    _ = try connection.query("alter table transitions disable trigger user")
    defer {
        _ = try? connection.query("alter table authentications enable trigger user")
        _ = try? connection.query("alter table transitions enable trigger user")
    }
    let mine = "(select id from authentications where issuer_id = 'BENCH00001')"
    _ = try connection.query("delete from outbox where authentication_id in \(mine)")
    _ = try connection.query("delete from transitions where authentication_id in \(mine)")
    _ = try connection.query("delete from authentications where issuer_id = 'BENCH00001'")
}

/// Start-up recovery of 1,000,000 PENDING authentications through the engine's own code.
func benchRecovery(url: String) throws {
    let pool = PostgresPool(configuration: PostgresConfiguration(url: url, poolSize: 2, statementTimeoutMilliseconds: 600_000))
    defer { pool.shutdown() }
    let count = Int(ProcessInfo.processInfo.environment["OOB_BENCH_RECOVERY_ROWS"] ?? "") ?? 1_000_000
    try pool.withConnectionBlocking { connection in
        try Migration.apply(connection)
        try deleteBenchAuthentications(connection)
        _ = try connection.query("""
            insert into authentications (issuer_id, authentication_id, consumer_id, state, deadline)
            select 'BENCH00001', 'bench-' || g, 'bench-consumer', 'PENDING', now() + interval '1 hour' + g * interval '1 millisecond'
            from generate_series(1, $1::int) g
            """, [String(count)])
        // A settled table, as after a restart: no autovacuum or checkpoint racing the read.
        _ = try connection.query("vacuum analyze authentications")
        _ = try connection.query("checkpoint")
    }
    let metrics = DeadlineMetrics()
    let scheduler = DeadlineScheduler(tickMilliseconds: 50, metrics: metrics) { _ in }
    let logger = Logger(label: "bench", minimumLevel: .warning)
    let recovery = DeadlineRecovery(pool: pool, scheduler: scheduler, logger: logger)
    let start = nanoseconds()
    recovery.run()
    let seconds = Double(nanoseconds() - start) / 1e9
    precondition(scheduler.pendingCount >= count, "recovered \(scheduler.pendingCount) of \(count)")
    record("recovery of \(count) PENDING", seconds, "s", target: "≤ 1 s")
    // scripts/bench gives recovery a database of its own and drops it afterwards.
    guard ProcessInfo.processInfo.environment["OOB_BENCH_THROWAWAY_DATABASE"] != "1" else { return }
    try pool.withConnectionBlocking { connection in
        try deleteBenchAuthentications(connection)
    }
}

// MARK: - Main

let arguments = CommandLine.arguments.dropFirst()

// `oob-bench sql`: the engine's own statements, for scripts/bench's pgbench reference, so the
// reference runs exactly the SQL the engine runs.
if arguments.first == "sql" {
    let statements = JSONValue.object(JSONObject([
        ("authenticate", .string(PostgresAuthenticationStore.insert.sql)),
        ("poll", .string(PostgresAuthenticationStore.select.sql)),
        ("decision", .string(BatchedStatements.decide.sql)),
    ]))
    print(statements.serializedString())
    exit(0)
}
let only = Set(arguments.filter { !$0.hasPrefix("--") })
func wanted(_ name: String) -> Bool { only.isEmpty || only.contains(name) }

do {
    if wanted("jwt") || wanted("jwt-verify-only") { try benchJWT() }
    if wanted("timer") { benchTimerWheel() }
    if wanted("http") { benchHTTPParsing() }
    if wanted("json") { try benchJSONDecoding() }
    if wanted("recovery") {
        if let url = ProcessInfo.processInfo.environment["DATABASE_URL"] {
            try benchRecovery(url: url)
        } else {
            print("recovery: skipped (DATABASE_URL not set)")
        }
    }
} catch {
    FileHandle.standardError.write(Data("oob-bench: \(error)\n".utf8))
    exit(1)
}

if let output = arguments.first(where: { $0.hasPrefix("--json=") })?.dropFirst("--json=".count) {
    let items: [JSONValue] = results.map { result in
        var members: [(String, JSONValue)] = [("name", .string(result.name)),
                                              ("value", JSONNumber(result.value).map(JSONValue.number) ?? .null),
                                              ("unit", .string(result.unit))]
        if let target = result.target { members.append(("target", .string(target))) }
        if let note = result.note { members.append(("note", .string(note))) }
        return .object(JSONObject(members))
    }
    let document = JSONValue.object(JSONObject([("benchmarks", .array(items))]))
    _ = FileManager.default.createFile(atPath: String(output), contents: Data(document.serialized()))
}
