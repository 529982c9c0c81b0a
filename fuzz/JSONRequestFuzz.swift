import Engine
import JSON

/// libFuzzer target for the JSON reader and the Authenticate body decoding. A document the
/// reader accepts must survive a write/read round trip unchanged; decoding never traps.
@_cdecl("LLVMFuzzerTestOneInput")
public func jsonRequestFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let value = try? JSONParser.parse(bytes) {
        let written = value.serialized()
        guard let again = try? JSONParser.parse(written) else { preconditionFailure("written JSON does not parse") }
        precondition(again == value, "round trip changed the value")
    }
    _ = try? AuthenticateRequest.decode(bytes)
    return 0
}
