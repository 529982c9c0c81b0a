import Glibc

/// Why the parser refused a request: the status the client gets, and a short reason that is
/// safe to log and to send (it never echoes request bytes). The connection closes after it.
package struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    package var status: Int
    package var message: String

    package init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    package var description: String { "\(status) \(message)" }
}

/// The parser's limits, taken from `HTTPServerConfiguration`.
package struct HTTPParserLimits: Sendable {
    package var maxRequestLineBytes = 8_192
    package var maxHeaderBytes = 16_384
    package var maxHeaderCount = 100
    package var maxBodyBytes = 65_536

    package init() {}

    package init(_ configuration: HTTPServerConfiguration) {
        maxRequestLineBytes = configuration.maxRequestLineBytes
        maxHeaderBytes = configuration.maxHeaderBytes
        maxHeaderCount = configuration.maxHeaderCount
        maxBodyBytes = configuration.maxBodyBytes
    }
}

/// A strict, incremental HTTP/1.1 request parser (RFC 9112). A plain value: no I/O, no clock.
/// Feed bytes with `append`, then call `next()` until it says `.needMoreData`. Bytes after a
/// complete request stay buffered for the next call (pipelining). After a `.failure` every call
/// returns the same failure: the owner answers it and closes the connection.
package struct HTTPRequestParser {
    package enum Event {
        /// Nothing complete yet.
        case needMoreData
        /// The head asked `Expect: 100-continue` and the body has not arrived: send
        /// `HTTP/1.1 100 Continue` now, then keep feeding. Reported at most once per request.
        case expectContinue
        /// A complete request; `keepAlive` says whether the connection may carry another.
        case request(HTTPRequest, keepAlive: Bool)
        case failure(HTTPParseError)
    }

    /// Where the current message is, so the owner can pick the right timeout.
    package enum Phase: Equatable, Sendable {
        /// Between requests, nothing of the next one buffered.
        case idle
        case head
        case body
    }

    private enum State {
        case requestLine
        case headerLines
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case failed(HTTPParseError)
    }

    /// RFC 9112 §2.2 lets a server skip empty lines before a request line; a few, not forever.
    private static let maxLeadingEmptyLines = 4
    /// A chunk-size line with extensions is tiny; anything longer is an attack.
    private static let maxChunkSizeLineBytes = 1_024

    package let limits: HTTPParserLimits
    private var state = State.requestLine
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// Where the search for the next LF resumes, so a line that arrives byte by byte is scanned once.
    private var scanIndex = 0

    // The message being parsed.
    private var method = ""
    private var path = ""
    private var query: String?
    private var version = ""
    private var headers = HTTPHeaders()
    private var headerBytes = 0
    private var leadingEmptyLines = 0
    private var body: [UInt8] = []
    private var keepAlive = true
    private var expectsContinue = false

    package init(limits: HTTPParserLimits = HTTPParserLimits()) {
        self.limits = limits
    }

    /// Bytes received and not yet consumed by a returned request.
    package var bufferedByteCount: Int { buffer.count - readIndex }

    package var phase: Phase {
        switch state {
        case .requestLine: bufferedByteCount == 0 && leadingEmptyLines == 0 ? .idle : .head
        case .headerLines: .head
        case .body, .chunkSize, .chunkData, .chunkDataEnd, .trailers: .body
        case .failed: .head
        }
    }

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    package mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Drops consumed bytes so the buffer does not grow with the connection's lifetime.
    private mutating func compact() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 8_192)
            readIndex = 0
            scanIndex = 0
        } else if readIndex >= 4_096 {
            buffer.removeSubrange(0..<readIndex)
            scanIndex -= readIndex
            readIndex = 0
        }
    }

    package mutating func next() -> Event {
        while true {
            switch state {
            case .failed(let error):
                return .failure(error)

            case .requestLine:
                switch nextLine(maxLength: limits.maxRequestLineBytes) {
                case .incomplete: return .needMoreData
                case .tooLong: return fail(414, "request line too long")
                case .bareLF: return fail(400, "line not terminated by CRLF")
                case .line(let range):
                    if range.isEmpty {
                        leadingEmptyLines += 1
                        if leadingEmptyLines > Self.maxLeadingEmptyLines { return fail(400, "empty lines before the request line") }
                        continue
                    }
                    if let error = parseRequestLine(range) { return fail(error) }
                    state = .headerLines
                }

            case .headerLines:
                let remainingBudget = limits.maxHeaderBytes - headerBytes
                switch nextLine(maxLength: max(remainingBudget, 0)) {
                case .incomplete: return .needMoreData
                case .tooLong: return fail(431, "header section too large")
                case .bareLF: return fail(400, "line not terminated by CRLF")
                case .line(let range):
                    headerBytes += range.count + 2
                    if range.isEmpty {
                        if let event = headComplete() { return event }
                        continue
                    }
                    if let error = parseHeaderLine(range, keep: true) { return fail(error) }
                }

            case .body(let remaining):
                let take = min(remaining, bufferedByteCount)
                body.append(contentsOf: buffer[readIndex..<(readIndex + take)])
                readIndex += take
                scanIndex = readIndex
                if take == remaining { return finishRequest() }
                state = .body(remaining: remaining - take)
                return .needMoreData

            case .chunkSize:
                switch nextLine(maxLength: Self.maxChunkSizeLineBytes) {
                case .incomplete: return .needMoreData
                case .tooLong: return fail(400, "chunk size line too long")
                case .bareLF: return fail(400, "line not terminated by CRLF")
                case .line(let range):
                    switch parseChunkSize(range) {
                    case .failure(let error): return fail(error)
                    case .success(0): state = .trailers
                    case .success(let size): state = .chunkData(remaining: size)
                    }
                }

            case .chunkData(let remaining):
                let take = min(remaining, bufferedByteCount)
                body.append(contentsOf: buffer[readIndex..<(readIndex + take)])
                readIndex += take
                scanIndex = readIndex
                if take < remaining {
                    state = .chunkData(remaining: remaining - take)
                    return .needMoreData
                }
                state = .chunkDataEnd

            case .chunkDataEnd:
                guard bufferedByteCount >= 2 else {
                    if bufferedByteCount == 1 && buffer[readIndex] != UInt8(ascii: "\r") {
                        return fail(400, "chunk data not followed by CRLF")
                    }
                    return .needMoreData
                }
                guard buffer[readIndex] == UInt8(ascii: "\r"), buffer[readIndex + 1] == UInt8(ascii: "\n") else {
                    return fail(400, "chunk data not followed by CRLF")
                }
                readIndex += 2
                scanIndex = readIndex
                state = .chunkSize

            case .trailers:
                // Trailer fields are read and discarded (RFC 9112 §7.1.2), within the header budget.
                let remainingBudget = limits.maxHeaderBytes - headerBytes
                switch nextLine(maxLength: max(remainingBudget, 0)) {
                case .incomplete: return .needMoreData
                case .tooLong: return fail(431, "trailer section too large")
                case .bareLF: return fail(400, "line not terminated by CRLF")
                case .line(let range):
                    headerBytes += range.count + 2
                    if range.isEmpty { return finishRequest() }
                    // Discarded, but held to the header syntax: a line no field could be (a
                    // request line, obs-fold, bare CR) is a framing attack, not a trailer.
                    if let error = parseHeaderLine(range, keep: false) { return fail(error) }
                }
            }
        }
    }

    // MARK: - Lines

    private enum LineResult {
        /// The line's bytes without the CRLF; the read index is past the CRLF.
        case line(Range<Int>)
        case incomplete
        case tooLong
        case bareLF
    }

    /// The next CRLF-terminated line. `maxLength` counts the CRLF. A bare LF is an error
    /// (RFC 9112 §2.2 allows accepting it; refusing it is the consistent, smuggling-proof choice).
    private mutating func nextLine(maxLength: Int) -> LineResult {
        let start = max(scanIndex, readIndex)
        let end = buffer.count
        let searchEnd = min(end, readIndex + maxLength)
        // memchr: a bearer token makes header lines long, and this runs over every byte of a head.
        let found: Int? = start < searchEnd ? buffer.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress,
                  let hit = memchr(base + start, Int32(UInt8(ascii: "\n")), searchEnd - start) else { return nil }
            return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
        } : nil
        guard let index = found else {
            scanIndex = max(searchEnd, start)
            return end - readIndex >= maxLength ? .tooLong : .incomplete
        }
        guard index > readIndex, buffer[index - 1] == UInt8(ascii: "\r") else { return .bareLF }
        let line = readIndex..<(index - 1)
        readIndex = index + 1
        scanIndex = readIndex
        return .line(line)
    }

    // MARK: - Head

    private mutating func parseRequestLine(_ range: Range<Int>) -> HTTPParseError? {
        let space = UInt8(ascii: " ")
        guard let firstSpace = buffer[range].firstIndex(of: space) else {
            return HTTPParseError(400, "malformed request line")
        }
        let methodRange = range.lowerBound..<firstSpace
        guard !methodRange.isEmpty, buffer[methodRange].allSatisfy(isTokenByte) else {
            return HTTPParseError(400, "malformed method")
        }
        let afterMethod = (firstSpace + 1)..<range.upperBound
        guard let secondSpace = buffer[afterMethod].firstIndex(of: space) else {
            return HTTPParseError(400, "malformed request line")
        }
        let targetRange = afterMethod.lowerBound..<secondSpace
        guard !targetRange.isEmpty,
              buffer.withUnsafeBufferPointer({ UnsafeBufferPointer(rebasing: $0[targetRange]).allSatisfy { $0 > 0x20 && $0 < 0x7F } }) else {
            return HTTPParseError(400, "malformed request target")
        }
        // Only origin-form (RFC 9112 §3.2.1): no absolute-form, authority-form or "*".
        guard buffer[targetRange.lowerBound] == UInt8(ascii: "/") else {
            return HTTPParseError(400, "request target must start with /")
        }
        let versionBytes = buffer[(secondSpace + 1)..<range.upperBound]
        if bytes(versionBytes, equal: "HTTP/1.1") {
            version = "HTTP/1.1"
            keepAlive = true
        } else if bytes(versionBytes, equal: "HTTP/1.0") {
            version = "HTTP/1.0"
            keepAlive = false
        } else if versionBytes.count == 8, versionBytes.starts(with: "HTTP/".utf8),
                  isDigit(versionBytes[versionBytes.startIndex + 5]),
                  versionBytes[versionBytes.startIndex + 6] == UInt8(ascii: "."),
                  isDigit(versionBytes[versionBytes.startIndex + 7]) {
            return HTTPParseError(505, "HTTP version not supported")
        } else {
            return HTTPParseError(400, "malformed HTTP version")
        }
        method = String(decoding: buffer[methodRange], as: UTF8.self)
        if let question = buffer[targetRange].firstIndex(of: UInt8(ascii: "?")) {
            path = String(decoding: buffer[targetRange.lowerBound..<question], as: UTF8.self)
            query = String(decoding: buffer[(question + 1)..<targetRange.upperBound], as: UTF8.self)
        } else {
            path = String(decoding: buffer[targetRange], as: UTF8.self)
            query = nil
        }
        return nil
    }

    /// `keep: false` checks the line's syntax only (trailer fields, which are discarded).
    private mutating func parseHeaderLine(_ range: Range<Int>, keep: Bool) -> HTTPParseError? {
        // On the raw bytes, without bounds checks per byte: a bearer token makes header lines the
        // longest part of most requests.
        let parsed: Result<(name: Range<Int>, value: Range<Int>), HTTPParseError> = buffer.withUnsafeBufferPointer { bytes in
            let line = UnsafeBufferPointer(rebasing: bytes[range])
            // obs-fold (RFC 9112 §5.2): a server may reject it; we do.
            if line[0] == UInt8(ascii: " ") || line[0] == UInt8(ascii: "\t") {
                return .failure(HTTPParseError(400, "obsolete line folding"))
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                return .failure(HTTPParseError(400, "header line without a colon"))
            }
            // No whitespace between name and colon (RFC 9112 §5.1): a space is not a token byte.
            guard colon > 0, UnsafeBufferPointer(rebasing: line[..<colon]).allSatisfy(isTokenByte) else {
                return .failure(HTTPParseError(400, "malformed header name"))
            }
            var valueStart = colon + 1
            var valueEnd = line.count
            while valueStart < valueEnd, isOptionalWhitespace(line[valueStart]) { valueStart += 1 }
            while valueEnd > valueStart, isOptionalWhitespace(line[valueEnd - 1]) { valueEnd -= 1 }
            // field-value: VCHAR, SP, HTAB, obs-text; no other control bytes (RFC 9110 §5.5).
            for byte in UnsafeBufferPointer(rebasing: line[valueStart..<valueEnd])
            where (byte < 0x20 && byte != 0x09) || byte == 0x7F {
                return .failure(HTTPParseError(400, "control character in header value"))
            }
            let base = range.lowerBound
            return .success((base..<(base + colon), (base + valueStart)..<(base + valueEnd)))
        }
        switch parsed {
        case .failure(let error):
            return error
        case .success(let field):
            guard keep else { return nil }
            guard headers.count < limits.maxHeaderCount else {
                return HTTPParseError(431, "too many header fields")
            }
            headers.add(String(decoding: buffer[field.name], as: UTF8.self),
                        String(decoding: buffer[field.value], as: UTF8.self))
            return nil
        }
    }

    /// Decides the framing (RFC 9112 §6.3) once the head is complete. Returns an event to report
    /// now, or nil to go on parsing the body.
    private mutating func headComplete() -> Event? {
        let isHTTP11 = version == "HTTP/1.1"
        // One pass over the fields for the few that decide framing. A typical request carries
        // only Host of these, so the lists stay empty and unallocated.
        var host: String?
        var hostCount = 0
        var connections: [String] = []
        var transferEncodings: [String] = []
        var contentLengths: [String] = []
        var expectation: String?
        for (name, value) in headers {
            switch FramingField(name) {
            case .host:
                hostCount += 1
                if host == nil { host = value }
            case .connection: connections.append(value)
            case .transferEncoding: transferEncodings.append(value)
            case .contentLength: contentLengths.append(value)
            case .expect: if expectation == nil { expectation = value }
            case nil: continue
            }
        }
        if isHTTP11 && hostCount == 0 { return fail(400, "missing Host header") }
        if hostCount > 1 { return fail(400, "more than one Host header") }
        // RFC 9112 §3.2: a Host whose value is not `uri-host [":" port]` is a 400 as well.
        if var host, !host.withUTF8({ $0.allSatisfy(isHostByte) }) { return fail(400, "invalid Host header") }

        if !connections.isEmpty {
            for token in commaSeparatedTokens(connections) {
                if token == "close" { keepAlive = false }
                if token == "keep-alive" && !isHTTP11 { keepAlive = true }
            }
        }

        var bodyLength = 0
        var chunked = false
        if !transferEncodings.isEmpty {
            // Both framings at once is the classic smuggling vector (RFC 9112 §6.3 item 3).
            if !contentLengths.isEmpty { return fail(400, "both Transfer-Encoding and Content-Length") }
            if !isHTTP11 { return fail(400, "Transfer-Encoding in an HTTP/1.0 request") }
            // RFC 9112 §6.3 item 4: unless chunked is the final coding the length cannot be
            // known: 400 and close. Chunked twice is malformed (§7). Any other coding before a
            // final chunked is well framed but not implemented: 501.
            let codings = commaSeparatedTokens(transferEncodings)
            guard codings.last == "chunked", codings.filter({ $0 == "chunked" }).count == 1 else {
                return fail(400, "chunked must be the final transfer coding, once")
            }
            guard codings.count == 1 else { return fail(501, "only chunked transfer coding is supported") }
            chunked = true
        } else if !contentLengths.isEmpty {
            var length: Int?
            for text in contentLengths {
                guard !text.isEmpty, text.utf8.allSatisfy(isDigit) else { return fail(400, "malformed Content-Length") }
                let value = saturatingDecimal(text)
                if let length, length != value { return fail(400, "conflicting Content-Length values") }
                length = value
            }
            bodyLength = length ?? 0
            if bodyLength > limits.maxBodyBytes { return fail(413, "request body too large") }
        } else if method == "POST" || method == "PUT" || method == "PATCH" {
            return fail(411, "Content-Length required")
        }

        if let expectation {
            guard expectation.lowercased() == "100-continue" else { return fail(417, "unsupported expectation") }
            expectsContinue = isHTTP11
        }

        if chunked {
            state = .chunkSize
        } else if bodyLength > 0 {
            state = .body(remaining: bodyLength)
        } else {
            return finishRequest()
        }
        body.reserveCapacity(min(bodyLength, limits.maxBodyBytes))
        if expectsContinue && bufferedByteCount == 0 {
            expectsContinue = false
            return .expectContinue
        }
        return nil
    }

    private mutating func parseChunkSize(_ range: Range<Int>) -> Result<Int, HTTPParseError> {
        // chunk-size [ BWS ";" extensions ] — extensions are ignored (RFC 9112 §7.1.1).
        var index = range.lowerBound
        var size = 0
        while index < range.upperBound, let digit = hexValue(buffer[index]) {
            size = size > (Int.max >> 5) ? Int.max : size * 16 + digit
            index += 1
        }
        guard index > range.lowerBound else { return .failure(HTTPParseError(400, "malformed chunk size")) }
        while index < range.upperBound, isOptionalWhitespace(buffer[index]) { index += 1 }
        guard index == range.upperBound || buffer[index] == UInt8(ascii: ";") else {
            return .failure(HTTPParseError(400, "malformed chunk size"))
        }
        // Extensions are skipped, but a control byte in them (a bare CR, NUL) is refused: a
        // peer that reads the line differently must not be able to frame the body otherwise.
        for byte in buffer[index..<range.upperBound] where (byte < 0x20 && byte != 0x09) || byte == 0x7F {
            return .failure(HTTPParseError(400, "control character in chunk extension"))
        }
        if size > limits.maxBodyBytes - body.count { return .failure(HTTPParseError(413, "request body too large")) }
        return .success(size)
    }

    private mutating func finishRequest() -> Event {
        // The parts move into the request (no copy, no reference counting) and reset in passing.
        let request = HTTPRequest(method: exchange(&method, with: ""), path: exchange(&path, with: ""),
                                  query: exchange(&query, with: nil), version: exchange(&version, with: ""),
                                  headers: exchange(&headers, with: HTTPHeaders()), body: exchange(&body, with: []))
        let event = Event.request(request, keepAlive: keepAlive)
        state = .requestLine
        headerBytes = 0
        leadingEmptyLines = 0
        keepAlive = true
        expectsContinue = false
        // An idle keep-alive connection should not keep a large request's buffer alive.
        if readIndex == buffer.count { compact() }
        return event
    }

    private mutating func fail(_ status: Int, _ message: String) -> Event {
        fail(HTTPParseError(status, message))
    }

    private mutating func fail(_ error: HTTPParseError) -> Event {
        state = .failed(error)
        return .failure(error)
    }
}

