import Foundation
import Synchronization

/// Foundation's `Process.run()` on Linux is not safe to call from several threads at once (the
/// test process crashed inside it, in memcpy, with many end-to-end tests starting engines in
/// parallel): every launch in the tests goes through this one lock. A launch takes milliseconds.
enum ProcessLaunch {
    private static let lock = Mutex(())

    static func run(_ process: Process) throws {
        try lock.withLock { _ in try process.run() }
    }
}
