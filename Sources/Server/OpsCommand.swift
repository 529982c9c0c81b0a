import Engine
import Glibc
import JSON
import Postgres

/// `oob-engine ops ...`: the ops API's operations from the command line, straight against
/// DATABASE_URL (so they work while the server is down). Readable tables by default, JSON with
/// `--json`. Exit status: 0 done, 1 failed, 2 bad settings, 3 not found, 4 already final, 64 usage.
enum OpsCommand {
    static let usage = """
        Usage: oob-engine ops <command> [options]

        Commands (each takes --help):
          list        authentications, newest first
          show        one authentication and its whole transition history
          expire      force one PENDING authentication to time out (AUTHENTICATION_FAILED, expired)
          expire-all  force every PENDING authentication of an issuer created before a time to time out

        Every command reads DATABASE_URL; add --json for machine-readable output.
        Every change is recorded in the transitions log (cause operator, actor cli:<user>@<host>).

        """

    static let listUsage = """
        Usage: oob-engine ops list [--issuer ID] [--state STATE] [--consumer ID] [--created-before ISO8601]
                                   [--limit N] [--cursor C] [--json]

        Authentications newest first, at most --limit (default 50, at most 500) per page; pass the
        printed next cursor as --cursor for the next page. STATE: PENDING, AUTHENTICATED,
        AUTHENTICATION_FAILED or TECHNICAL_ERROR.

        """

    static let showUsage = """
        Usage: oob-engine ops show ISSUER_ID AUTHENTICATION_ID [--json]

        One authentication and its whole transition history.

        """

    static let expireUsage = """
        Usage: oob-engine ops expire ISSUER_ID AUTHENTICATION_ID --reason TEXT [--json]

        PENDING → AUTHENTICATION_FAILED (reason expired), cause operator. TEXT (1-64 characters) is
        recorded in the transitions log. Exit status 4 when the authentication had already ended.

        """

    static let expireAllUsage = """
        Usage: oob-engine ops expire-all --issuer ID --created-before ISO8601 --reason TEXT [--json]

        Forces every PENDING authentication of the issuer created before the time to time out, in
        batches of 1,000, and prints how many. Running it twice is harmless.

        """

    struct Options {
        var positional: [String] = []
        var values: [String: String] = [:]
        var json = false
        var help = false
    }

