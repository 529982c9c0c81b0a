import Foundation

/// Runs a test's blocking work (sockets, libpq, waiting for a child process) on a thread of its
/// own: Swift's cooperative pool has one thread per core (two here), and other suites' servers
/// answer from it, so a test that blocks it stalls them. Not Dispatch's global queue: on Linux
/// it adds threads for blocked work only about once a second, which serialises parallel tests.
public func runOffPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