/// The header fields the parser itself reads to frame a request.
private enum FramingField {
    case host, connection, transferEncoding, contentLength, expect

    /// Nil for every other name; the length rules most names out before any byte is compared.
    init?(_ name: String) {
        switch name.utf8.count {
        case 4 where HTTPHeaders.namesEqual(name, "Host"): self = .host
        case 6 where HTTPHeaders.namesEqual(name, "Expect"): self = .expect
        case 10 where HTTPHeaders.namesEqual(name, "Connection"): self = .connection
        case 14 where HTTPHeaders.namesEqual(name, "Content-Length"): self = .contentLength
        case 17 where HTTPHeaders.namesEqual(name, "Transfer-Encoding"): self = .transferEncoding
        default: return nil
        }
    }
}

/// Byte for byte, without iterating a String's UTF-8 view.
private func bytes(_ bytes: ArraySlice<UInt8>, equal literal: StaticString) -> Bool {
    guard bytes.count == literal.utf8CodeUnitCount else { return false }
    return bytes.withUnsafeBufferPointer { buffer in
        UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount).elementsEqual(buffer)
    }
}

// MARK: - Byte classes (RFC 9110 §5.6.2)

@inline(__always)
func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
         UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
         UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// uri-host [":" port] (RFC 3986 §3.2.2): unreserved, pct-encoded, sub-delims, ":" and the
