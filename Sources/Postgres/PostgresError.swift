/// A failure talking to PostgreSQL. Safe to log: `description` never holds bound parameter
/// values, the connection URL or its password. Server messages of SQLSTATE class 22 (data
/// exceptions) echo the offending input, so their quoted part is withheld.
package struct PostgresError: Error, Sendable, CustomStringConvertible {
    package enum Kind: String, Sendable {
        /// No connection could be opened (server down, refused, bad URL, authentication).
        case connectionFailed
        /// The connection died while in use: the statement's outcome is unknown.
        case connectionLost
        /// No connection became free within `acquireTimeout`.
        case poolTimeout
        /// More requests were already waiting than `maxQueueLength`.
        case queueFull
        /// The pool was shut down.
        case poolClosed
        /// The server rejected the statement (see `sqlState`).
        case queryFailed
        /// libpq or the server answered something this module does not handle (e.g. COPY state).
        case protocolViolation
        /// The API was used in a way it does not support (a programming error).
        case misuse
    }

    package var kind: Kind
    /// What was being done: "connect", "execute <statement name>", "query", "script", "commit"...
    package var operation: String
    /// The five-character SQLSTATE from the server, when it sent one.
    package var sqlState: String?
    /// The constraint named by an integrity violation (e.g. the unique index on a 23505).
    package var constraint: String?
    /// The server's (or libpq's) primary message, already stripped of input values.
    package var detailMessage: String

    package init(kind: Kind, operation: String = "", sqlState: String? = nil, constraint: String? = nil,
                 detailMessage: String = "") {
        self.kind = kind
        self.operation = operation
        self.sqlState = sqlState
        self.constraint = constraint
        self.detailMessage = detailMessage
    }

    /// The database cannot serve right now (answer 503 and let the client retry later):
    /// connection trouble, an exhausted pool, or the server shutting down, starting, overloaded.
    package var isUnavailable: Bool {
        switch kind {
        case .connectionFailed, .connectionLost, .poolTimeout, .queueFull, .poolClosed: return true
        case .queryFailed, .protocolViolation, .misuse: break
        }
        guard let sqlState else { return false }
        // 08: connection exception; 53: insufficient resources (53300 too many connections);
        // 57P01-57P03: admin/crash shutdown, cannot connect now; 57014: statement_timeout fired.
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("53")
            || ["57P01", "57P02", "57P03", "57014"].contains(sqlState)
    }

    /// Running the same work again may succeed and cannot double-apply it: nothing reached the
    /// server (no connection, pool exhausted) or the server rolled the transaction back
    /// (40001 serialization failure, 40P01 deadlock). `connectionLost` is deliberately not
    /// retryable: the statement may have committed.
    package var isRetryable: Bool {
        switch kind {
        case .connectionFailed, .poolTimeout, .queueFull: return true
        case .queryFailed: return sqlState == "40001" || sqlState == "40P01"
        case .connectionLost, .poolClosed, .protocolViolation, .misuse: return false
        }
    }

    /// 23505: a unique constraint (named by `constraint`) refused the row.
    package var isUniqueViolation: Bool { sqlState == "23505" }

    package var description: String {
        var text = "PostgreSQL \(kind.rawValue)"
        if !operation.isEmpty { text += " during \(operation)" }
        if let sqlState { text += " [SQLSTATE \(sqlState)]" }
        if let constraint { text += " [constraint \(constraint)]" }
        if !detailMessage.isEmpty { text += ": \(detailMessage)" }
        return text
    }
}

/// Messages from libpq and the server, made fit for `PostgresError.detailMessage`.
enum ErrorText {
    /// One line, bounded length.
    static func normalized(_ message: String) -> String {
        var line = ""
        var lastWasSpace = true
        for character in message {
            if character.isNewline || character == "\t" || character == " " {
                if !lastWasSpace { line.append(" ") }
                lastWasSpace = true
            } else {
                line.append(character)
                lastWasSpace = false
            }
            if line.count >= 400 { line += "..."; break }
        }
        while line.last == " " { line.removeLast() }
        return line
    }

    /// Class 22 messages quote the rejected input (`invalid input syntax for type integer: "..."`),
    /// which may be a bound parameter: keep only the text before the quoted value.
    static func sanitized(_ message: String, sqlState: String?) -> String {
        let line = normalized(message)
        guard let sqlState, sqlState.hasPrefix("22") else { return line }
        let cut = line.firstIndex { $0 == ":" || $0 == "\"" } ?? line.endIndex
        var kept = String(line[..<cut])
        while kept.last == " " { kept.removeLast() }
        return kept + " (input value withheld)"
    }

    /// libpq may echo connection settings in its messages: never let the password through.
    static func redacting(_ secret: String?, in message: String) -> String {
        guard let secret, !secret.isEmpty else { return message }
        return message.replacing(secret, with: "***")
    }
}
