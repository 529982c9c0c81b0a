import Foundation
import Postgres
import Server
import Testing

/// The identifier checks on `authentications` are written as a length and a negated character
/// class (`x !~ '[^A-Za-z0-9_-]'`), cheaper on every insert and update than the anchored regular
/// expressions of the first schema and the ltrim form of the second. These tests hold them to the
/// grammars the first regular expressions stated, against the real database, and check that a
/// database created with either older form gets the new ones when the schema is applied again.
@Suite(.serialized)
struct SchemaConstraintTests {
    static let issuer = "ISSUERCHK1"

    static func connect(_ url: String? = nil) throws -> PostgresConnection {
        let connection = try PostgresConnection.connect(TestDatabase.configuration(url: url))
        try Migration.apply(connection)
        return connection
    }

    /// The current form: what pg_get_constraintdef shows of it.
    static func isCurrentForm(_ definition: String) -> Bool {
        definition.contains("!~") && definition.contains("char_length") && !definition.contains("ltrim")
    }

    static let checkNames = ["authentication_id", "consumer_id", "card_id", "pan_suffix", "amount", "currency_code"]
        .map { "authentications_\($0)_check" }

    /// name → (definition, validated) of the six identifier checks.
    static func checks(_ connection: PostgresConnection) throws -> [String: (definition: String, validated: Bool)] {
        let rows = try connection.query("""
            select conname, pg_get_constraintdef(oid) as definition, convalidated from pg_constraint
            where conrelid = 'authentications'::regclass and conname = any($1::text[])
            """, ["{" + Self.checkNames.joined(separator: ",") + "}"])
        var found: [String: (String, Bool)] = [:]
        for row in 0..<rows.count {
            found[rows.string(row, "conname") ?? ""] = (rows.string(row, "definition") ?? "", rows.bool(row, "convalidated") ?? false)
        }
        return found
    }

    /// Each column with a value, and what the original regular expression says of it.
    static let cases: [(column: String, value: String, valid: Bool)] = {
        let token64 = String(repeating: "a", count: 64)
        var cases: [(String, String, Bool)] = []
        for column in ["authentication_id", "consumer_id"] {
            cases += [(column, "Abc-09_z", true), (column, token64, true), (column, "-", true),
                      (column, "", false), (column, token64 + "a", false), (column, "a b", false),
                      (column, "é", false), (column, "a.b", false), (column, "a/b", false), (column, "a\nb", false)]
        }
        cases += [("card_id", String(repeating: "C", count: 48), true), ("card_id", String(repeating: "C", count: 49), false),
                  ("card_id", "card_1", true), ("card_id", "card 1", false), ("card_id", "", false)]
        cases += [("pan_suffix", "0123", true), ("pan_suffix", "123", false), ("pan_suffix", "12345", false),
                  ("pan_suffix", "12a4", false), ("pan_suffix", "١٢٣٤", false)]
        cases += [("amount", "0", true), ("amount", String(repeating: "9", count: 48), true),
                  ("amount", String(repeating: "9", count: 49), false), ("amount", "", false),
                  ("amount", "1.5", false), ("amount", "-1", false)]
        cases += [("currency_code", "EUR", true), ("currency_code", "eur", true), ("currency_code", "EU", false),
                  ("currency_code", "EURO", false), ("currency_code", "E1R", false), ("currency_code", "ÉUR", false)]
        return cases
    }()

    /// Inserts one authentication with `value` in `column` (the other columns valid), inside a
    /// transaction that is rolled back: true when accepted, false on that column's check.
    static func accepts(_ connection: PostgresConnection, _ column: String, _ value: String, tag: String) throws -> Bool {
        var row = ["authentication_id": "chk-\(tag)", "consumer_id": "chk-consumer", "card_id": "card-1",
                   "pan_suffix": "1234", "amount": "100", "currency_code": "EUR"]
        row[column] = value
        let columns = row.keys.sorted()
        let placeholders = columns.indices.map { "$\($0 + 2)" }.joined(separator: ", ")
        _ = try connection.query("begin")
        let outcome = Result { () throws(PostgresError) -> PostgresRows in
            try connection.query("""
                insert into authentications (issuer_id, \(columns.joined(separator: ", ")), state, deadline)
                values ($1, \(placeholders), 'PENDING', now() + interval '1 minute')
                """, [Self.issuer] + columns.map { row[$0] })
        }
        _ = try connection.query("rollback")
        switch outcome {
        case .success:
            return true
        case .failure(let error):
            guard error.sqlState == "23514" else { throw error }
            #expect(error.constraint == "authentications_\(column)_check")
            return false
        }
    }

