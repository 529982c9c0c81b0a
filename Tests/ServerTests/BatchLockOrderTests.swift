import Dispatch
import Engine
import Foundation
import Postgres
import Server
import Synchronization
import Testing

/// Group commit puts many rows in one statement, and two statements run at once (two drainers,
/// or a drainer and the deadline expirer). If they take their row locks in different orders
/// they deadlock, and PostgreSQL kills one: its whole batch would be answered with a 500. These
/// tests run two batches over the same rows in opposite orders, at the same moment, against the
/// real database, and require both to succeed.
@Suite(.serialized)
struct BatchLockOrderTests {
    static let issuer = "ISSUERLOCK"
    static let rows = 120
    static let rounds = 12

    /// Two connections: the two batches run at once.
    static func configuration() throws -> PostgresConfiguration { try TestDatabase.configuration(poolSize: 2) }

    /// Runs `first` and `second` on the pool's two connections, released together.
    static func together<T: Sendable>(_ pool: PostgresPool,
                                      _ first: @escaping @Sendable (PostgresConnection) throws -> T,
                                      _ second: @escaping @Sendable (PostgresConnection) throws -> T)
        -> [Result<T, any Error>]
    {
        let results = Mutex<[Int: Result<T, any Error>]>([:])
        let ready = DispatchGroup()
        ready.enter()
        ready.enter()
        let start = DispatchSemaphore(value: 0)
        let bodies = [first, second]
        DispatchQueue.concurrentPerform(iterations: 2) { index in
            ready.leave()
            // Bounded: the other side signals at once; a missing signal only means less overlap.
            if index == 0 {
                _ = ready.wait(timeout: .now() + 5)
                start.signal()
            } else {
                _ = start.wait(timeout: .now() + 5)
            }
            let result = Result { try pool.withConnectionBlocking { try bodies[index]($0) } }
            results.withLock { $0[index] = result }
        }
        return results.withLock { [$0[0]!, $0[1]!] }
    }

    /// The per-item answers of the batches that succeeded, each holding one answer per row; a
    /// batch that failed as a whole (the deadlock victim) is recorded as an issue.
    static func answers<T>(_ outcomes: [Result<[Result<T, any Error>], any Error>], round: Int) -> [[Result<T, any Error>]] {
        outcomes.compactMap { outcome in
            switch outcome {
            case .failure(let error):
                Issue.record("round \(round): a batch failed: \(error)")
                return nil
            case .success(let results):
                #expect(results.count == Self.rows)
                return results
            }
        }
    }

    @Test func concurrentDecisionBatchesInOppositeOrdersDoNotDeadlock() throws {
        let setup = try PostgresConnection.connect(try Self.configuration())
        try Migration.apply(setup)
        let pool = PostgresPool(configuration: try Self.configuration())
        defer { pool.shutdown() }
        let tag = UUID().uuidString.prefix(8).lowercased()
        let consumer = "lock-consumer-\(tag)"
        _ = try setup.query("""
            insert into authenticators (issuer_id, consumer_id, app_instance_id, authn_type)
            values ($1, $2, 'lock-app', 'BIOMETRIC')
            """, [Self.issuer, consumer])
        let cache = AuthenticationCache()
        var applied = 0
        for round in 0..<Self.rounds {
            let prefix = "lock-\(tag)-\(round)"
            _ = try setup.query("""
                insert into authentications (issuer_id, authentication_id, consumer_id, state, deadline)
                select $1, $2 || '-' || g, $3, 'PENDING', now() + interval '60 seconds'
                from generate_series(0, $4::int - 1) g
                """, [Self.issuer, prefix, consumer, String(Self.rows)])
            func decisions(_ decision: CardholderDecision) -> [PostgresAuthenticationStore.DecisionInput] {
                (0..<Self.rows).map { index in
                    PostgresAuthenticationStore.DecisionInput(
                        request: DecisionRequest(issuerId: Self.issuer, authenticationId: "\(prefix)-\(index)",
                                                 decision: decision, appInstanceId: "lock-app", actor: "lock-test"),
                        target: AuthenticationStatus(state: decision == .approve ? .authenticated : .authenticationFailed,
                                                     reason: decision == .approve ? nil : "declined by cardholder"),
                        actor: "lock-test")
                }
            }
            let approvals = decisions(.approve)
            let declines = Array(decisions(.decline).reversed())
            let outcomes = Self.together(pool,
                                         { try PostgresAuthenticationStore.decideBatch(approvals, on: $0, cache: cache) },
                                         { try PostgresAuthenticationStore.decideBatch(declines, on: $0, cache: cache) })
            var winners: [String: Int] = [:]
            let batches = Self.answers(outcomes, round: round)
            for results in batches {
                for case .success(.applied(let record)) in results {
                    winners[record.authenticationId, default: 0] += 1
                }
            }
            if batches.count == outcomes.count {
                #expect(winners.count == Self.rows, "round \(round): every authentication was decided once")
                #expect(winners.values.allSatisfy { $0 == 1 })
            }
            applied += winners.count
        }
        #expect(applied == Self.rows * Self.rounds)
    }

    @Test func concurrentInsertBatchesInOppositeOrdersDoNotDeadlock() throws {
        let setup = try PostgresConnection.connect(try Self.configuration())
        try Migration.apply(setup)
        let pool = PostgresPool(configuration: try Self.configuration())
        defer { pool.shutdown() }
        let tag = UUID().uuidString.prefix(8).lowercased()
        let cache = AuthenticationCache()
        for round in 0..<Self.rounds {
            let creates = (0..<Self.rows).map { index in
                NewAuthentication(issuerId: Self.issuer, consumerId: "lock-nobody-\(tag)",
                                  request: AuthenticateRequest(authenticationId: "lock-new-\(tag)-\(round)-\(index)"),
                                  challengeTTLSeconds: 60, actor: "lock-test")
            }
            let reversed = Array(creates.reversed())
            let outcomes = Self.together(pool,
                                         { try PostgresAuthenticationStore.createBatch(creates, on: $0, cache: cache) },
                                         { try PostgresAuthenticationStore.createBatch(reversed, on: $0, cache: cache) })
            var created = 0
            let batches = Self.answers(outcomes, round: round)
            for results in batches {
                for result in results {
                    switch result {
                    case .success(.created): created += 1
                    case .success(.existing): break
                    case .failure(let error): Issue.record("round \(round): \(error)")
                    }
                }
            }
            if batches.count == outcomes.count { #expect(created == Self.rows, "round \(round): each row inserted exactly once") }
        }
    }
}
