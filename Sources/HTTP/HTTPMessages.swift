import Synchronization

/// One parsed request, as the handler sees it.
package struct HTTPRequest: Sendable {
    package var method: String
    /// The raw path of the request-target (origin-form), before any `?`, not percent-decoded.
    package var path: String
    /// Everything after the first `?` (not decoded); nil when the target has no `?`.
    package var query: String?
    /// "HTTP/1.1" or "HTTP/1.0".
    package var version: String
    package var headers: HTTPHeaders
    package var body: [UInt8]
    /// The peer as "ip:port" ("[ip]:port" for IPv6); empty when unknown.
    package var remoteAddress: String

    package init(method: String, path: String, query: String? = nil, version: String = "HTTP/1.1",
                 headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], remoteAddress: String = "") {
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
    }
}

/// What the handler answers. The server adds `Content-Length`, `Date` (unless present) and
/// `Connection: close` when it will close; it drops any `Content-Length`, `Transfer-Encoding` or
/// `Connection` the handler set, because framing is the server's job.
package struct HTTPResponse: Sendable {
    package var status: Int
    package var headers: HTTPHeaders
    package var body: [UInt8]

    package init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Receives requests on an event-loop thread. It must not block: start a `Task` (or hand the work
/// elsewhere) and call `responder.respond` later, from any thread, exactly once.
package protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, responder: HTTPResponder)
}

/// The one-shot answer channel for one request. The first `respond` wins, later calls are
/// ignored. If the connection is gone by then, the response is dropped. A responder released
/// without answering sends a 500, so a forgetful handler cannot wedge a connection.
package final class HTTPResponder: Sendable {
    private enum Target: Sendable {
        case connection(EventLoop, connectionID: UInt64, requestID: UInt64, inFlight: InFlightCounter)
        case closure(@Sendable (HTTPResponse) -> Void)
    }

    private let target: Target
    private let answered = Atomic<Bool>(false)

    init(loop: EventLoop, connectionID: UInt64, requestID: UInt64, inFlight: InFlightCounter) {
        target = .connection(loop, connectionID: connectionID, requestID: requestID, inFlight: inFlight)
    }

    /// For tests of handlers without sockets: the response goes to `deliver`.
    package init(_ deliver: @escaping @Sendable (HTTPResponse) -> Void) {
        target = .closure(deliver)
    }

    package func respond(_ response: HTTPResponse) {
        guard answered.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        switch target {
        case .connection(let loop, let connectionID, let requestID, let inFlight):
            inFlight.finished()
            loop.deliver(response, connectionID: connectionID, requestID: requestID)
        case .closure(let deliver):
            deliver(response)
        }
    }

    /// The event loop that received the request, as a task executor: a handler's task started
    /// with this preference runs on that loop's thread (it must never block). Nil in tests
    /// without sockets.
    package var taskExecutor: (any TaskExecutor)? {
        if case .connection(let loop, _, _, _) = target { return loop }
        return nil
    }

    /// Whether `respond` has been called.
    package var hasResponded: Bool { answered.load(ordering: .acquiring) }

    deinit {
        if !answered.load(ordering: .acquiring) {
            respond(ErrorResponses.json(500, "the request handler did not answer"))
        }
    }
}

/// Requests handed to the handler and not yet answered, across all loops of one server.
final class InFlightCounter: Sendable {
    private let count = Atomic<Int>(0)

    /// Reserves a slot; false (and nothing reserved) when `limit` are already in flight.
    func tryStart(limit: Int) -> Bool {
        let now = count.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
        if now > limit {
            count.wrappingSubtract(1, ordering: .acquiringAndReleasing)
            return false
        }
        return true
    }

    func finished() {
        count.wrappingSubtract(1, ordering: .acquiringAndReleasing)
    }

    var current: Int { count.load(ordering: .acquiring) }
}

/// The JSON error bodies the server itself produces (`{"error":"..."}`).
enum ErrorResponses {
    static func json(_ status: Int, _ message: String, headers extra: [(String, String)] = []) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        for (name, value) in extra { headers.add(name, value) }
        return HTTPResponse(status: status, headers: headers, body: Array(#"{"error":""#.utf8) + escape(message) + Array(#""}"#.utf8))
    }

    /// Our messages are ASCII literals, but escape defensively so the body is always valid JSON.
    private static func escape(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [0x5C, 0x22]
            case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        return out
    }
}
