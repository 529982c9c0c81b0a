import HTTP

/// libFuzzer target for HTTPRequestParser. The input is parsed twice: all at once and in pieces
/// whose sizes come from the first byte. Framing must not depend on how bytes arrive, so both
/// runs must produce the same events; and no request may carry a body over the limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func httpParserFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let step = Int(data[0] % 16) + 1
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var limits = HTTPParserLimits()
    limits.maxBodyBytes = 256
    limits.maxHeaderBytes = 512
    limits.maxRequestLineBytes = 256
    limits.maxHeaderCount = 8

    var whole = HTTPRequestParser(limits: limits)
    whole.append(bytes)
    let wholeEvents = drain(&whole, limits: limits)

    var pieces = HTTPRequestParser(limits: limits)
    var pieceEvents: [String] = []
    var index = 0
    while index < bytes.count {
        pieces.append(Array(bytes[index..<min(index + step, bytes.count)]))
        index += step
        pieceEvents += drain(&pieces, limits: limits)
        // After a failure the parser repeats it; the connection would be closed by now.
        if pieceEvents.last?.hasPrefix("failure ") == true { break }
    }
    // 100-continue is only reported when the body has not arrived yet: a timing signal, not framing.
    let framing = { (events: [String]) in events.filter { $0 != "continue" } }
    precondition(framing(wholeEvents) == framing(pieceEvents), "framing depends on arrival: \(wholeEvents) vs \(pieceEvents)")
    return 0
}

private func drain(_ parser: inout HTTPRequestParser, limits: HTTPParserLimits) -> [String] {
    var events: [String] = []
    for _ in 0..<10_000 {
        switch parser.next() {
        case .needMoreData:
            return events
        case .expectContinue:
            events.append("continue")
        case .request(let request, let keepAlive):
            precondition(request.body.count <= limits.maxBodyBytes, "body over the limit")
            events.append("request \(request.method) \(request.path) \(request.query ?? "-") \(request.version) \(request.headers.count) \(request.body) \(keepAlive)")
        case .failure(let error):
            precondition((400...599).contains(error.status), "failure status \(error.status)")
            events.append("failure \(error.status)")
            return events
        }
    }
    preconditionFailure("the parser did not settle")
}