    static func parse(_ arguments: [String], valued: Set<String>) -> Result<Options, UsageError> {
        var options = Options()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--json" {
                options.json = true
            } else if argument == "--help" || argument == "-h" {
                options.help = true
            } else if argument.hasPrefix("--") {
                var name = String(argument.dropFirst(2))
                var value: String?
                if let equals = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: equals)...])
                    name = String(name[..<equals])
                }
                guard valued.contains(name) else { return .failure(UsageError(message: "unknown option --\(name)")) }
                if value == nil {
                    index += 1
                    guard index < arguments.count else { return .failure(UsageError(message: "--\(name) needs a value")) }
                    value = arguments[index]
                }
                guard options.values[name] == nil else { return .failure(UsageError(message: "--\(name) given twice")) }
                options.values[name] = value
            } else {
                options.positional.append(argument)
            }
            index += 1
        }
        return .success(options)
    }

    static func main(arguments: [String], environment: [String: String]) -> Int32 {
        guard let command = arguments.first, command != "--help", command != "-h", command != "help" else {
            print(usage, terminator: "")
            return arguments.isEmpty ? 64 : 0
        }
        let rest = Array(arguments.dropFirst())
        switch command {
        case "list": return run(rest, usage: listUsage, valued: ["issuer", "state", "consumer", "created-before", "limit", "cursor"],
                                positional: 0, environment: environment, list)
        case "show": return run(rest, usage: showUsage, valued: [], positional: 2, environment: environment, show)
        case "expire": return run(rest, usage: expireUsage, valued: ["reason"], positional: 2, environment: environment, expire)
        case "expire-all": return run(rest, usage: expireAllUsage, valued: ["issuer", "created-before", "reason"],
                                      positional: 0, environment: environment, expireAll)
        default:
            ProcessSupport.writeToStandardError("oob-engine ops: unknown command '\(command)'\n\n\(usage)")
            return 64
        }
    }

    typealias Action = (Options, PostgresConnection) throws -> Int32

    static func run(_ arguments: [String], usage: String, valued: Set<String>, positional: Int,
                    environment: [String: String], _ action: @escaping Action) -> Int32 {
        let options: Options
        switch parse(arguments, valued: valued) {
        case .failure(let problem):
            ProcessSupport.writeToStandardError("oob-engine ops: \(problem.message)\n\n\(usage)")
            return 64
        case .success(let parsed): options = parsed
        }
        if options.help {
            print(usage, terminator: "")
            return 0
        }
        guard options.positional.count == positional else {
            ProcessSupport.writeToStandardError("oob-engine ops: expected \(positional) argument(s)\n\n\(usage)")
            return 64
        }
        let url: String
        do {
            url = try EngineSettings.databaseURL(from: environment)
        } catch {
            return Commands.fail("configuration error: \(error)", code: 2)
        }
        let pool = PostgresPool(configuration: PostgresConfiguration(url: url, poolSize: 1, applicationName: "oob-engine ops"))
        defer { pool.shutdown() }
        do {
            return try pool.withConnectionBlocking { try action(options, $0) }
        } catch let error as UsageError {
            ProcessSupport.writeToStandardError("oob-engine ops: \(error.message)\n\n\(usage)")
            return 64
        } catch {
            return Commands.fail("ops failed: \(error)", code: 1)
        }
    }

    struct UsageError: Error { var message: String }

    /// Spaces up to `length` UTF-16 units, or cut to it (as Foundation's `padding(toLength:)`).
    static func padded(_ text: String, to length: Int) -> String {
        let units = text.utf16.count
        if units >= length { return String(decoding: Array(text.utf16.prefix(length)), as: UTF16.self) }
        return text + String(repeating: " ", count: length - units)
    }

    /// checkReason's messages name the API field ("reason is required"); the CLI names its option.
    static func replacingReason(_ problem: String) -> String {
        problem.hasPrefix("reason") ? "--" + problem : problem
    }

    /// Who acted, for the transitions log and the audit line.
    static var actor: String {
        let user = ProcessSupport.environment()["USER"] ?? ProcessSupport.userName()
        return String("cli:\(user)@\(ProcessSupport.hostName())".prefix(128))
    }

    static func audit(_ action: String, _ outcome: String, _ fields: KeyValuePairs<String, String>) {
        var logger = Logger(label: "oob-engine-ops").with("audit", action).with("who", actor).with("from", "cli")
            .with("outcome", outcome)
        for (key, value) in fields { logger = logger.with(key, value) }
        logger.info("ops action")
    }

    static func printJSON(_ value: JSONValue) {
        print(value.serializedString())
    }

    static func issuer(_ text: String?, _ name: String) throws -> String {
        guard let text else { throw UsageError(message: "--\(name) is required") }
        guard Identifier.isValidIssuerID(text) else { throw UsageError(message: "--\(name) must be exactly 10 characters") }
        return text
    }

    static func list(_ options: Options, _ connection: PostgresConnection) throws -> Int32 {
        var filter = OpsQueries.Filter()
        if let issuer = options.values["issuer"] { filter.issuerId = try self.issuer(issuer, "issuer") }
        if let state = options.values["state"] {
            guard OpsQueries.states.contains(state) else { throw UsageError(message: "--state must be one of \(OpsQueries.states.sorted().joined(separator: ", "))") }
            filter.state = state
        }
        if let consumer = options.values["consumer"] {
            guard Identifier.isValidToken64(consumer) else { throw UsageError(message: "--consumer must match ^[A-Za-z0-9_-]{1,64}$") }
            filter.consumerId = consumer
        }
        if let before = options.values["created-before"] {
            guard OpsQueries.isTimestamp(before) else { throw UsageError(message: "--created-before must be an ISO 8601 timestamp") }
            filter.createdBefore = before
        }
        if let limit = options.values["limit"] {
            guard let value = Int(limit), (1...500).contains(value) else { throw UsageError(message: "--limit must be 1 to 500") }
            filter.limit = value
        }
        if let cursor = options.values["cursor"] {
            guard let value = UInt64(cursor) else { throw UsageError(message: "--cursor is not one this command printed") }
            filter.cursor = value
        }
        let page = try OpsQueries.list(filter, on: connection)
        if options.json {
            printJSON(.object(JSONObject([("authentications", .array(page.items)),
                                          ("nextCursor", page.nextCursor.map { .string($0) } ?? .null)])))
            return 0
        }
        let columns = ["issuerId", "authenticationId", "consumerId", "state", "reason", "createdAt", "deadline"]
        let rows = page.items.map { item in columns.map { item.objectValue?[$0]?.stringValue ?? "-" } }
        print(table(header: ["ISSUER", "AUTHENTICATION", "CONSUMER", "STATE", "REASON", "CREATED", "DEADLINE"], rows: rows),
              terminator: "")
        print("\(rows.count) shown" + (page.nextCursor.map { "; next page: --cursor \($0)" } ?? ""))
        return 0
    }

    static func show(_ options: Options, _ connection: PostgresConnection) throws -> Int32 {
        let issuerId = try issuer(options.positional[0], "issuer")
        let authenticationId = options.positional[1]
        guard Identifier.isValidToken64(authenticationId) else { throw UsageError(message: "AUTHENTICATION_ID must match ^[A-Za-z0-9_-]{1,64}$") }
        guard let record = try OpsQueries.show(issuerId: issuerId, authenticationId: authenticationId, on: connection) else {
            ProcessSupport.writeToStandardError("oob-engine ops: no authentication \(authenticationId) for \(issuerId)\n")
            return 3
        }
        if options.json {
            printJSON(record)
            return 0
        }
        let object = record.objectValue ?? JSONObject()
        for key in ["issuerId", "authenticationId", "consumerId", "cardId", "panSuffix", "acsTransactionId", "state", "reason",
                    "createdAt", "updatedAt", "deadline"] {
            print(padded(key, to: 18) + (object[key]?.stringValue ?? "-"))
        }
        if case .object(let purchase)? = object["purchase"] {
            print(padded("purchase", to: 18)
                  + purchase.members.map { "\($0.key)=\($0.value.stringValue ?? "-")" }.joined(separator: " "))
        }
        print("")
        let transitions = object["transitions"]?.arrayValue ?? []
        let rows = transitions.map { item in
            ["at", "from", "to", "cause", "actor", "outcome", "detail"].map { item.objectValue?[$0]?.stringValue ?? "-" }
        }
        print(table(header: ["AT", "FROM", "TO", "CAUSE", "ACTOR", "OUTCOME", "DETAIL"], rows: rows), terminator: "")
        return 0
    }

    static func expire(_ options: Options, _ connection: PostgresConnection) throws -> Int32 {
        let issuerId = try issuer(options.positional[0], "issuer")
        let authenticationId = options.positional[1]
        guard Identifier.isValidToken64(authenticationId) else { throw UsageError(message: "AUTHENTICATION_ID must match ^[A-Za-z0-9_-]{1,64}$") }
        if let problem = OpsQueries.checkReason(options.values["reason"]) { throw UsageError(message: replacingReason(problem)) }
        let reason = options.values["reason"]!
        switch try OpsQueries.expire(issuerId: issuerId, authenticationId: authenticationId, reason: reason, actor: actor, on: connection) {
        case .expired(let record):
            audit("expire", "expired", ["issuer_id": issuerId, "authentication_id": authenticationId])
            if options.json { printJSON(record) } else { print("\(authenticationId): PENDING → AUTHENTICATION_FAILED (expired)") }
            return 0
        case .alreadyFinal(let state, let reason):
            audit("expire", "refused: already final", ["issuer_id": issuerId, "authentication_id": authenticationId])
            if options.json {
                var members: [(String, JSONValue)] = [("error", .string("the authentication has already ended")),
                                                      ("authenticationStatus", .string(state))]
                if let reason { members.append(("reason", .string(reason))) }
                printJSON(.object(JSONObject(members)))
            } else {
                print("\(authenticationId): already \(state)" + (reason.map { " (\($0))" } ?? "") + "; nothing changed")
            }
            return 4
        case .notFound:
            ProcessSupport.writeToStandardError("oob-engine ops: no authentication \(authenticationId) for \(issuerId)\n")
            return 3
        }
    }

    static func expireAll(_ options: Options, _ connection: PostgresConnection) throws -> Int32 {
        let issuerId = try issuer(options.values["issuer"], "issuer")
        guard let before = options.values["created-before"] else { throw UsageError(message: "--created-before is required") }
        guard OpsQueries.isTimestamp(before) else { throw UsageError(message: "--created-before must be an ISO 8601 timestamp") }
        if let problem = OpsQueries.checkReason(options.values["reason"]) { throw UsageError(message: replacingReason(problem)) }
        let count = try OpsQueries.expireAll(issuerId: issuerId, createdBefore: before, reason: options.values["reason"]!,
                                             actor: actor, on: connection)
        audit("expire-all", "expired \(count)", ["issuer_id": issuerId, "created_before": before])
        if options.json {
            printJSON(.object(JSONObject([("expired", .number(JSONNumber(count)))])))
        } else {
            print("\(count) PENDING authentication(s) of \(issuerId) created before \(before) expired")
        }
        return 0
    }

    /// Columns padded to their widest cell.
    static func table(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : padded(cell, to: widths[index])
            }.joined(separator: "  ") + "\n"
        }
        return line(header) + rows.map(line).joined()
    }
}