/// brackets of an IP literal. No userinfo ("@"), no path, no whitespace.
@inline(__always)
private func isHostByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "%"),
         UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
         UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
         UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
        return true
    default:
        return false
    }
}

@inline(__always)
private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

@inline(__always)
private func isOptionalWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

@inline(__always)
private func hexValue(_ byte: UInt8) -> Int? {
    switch byte {
    case 0x30...0x39: Int(byte - 0x30)
    case 0x41...0x46: Int(byte - 0x41 + 10)
    case 0x61...0x66: Int(byte - 0x61 + 10)
    default: nil
    }
}

/// Digits only (checked by the caller); saturates instead of overflowing, so a 40-digit length
/// is simply "too large".
private func saturatingDecimal(_ text: String) -> Int {
    var value = 0
    for byte in text.utf8 {
        let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times.addingReportingOverflow(Int(byte - 0x30))
        if overflow1 || overflow2 { return Int.max }
        value = sum
    }
    return value
}

/// Lower-cased, trimmed, non-empty elements of comma-separated list headers (RFC 9110 §5.6.1).
private func commaSeparatedTokens(_ values: [String]) -> [String] {
    values.flatMap { $0.split(separator: ",") }
        .map { String($0.utf8.map { asciiLowercase($0) }.reduce(into: "") { $0.append(Character(Unicode.Scalar($1))) }) }
        .map { $0.trimmingOWS() }
        .filter { !$0.isEmpty }
}

extension String {
    fileprivate func trimmingOWS() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
