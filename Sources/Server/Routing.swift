import Glibc
package import HTTP
package import JSON

/// What a route handler sees.
package struct RouteContext: Sendable {
    package var request: HTTPRequest
    /// Path parameters, percent-decoded, in the order of the route's `{...}` segments.
    package var parameters: [String]
    package var logger: Logger
    /// The authenticated OAuth client (the token's `sub`), or nil on unauthenticated routes.
    package var clientId: String?
    /// The token's `issuers` claim (`["*"]`: all), empty on unauthenticated routes.
    package var tokenIssuers: [String] = []

    package func mayAct(for issuerId: String) -> Bool {
        tokenIssuers.contains("*") || tokenIssuers.contains(issuerId)
    }
}

/// Who may call a route.
package enum RouteAuthorization: Sendable {
    /// Health, metrics, the token endpoint (which authenticates the client itself).
    case none
    /// A bearer JWT with this scope; if `issuerParameter` is set, the token's `issuers` must
    /// include that path parameter, else the answer is the 404 an unknown resource gets.
    case bearer(Scope, issuerParameter: Int?)
}

package typealias RouteHandler = @Sendable (RouteContext) async -> HTTPResponse
/// Answers on the event-loop thread when it can do so without waiting (health, a cached
/// result, a refused request); nil hands the request on to the route's `RouteHandler`.
package typealias ImmediateRouteHandler = @Sendable (RouteContext) -> HTTPResponse?

/// A class, so that matching a request hands out a reference rather than a copy of every field.
package final class Route: Sendable {
    enum Segment: Sendable, Hashable {
        /// The segment's UTF-8 bytes, compared byte for byte with a request's.
        case literal([UInt8])
        case parameter
    }

    package let method: String
    /// A stable name for logs and metrics (never the raw path: it can carry identifiers).
    package let name: String
    package let authorization: RouteAuthorization
    let segments: [Segment]
    let handler: RouteHandler
    let immediate: ImmediateRouteHandler?
    /// Its index in the `Router` that holds it (per-route state, such as its metrics, is kept
    /// by that index); 0 until a router placed it.
    package let position: Int

    /// `template` like `/banking/d1/v1/issuers/{issuerId}/consumers/{consumerId}/authentication`.
    /// `immediate` (never blocking, never waiting) is tried first on the event-loop thread.
    package convenience init(_ method: String, _ template: String, name: String, authorization: RouteAuthorization = .none,
                             immediate: ImmediateRouteHandler? = nil, handler: @escaping RouteHandler) {
        self.init(method: method, name: name, authorization: authorization,
                  segments: template.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
                      $0.hasPrefix("{") && $0.hasSuffix("}") ? .parameter : .literal(Array($0.utf8))
                  },
                  handler: handler, immediate: immediate, position: 0)
    }

    /// A route that always answers at once on the event-loop thread.
    package convenience init(_ method: String, _ template: String, name: String, authorization: RouteAuthorization = .none,
                             synchronous: @escaping @Sendable (RouteContext) -> HTTPResponse) {
        self.init(method, template, name: name, authorization: authorization, immediate: synchronous,
                  handler: { synchronous($0) })
    }

    private init(method: String, name: String, authorization: RouteAuthorization, segments: [Segment],
                 handler: @escaping RouteHandler, immediate: ImmediateRouteHandler?, position: Int) {
        self.method = method
        self.name = name
        self.authorization = authorization
        self.segments = segments
        self.handler = handler
        self.immediate = immediate
        self.position = position
    }

    /// The same route at `position` in a router.
    func placed(at position: Int) -> Route {
        Route(method: method, name: name, authorization: authorization, segments: segments, handler: handler,
              immediate: immediate, position: position)
    }
}

package enum RouteMatch: Sendable {
    case found(Route, parameters: [String])
    /// The path exists with other methods (405 with `Allow`).
    case methodNotAllowed(allowed: [String])
    case notFound
    /// The path is not valid percent-encoded UTF-8.
    case badPath
}

