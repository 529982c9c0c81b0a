import Foundation
import Postgres
import Server
import Synchronization
import Testing

/// The schema's announcement of changes (`authentications_announce_changes`), against the real
/// database: one notification per statement carrying the keys it changed, up to 64 per
/// notification (PostgreSQL refuses a payload over 8000 bytes, and the update with it), each key
/// once. Every instance's poll cache depends on it to drop PENDING records another changed.
@Suite(.serialized)
struct ChangeAnnouncementTests {
    static let issuer = "ISSUERANN1"

    final class Received: Sendable {
        let payloads = Mutex<[String]>([])
        let connected = Mutex(false)
        func record(_ event: PostgresNotificationListener.Event) {
            switch event {
            case .notification(let payload): payloads.withLock { $0.append(payload) }
            case .connected: connected.withLock { $0 = true }
            case .disconnected, .heartbeat: break
            }
        }
        /// The payloads that name at least one key starting with `prefix`.
        func payloads(naming prefix: String) -> [[Substring]] {
            payloads.withLock { $0 }.map { $0.split(separator: " ") }.filter { $0.contains { $0.hasPrefix(prefix) } }
        }
    }

    /// Polls `condition` until it holds or 10 s have passed.
    static func eventually(_ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    @Test func oneStatementIsAnnouncedInNotificationsOfAtMost64Keys() async throws {
        let received = Received()
        let listener = PostgresNotificationListener(configuration: try TestDatabase.configuration(),
                                                    channel: AuthenticationCache.channel, onEvent: received.record)
        listener.start()
        defer { listener.shutdown() }
        #expect(await Self.eventually { received.connected.withLock { $0 } })

        let connection = try PostgresConnection.connect(try TestDatabase.configuration())
        try Migration.apply(connection)
        let run = "ann-\(UUID().uuidString.prefix(8).lowercased())"
        let many = 130, single = "\(run)-single"
        _ = try connection.query("""
            insert into authentications (issuer_id, authentication_id, consumer_id, state, deadline)
            select $1, $2 || '-' || g, 'ann-consumer', 'PENDING', now() + interval '1 minute'
            from generate_series(1, \(many)) g
            union all select $1, $3, 'ann-consumer', 'PENDING', now() + interval '1 minute'
            """, [Self.issuer, run, single])
        // Creating announces nothing: nobody can hold a record of what did not exist.
        // One statement ending 130, then one ending a single authentication (as an operator's
        // psql session would).
        let ended = try connection.query("""
            update authentications set state = 'AUTHENTICATION_FAILED', reason = 'expired'
            where issuer_id = $1 and authentication_id like $2 || '-%' and authentication_id <> $3
            """, [Self.issuer, run, single])
        #expect(ended.affectedRows == many)
        _ = try connection.query("""
            update authentications set state = 'AUTHENTICATED' where issuer_id = $1 and authentication_id = $2
            """, [Self.issuer, single])

        let keyPrefix = "\(Self.issuer)/\(run)-"
        #expect(await Self.eventually { received.payloads(naming: keyPrefix).flatMap { $0 }.count == many + 1 })
        let payloads = received.payloads(naming: keyPrefix)
        let expected = Set((1...many).map { "\(keyPrefix)\($0)" } + ["\(Self.issuer)/\(single)"])
        let keys = payloads.flatMap { $0 }.map(String.init)
        #expect(keys.count == expected.count && Set(keys) == expected, "each key announced exactly once")
        // The 130 in three notifications (64, 64, 2), the single one alone: each statement's
        // keys, never mixed with another statement's.
        #expect(payloads.map(\.count).sorted() == [1, 2, 64, 64])
        #expect(payloads.allSatisfy { $0.allSatisfy { $0.hasPrefix(keyPrefix) } })
        #expect(received.payloads.withLock { $0 }.allSatisfy { $0.utf8.count < 8000 })
    }

    /// A database from before 2026-12-02 announced with a row trigger; applying the schema
    /// replaces it (two triggers would announce every change twice).
    @Test func theRowTriggerOfAnOlderDatabaseIsReplaced() throws {
        let connection = try PostgresConnection.connect(try TestDatabase.configuration())
        try Migration.apply(connection)
        try connection.executeScript("""
            drop trigger authentications_announce_changes on authentications;
            create function authentications_notify_change() returns trigger language plpgsql as $$
            begin
                perform pg_notify('oob_authentication_changed', new.issuer_id || '/' || new.authentication_id);
                return null;
            end $$;
            create trigger authentications_notify_change after update on authentications
                for each row when (old.state is distinct from new.state) execute function authentications_notify_change();
            """)
        try Migration.apply(connection)
        let triggers = try connection.query("""
            select tgname from pg_trigger where tgrelid = 'authentications'::regclass and not tgisinternal
              and (tgtype & 16) <> 0 and (tgtype & 2) = 0 order by tgname
            """)
        #expect((0..<triggers.count).map { triggers.string($0, "tgname") } == ["authentications_announce_changes"],
                "the AFTER UPDATE triggers")
        let function = try connection.query("select count(*) as n from pg_proc where proname = 'authentications_notify_change'")
        #expect(function.string(0, "n") == "0")
    }
}
