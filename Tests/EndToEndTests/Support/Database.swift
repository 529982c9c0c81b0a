import Postgres

/// Direct reads of the database the engine writes, for assertions (the engine's own answers are
/// checked separately; this is the ground truth).
struct TestDatabase {
    let pool: PostgresPool

    init(url: String? = nil) throws {
        pool = PostgresPool(configuration: PostgresConfiguration(url: try url ?? TestEnvironment.databaseURL, poolSize: 2))
    }

    func rows(_ sql: String, _ parameters: [String?] = []) throws -> PostgresRows {
        try pool.withConnectionBlocking { try $0.query(sql, parameters) }
    }

    func count(_ sql: String, _ parameters: [String?] = []) throws -> Int {
        try rows(sql, parameters).int(0, "count") ?? -1
    }

    func state(issuer: String, authenticationId: String) throws -> String? {
        try rows("select state from authentications where issuer_id = $1 and authentication_id = $2",
                 [issuer, authenticationId]).string(0, "state")
    }

    func shutdown() { pool.shutdown() }
}
