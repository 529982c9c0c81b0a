import Glibc

/// Turns an `HTTPResponse` into bytes on the wire. The server owns framing: it writes
/// `Content-Length` itself and drops the handler's framing headers (RFC 9112 §6).
struct ResponseEncoder {
    private var cachedDateSecond = -1
    private var cachedDate: [UInt8] = []

    /// - Parameters:
    ///   - headRequest: a HEAD request gets the headers, including the Content-Length the body
    ///     would have had, but no body (RFC 9110 §9.3.2).
    ///   - close: adds `Connection: close`.
    ///   - http10KeepAlive: an HTTP/1.0 client that asked to keep the connection needs to be told
    ///     it was (RFC 9112 §9.3 and Appendix C.2.2).
    mutating func encode(_ response: HTTPResponse, headRequest: Bool, close: Bool, http10KeepAlive: Bool = false,
                         into output: inout [UInt8]) {
        var status = response.status
        var response = response
        if !(200...999).contains(status) {
            // 1xx cannot be a final answer, other values are not HTTP.
            response = ErrorResponses.json(500, "the request handler produced an invalid status")
            status = 500
        }
        if status < Self.statusLines.count {
            output.append(contentsOf: Self.statusLines[status])
        } else {
            output.append(contentsOf: "HTTP/1.1 \(status) \(Self.reason(status))\r\n".utf8)
        }
        var hasDate = false
        for (name, value) in response.headers {
            var name = name, value = value
            let appended = name.withUTF8 { nameBytes in
                value.withUTF8 { valueBytes in Self.appendField(nameBytes, valueBytes, to: &output) }
            }
            if appended == .date { hasDate = true }
        }
        if !hasDate {
            Self.append("Date: ", to: &output)
            output.append(contentsOf: currentDate())
            Self.append("\r\n", to: &output)
        }
        let bodyAllowed = status != 204 && status != 304
        if bodyAllowed {
            Self.append("Content-Length: ", to: &output)
            Self.appendDecimal(response.body.count, to: &output)
            Self.append("\r\n", to: &output)
        }
        if close {
            Self.append("Connection: close\r\n", to: &output)
        } else if http10KeepAlive {
            Self.append("Connection: keep-alive\r\n", to: &output)
        }
        Self.append("\r\n", to: &output)
        if bodyAllowed && !headRequest { output.append(contentsOf: response.body) }
    }

    private enum FieldOutcome {
        case appended, date, dropped
    }

    /// Straight from the literal's bytes: no array to load, retain and release per response.
    private static func append(_ literal: StaticString, to output: inout [UInt8]) {
        output.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Appends one handler field unless the server owns it or it cannot be framed safely.
    /// Works on the bytes directly: it runs for every field of every response.
    private static func appendField(_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>,
                                    to output: inout [UInt8]) -> FieldOutcome {
        // Framing is the server's: Content-Length, Transfer-Encoding and Connection are dropped.
        switch name.count {
        case 10 where equalsIgnoringCase(name, "connection"),
             14 where equalsIgnoringCase(name, "content-length"),
             17 where equalsIgnoringCase(name, "transfer-encoding"):
            return .dropped
        default:
            break
        }
        // A field that cannot be framed safely (bad name, CR/LF in value) is dropped: never let
        // a handler split the response.
        guard !name.isEmpty, name.allSatisfy(isTokenByte),
              value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }) else { return .dropped }
        output.append(contentsOf: name)
        output.append(UInt8(ascii: ":"))
        output.append(UInt8(ascii: " "))
        output.append(contentsOf: value)
        append("\r\n", to: &output)
        return name.count == 4 && equalsIgnoringCase(name, "date") ? .date : .appended
    }

    /// `lowercase` is an ASCII literal in lower case.
    private static func equalsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for index in 0..<bytes.count where asciiLowercase(bytes[index]) != expected[index] { return false }
        return true
    }

    /// Status lines for 200...599, encoded once (the encoder runs for every response).
    private static let statusLines: [[UInt8]] = (0..<600).map { Array("HTTP/1.1 \($0) \(reason($0))\r\n".utf8) }

    private static func appendDecimal(_ value: Int, to output: inout [UInt8]) {
        guard value >= 10 else {
            output.append(UInt8(ascii: "0") + UInt8(value))
            return
        }
        appendDecimal(value / 10, to: &output)
        output.append(UInt8(ascii: "0") + UInt8(value % 10))
    }

    /// IMF-fixdate (RFC 9110 §5.6.7), recomputed at most once a second.
    private mutating func currentDate() -> [UInt8] {
        var now = time(nil)
        let second = Int(now)
        if second == cachedDateSecond { return cachedDate }
        var parts = tm()
        gmtime_r(&now, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let text = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
        cachedDate = Array(text.utf8)
        cachedDateSecond = second
        return cachedDate
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status"
        }
    }
}
