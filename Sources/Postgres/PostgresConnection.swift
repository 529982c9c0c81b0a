import CLibPQ
import Glibc

/// A named statement each connection prepares once (lazily, on first use) and then executes by
/// name, so the server parses and plans it once per connection. Parameters are text; the server
/// infers their types from the SQL (add casts like `$1::int` where it cannot).
package struct PostgresStatement: Sendable, Hashable {
    /// How PostgreSQL plans the statement on each session (its `plan_cache_mode` while the
    /// statement runs).
    package enum Planning: Sendable, Hashable {
        /// PostgreSQL's default (`auto`): a plan for each execution's parameter values, until a
        /// generic plan looks no dearer. Right where the best plan depends on the values, e.g.
        /// optional filters written as `($1 is null or column = $1)`.
        case automatic
        /// Planned once per session, for any values (`force_generic_plan`). For statements run
        /// on every request whose plan does not depend on the values: a multi-row statement
        /// over `unnest($n)` arrays otherwise stays on per-execution plans, because the planner
        /// estimates 10 rows for an array it cannot see and fewer for one it can, and planning
        /// the batched decision cost 0.65-1.0 ms per execution against 0.02 ms for a generic one.
        case generic
    }

    package let name: String
    package let sql: String
    package let planning: Planning

    package init(_ name: String, _ sql: String, planning: Planning = .automatic) {
        self.name = name
        self.sql = sql
        self.planning = planning
    }
}

