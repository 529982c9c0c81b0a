import Glibc
import Synchronization

/// State every loop of one server shares. Immutable, or atomic.
final class ServerContext: Sendable {
    enum Phase: Int {
        case running = 0
        /// Stop accepting; finish what is in flight; close connections as they become idle.
        case draining = 1
        /// Close everything and let the threads end.
        case stopping = 2
    }

    let configuration: HTTPServerConfiguration
    let handler: any HTTPHandler
    let log: @Sendable (HTTPServerLogEvent) -> Void
    let listenFD: Int32
    let inFlight = InFlightCounter()
    let openConnections = Atomic<Int>(0)
    private let phaseValue = Atomic<Int>(Phase.running.rawValue)

    init(configuration: HTTPServerConfiguration, handler: any HTTPHandler,
         log: @escaping @Sendable (HTTPServerLogEvent) -> Void, listenFD: Int32) {
        self.configuration = configuration
        self.handler = handler
        self.log = log
        self.listenFD = listenFD
    }

    var phase: Phase {
        get { Phase(rawValue: phaseValue.load(ordering: .acquiring)) ?? .stopping }
        set { phaseValue.store(newValue.rawValue, ordering: .releasing) }
    }
}

/// One client connection; touched only by its loop's thread.
///
/// Its state and the loop's own are `@exclusivity(unchecked)`: only the loop's thread touches
/// them, and no access overlaps another (the loop takes a list out before it acts on it, and never
/// hands out an `inout` to this state across a call that could come back to it). The dynamic
/// checks cost about a tenth of a request's CPU on the trivial route (issue 8's benchmark).
final class Connection {
    let id: UInt64
    let fd: Int32
    let remoteAddress: String
    @exclusivity(unchecked) var parser: HTTPRequestParser
    @exclusivity(unchecked) var output: [UInt8] = []
    @exclusivity(unchecked) var outputOffset = 0
    /// A request is with the handler; nothing else is parsed until its response is written.
    @exclusivity(unchecked) var awaitingResponse = false
    /// Sequence number of the request handed out last; a late or duplicate delivery for an older
    /// one is ignored.
    @exclusivity(unchecked) var requestID: UInt64 = 0
    @exclusivity(unchecked) var requestIsHead = false
    @exclusivity(unchecked) var requestIsHTTP10 = false
    @exclusivity(unchecked) var requestKeepAlive = true
    @exclusivity(unchecked) var closeAfterFlush = false
    @exclusivity(unchecked) var inputClosed = false
    /// Our side is shut for writing; we read and discard until the peer closes, so that closing
    /// with unread input does not reset the connection before the client read our answer.
    @exclusivity(unchecked) var lingering = false
    @exclusivity(unchecked) var lingerDeadline: Int64 = 0
    @exclusivity(unchecked) var lingerDiscarded = 0
    @exclusivity(unchecked) var interest = Epoll.input
    @exclusivity(unchecked) var phase = HTTPRequestParser.Phase.idle
    @exclusivity(unchecked) var phaseStart: Int64
    /// The server owed the client an answer at the last phase update.
    @exclusivity(unchecked) var owedAnswer = false
    @exclusivity(unchecked) var lastWriteProgress: Int64
    /// Closed and out of the loop's table: an answer that arrives for it is dropped.
    @exclusivity(unchecked) var isClosed = false

    init(id: UInt64, fd: Int32, remoteAddress: String, limits: HTTPParserLimits, now: Int64) {
        self.id = id
        self.fd = fd
        self.remoteAddress = remoteAddress
        self.parser = HTTPRequestParser(limits: limits)
        self.phaseStart = now
        self.lastWriteProgress = now
    }

    var pendingOutputCount: Int { output.count - outputOffset }
}

