package import Postgres

/// Applies schema.sql (embedded at build time) in one transaction. Idempotent; concurrent
/// instances serialise on an advisory lock taken inside the script.
package enum Migration {
    package static let schemaVersion = 1

    package static func apply(_ connection: PostgresConnection) throws {
        try connection.executeScript("begin;\n" + Schema.sql + "\ncommit;")
    }

    /// The version recorded by the schema, or nil before the first migration.
    package static let versionQuery = PostgresStatement(
        "schema_version", "select version from schema_info where singleton")

    /// Makes the authenticators listed in the configuration file active (demo and fixed set-ups).
    static let seedAuthenticator = PostgresStatement("authenticator_seed", """
        insert into authenticators (issuer_id, consumer_id, app_instance_id, authn_type, active)
        values ($1, $2, $3, $4, true)
        on conflict (issuer_id, consumer_id, app_instance_id)
        do update set authn_type = excluded.authn_type, active = true, updated_at = now()
        """)

    package static func seed(_ authenticators: [ConfigFile.Authenticator], on connection: PostgresConnection) throws {
        for entry in authenticators {
            _ = try connection.execute(seedAuthenticator, [entry.issuerId, entry.consumerId, entry.appInstanceId, entry.authnType])
        }
    }
}