    @Test func identifierChecksAcceptExactlyWhatTheGrammarsAllow() throws {
        let connection = try Self.connect()
        for (index, test) in Self.cases.enumerated() {
            let accepted = try Self.accepts(connection, test.column, test.value, tag: "\(index)-\(UUID().uuidString.prefix(8))")
            #expect(accepted == test.valid, "\(test.column) = \(test.value.debugDescription)")
        }
    }

    @Test func aNewDatabaseGetsTheChecksValidated() throws {
        let admin = try Self.connect()
        let name = "oob_schema_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try admin.query("create database \(name)")
        defer { _ = try? admin.query("drop database if exists \(name)") }
        let base = try TestDatabase.url()
        let query = base.firstIndex(of: "?").map { String(base[$0...]) } ?? ""
        let path = base.prefix { $0 != "?" }
        let url = path[..<(path.lastIndex(of: "/") ?? path.endIndex)] + "/" + name + query
        do {
            let fresh = try Self.connect(String(url))
            let checks = try Self.checks(fresh)
            #expect(checks.count == 6)
            for (name, check) in checks {
                #expect(Self.isCurrentForm(check.definition) && check.validated, "\(name): \(check.definition)")
            }
        }
    }

    /// The six checks as the schema of 2026-11 (anchored regular expressions) and of 2026-12-02
    /// (ltrim) created them.
    static let olderForms: [String: [String]] = [
        "regex": ["authentication_id ~ '^[A-Za-z0-9_-]{1,64}$'", "consumer_id ~ '^[A-Za-z0-9_-]{1,64}$'",
                  "card_id ~ '^[A-Za-z0-9_-]{1,48}$'", "pan_suffix ~ '^[0-9]{4}$'", "amount ~ '^[0-9]{1,48}$'",
                  "currency_code ~ '^[A-Za-z]{3}$'"],
        "ltrim": ["char_length(authentication_id) between 1 and 64 and ltrim(authentication_id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-') = ''",
                  "char_length(consumer_id) between 1 and 64 and ltrim(consumer_id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-') = ''",
                  "char_length(card_id) between 1 and 48 and ltrim(card_id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-') = ''",
                  "char_length(pan_suffix) = 4 and ltrim(pan_suffix, '0123456789') = ''",
                  "char_length(amount) between 1 and 48 and ltrim(amount, '0123456789') = ''",
                  "char_length(currency_code) = 3 and ltrim(currency_code, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') = ''"],
    ]

    @Test(arguments: ["regex", "ltrim"])
    func checksOfAnOlderDatabaseAreReplacedWhenTheSchemaIsApplied(form: String) throws {
        let connection = try Self.connect()
        // A row written before the upgrade (the table of an older database is not empty).
        _ = try connection.query("""
            insert into authentications (issuer_id, authentication_id, consumer_id, state, deadline)
            values ($1, $2, 'chk-consumer', 'PENDING', now() + interval '1 minute')
            """, [Self.issuer, "chk-old-\(UUID().uuidString.prefix(8))"])
        // The constraints as the older schema created them.
        let older = try #require(Self.olderForms[form])
        _ = try connection.query("alter table authentications "
            + Self.checkNames.map { "drop constraint \($0)" }.joined(separator: ", ") + ", "
            + zip(Self.checkNames, older).map { "add constraint \($0) check (\($1))" }.joined(separator: ", "))
        let before = try Self.checks(connection)
        #expect(before.count == 6 && before.values.allSatisfy { !Self.isCurrentForm($0.definition) && $0.validated })

        // Replaced without re-checking the existing rows (instant on a large table)...
        try Migration.apply(connection)
        let after = try Self.checks(connection)
        #expect(after.count == 6)
        for (name, check) in after {
            #expect(Self.isCurrentForm(check.definition) && !check.validated, "\(name): \(check.definition)")
        }
        // ...and applying the schema again changes nothing.
        try Migration.apply(connection)
        #expect(try Self.checks(connection).mapValues(\.definition) == after.mapValues(\.definition))
        // The operator's optional step: the rows written under the old rules pass the new ones.
        _ = try connection.query("alter table authentications "
                                 + Self.checkNames.map { "validate constraint \($0)" }.joined(separator: ", "))
        #expect(try Self.checks(connection).values.allSatisfy(\.validated))
    }
}
