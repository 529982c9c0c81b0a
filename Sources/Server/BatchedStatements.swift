import Engine
package import Postgres

/// Text-format PostgreSQL array literals for `unnest($n::text[])` parameters: every element is
/// double-quoted with `\` and `"` escaped, NULL stays unquoted.
package enum PostgresArray {
    package static func text(_ values: [String?]) -> String {
        // Built as UTF-8 bytes: `\` and `"` are ASCII, so they never occur inside a multi-byte
        // sequence and escaping byte by byte is exact.
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.count * 24 + 2)
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            guard let value else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(UInt8(ascii: "\""))
            for byte in value.utf8 {
                if byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "\"") { out.append(UInt8(ascii: "\\")) }
                out.append(byte)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    package static func integers(_ values: [Int?]) -> String {
        "{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}"
    }
}

/// The multi-row statements behind `PostgresAuthenticationStore`'s group commit.
package enum BatchedStatements {
    /// Many Authenticates in one statement: inserts what is new, with creation transitions and
    /// queued pushes, and returns it. Retries (ids that exist) are read afterwards, only when
    /// there are any: the common case does no lookup beyond the insert's own conflict check.
    static let insert = PostgresStatement("authentication_insert_batch", """
        with input as (
            select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                 $8::text[], $9::text[], $10::int[], $11::text[], $12::int[])
                as t(issuer_id, authentication_id, consumer_id, card_id, pan_suffix, acs_transaction_id, merchant_name,
                     amount, currency_code, ttl, actor, push_seconds)
        ), enrolled as (
            select i.*, exists (select 1 from authenticators au
                                where au.issuer_id = i.issuer_id and au.consumer_id = i.consumer_id and au.active) as yes
            from input i
        ), inserted as (
            insert into authentications (issuer_id, authentication_id, consumer_id, card_id, pan_suffix,
                                         acs_transaction_id, merchant_name, amount, currency_code, state, reason, deadline)
            select issuer_id, authentication_id, consumer_id, card_id, pan_suffix, acs_transaction_id, merchant_name,
                   amount, currency_code,
                   case when yes then 'PENDING' else 'TECHNICAL_ERROR' end,
                   case when yes then null else '\(AuthenticationReason.noAuthenticator)' end,
                   now() + make_interval(secs => ttl)
            from enrolled
            -- Key order: two batches inserting the same ids wait on each other's uncommitted
            -- rows; taken in the same order, one waits for the other instead of deadlocking.
            order by issuer_id, authentication_id
            on conflict (issuer_id, authentication_id) do nothing
            returning *
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor)
            select n.id, null, n.state, case when n.state = 'PENDING' then 'create' else 'no-authenticator' end, e.actor
            from inserted n join enrolled e using (issuer_id, authentication_id)
        ), queued as (
            insert into outbox (authentication_id, kind, delivery_deadline)
            select n.id, 'push', least(n.deadline, now() + make_interval(secs => e.push_seconds))
            from inserted n join enrolled e using (issuer_id, authentication_id)
            where n.state = 'PENDING' and e.push_seconds is not null
        )
        select \(PostgresAuthenticationStore.columns) from inserted
        """, planning: .generic)

    static let find = PostgresStatement("authentication_find_batch", """
        select \(PostgresAuthenticationStore.columns) from authentications
        where (issuer_id, authentication_id) in (select * from unnest($1::text[], $2::text[]))
        """, planning: .generic)

    /// Many cardholder decisions in one statement: each is a compare-and-set from PENDING that
    /// counts only before the deadline and only from an active authenticator of the consumer.
    /// The rows are locked in id order first, so concurrent batches cannot deadlock.
    /// Returns the updated row (`applied`) or the row as it is (`current`) per decision found.
    package static let decide = PostgresStatement("authentication_decide_batch", """
        with input as (
            select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                as t(issuer_id, authentication_id, app_instance_id, to_state, to_reason, actor)
        ), target as (
            select i.*, a.id as row_id,
                   exists (select 1 from authenticators au
                           where au.issuer_id = a.issuer_id and au.consumer_id = a.consumer_id
                             and au.app_instance_id = i.app_instance_id and au.active) as allowed
            from input i join authentications a using (issuer_id, authentication_id)
        ), locked as (
            -- Row locks in id order, the order every multi-row writer uses (the deadline
            -- expirer too): two batches over the same rows then queue instead of deadlocking.
            -- Each row carries its decision along, so that no later step joins two of these
            -- lists (a join between CTEs is planned for a guessed row count, and as a nested
            -- loop its cost grows with the square of the batch).
            select a.id, t.to_state, t.to_reason, t.actor as decided_by
            from target t join authentications a on a.id = t.row_id
            where t.allowed and a.state = 'PENDING' and a.deadline > now()
            order by a.id
            for update of a
        ), updated as (
            update authentications a set state = l.to_state, reason = l.to_reason
            from locked l
            where a.id = l.id and a.state = 'PENDING' and a.deadline > now()
            returning a.*, l.decided_by
        ), logged as (
            insert into transitions (authentication_id, from_state, to_state, cause, actor)
            select id, 'PENDING', state, 'decision', decided_by from updated
        )
        select 'applied' as kind, true as allowed, \(PostgresAuthenticationStore.columns) from updated
        union all
        select 'current', allowed, \(PostgresAuthenticationStore.columns)
        from (select a.*, t.allowed from target t join authentications a on a.id = t.row_id
              where t.row_id not in (select id from updated)) current_rows
        """, planning: .generic)
}
