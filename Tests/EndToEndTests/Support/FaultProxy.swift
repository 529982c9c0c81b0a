import Foundation
import Glibc
import Synchronization

/// A TCP proxy on loopback between the engine and PostgreSQL that can break the link on demand:
/// - `stall()`: stop forwarding in both directions but keep every connection open (a frozen
///   server or a black-holed link; new connections are accepted and held the same way),
/// - `drop()`: new connections are reset at once (a server that is gone),
/// - `cut()`: reset every current connection (a network failure mid-conversation),
/// - `heal()`: forward normally again (held connections resume where they stopped).
/// One thread accepts, one thread per connection pumps bytes; every wait is a bounded poll().
final class FaultProxy: Sendable {
    enum Mode: Sendable { case forwarding, stalled, dropping }

    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let state = Mutex(State())
    private let threadsRunning = DispatchGroup()

    private struct State {
        var mode = Mode.forwarding
        var closed = false
        /// Bumped by `cut()`: a pump whose generation is older resets its connection.
        var cutGeneration = 0
        var accepted = 0
        var open = 0
    }

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("proxy socket() failed: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw TestSetupError("proxy bind/listen failed: errno \(errno)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: actual.sin_port))
        threadsRunning.enter()
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// The URL the engine should use instead of `url`: the same, through this proxy's port.
    func url(replacingPortIn url: String) -> String {
        url.replacingOccurrences(of: ":\(upstreamPort)/", with: ":\(port)/")
    }

    func stall() { state.withLock { $0.mode = .stalled } }
    func drop() { state.withLock { $0.mode = .dropping } }
    func heal() { state.withLock { $0.mode = .forwarding } }
    func cut() { state.withLock { $0.cutGeneration += 1 } }

    var openConnections: Int { state.withLock { $0.open } }
    var acceptedConnections: Int { state.withLock { $0.accepted } }

    /// Resets every connection and stops; waits (boundedly) for the threads.
    func stop() {
        state.withLock { $0.closed = true; $0.cutGeneration += 1 }
        _ = threadsRunning.wait(timeout: .now() + 5)
    }

    // MARK: Threads

    private func acceptLoop() {
        defer { close(listener); threadsRunning.leave() }
        while !state.withLock({ $0.closed }) {
            var pending = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pending, 1, 50) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            let (mode, generation) = state.withLock { state -> (Mode, Int) in
                state.accepted += 1
                return (state.mode, state.cutGeneration)
            }
            if mode == .dropping {
                Self.reset(client)
                continue
            }
            let upstream = Self.connectUpstream(upstreamPort)
            guard upstream >= 0 else {
                Self.reset(client)
                continue
            }
            state.withLock { $0.open += 1 }
            threadsRunning.enter()
            Thread.detachNewThread { [self] in
                pump(client, upstream, generation: generation)
                state.withLock { $0.open -= 1 }
                threadsRunning.leave()
            }
        }
    }

    /// Copies bytes both ways while forwarding; holds them while stalled; resets both ends when
    /// cut (or when the proxy stops).
    private func pump(_ client: Int32, _ upstream: Int32, generation: Int) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let (mode, cutGeneration, closed) = state.withLock { ($0.mode, $0.cutGeneration, $0.closed) }
            if closed || cutGeneration != generation {
                Self.reset(client)
                Self.reset(upstream)
                return
            }
            if mode == .stalled {
                _ = poll(nil, 0, 20)
                continue
            }
            var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, 20) > 0 else { continue }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                let from = index == 0 ? client : upstream
                let to = index == 0 ? upstream : client
                let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
                if n <= 0 || !Self.sendAll(to, buffer, count: n) {
                    // One side closed or failed: close both (a FIN, as a real peer would).
                    close(client)
                    close(upstream)
                    return
                }
            }
        }
    }

    // MARK: Sockets

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private static func connectUpstream(_ port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    private static func sendAll(_ fd: Int32, _ buffer: [UInt8], count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Closes with SO_LINGER 0: the peer sees a reset, not an orderly end of stream.
    private static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }
}
