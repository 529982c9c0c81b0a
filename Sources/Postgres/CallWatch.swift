import Dispatch
import Glibc
import Synchronization

/// How long a connection's current blocking libpq call has been waiting, so the pool's watchdog
/// can end one that outlived the statement timeout.
///
/// The server's `statement_timeout` ends a slow statement, but only if its answer can reach us:
/// when the server is frozen or the link stops forwarding without closing (a stalled proxy or
/// firewall keeps acknowledging at the TCP level, so keepalives see nothing wrong), libpq waits
/// in `poll()` with no time limit and the pool thread, and the request on it, would hang until
/// the link came back. Shutting the socket down wakes that `poll()`: libpq reports the
/// connection lost, the request fails as unavailable (503), and the pool opens a new connection.
final class CallWatch: Sendable {
    /// `DispatchTime` uptime nanoseconds when the current call started; 0 when none runs.
    private let startedAt = Atomic<UInt64>(0)
    private let socket: Int32

    init(socket: Int32) {
        self.socket = socket
    }

    func begin() { startedAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed) }
    func end() { startedAt.store(0, ordering: .relaxed) }

    /// Shuts the socket down if the current call has run longer than `limit` nanoseconds.
    /// The pool calls it with its lock held, and a connection is unregistered under that lock
    /// before `PQfinish` closes the socket, so the descriptor is still this connection's.
    /// True when it interrupted the call.
    func interruptIfStuck(now: UInt64, limit: UInt64) -> Bool {
        let started = startedAt.load(ordering: .relaxed)
        guard started != 0, now > started, now - started > limit, socket >= 0 else { return false }
        // shutdown (not close): the descriptor stays valid for libpq, which then sees end of file.
        return shutdown(socket, Int32(SHUT_RDWR)) == 0
    }
}
