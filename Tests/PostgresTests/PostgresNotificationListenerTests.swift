import Foundation
import Postgres
import Synchronization
import Testing

@Suite("PostgresNotificationListener against a real server")
struct PostgresNotificationListenerTests {
    /// Everything the listener reported, in order.
    final class Recorder: Sendable {
        let events = Mutex<[PostgresNotificationListener.Event]>([])
        /// Each heartbeat's send time and when the listener's thread reported it back.
        let roundTrips = Mutex<[(sent: UInt64, received: UInt64)]>([])
        func record(_ event: PostgresNotificationListener.Event) {
            if case .heartbeat(let sent) = event {
                let received = PostgresNotificationListener.monotonicNanoseconds()
                roundTrips.withLock { $0.append((sent, received)) }
            }
            events.withLock { $0.append(event) }
        }
        var all: [PostgresNotificationListener.Event] { events.withLock { $0 } }
        var heartbeats: [UInt64] {
            all.compactMap { if case .heartbeat(let sent) = $0 { sent } else { nil } }
        }
        func count(_ event: PostgresNotificationListener.Event) -> Int { all.filter { $0 == event }.count }
    }

    /// A channel of its own, so concurrent tests do not hear each other.
    static func channel() -> String { TestDatabase.uniqueName("listen").lowercased() }

    @Test func notificationsAndHeartbeatsArriveInOrder() async throws {
        let channel = Self.channel()
        let recorder = Recorder()
        let listener = PostgresNotificationListener(configuration: try TestDatabase.configuration(), channel: channel,
                                                    onEvent: recorder.record)
        listener.start()
        defer { listener.shutdown() }
        #expect(await eventually { recorder.count(.connected) == 1 })
        #expect(await eventually { recorder.heartbeats.count >= 3 }, "heartbeats every 20 ms")

        let sender = try TestDatabase.connect()
        for index in 0..<3 { _ = try sender.query("select pg_notify($1, $2)", [channel, "ISSUER0001/a\(index)"]) }
        // Empty payloads from another session are someone else's heartbeats: not ours.
        _ = try sender.query("select pg_notify($1, '')", [channel])
        _ = try sender.query("select pg_notify('some_other_channel', 'x')")
        let committed = PostgresNotificationListener.monotonicNanoseconds()
        // A heartbeat sent after the notifications committed comes back after them: that is
        // what bounds how stale memory filled from them can be.
        #expect(await eventually { recorder.heartbeats.contains { $0 > committed } })
        let events = recorder.all
        let payloads = events.compactMap { if case .notification(let payload) = $0 { payload } else { nil } }
        #expect(payloads == ["ISSUER0001/a0", "ISSUER0001/a1", "ISSUER0001/a2"])
        let lastNotification = try #require(events.lastIndex(of: .notification("ISSUER0001/a2")))
        let laterHeartbeat = try #require(events.firstIndex { if case .heartbeat(let sent) = $0 { sent > committed } else { false } })
        #expect(lastNotification < laterHeartbeat)
        let heartbeats = recorder.heartbeats
        #expect(zip(heartbeats, heartbeats.dropFirst()).allSatisfy { $0 < $1 }, "send times ascend")
        #expect(heartbeats.last! <= PostgresNotificationListener.monotonicNanoseconds())
        // Heartbeats keep coming back, each soon after it was sent: timed from the listener's own
        // thread, not from this task, which a loaded machine may resume late (generous bound).
        let sentAt = PostgresNotificationListener.monotonicNanoseconds()
        #expect(await eventually { recorder.heartbeats.contains { $0 > sentAt } })
        let roundTrip = try #require(recorder.roundTrips.withLock { $0.first { $0.sent > sentAt } })
        #expect(roundTrip.received - roundTrip.sent < 2_000_000_000)
        #expect(recorder.count(.disconnected) == 0)
    }

    @Test func aTerminatedSessionIsReportedAndReplaced() async throws {
        let channel = Self.channel()
        let recorder = Recorder()
        let listener = PostgresNotificationListener(configuration: try TestDatabase.configuration(), channel: channel,
                                                    onEvent: recorder.record)
        listener.start()
        defer { listener.shutdown() }
        #expect(await eventually { recorder.count(.connected) == 1 && listener.backendProcessID != nil })
        let first = try #require(listener.backendProcessID)

        let admin = try TestDatabase.connect()
        _ = try admin.query("select pg_terminate_backend($1::int)", [String(first)])
        #expect(await eventually { recorder.count(.disconnected) >= 1 })
        #expect(await eventually { recorder.count(.connected) == 2 }, "reconnected")
        #expect(await eventually { (listener.backendProcessID ?? first) != first })
        // LISTEN again: a notification after the reconnect arrives, and heartbeats come back.
        let heartbeatsBefore = recorder.heartbeats.count
        _ = try admin.query("select pg_notify($1, 'ISSUER0001/after')", [channel])
        #expect(await eventually { recorder.count(.notification("ISSUER0001/after")) == 1 })
        #expect(await eventually { recorder.heartbeats.count > heartbeatsBefore + 2 })
        // Order of the story: connected, disconnected, connected.
        let sessions = recorder.all.filter { $0 == .connected || $0 == .disconnected }
        #expect(sessions.first == .connected)
        #expect(sessions.last == .connected)
    }

    @Test func anUnreachableServerIsReportedAndShutdownIsBounded() async throws {
        let recorder = Recorder()
        // A port nothing listens on: every attempt fails at once.
        let configuration = PostgresConfiguration(url: "postgresql://oob@127.0.0.1:1/oob", connectTimeoutSeconds: 2)
        let listener = PostgresNotificationListener(configuration: configuration, channel: Self.channel(),
                                                    maximumBackoff: .milliseconds(100), onEvent: recorder.record)
        listener.start()
        #expect(await eventually { recorder.count(.disconnected) >= 3 }, "retries with a bounded back-off")
        #expect(recorder.count(.connected) == 0)
        let started = ContinuousClock.now
        listener.shutdown()
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(listener.backendProcessID == nil)
    }
}