/// One epoll loop on its own thread (not Swift's cooperative pool: the loop blocks in
/// epoll_wait). It accepts from the shared listening socket (EPOLLEXCLUSIVE wakes one loop per
/// connection), parses, calls the handler, and writes responses that other threads post to its
/// mailbox (an eventfd wakes it).
final class EventLoop: @unchecked Sendable { // Loop-thread state is touched only inside run() and the methods it calls; other threads use only `deliver`/`wake` (mailbox under its Mutex) and immutable lets.
    private struct Delivery {
        var connectionID: UInt64
        var requestID: UInt64
        var response: HTTPResponse
    }

    private struct Mailbox {
        var deliveries: [Delivery] = []
        /// Task jobs enqueued from other threads (`TaskExecutor`).
        var jobs: [UnownedJob] = []
        var wakePending = false
        /// Set, under the lock, just before the eventfd is closed: afterwards nothing writes to it.
        var closed = false
    }

    private static let listenToken: UInt64 = 0
    private static let wakeToken: UInt64 = 1
    private static let readChunk = 65_536
    /// Stop parsing further pipelined requests while this much output waits for the client.
    private static let outputHighWater = 65_536
    private static let lingerTimeout: Int64 = 2_000_000_000
    private static let drainingLingerTimeout: Int64 = 200_000_000
    private static let maxLingerDiscard = 1 << 20

    private let context: ServerContext
    private let epollFD: Int32
    private let wakeFD: Int32
    private let mailbox = Mutex(Mailbox())
    private let calls = LinuxCalls.shared
    /// The loop thread's pthread_t once `run()` started: a handler that answers synchronously
    /// (on this thread, inside `handle`) skips the mailbox and its eventfd round trip.
    private let loopThread = Atomic<UInt>(0)

    // Loop-thread state.
    @exclusivity(unchecked) private var connections: [UInt64: Connection] = [:]
    @exclusivity(unchecked) private var nextConnectionID: UInt64 = 2
    @exclusivity(unchecked) private var listening = false
    @exclusivity(unchecked) private var listenResumeAt: Int64?
    @exclusivity(unchecked) private var draining = false
    @exclusivity(unchecked) private var encoder = ResponseEncoder()
    /// Answers given on the loop thread itself during `handle`; applied right after it returns.
    @exclusivity(unchecked) private var immediateDeliveries: [Delivery] = []
    /// When the loop last woke from epoll_wait: the clock for connection timeouts, read once per
    /// round rather than per request (timeouts are seconds; a round lasts milliseconds).
    @exclusivity(unchecked) private var loopNow: Int64 = monotonicNanoseconds()
    /// Task jobs enqueued on the loop thread itself; run before the loop waits again.
    @exclusivity(unchecked) private var localJobs: [UnownedJob] = []
    private let readBuffer: UnsafeMutableRawBufferPointer
    private let limits: HTTPParserLimits
    private let readAheadLimit: Int
    private let sweepInterval: Int64

