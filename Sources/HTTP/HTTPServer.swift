import Glibc
import Synchronization

/// Why `HTTPServer.start()` failed.
package enum HTTPServerError: Error, Sendable, CustomStringConvertible {
    case invalidHost(String)
    case alreadyShutDown
    case system(SystemError)

    package var description: String {
        switch self {
        case .invalidHost(let host): "cannot listen on \"\(host)\": give an IPv4 or IPv6 literal or localhost"
        case .alreadyShutDown: "the server was shut down and cannot start again"
        case .system(let error): error.description
        }
    }
}

/// The engine's HTTP/1.1 server: `start()` binds and runs `eventLoops` epoll threads;
/// `shutdown()` stops accepting, lets requests in flight finish (bounded), then closes all.
package final class HTTPServer: Sendable {
    /// How long `shutdown()` waits for requests in flight before closing regardless.
    private static let shutdownWait: Int64 = 10_000_000_000

    private struct Running: @unchecked Sendable { // pthread_t handles, joined once by shutdown() under the state lock's hand-off.
        let context: ServerContext
        let loops: [EventLoop]
        let threads: [pthread_t]
        let port: Int
    }

    private enum State: Sendable {
        case idle
        case running(Running)
        case stopped
    }

    private let configuration: HTTPServerConfiguration
    private let handler: any HTTPHandler
    private let log: @Sendable (HTTPServerLogEvent) -> Void
    private let state = Mutex(State.idle)

    package init(configuration: HTTPServerConfiguration, handler: any HTTPHandler,
                 log: @escaping @Sendable (HTTPServerLogEvent) -> Void = { _ in }) {
        self.configuration = configuration
        self.handler = handler
        self.log = log
    }

    /// Binds (SO_REUSEADDR), listens and starts the loops. Returns the bound port (useful with
    /// port 0). Calling it again while running returns the same port.
    @discardableResult
    package func start() throws -> Int {
        try state.withLock { state throws(HTTPServerError) -> Int in
            switch state {
            case .running(let running): return running.port
            case .stopped: throw .alreadyShutDown
            case .idle: break
            }
            // A peer that vanishes must give EPIPE, never kill the process.
            signal(SIGPIPE, SIG_IGN)
            raiseOpenFileLimit()
            let (listenFD, port) = try Self.listen(host: configuration.host, port: configuration.port)
            let context = ServerContext(configuration: configuration, handler: handler, log: log, listenFD: listenFD)
            var loops: [EventLoop] = []
            do throws(SystemError) {
                for _ in 0..<max(1, configuration.eventLoops) {
                    loops.append(try EventLoop(context: context))
                }
            } catch {
                loops.forEach { $0.closeResources() }
                close(listenFD)
                throw .system(error)
            }
            var threads: [pthread_t] = []
            for loop in loops {
                do throws(SystemError) {
                    threads.append(try Self.startThread { loop.run() })
                } catch {
                    context.phase = .stopping
                    loops.forEach { $0.wake() }
                    threads.forEach { _ = pthread_join($0, nil) }
                    loops.forEach { $0.closeResources() }
                    close(listenFD)
                    throw .system(error)
                }
            }
            state = .running(Running(context: context, loops: loops, threads: threads, port: port))
            log(.listening(host: configuration.host, port: port))
            return port
        }
    }

    /// Graceful and idempotent: stops accepting, closes idle connections, lets requests in flight
    /// finish and their responses go out (at most 10 s), then closes everything and joins the
    /// loop threads. After it returns no server thread calls the handler. It blocks: call it from
    /// a plain thread, not from Swift's cooperative pool if handlers still need that pool.
    package func shutdown() {
        let running: Running? = state.withLock { state in
            defer { state = .stopped }
            if case .running(let running) = state { return running }
            return nil
        }
        guard let running else { return }
        let context = running.context
        context.phase = .draining
        running.loops.forEach { $0.wake() }
        let deadline = monotonicNanoseconds() + Self.shutdownWait
        while context.openConnections.load(ordering: .acquiring) > 0 || context.inFlight.current > 0 {
            if monotonicNanoseconds() >= deadline {
                log(.shutdownTimedOut(openConnections: context.openConnections.load(ordering: .acquiring),
                                      requestsInFlight: context.inFlight.current))
                break
            }
            usleep(2_000)
        }
        context.phase = .stopping
        running.loops.forEach { $0.wake() }
        for thread in running.threads { _ = pthread_join(thread, nil) }
        running.loops.forEach { $0.closeResources() }
        close(context.listenFD)
    }

    deinit {
        shutdown()
    }

    // MARK: - Setup

    private static func listen(host: String, port: Int) throws(HTTPServerError) -> (Int32, Int) {
        var literal = host
        if literal.hasPrefix("[") && literal.hasSuffix("]") { literal = String(literal.dropFirst().dropLast()) }
        if literal == "localhost" { literal = "127.0.0.1" }
        guard (0...65_535).contains(port) else { throw .invalidHost("\(host):\(port)") }
        var address4 = sockaddr_in()
        var address6 = sockaddr_in6()
        let family: Int32
        if inet_pton(AF_INET, literal, &address4.sin_addr) == 1 {
            family = AF_INET
            address4.sin_family = sa_family_t(AF_INET)
            address4.sin_port = in_port_t(UInt16(port).bigEndian)
        } else if inet_pton(AF_INET6, literal, &address6.sin6_addr) == 1 {
            family = AF_INET6
            address6.sin6_family = sa_family_t(AF_INET6)
            address6.sin6_port = in_port_t(UInt16(port).bigEndian)
        } else {
            throw .invalidHost(host)
        }
        let fd: Int32
        do {
            fd = try systemCall("socket") {
                socket(family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            }
        } catch {
            throw .system(error)
        }
        do {
            var one: Int32 = 1
            try systemCall("setsockopt(SO_REUSEADDR)") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if family == AF_INET {
                try systemCall("bind") {
                    withUnsafePointer(to: &address4) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                }
            } else {
                try systemCall("bind") {
                    withUnsafePointer(to: &address6) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                        }
                    }
                }
            }
            try systemCall("listen") { Glibc.listen(fd, SOMAXCONN) }
            var bound = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            try systemCall("getsockname") {
                withUnsafeMutablePointer(to: &bound) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
                }
            }
            let boundPort = withUnsafePointer(to: &bound) { pointer in
                family == AF_INET
                    ? pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
                    : pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return (fd, boundPort)
        } catch {
            close(fd)
            throw .system(error)
        }
    }

    private final class ThreadBody {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// A plain pthread: the loop blocks in epoll_wait, which must not happen on the cooperative pool.
    private static func startThread(_ body: @escaping @Sendable () -> Void) throws(SystemError) -> pthread_t {
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: result)
        }
        return thread
    }
}
