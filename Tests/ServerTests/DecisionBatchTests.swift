import Engine
import Foundation
import Postgres
import Server
import Testing

/// The batched decision statement against the real database: every kind of decision in one
/// batch gets its own answer, only the applied ones change a row and write a transition, and a
/// batch of 200 (where a join between the statement's lists used to grow with the square of the
/// batch) decides each row exactly once. Planned generic, as the engine runs it.
@Suite(.serialized)
struct DecisionBatchTests {
    static let issuer = "ISSUERDECI"

    struct Setup {
        var connection: PostgresConnection
        var consumer: String
        var prefix: String
    }

    static func setUp() throws -> Setup {
        let connection = try PostgresConnection.connect(try TestDatabase.configuration())
        try Migration.apply(connection)
        let tag = UUID().uuidString.prefix(8).lowercased()
        let consumer = "decide-consumer-\(tag)"
        _ = try connection.query("""
            insert into authenticators (issuer_id, consumer_id, app_instance_id, authn_type)
            values ($1, $2, 'decide-app', 'BIOMETRIC')
            """, [issuer, consumer])
        return Setup(connection: connection, consumer: consumer, prefix: "decide-\(tag)")
    }

    static func insert(_ setup: Setup, _ ids: [String], deadlineSeconds: Int, state: String = "PENDING") throws {
        _ = try setup.connection.query("""
            insert into authentications (issuer_id, authentication_id, consumer_id, state, reason, deadline)
            select $1, id, $2, $4, case when $4 = 'PENDING' then null else 'expired' end,
                   now() + make_interval(secs => $3::int)
            from unnest($5::text[]) as id
            """, [issuer, setup.consumer, String(deadlineSeconds), state, PostgresArray.text(ids)])
    }

    static func decision(_ id: String, app: String = "decide-app") -> PostgresAuthenticationStore.DecisionInput {
        PostgresAuthenticationStore.DecisionInput(
            request: DecisionRequest(issuerId: issuer, authenticationId: id, decision: .approve,
                                     appInstanceId: app, actor: "app/\(app)"),
            target: AuthenticationStatus(state: .authenticated, reason: nil),
            actor: "app/\(app)")
    }

    static func decisionTransitions(_ setup: Setup, _ ids: [String]) throws -> [String: Int] {
        let rows = try setup.connection.query("""
            select a.authentication_id, count(*) as n from transitions t join authentications a on a.id = t.authentication_id
            where a.issuer_id = $1 and a.authentication_id = any($2::text[]) and t.cause = 'decision'
              and t.from_state = 'PENDING' and t.to_state = 'AUTHENTICATED' and t.actor = 'app/decide-app'
            group by a.authentication_id
            """, [issuer, PostgresArray.text(ids)])
        var counts: [String: Int] = [:]
        for row in 0..<rows.count {
            if let id = rows.string(row, "authentication_id") { counts[id] = rows.int(row, "n") }
        }
        return counts
    }

    @Test func everyKindOfDecisionInOneBatchGetsItsOwnAnswer() throws {
        let setup = try Self.setUp()
        let pending = "\(setup.prefix)-pending"
        let ended = "\(setup.prefix)-ended"
        let stranger = "\(setup.prefix)-stranger"
        let late = "\(setup.prefix)-late"
        let unknown = "\(setup.prefix)-unknown"
        try Self.insert(setup, [pending, stranger], deadlineSeconds: 60)
        try Self.insert(setup, [ended], deadlineSeconds: 60, state: "AUTHENTICATION_FAILED")
        try Self.insert(setup, [late], deadlineSeconds: -5)
        let items = [Self.decision(late), Self.decision(unknown), Self.decision(stranger, app: "other-app"),
                     Self.decision(pending), Self.decision(ended)]
        let results = try PostgresAuthenticationStore.decideBatch(items, on: setup.connection, cache: AuthenticationCache())
        #expect(results.count == items.count)
        guard results.count == items.count else { return }

        guard case .success(.unchanged(let lateRecord)) = results[0] else {
            Issue.record("past its deadline: \(results[0])")
            return
        }
        #expect(lateRecord.status.state == .pending)
        #expect(lateRecord.isPastDeadline)
        guard case .success(.notFound) = results[1] else {
            Issue.record("unknown: \(results[1])")
            return
        }
        guard case .success(.notAnAuthenticator) = results[2] else {
            Issue.record("another app instance: \(results[2])")
            return
        }
        guard case .success(.applied(let applied)) = results[3] else {
            Issue.record("pending: \(results[3])")
            return
        }
        #expect(applied.authenticationId == pending)
        #expect(applied.status.state == .authenticated)
        guard case .success(.unchanged(let endedRecord)) = results[4] else {
            Issue.record("already ended: \(results[4])")
            return
        }
        #expect(endedRecord.status.state == .authenticationFailed)

        // Only the applied decision changed a row and wrote a transition.
        let states = try setup.connection.query("""
            select authentication_id, state from authentications where issuer_id = $1 and authentication_id = any($2::text[])
            """, [Self.issuer, PostgresArray.text([pending, ended, stranger, late])])
        var stateById: [String: String] = [:]
        for row in 0..<states.count {
            if let id = states.string(row, "authentication_id") { stateById[id] = states.string(row, "state") }
        }
        #expect(stateById == [pending: "AUTHENTICATED", ended: "AUTHENTICATION_FAILED", stranger: "PENDING", late: "PENDING"])
        #expect(try Self.decisionTransitions(setup, [pending, ended, stranger, late]) == [pending: 1])
    }

    @Test func aBatchOfTwoHundredDecidesEachRowOnce() throws {
        let setup = try Self.setUp()
        let ids = (0..<200).map { "\(setup.prefix)-\($0)" }
        try Self.insert(setup, ids, deadlineSeconds: 60)
        // Every fourth was decided already: the batch answers those with the row as it is.
        let decidedFirst = stride(from: 0, to: ids.count, by: 4).map { Self.decision(ids[$0]) }
        let first = try PostgresAuthenticationStore.decideBatch(decidedFirst, on: setup.connection, cache: AuthenticationCache())
        #expect(first.allSatisfy { if case .success(.applied) = $0 { true } else { false } })

        let results = try PostgresAuthenticationStore.decideBatch(ids.reversed().map { Self.decision($0) },
                                                                   on: setup.connection, cache: AuthenticationCache())
        #expect(results.count == ids.count)
        var applied = 0
        var unchanged = 0
        for (id, result) in zip(ids.reversed(), results) {
            switch result {
            case .success(.applied(let record)):
                #expect(record.authenticationId == id)
                applied += 1
            case .success(.unchanged(let record)):
                #expect(record.authenticationId == id)
                #expect(record.status.state == .authenticated)
                unchanged += 1
            default:
                Issue.record("\(id): \(result)")
            }
        }
        #expect(applied == 150)
        #expect(unchanged == 50)
        let transitions = try Self.decisionTransitions(setup, ids)
        #expect(transitions.count == ids.count)
        #expect(transitions.values.allSatisfy { $0 == 1 })
    }
}