    init(context: ServerContext) throws(SystemError) {
        self.context = context
        let configuration = context.configuration
        limits = HTTPParserLimits(configuration)
        readAheadLimit = max(configuration.maxPipelinedRequests, 1) * 4_096
        let shortest = min(configuration.headerReadTimeout, configuration.bodyReadTimeout, configuration.idleTimeout)
        sweepInterval = min(max(shortest.nanoseconds / 4, 10_000_000), 250_000_000)
        let calls = LinuxCalls.shared
        let epoll = try systemCall("epoll_create1") { calls.epollCreate1(Epoll.closeOnExec) }
        let wake: Int32
        do {
            wake = try systemCall("eventfd") { calls.eventFD(0, Epoll.eventFDNonBlocking | Epoll.eventFDCloseOnExec) }
        } catch {
            close(epoll)
            throw error
        }
        epollFD = epoll
        wakeFD = wake
        readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readChunk, alignment: 16)
        do {
            try control(Epoll.add, fd: wake, events: Epoll.input, token: Self.wakeToken)
        } catch {
            close(epoll)
            close(wake)
            readBuffer.deallocate()
            throw error
        }
    }

    // MARK: - Any thread

    /// Posts a response for the loop to write; dropped if the loop has ended.
    func deliver(_ response: HTTPResponse, connectionID: UInt64, requestID: UInt64) {
        if onLoopThread {
            immediateDeliveries.append(Delivery(connectionID: connectionID, requestID: requestID, response: response))
            return
        }
        let wakeFD = self.wakeFD
        mailbox.withLock { box in
            guard !box.closed else { return }
            box.deliveries.append(Delivery(connectionID: connectionID, requestID: requestID, response: response))
            if !box.wakePending {
                box.wakePending = true
                Self.signal(wakeFD)
            }
        }
    }

    /// Whether the caller runs on this loop's thread (then loop-thread state may be touched).
    private var onLoopThread: Bool { loopThread.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Queues a task job to run on the loop thread; false once the loop has ended.
    fileprivate func post(_ job: UnownedJob) -> Bool {
        if onLoopThread {
            localJobs.append(job)
            return true
        }
        let wakeFD = self.wakeFD
        return mailbox.withLock { box in
            guard !box.closed else { return false }
            box.jobs.append(job)
            if !box.wakePending {
                box.wakePending = true
                Self.signal(wakeFD)
            }
            return true
        }
    }

    /// Makes the loop look at the server's phase now.
    func wake() {
        let wakeFD = self.wakeFD
        mailbox.withLock { box in
            guard !box.closed else { return }
            Self.signal(wakeFD)
        }
    }

    private static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        // EAGAIN only when the counter is near overflow, i.e. the loop is already awake.
        _ = write(fd, &one, MemoryLayout<UInt64>.size)
    }

    /// After the loop's thread has ended: releases the descriptors. Later deliveries are dropped.
    func closeResources() {
        mailbox.withLock { box in
            box.closed = true
            box.deliveries.removeAll()
            close(wakeFD)
        }
        close(epollFD)
        readBuffer.deallocate()
    }

    // MARK: - Loop thread

    func run() {
        loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        defer { loopThread.store(0, ordering: .relaxed) }
        startListening()
        var events = [EpollEvent](repeating: EpollEvent(events: 0, data: 0), count: 256)
        var now = monotonicNanoseconds()
        var nextSweep = now + sweepInterval
        while true {
            switch context.phase {
            case .stopping:
                closeAllConnections()
                return
            case .draining:
                if !draining { beginDraining() }
            case .running:
                break
            }
            let timeoutMilliseconds = localJobs.isEmpty
                ? Int32(clamping: max(0, (nextSweep - now) / 1_000_000 + 1)) : 0
            let count = events.withUnsafeMutableBytes { buffer in
                calls.epollWait(epollFD, buffer.baseAddress, 256, timeoutMilliseconds)
            }
            if count < 0 {
                let code = errno
                if code != EINTR { context.log(.ioError("epoll_wait errno \(code)")) }
                now = monotonicNanoseconds()
                continue
            }
            loopNow = monotonicNanoseconds()
            for index in 0..<Int(count) {
                let event = events[index]
                switch event.data {
                case Self.listenToken: acceptConnections()
                case Self.wakeToken: processMailbox()
                default: connectionEvent(event.data, events: event.events)
                }
            }
            runLocalJobs()
            applyImmediateDeliveries(servicing: nil)
            now = monotonicNanoseconds()
            if now >= nextSweep {
                sweep(now: now)
                nextSweep = now + sweepInterval
            }
        }
    }

    private func control(_ operation: Int32, fd: Int32, events: UInt32, token: UInt64) throws(SystemError) {
        var event = EpollEvent(events: events, data: token)
        let calls = self.calls
        let epollFD = self.epollFD
        try systemCall("epoll_ctl") { calls.epollCtl(epollFD, operation, fd, &event) }
    }

    private func startListening() {
        guard !listening, !draining else { return }
        do {
            try control(Epoll.add, fd: context.listenFD, events: Epoll.input | Epoll.exclusive, token: Self.listenToken)
            listening = true
            listenResumeAt = nil
        } catch {
            context.log(.ioError(error.description))
        }
    }

    private func stopListening() {
        guard listening else { return }
        try? control(Epoll.delete, fd: context.listenFD, events: 0, token: Self.listenToken)
        listening = false
    }

    private func beginDraining() {
        draining = true
        stopListening()
        let lingerLimit = monotonicNanoseconds() + Self.drainingLingerTimeout
        for connection in Array(connections.values) {
            if isQuiet(connection) {
                closeConnection(connection)
            } else if connection.lingering {
                connection.lingerDeadline = min(connection.lingerDeadline, lingerLimit)
            }
        }
    }

    /// Nothing owed to the client: no request with the handler, no unsent bytes.
    private func isQuiet(_ connection: Connection) -> Bool {
        !connection.awaitingResponse && connection.pendingOutputCount == 0 && !connection.lingering
    }

    private func closeAllConnections() {
        for connection in Array(connections.values) { closeConnection(connection) }
        stopListening()
    }

    // MARK: Accepting

    private static let overloadResponse: [UInt8] = {
        var encoder = ResponseEncoder()
        var bytes: [UInt8] = []
        encoder.encode(ErrorResponses.json(503, "too many connections", headers: [("Retry-After", "1")]),
                       headRequest: false, close: true, into: &bytes)
        return bytes
    }()

    private func acceptConnections() {
        // A bounded batch, so one busy listener cannot starve the connections of this loop.
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let calls = self.calls
            let listenFD = context.listenFD
            let fd = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    calls.accept4(listenFD, address, &length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
            if fd < 0 {
                let code = errno
                switch code {
                case EINTR, ECONNABORTED, EPROTO, EPERM:
                    continue
                case EAGAIN, EWOULDBLOCK:
                    return
                default:
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the listener stays readable, so stop
                    // watching it for a moment instead of spinning.
                    context.log(.acceptFailed(errno: code))
                    stopListening()
                    listenResumeAt = monotonicNanoseconds() + 100_000_000
                    return
                }
            }
            let open = context.openConnections.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
            if open > context.configuration.maxConnections || draining {
                context.openConnections.wrappingSubtract(1, ordering: .acquiringAndReleasing)
                Self.overloadResponse.withUnsafeBytes { _ = sendNonBlocking(fd, $0) }
                close(fd)
                context.log(.rejectedOverload("connections"))
                continue
            }
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let id = nextConnectionID
            nextConnectionID += 1
            let connection = Connection(id: id, fd: fd, remoteAddress: describeAddress(storage), limits: limits,
                                        now: monotonicNanoseconds())
            do {
                try control(Epoll.add, fd: fd, events: Epoll.input, token: id)
            } catch {
                context.openConnections.wrappingSubtract(1, ordering: .acquiringAndReleasing)
                close(fd)
                context.log(.ioError(error.description))
                continue
            }
            connections[id] = connection
            context.log(.accepted(remoteAddress: connection.remoteAddress))
        }
    }

    // MARK: Connection events

    private func connectionEvent(_ id: UInt64, events: UInt32) {
        guard let connection = connections[id] else { return }
        if events & (Epoll.input | Epoll.hangUp | Epoll.error) != 0 && connection.interest & Epoll.input != 0 {
            readable(connection)
            guard connections[id] != nil else { return }
        }
        if events & Epoll.output != 0 && connection.pendingOutputCount > 0 {
            guard flush(connection) else { return }
            service(connection)
            guard connections[id] != nil else { return }
        }
        if events & (Epoll.hangUp | Epoll.error) != 0 && connection.interest & Epoll.input == 0 {
            // The peer is gone in both directions (or reset): nothing can be delivered.
            closeConnection(connection)
        }
    }

    private func readable(_ connection: Connection) {
        reading: for _ in 0..<4 {
            switch readNonBlocking(connection.fd, into: readBuffer) {
            case .transferred(let count):
                if connection.lingering {
                    connection.lingerDiscarded += count
                    if connection.lingerDiscarded > Self.maxLingerDiscard {
                        closeConnection(connection)
                        return
                    }
                    continue
                }
                connection.parser.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
                if count < readBuffer.count { break reading }
                if connection.awaitingResponse && connection.parser.bufferedByteCount >= readAheadLimit { break reading }
            case .endOfFile:
                connection.inputClosed = true
                break reading
            case .wouldBlock:
                break reading
            case .failed:
                // ECONNRESET and friends: the client is gone; a pending response is dropped.
                closeConnection(connection)
                return
            }
        }
        if connection.lingering {
            if connection.inputClosed { closeConnection(connection) }
            return
        }
        service(connection)
    }

    /// Parses and dispatches what is buffered, writes what is owed, and sets the epoll interest.
    /// Requests on one connection go to the handler one at a time, so responses leave in order.
    private func service(_ connection: Connection) {
        while true {
            var progressed = false
            parsing: while !connection.awaitingResponse && !connection.closeAfterFlush && !connection.lingering
                    && connection.pendingOutputCount < Self.outputHighWater {
                switch connection.parser.next() {
                case .needMoreData:
                    break parsing
                case .expectContinue:
                    connection.output.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
                    progressed = true
                case .failure(let error):
                    context.log(.parseError("\(error.description) from \(connection.remoteAddress)"))
                    queue(ErrorResponses.json(error.status, error.message), on: connection, headRequest: false, close: true)
                    progressed = true
                case .request(var request, let keepAlive):
                    request.remoteAddress = connection.remoteAddress
                    dispatch(request, keepAlive: keepAlive, on: connection)
                    progressed = true
                }
            }
            guard flush(connection) else { return }
            if connection.pendingOutputCount > 0 || !progressed { break }
        }
        if connection.inputClosed && isQuiet(connection) && !connection.closeAfterFlush {
            if connection.parser.phase == .idle {
                // The client stopped sending and is owed nothing.
                closeConnection(connection)
                return
            }
            // It half-closed in the middle of a request: tell it why nothing else will happen.
            context.log(.parseError("400 request incomplete from \(connection.remoteAddress)"))
            queue(ErrorResponses.json(400, "request incomplete"), on: connection, headRequest: false, close: true)
            _ = flush(connection)
            return
        }
        if draining && isQuiet(connection) && connection.parser.phase == .idle {
            closeConnection(connection)
            return
        }
        updateInterest(connection)
        updatePhase(connection, now: loopNow)
    }

    private func dispatch(_ request: HTTPRequest, keepAlive: Bool, on connection: Connection) {
        let keepAlive = keepAlive && !draining
        guard context.inFlight.tryStart(limit: context.configuration.maxInFlightRequests) else {
            context.log(.rejectedOverload("requests"))
            queue(ErrorResponses.json(503, "server busy, retry later", headers: [("Retry-After", "1")]),
                  on: connection, headRequest: request.method == "HEAD", close: !keepAlive,
                  http10KeepAlive: keepAlive && request.version == "HTTP/1.0")
            return
        }
        connection.requestID &+= 1
        connection.awaitingResponse = true
        connection.requestIsHead = request.method == "HEAD"
        connection.requestIsHTTP10 = request.version == "HTTP/1.0"
        connection.requestKeepAlive = keepAlive
        handOver(request, connectionID: connection.id, requestID: connection.requestID)
        // This connection is mid-service (the caller goes on parsing and flushing); any other
        // would need its own service pass.
        applyImmediateDeliveries(servicing: connection)
    }

    /// In its own function so the responder is released (and a forgetful handler's 500 posted)
    /// before the caller looks for answers given on this thread.
    private func handOver(_ request: HTTPRequest, connectionID: UInt64, requestID: UInt64) {
        let responder = HTTPResponder(loop: self, connectionID: connectionID, requestID: requestID,
                                      inFlight: context.inFlight)
        context.handler.handle(request, responder: responder)
    }

    /// `current`: the connection mid-service, if any (the caller services it; it is also
    /// found without a lookup).
    private func applyImmediateDeliveries(servicing current: Connection?) {
        while !immediateDeliveries.isEmpty {
            // Taken out whole: applying one can service a connection whose next request is
            // answered at once, which lands in the (now empty) list and may come back here.
            var answered: [Delivery] = []
            swap(&answered, &immediateDeliveries)
            for delivery in answered {
                if let current, delivery.connectionID == current.id {
                    apply(delivery, to: current, service: false)
                } else {
                    apply(delivery, service: true)
                }
            }
            // The buffer goes back for the next answers, so a request costs no allocation here.
            answered.removeAll(keepingCapacity: true)
            if immediateDeliveries.isEmpty { immediateDeliveries = answered }
        }
    }

    private func queue(_ response: HTTPResponse, on connection: Connection, headRequest: Bool, close: Bool,
                       http10KeepAlive: Bool = false) {
        // The client's write clock starts when it is first owed bytes.
        if connection.pendingOutputCount == 0 { connection.lastWriteProgress = loopNow }
        encoder.encode(response, headRequest: headRequest, close: close, http10KeepAlive: http10KeepAlive,
                       into: &connection.output)
        if close { connection.closeAfterFlush = true }
    }

    private func processMailbox() {
        var counter: UInt64 = 0
        _ = read(wakeFD, &counter, MemoryLayout<UInt64>.size)
        let (deliveries, jobs) = mailbox.withLock { box in
            box.wakePending = false
            let taken = (box.deliveries, box.jobs)
            box.deliveries.removeAll()
            box.jobs.removeAll()
            return taken
        }
        for delivery in deliveries { apply(delivery, service: true) }
        localJobs.append(contentsOf: jobs)
        runLocalJobs()
    }

    /// Runs the task jobs queued for this loop (a bounded round: jobs they enqueue wait for the
    /// next one, after epoll had its turn), then writes the answers they gave.
    private func runLocalJobs() {
        guard !localJobs.isEmpty else { return }
        let jobs = localJobs
        localJobs.removeAll(keepingCapacity: true)
        let executor = asUnownedTaskExecutor()
        for job in jobs { job.runSynchronously(on: executor) }
        applyImmediateDeliveries(servicing: nil)
    }

    /// Queues a handler's answer on its connection (if it is still the awaited one).
    private func apply(_ delivery: Delivery, service serviceAfterwards: Bool) {
        guard let connection = connections[delivery.connectionID] else { return } // the client left
        apply(delivery, to: connection, service: serviceAfterwards)
    }

    private func apply(_ delivery: Delivery, to connection: Connection, service serviceAfterwards: Bool) {
        guard !connection.isClosed, connection.awaitingResponse, connection.requestID == delivery.requestID else {
            return // the client left, or a stale answer
        }
        connection.awaitingResponse = false
        let handlerWantsClose = delivery.response.headers.values("Connection").contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: " \t").lowercased() == "close" }
        }
        let close = !connection.requestKeepAlive || draining || connection.inputClosed || handlerWantsClose
        queue(delivery.response, on: connection, headRequest: connection.requestIsHead, close: close,
              http10KeepAlive: !close && connection.requestIsHTTP10)
        if serviceAfterwards { service(connection) }
    }

    /// Writes pending output. Returns false when the connection was closed (write error, or done
    /// and closing without lingering).
    private func flush(_ connection: Connection) -> Bool {
        while connection.pendingOutputCount > 0 {
            let result = connection.output.withUnsafeBytes { bytes in
                sendNonBlocking(connection.fd, UnsafeRawBufferPointer(rebasing: bytes[connection.outputOffset...]))
            }
            switch result {
            case .transferred(let count):
                connection.outputOffset += count
                connection.lastWriteProgress = loopNow
            case .wouldBlock:
                updateInterest(connection)
                return true
            case .endOfFile, .failed:
                // EPIPE, ECONNRESET: the client went away.
                closeConnection(connection)
                return false
            }
        }
        connection.output.removeAll(keepingCapacity: connection.output.capacity <= 4_096)
        connection.outputOffset = 0
        if connection.closeAfterFlush && !connection.lingering {
            if connection.inputClosed {
                closeConnection(connection)
                return false
            }
            shutdown(connection.fd, Int32(SHUT_WR))
            connection.lingering = true
            connection.lingerDeadline = monotonicNanoseconds() + (draining ? Self.drainingLingerTimeout : Self.lingerTimeout)
            updateInterest(connection)
        }
        return true
    }

    private func updateInterest(_ connection: Connection) {
        var wanted: UInt32 = 0
        if connection.lingering {
            wanted = Epoll.input
        } else {
            if connection.pendingOutputCount > 0 { wanted |= Epoll.output }
            let readAheadFull = connection.awaitingResponse && connection.parser.bufferedByteCount >= readAheadLimit
            let outputBacklog = connection.pendingOutputCount >= Self.outputHighWater
            if !connection.inputClosed && !connection.closeAfterFlush && !readAheadFull && !outputBacklog {
                wanted |= Epoll.input
            }
        }
        guard wanted != connection.interest else { return }
        do {
            try control(Epoll.modify, fd: connection.fd, events: wanted, token: connection.id)
            connection.interest = wanted
        } catch {
            context.log(.ioError(error.description))
            closeConnection(connection)
        }
    }

    /// Timeouts run from the start of the current phase; while the server owes the client an
    /// answer, the client's clock does not run.
    private func updatePhase(_ connection: Connection, now: Int64) {
        let phase = connection.parser.phase
        let owing = connection.awaitingResponse || connection.pendingOutputCount > 0
        // The client's clock restarts when the answer is out, not when the request was handed on.
        if owing || connection.owedAnswer || phase != connection.phase {
            connection.phase = phase
            connection.phaseStart = now
        }
        connection.owedAnswer = owing
    }

    private func closeConnection(_ connection: Connection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        connection.isClosed = true
        close(connection.fd)
        context.openConnections.wrappingSubtract(1, ordering: .acquiringAndReleasing)
        context.log(.closed(remoteAddress: connection.remoteAddress))
    }

    // MARK: Timers

    private func sweep(now: Int64) {
        if let resume = listenResumeAt, now >= resume, !draining { startListening() }
        let configuration = context.configuration
        for connection in Array(connections.values) {
            if connection.lingering {
                if now >= connection.lingerDeadline { closeConnection(connection) }
                continue
            }
            if connection.pendingOutputCount > 0 {
                // A client that does not read its responses is treated like an idle one.
                if now - connection.lastWriteProgress >= configuration.idleTimeout.nanoseconds {
                    context.log(.timedOut(remoteAddress: connection.remoteAddress, phase: "writing"))
                    closeConnection(connection)
                }
                continue
            }
            if connection.awaitingResponse { continue }
            let elapsed = now - connection.phaseStart
            switch connection.phase {
            case .idle:
                // A connection that never sent a request gets only the header timeout to start one.
                let limit = connection.requestID == 0
                    ? min(configuration.idleTimeout, configuration.headerReadTimeout) : configuration.idleTimeout
                if elapsed >= limit.nanoseconds { closeConnection(connection) }
            case .head:
                if elapsed >= configuration.headerReadTimeout.nanoseconds { requestTimedOut(connection, phase: "reading headers") }
            case .body:
                if elapsed >= configuration.bodyReadTimeout.nanoseconds { requestTimedOut(connection, phase: "reading body") }
            }
        }
    }

    /// Slow senders (slowloris) get 408 and the connection closes.
    private func requestTimedOut(_ connection: Connection, phase: String) {
        context.log(.timedOut(remoteAddress: connection.remoteAddress, phase: phase))
        queue(ErrorResponses.json(408, "request not received in time"), on: connection, headRequest: false, close: true)
        guard flush(connection) else { return }
        updateInterest(connection)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var text = self
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return text
    }
}

/// A request's task can run on the loop that received it: a continuation resumed by a database
/// thread then hops straight back to this loop (no cooperative-pool thread in between), and the
/// answer is written without the mailbox. Handlers running here must never block.
extension EventLoop: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !post(job) {
            // The loop has ended (shutdown): run it elsewhere rather than lose the task.
            globalConcurrentExecutor.enqueue(job)
        }
    }
}