package struct Router: Sendable {
    package let routes: [Route]
    /// Every route's segments, flattened so that matching touches no reference-counted value:
    /// route `p` has `segmentCounts[p]` entries from `firstSegment[p]` in `segmentSpans`, each a
    /// literal's bytes in `literalBytes` (start, count) or a parameter (count -1).
    private let segmentCounts: [Int]
    private let firstSegment: [Int]
    private let segmentSpans: [(start: Int, count: Int)]
    private let literalBytes: [UInt8]

    package init(_ routes: [Route]) {
        self.routes = routes.enumerated().map { index, route in route.placed(at: index) }
        segmentCounts = routes.map(\.segments.count)
        var firstSegment: [Int] = []
        var spans: [(start: Int, count: Int)] = []
        var bytes: [UInt8] = []
        for route in routes {
            firstSegment.append(spans.count)
            for segment in route.segments {
                switch segment {
                case .literal(let literal):
                    spans.append((bytes.count, literal.count))
                    bytes.append(contentsOf: literal)
                case .parameter:
                    spans.append((0, -1))
                }
            }
        }
        self.firstSegment = firstSegment
        segmentSpans = spans
        literalBytes = bytes
    }

    /// Runs for every request: the path's segments are found in place (their bounds on the
    /// stack) and compared byte for byte; only a matching route's parameters become Strings.
    package func match(method: String, path: String) -> RouteMatch {
        var path = path
        return path.withUTF8 { bytes in
            guard bytes.first == UInt8(ascii: "/") else { return .notFound }
            var count = 1
            var escaped = false
            for byte in bytes.dropFirst() {
                if byte == UInt8(ascii: "/") { count += 1 } else if byte == UInt8(ascii: "%") { escaped = true }
            }
            return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: count) { bounds in
                // Segment boundaries as offsets into the path's bytes.
                var segment = 0
                var start = 1
                for index in 1..<bytes.count where bytes[index] == UInt8(ascii: "/") {
                    bounds.initializeElement(at: segment, to: start..<index)
                    segment += 1
                    start = index + 1
                }
                bounds.initializeElement(at: segment, to: start..<bytes.count)
                if escaped {
                    // Decoded segments side by side in one buffer.
                    var decoded: [UInt8] = []
                    var ranges: [Range<Int>] = []
                    for range in bounds {
                        guard let text = PercentDecoding.decode(UnsafeBufferPointer(rebasing: bytes[range])) else { return .badPath }
                        ranges.append(decoded.count..<(decoded.count + text.utf8.count))
                        decoded.append(contentsOf: text.utf8)
                    }
                    return decoded.withUnsafeBufferPointer { decodedBytes in
                        match(method: method, count: count) { UnsafeBufferPointer(rebasing: decodedBytes[ranges[$0]]) }
                    }
                }
                // `path` is valid UTF-8 and `/` is ASCII, so every segment is too.
                return match(method: method, count: count) { UnsafeBufferPointer(rebasing: bytes[bounds[$0]]) }
            }
        }
    }

    private func match(method: String, count: Int, segment: (Int) -> UnsafeBufferPointer<UInt8>) -> RouteMatch {
        var allowed: [String] = []
        for position in routes.indices where segmentCounts[position] == count {
            let first = firstSegment[position]
            let matches = literalBytes.withUnsafeBufferPointer { literals in
                segmentSpans.withUnsafeBufferPointer { spans in
                    for index in 0..<count {
                        let span = spans[first + index]
                        let candidate = segment(index)
                        if span.count < 0 {
                            // An empty segment is another path (`/a/1/b/` is not `/a/1/b/{y}`).
                            if candidate.isEmpty { return false }
                        } else if span.count != candidate.count
                                    || !UnsafeBufferPointer(rebasing: literals[span.start..<(span.start + span.count)]).elementsEqual(candidate) {
                            return false
                        }
                    }
                    return true
                }
            }
            guard matches else { continue }
            let route = routes[position]
            if route.method == method {
                var parameters: [String] = []
                parameters.reserveCapacity(count)
                for index in 0..<count where segmentSpans[first + index].count < 0 {
                    parameters.append(String(decoding: segment(index), as: UTF8.self))
                }
                return .found(route, parameters: parameters)
            }
            if !allowed.contains(route.method) { allowed.append(route.method) }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }
}

package enum PercentDecoding {
    /// Decodes `%XX` escapes (RFC 3986 §2.1); nil for a malformed escape or invalid UTF-8.
    package static func decode(_ bytes: some Collection<UInt8>) -> String? {
        if !bytes.contains(UInt8(ascii: "%")) { return String(validating: Array(bytes), as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { out.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            out.append(high << 4 | low)
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}

/// JSON answers. Every response is JSON with `Content-Type: application/json`.
package enum Responses {
    package static func json(_ status: Int, _ value: JSONValue, headers extra: [(String, String)] = []) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        for (name, value) in extra { headers.add(name, value) }
        return HTTPResponse(status: status, headers: headers, body: value.serialized())
    }

    package static func json(_ status: Int, _ members: [(String, JSONValue)], headers: [(String, String)] = []) -> HTTPResponse {
        json(status, .object(JSONObject(members)), headers: headers)
    }

    /// `{"error": "..."}`: the message names the problem, never echoes a secret or personal data.
    package static func error(_ status: Int, _ message: String, headers: [(String, String)] = []) -> HTTPResponse {
        json(status, [("error", .string(message))], headers: headers)
    }

    /// The one 404 body: an unknown resource, another consumer's, and another issuer's look alike,
    /// so nobody can probe what exists.
    package static func notFound() -> HTTPResponse {
        error(404, "not found")
    }

    package static func noContent() -> HTTPResponse {
        HTTPResponse(status: 204)
    }

    /// The database cannot be reached right now: clients should retry shortly.
    package static func unavailable(_ message: String = "service temporarily unavailable") -> HTTPResponse {
        error(503, message, headers: [("Retry-After", "1")])
    }
}

/// Monotonic microseconds, for request durations.
package enum MonotonicTime {
    package static func microseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec / 1000)
    }
}