/// One libpq connection (`PGconn`), owned by exactly one thread at a time: the pool hands it to
/// one closure at a time and never shares it, hence not Sendable. Closed in `deinit`.
/// Every call blocks the calling thread until the server answers: use it from `PostgresPool`'s
/// own threads, never from Swift's cooperative pool.
package final class PostgresConnection {
    private let handle: OpaquePointer
    /// Statement name → SQL of the statements prepared on this server session.
    private var prepared: [String: String] = [:]
    /// The session's `plan_cache_mode` as this connection last set it (`connect` starts every
    /// session on `auto`); switched only when a statement asks for the other one.
    private var planning: PostgresStatement.Planning = .automatic
    /// Set when the session is in a state this module cannot recover (e.g. stuck in COPY).
    private var markedBroken = false
    /// When the current blocking call started, for the pool's watchdog (see `CallWatch`).
    let callWatch: CallWatch

    private init(handle: OpaquePointer) {
        self.handle = handle
        self.callWatch = CallWatch(socket: PQsocket(handle))
    }

    deinit {
        PQfinish(handle)
    }

    /// Opens a connection with `PQconnectdbParams`; the URL is expanded by libpq
    /// (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING).
    package static func connect(_ configuration: PostgresConfiguration) throws(PostgresError) -> PostgresConnection {
        let password = try passwordIn(configuration.url)
        // Order matters: keywords after `dbname` override what the URL says, keywords before it
        // are defaults the URL may override. Fail-fast and the statement timeout are the engine's
        // guarantees, so they come after.
        let settings: [(String, String)] = [
            ("application_name", configuration.applicationName),
            // Notice a dead peer during a long read instead of waiting for the kernel's hours.
            ("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"), ("keepalives_count", "3"),
            ("dbname", configuration.url),
            ("connect_timeout", String(max(configuration.connectTimeoutSeconds, 1))),
            // plan_cache_mode: whatever the role or database says, statements start on
            // PostgreSQL's default, which `execute` switches from only for a `.generic` statement.
            ("options", "-c statement_timeout=\(max(configuration.statementTimeoutMilliseconds, 0)) -c plan_cache_mode=auto"),
            ("client_encoding", "UTF8"),
        ]
        let opened: OpaquePointer?? = withCStringArray(settings.map(\.0) + [nil]) { keywords -> OpaquePointer? in
            let handle: OpaquePointer?? = withCStringArray(settings.map(\.1) + [nil]) { values -> OpaquePointer? in
                PQconnectdbParams(keywords, values, 1)
            }
            return handle ?? nil
        }
        guard let opened, let handle = opened else {
            throw PostgresError(kind: .connectionFailed, operation: "connect",
                                detailMessage: "connection settings contain a NUL byte or memory is exhausted")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = ErrorText.redacting(password, in: ErrorText.normalized(lastError(handle)))
            PQfinish(handle)
            throw PostgresError(kind: .connectionFailed, operation: "connect", detailMessage: message)
        }
        // Notices (e.g. "relation already exists, skipping" from the schema) would otherwise be
        // printed to stderr by libpq's default receiver.
        PQsetNoticeReceiver(handle, { _, _ in }, nil)
        return PostgresConnection(handle: handle)
    }

    /// Validates the URL without echoing it (libpq's parse errors quote the whole string,
    /// password included) and returns the password it carries, for redaction.
    private static func passwordIn(_ url: String) throws(PostgresError) -> String? {
        var parseError: UnsafeMutablePointer<CChar>?
        let options: UnsafeMutablePointer<PQconninfoOption>? =
            url.utf8.contains(0) ? nil : PQconninfoParse(url, &parseError)
        if let parseError { PQfreemem(parseError) }
        guard let options else {
            throw PostgresError(kind: .connectionFailed, operation: "connect",
                                detailMessage: "the database URL is not a valid libpq connection string")
        }
        defer { PQconninfoFree(options) }
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", let value = option.pointee.val {
                return String(cString: value)
            }
            option += 1
        }
        return nil
    }

    /// True once the session cannot be used any more; the pool then replaces it.
    package var isBroken: Bool {
        markedBroken || PQstatus(handle) != CONNECTION_OK
    }

    /// The server process serving this session (for `pg_terminate_backend`, `pg_stat_activity`).
    package var backendProcessID: Int32 {
        PQbackendPID(handle)
    }

    // MARK: Statements

    /// Runs a prepared statement, preparing it on this session first if needed.
    package func execute(_ statement: PostgresStatement, _ parameters: [String?] = []) throws(PostgresError) -> PostgresRows {
        let operation = "execute \(statement.name)"
        try checkUsable(operation)
        if let known = prepared[statement.name] {
            guard known == statement.sql else {
                throw PostgresError(kind: .misuse, operation: operation,
                                    detailMessage: "two different statements share this name")
            }
        } else {
            try prepare(statement)
        }
        try usePlanning(statement.planning)
        do throws(PostgresError) {
            return try executePrepared(statement.name, parameters, operation: operation)
        } catch where error.sqlState == "26000" && !isBroken && PQtransactionStatus(handle) == PQTRANS_IDLE {
            // 26000: someone ran DEALLOCATE / DISCARD ALL on this session; nothing was executed,
            // so preparing again and retrying once is safe.
            // DISCARD ALL also put plan_cache_mode back to the session's default: set it again.
            prepared[statement.name] = nil
            planning = .automatic
            try prepare(statement)
            try usePlanning(statement.planning)
            return try executePrepared(statement.name, parameters, operation: operation)
        }
    }

    /// Runs one statement with `PQexecParams` (unnamed, planned each time). `$1`... are bound to
    /// `parameters`, never spliced into the SQL.
    package func query(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> PostgresRows {
        try checkUsable("query")
        let sent = blocking {
            withCStringArray(parameters) { values in
                PQexecParams(handle, sql, Int32(parameters.count), nil, values, nil, nil, 0)
            }
        }
        guard let sent else { throw nulByteError(parameters, operation: "query") }
        return try rows(from: sent, operation: "query")
    }

    /// Runs SQL text that may hold several statements (`PQexec`, simple protocol; no parameters).
    /// Used to apply schema.sql. If a statement fails, the rest are skipped.
    package func executeScript(_ sql: String) throws(PostgresError) {
        try checkUsable("script")
        guard !sql.utf8.contains(0) else {
            throw PostgresError(kind: .misuse, operation: "script", detailMessage: "the script contains a NUL byte")
        }
        _ = try rows(from: blocking { PQexec(handle, sql) }, operation: "script")
    }

    /// Runs `body` between BEGIN and COMMIT; any error thrown rolls back and is rethrown.
    @discardableResult
    package func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try checkUsable("begin")
        guard PQtransactionStatus(handle) == PQTRANS_IDLE else {
            throw PostgresError(kind: .misuse, operation: "begin", detailMessage: "a transaction is already open")
        }
        _ = try rows(from: blocking { PQexec(handle, "begin") }, operation: "begin")
        let value: T
        do {
            value = try body(self)
        } catch {
            rollbackIfOpen()
            throw error
        }
        guard let result = blocking({ PQexec(handle, "commit") }) else { throw connectionError(operation: "commit") }
        let tag = String(cString: PQcmdStatus(result))
        _ = try rows(from: result, operation: "commit")
        // COMMIT of a transaction in which a statement failed (and was caught) answers ROLLBACK
        // without an error: the caller must not believe its writes landed.
        if tag == "ROLLBACK" {
            throw PostgresError(kind: .queryFailed, operation: "commit", sqlState: "25P02",
                                detailMessage: "the transaction was rolled back because a statement in it failed")
        }
        return value
    }

    /// Streams `COPY ... TO STDOUT` (text format), one call per row. If `row` throws, the rest of
    /// the data is drained (the session stays usable) and the error is rethrown.
    package func copyOut(_ sql: String, _ row: ([String?]) throws -> Void) throws {
        try copyOutRaw(sql) { bytes in try row(CopyText.fields(bytes)) }
    }

    /// `COPY ... TO STDOUT` in text format, handing each row's raw bytes (fields separated by
    /// tabs, ending in a newline) to `row` without building strings: for bulk reads such as
    /// loading every pending deadline at start-up.
    package func copyOutRaw(_ sql: String, _ row: (UnsafeRawBufferPointer) throws -> Void) throws {
        try checkUsable("copy")
        guard let started = blocking({ PQexec(handle, sql) }) else { throw connectionError(operation: "copy") }
        guard PQresultStatus(started) == PGRES_COPY_OUT else {
            _ = try rows(from: started, operation: "copy")
            throw PostgresError(kind: .misuse, operation: "copy", detailMessage: "the statement is not COPY ... TO STDOUT")
        }
        PQclear(started)
        var rowError: (any Error)?
        var buffer: UnsafeMutablePointer<CChar>?
        while true {
            let length = blocking { PQgetCopyData(handle, &buffer, 0) }
            if length == -1 { break }
            guard length >= 0, let data = buffer else {
                markedBroken = true
                throw connectionError(operation: "copy")
            }
            if rowError == nil {
                do { try row(UnsafeRawBufferPointer(start: data, count: Int(length))) } catch { rowError = error }
            }
            PQfreemem(data)
            buffer = nil
        }
        var failure: PostgresError?
        while let result = blocking({ PQgetResult(handle) }) {
            do throws(PostgresError) { _ = try rows(from: result, operation: "copy") } catch { failure = failure ?? error }
        }
        if let rowError { throw rowError }
        if let failure { throw failure }
    }

    // MARK: Pool support

    /// Reads whatever the server sent while the session sat idle (a FATAL before a restart or
    /// `pg_terminate_backend`, then end of file) without blocking (libpq's socket is
    /// non-blocking), so a dead session is replaced before a statement is sent on it.
    func probeIsAlive() -> Bool {
        guard !isBroken else { return false }
        // The first read may return the FATAL message, the second sees the closed socket.
        for _ in 0..<2 where PQconsumeInput(handle) == 0 {
            return false
        }
        return !isBroken
    }

    /// Leaves the session as a fresh one for the next user: a transaction left open (an error
    /// thrown between a manual BEGIN and COMMIT, a failed script) is rolled back.
    /// False when the session must be discarded.
    func resetAfterUse() -> Bool {
        guard !isBroken else { return false }
        switch PQtransactionStatus(handle) {
        case PQTRANS_IDLE:
            return true
        case PQTRANS_INTRANS, PQTRANS_INERROR:
            rollbackIfOpen()
            return !isBroken && PQtransactionStatus(handle) == PQTRANS_IDLE
        default:
            return false
        }
    }

    // MARK: Notifications (PostgresNotificationListener)

    /// Sends one statement without waiting for its answer (`PQsendQueryParams`); the answer is
    /// collected by `collectResults` once `consumeInput` has read it.
    func send(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) {
        try checkUsable("send")
        let sent = withCStringArray(parameters) { values in
            PQsendQueryParams(handle, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        guard let sent else { throw nulByteError(parameters, operation: "send") }
        guard sent == 1 else { throw connectionError(operation: "send") }
    }

    /// Waits with poll(2) until the server has sent something or `timeoutMilliseconds` pass.
    /// False on timeout or on an interrupted wait (EINTR: the caller's loop simply comes back).
    func waitUntilReadable(timeoutMilliseconds: Int32) throws(PostgresError) -> Bool {
        let socket = PQsocket(handle)
        guard socket >= 0 else { throw connectionError(operation: "poll") }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, max(timeoutMilliseconds, 0))
        if ready < 0 {
            let code = errno
            if code == EINTR { return false }
            markedBroken = true
            throw PostgresError(kind: .connectionLost, operation: "poll", detailMessage: "poll failed (errno \(code))")
        }
        return ready > 0
    }

    /// Reads what the server has sent so far into libpq's buffer, never blocking
    /// (https://www.postgresql.org/docs/current/libpq-async.html).
    func consumeInput() throws(PostgresError) {
        try checkUsable("receive")
        guard PQconsumeInput(handle) == 1 else { throw connectionError(operation: "receive") }
    }

    /// Takes the results of the statement `send` started that have arrived, without blocking:
    /// true once the statement is complete, false while its answer is still on the way. A
    /// failed statement throws.
    func collectResults() throws(PostgresError) -> Bool {
        while PQisBusy(handle) == 0 {
            guard let result = PQgetResult(handle) else { return true }
            _ = try rows(from: result, operation: "send")
        }
        return false
    }

    /// The notifications libpq has received, oldest first (`PQnotifies`, each freed with
    /// `PQfreemem` once copied).
    func takeNotifications() -> [PostgresNotification] {
        var notifications: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            notifications.append(PostgresNotification(
                channel: notify.pointee.relname.map { String(cString: $0) } ?? "",
                payload: notify.pointee.extra.map { String(cString: $0) } ?? "",
                senderProcessID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return notifications
    }

    // MARK: Internals

    /// Runs one libpq call that waits for the server, visible to the pool's watchdog meanwhile.
    private func blocking<R>(_ call: () -> R) -> R {
        callWatch.begin()
        defer { callWatch.end() }
        return call()
    }

    private func checkUsable(_ operation: String) throws(PostgresError) {
        if isBroken {
            throw PostgresError(kind: .connectionLost, operation: operation, detailMessage: "the connection is closed")
        }
    }

    /// Sets the session's `plan_cache_mode` for the next statement, one round trip, only when it
    /// changes. Outside transactions only: a SET inside one is undone by its rollback, and the
    /// mode only affects speed, so a statement in a transaction runs with whatever is in effect.
    private func usePlanning(_ wanted: PostgresStatement.Planning) throws(PostgresError) {
        guard wanted != planning, PQtransactionStatus(handle) == PQTRANS_IDLE else { return }
        let setting = wanted == .generic ? "set plan_cache_mode = force_generic_plan" : "set plan_cache_mode = auto"
        _ = try rows(from: blocking { PQexec(handle, setting) }, operation: "set plan_cache_mode")
        planning = wanted
    }

    private func prepare(_ statement: PostgresStatement) throws(PostgresError) {
        let operation = "prepare \(statement.name)"
        _ = try rows(from: blocking { PQprepare(handle, statement.name, statement.sql, 0, nil) }, operation: operation)
        prepared[statement.name] = statement.sql
    }

    private func executePrepared(_ name: String, _ parameters: [String?], operation: String) throws(PostgresError) -> PostgresRows {
        let sent = blocking {
            withCStringArray(parameters) { values in
                PQexecPrepared(handle, name, Int32(parameters.count), values, nil, nil, 0)
            }
        }
        guard let sent else { throw nulByteError(parameters, operation: operation) }
        return try rows(from: sent, operation: operation)
    }

    private func rollbackIfOpen() {
        guard !isBroken, PQtransactionStatus(handle) != PQTRANS_IDLE else { return }
        if let result = blocking({ PQexec(handle, "rollback") }) { PQclear(result) }
    }

    /// Copies a result out and frees it, or turns it into the error it reports.
    private func rows(from result: OpaquePointer?, operation: String) throws(PostgresError) -> PostgresRows {
        guard let result else { throw connectionError(operation: operation) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return Self.copyRows(result)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR:
            throw serverError(result, operation: operation)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            // The session now expects COPY data this API cannot provide: give it up.
            markedBroken = true
            throw PostgresError(kind: .protocolViolation, operation: operation,
                                detailMessage: "COPY is only supported through copyOut")
        default:
            markedBroken = true
            throw PostgresError(kind: .protocolViolation, operation: operation,
                                detailMessage: "unexpected result status \(status.rawValue)")
        }
    }

    private static func copyRows(_ result: OpaquePointer) -> PostgresRows {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        var columns: [String] = []
        columns.reserveCapacity(columnCount)
        for column in 0..<columnCount {
            columns.append(PQfname(result, Int32(column)).map { String(cString: $0) } ?? "")
        }
        var values: [String?] = []
        values.reserveCapacity(rowCount * columnCount)
        for row in 0..<Int32(rowCount) {
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(nil)
                } else {
                    let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, row, column),
                                                       count: Int(PQgetlength(result, row, column)))
                    values.append(String(decoding: bytes, as: UTF8.self))
                }
            }
        }
        let affected = PQcmdTuples(result).map { Int(String(cString: $0)) ?? 0 } ?? 0
        return PostgresRows(columns: columns, values: values, affectedRows: affected)
    }

    private func serverError(_ result: OpaquePointer, operation: String) -> PostgresError {
        func field(_ code: Character) -> String? {
            PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
        }
        let sqlState = field("C")
        let message = field("M") ?? PQresultErrorMessage(result).map { String(cString: $0) } ?? ""
        // A session that died mid-statement leaves the outcome unknown, whatever the SQLSTATE.
        let kind: PostgresError.Kind = PQstatus(handle) == CONNECTION_OK ? .queryFailed : .connectionLost
        return PostgresError(kind: kind, operation: operation, sqlState: sqlState, constraint: field("n"),
                             detailMessage: ErrorText.sanitized(message, sqlState: sqlState))
    }

    private func connectionError(operation: String) -> PostgresError {
        let kind: PostgresError.Kind = PQstatus(handle) == CONNECTION_OK ? .protocolViolation : .connectionLost
        return PostgresError(kind: kind, operation: operation,
                             detailMessage: ErrorText.normalized(Self.lastError(handle)))
    }

    private func nulByteError(_ parameters: [String?], operation: String) -> PostgresError {
        let position = (parameters.firstIndex { $0?.utf8.contains(0) == true } ?? 0) + 1
        // Text-format parameters end at the first NUL: sending it would silently truncate the value.
        // 22021 is what the server itself answers for a NUL in text.
        return PostgresError(kind: .queryFailed, operation: operation, sqlState: "22021",
                             detailMessage: "parameter $\(position) contains a NUL byte")
    }

    private static func lastError(_ handle: OpaquePointer) -> String {
        PQerrorMessage(handle).map { String(cString: $0) } ?? "unknown libpq error"
    }
}

/// Calls `body` with C strings for `strings` (nil stays a NULL pointer), all copied into one
/// allocation that lives for the call. Answers nil without calling `body` when a string holds a
/// NUL byte, which C would silently cut short.
func withCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R? {
    var total = 0
    for string in strings {
        if let string { total += string.utf8.count + 1 }
    }
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
    defer { buffer.deallocate() }
    var pointers: [UnsafePointer<CChar>?] = []
    pointers.reserveCapacity(max(strings.count, 1))
    var offset = 0
    for string in strings {
        guard var string else {
            pointers.append(nil)
            continue
        }
        let start = buffer + offset
        let copied = string.withUTF8 { bytes -> Bool in
            guard !bytes.contains(0) else { return false }
            if let base = bytes.baseAddress {
                UnsafeMutableRawPointer(start).copyMemory(from: base, byteCount: bytes.count)
            }
            start[bytes.count] = 0
            offset += bytes.count + 1
            return true
        }
        guard copied else { return nil }
        pointers.append(UnsafePointer(start))
    }
    if pointers.isEmpty { pointers.append(nil) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// COPY's text format: tab-separated fields, `\N` for NULL, backslash escapes
/// (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2).
enum CopyText {
    static func fields(_ line: UnsafeRawBufferPointer) -> [String?] {
        var end = line.count
        if end > 0, line[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        var fields: [String?] = []
        var start = 0
        while true {
            var stop = start
            while stop < end, line[stop] != UInt8(ascii: "\t") { stop += 1 }
            fields.append(field(UnsafeRawBufferPointer(rebasing: line[start..<stop])))
            if stop >= end { break }
            start = stop + 1
        }
        return fields
    }

    static func field(_ raw: UnsafeRawBufferPointer) -> String? {
        if raw.count == 2, raw[0] == UInt8(ascii: "\\"), raw[1] == UInt8(ascii: "N") { return nil }
        guard raw.contains(UInt8(ascii: "\\")) else { return String(decoding: raw, as: UTF8.self) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            index += 1
            guard byte == UInt8(ascii: "\\"), index < raw.count else {
                bytes.append(byte)
                continue
            }
            let escaped = raw[index]
            index += 1
            switch escaped {
            case UInt8(ascii: "b"): bytes.append(8)
            case UInt8(ascii: "f"): bytes.append(12)
            case UInt8(ascii: "n"): bytes.append(10)
            case UInt8(ascii: "r"): bytes.append(13)
            case UInt8(ascii: "t"): bytes.append(9)
            case UInt8(ascii: "v"): bytes.append(11)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = Int(escaped - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, index < raw.count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(raw[index]) {
                    value = value * 8 + Int(raw[index] - UInt8(ascii: "0"))
                    index += 1
                    digits += 1
                }
                bytes.append(UInt8(truncatingIfNeeded: value))
            case UInt8(ascii: "x"):
                var value = 0
                var digits = 0
                while digits < 2, index < raw.count, let digit = hexValue(raw[index]) {
                    value = value * 16 + digit
                    index += 1
                    digits += 1
                }
                if digits == 0 { bytes.append(UInt8(ascii: "x")) } else { bytes.append(UInt8(value)) }
            default:
                bytes.append(escaped)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A")) + 10
        default: nil
        }
    }
}
