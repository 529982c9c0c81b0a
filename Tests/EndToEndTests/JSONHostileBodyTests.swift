import Foundation
import Glibc
import TestSupport
import Testing

/// Hostile JSON bodies sent to Authenticate on the real binary: deep nesting, huge numbers and
/// strings, duplicate keys, invalid UTF-8, lone surrogates. Each gets a clear 400 with a JSON
/// error (413 past the body limit), never a 5xx, never a crash; nothing is stored.
@Suite struct JSONHostileBodyTests {
    static let path = D1.authenticationPath()

    /// One engine for the whole suite (default limits: 64 KiB bodies, JSON depth 32).
    private static let engine = Task { () throws -> (EngineProcess, String) in
        let engine = try await EngineProcess.start()
        return (engine, try engine.token())
    }

    /// A valid body whose `details.purchase.merchantName` is replaced by the raw bytes given
    /// (a JSON value, quotes included), plus an optional extra member.
    static func body(id: String = "x1", merchant: [UInt8] = Array("\"Books\"".utf8), extra: [UInt8] = []) -> [UInt8] {
        Array(#"{"authenticationId":""#.utf8) + Array(id.utf8) + Array(#"","operation":"3DS_CHALLENGE_OOB_ISSUER","#.utf8)
            + extra + Array(#""details":{"panSuffix":"1234","purchase":{"amount":"100","currencyCode":"EUR","merchantName":"#.utf8)
            + merchant + Array("}}}".utf8)
    }

    static func member(_ name: String, _ value: String) -> [UInt8] { Array("\"\(name)\":\(value),".utf8) }
    static func member(_ name: String, _ value: [UInt8]) -> [UInt8] { Array("\"\(name)\":".utf8) + value + Array(",".utf8) }
    static func quoted(_ bytes: [UInt8]) -> [UInt8] { [UInt8(ascii: "\"")] + bytes + [UInt8(ascii: "\"")] }

    static let cases: [(String, [UInt8], Int)] = [
        // Nesting
        ("33 nested arrays in an unknown member", body(extra: member("x", String(repeating: "[", count: 33) + String(repeating: "]", count: 33))), 400),
        ("10,000 nested arrays", body(extra: member("x", String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000))), 400),
        ("10,000 nested objects", body(extra: member("x", String(repeating: "{\"a\":", count: 10_000) + "1" + String(repeating: "}", count: 10_000))), 400),
        ("20,000 unclosed arrays", Array(String(repeating: "[", count: 20_000).utf8), 400),
        ("alternating arrays and objects 5,000 deep", Array((String(repeating: "[{\"a\":", count: 5_000)).utf8), 400),
        ("100,000 nested arrays (over the body limit)", Array(String(repeating: "[", count: 100_000).utf8), 413),
        // Numbers
        ("amount as a huge number", Array(String(decoding: body(), as: UTF8.self).replacingOccurrences(of: #""amount":"100""#, with: #""amount":1e999999"#).utf8), 400),
        ("amount of 400 digits", Array(String(decoding: body(), as: UTF8.self).replacingOccurrences(of: #""amount":"100""#, with: "\"amount\":\"\(String(repeating: "9", count: 400))\"").utf8), 400),
        ("authenticationId as a 5,000-digit number", Array("{\"authenticationId\":\(String(repeating: "7", count: 5_000)),\"operation\":\"3DS_CHALLENGE_OOB_ISSUER\"}".utf8), 400),
        ("merchantName as a negative huge exponent", body(merchant: Array("-1e-999999".utf8)), 400),
        ("number with a leading plus", body(extra: member("x", "+1")), 400),
        ("number with leading zeros", body(extra: member("x", "007")), 400),
        ("NaN", body(extra: member("x", "NaN")), 400),
        ("Infinity", body(extra: member("x", "-Infinity")), 400),
        ("hex number", body(extra: member("x", "0x10")), 400),
        ("number ending in a dot", body(extra: member("x", "1.")), 400),
        // Duplicate keys
        ("duplicate top-level key", body(extra: member("authenticationId", "\"x2\"")), 400),
        ("duplicate key in details", Array(String(decoding: body(), as: UTF8.self).replacingOccurrences(of: #""panSuffix":"1234","#, with: #""panSuffix":"1234","panSuffix":"5678","#).utf8), 400),
        ("duplicate key in purchase", Array(String(decoding: body(), as: UTF8.self).replacingOccurrences(of: #""amount":"100","#, with: #""amount":"100","amount":"1","#).utf8), 400),
        ("duplicate key spelled with an escape", body(extra: Array(#""\u0061uthenticationId":"x2","#.utf8)), 400),
        ("duplicate key in an unknown member", body(extra: member("x", #"{"a":1,"a":2}"#)), 400),
        // Invalid UTF-8
        ("invalid UTF-8 pair", body(merchant: quoted([0xC3, 0x28])), 400),
        ("overlong encoding of /", body(merchant: quoted([0xC0, 0xAF])), 400),
        ("overlong 3-byte encoding", body(merchant: quoted([0xE0, 0x80, 0xAF])), 400),
        ("UTF-8 encoded surrogate", body(merchant: quoted([0xED, 0xA0, 0x80])), 400),
        ("code point over U+10FFFF", body(merchant: quoted([0xF4, 0x90, 0x80, 0x80])), 400),
        ("lone continuation byte", body(merchant: quoted([0x80])), 400),
        ("truncated sequence", body(merchant: quoted([0xE2, 0x82])), 400),
        ("byte 0xFF", body(merchant: quoted([0xFF])), 400),
        ("invalid UTF-8 in a key", body(extra: quoted([0xC3, 0x28]) + Array(":1,".utf8)), 400),
        ("invalid UTF-8 outside strings", body(extra: [0xC3, 0xA9] + Array(",".utf8)), 400),
        ("UTF-8 byte order mark", [0xEF, 0xBB, 0xBF] + body(), 400),
        ("UTF-16 body", Array(String(decoding: body(), as: UTF8.self).utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }), 400),
        // Surrogates
        ("lone high surrogate", body(merchant: Array(#""a\uD800b""#.utf8)), 400),
        ("lone low surrogate", body(merchant: Array(#""a\uDC00b""#.utf8)), 400),
        ("high surrogate then a letter escape", body(merchant: Array(#""\uD800\u0041""#.utf8)), 400),
        ("high surrogate at the end", body(merchant: Array(#""a\uDBFF""#.utf8)), 400),
        ("surrogates in the wrong order", body(merchant: Array(#""\uDE00\uD83D""#.utf8)), 400),
        ("lone surrogate in a key", body(extra: Array(#""\uD800":1,"#.utf8)), 400),
        ("lone surrogate in authenticationId", Array(#"{"authenticationId":"a\uDFFF","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#.utf8), 400),
        // Strings and control characters
        ("merchantName of 60,000 characters", body(merchant: quoted(Array(repeating: UInt8(ascii: "m"), count: 60_000))), 400),
        ("authenticationId of 10,000 characters", body(id: String(repeating: "a", count: 10_000)), 400),
        ("string of 70,000 characters (over the body limit)", body(merchant: quoted(Array(repeating: UInt8(ascii: "m"), count: 70_000))), 413),
        ("escaped NUL in authenticationId", Array(#"{"authenticationId":"a\u0000","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#.utf8), 400),
        ("raw control character in a string", body(merchant: quoted([0x41, 0x01, 0x42])), 400),
        ("raw tab in a string", body(merchant: quoted([0x41, 0x09, 0x42])), 400),
        ("raw newline in a string", body(merchant: quoted([0x41, 0x0A, 0x42])), 400),
        ("invalid escape", body(merchant: Array(#""a\qb""#.utf8)), 400),
        ("short unicode escape", body(merchant: Array(#""a\u12""#.utf8)), 400),
        ("unterminated string", Array(#"{"authenticationId":"x1"#.utf8), 400),
        // Structure
        ("trailing garbage", body() + Array(" x".utf8), 400),
        ("two objects", body() + body(), 400),
        ("trailing comma", Array(#"{"authenticationId":"x1","operation":"3DS_CHALLENGE_OOB_ISSUER",}"#.utf8), 400),
        ("comment", Array(#"{"authenticationId":"x1", /* c */ "operation":"3DS_CHALLENGE_OOB_ISSUER"}"#.utf8), 400),
        ("single quotes", Array(#"{'authenticationId':'x1','operation':'3DS_CHALLENGE_OOB_ISSUER'}"#.utf8), 400),
        ("unquoted key", Array(#"{authenticationId:"x1","operation":"3DS_CHALLENGE_OOB_ISSUER"}"#.utf8), 400),
        ("whitespace only", Array("  \r\n\t ".utf8), 400),
        ("null", Array("null".utf8), 400),
        ("a bare string", Array(#""x1""#.utf8), 400),
        ("a number", Array("0".utf8), 400),
        ("NUL byte body", [0], 400),
    ]

    @Test func hostileBodiesGetAClear4xx() async throws {
        let (engine, token) = try await Self.engine.value
        let port = engine.apiPort
        let results = try await runOffPool { () throws -> [(String, Int, Int, Bool)] in
            try Self.cases.map { name, body, expected in
                let response = try Self.post(body, port: port, token: token)
                return (name, expected, response.status, response.string("error")?.isEmpty == false)
            }
        }
        for (name, expected, status, hasError) in results {
            #expect(status == expected, "\(name): got \(status)")
            #expect(hasError, "\(name): the answer says why")
        }
        #expect(results.filter { $0.2 >= 500 }.isEmpty, "no 5xx")
        try await Self.expectHealthy(engine, token: token)
        let database = try TestDatabase()
        defer { database.shutdown() }
        #expect(try database.count("select count(*) as count from authentications where authentication_id = 'x1'") == 0)
    }

    /// Bodies that are odd but harmless are accepted: unknown members are ignored (D1 may add
    /// fields) and numbers stay text, so nothing overflows.
    @Test(arguments: [
        ("a 60,000-digit number in an unknown member", member("x", String(repeating: "9", count: 60_000))),
        ("an extreme exponent in an unknown member", member("x", "1e999999999")),
        ("nesting within the limit in an unknown member", member("x", String(repeating: "[", count: 20) + String(repeating: "]", count: 20))),
        ("a valid surrogate pair in an unknown member", member("x", #""\uD83D\uDE00""#)),
        ("a 30,000-character string in an unknown member", member("x", quoted(Array(repeating: UInt8(ascii: "s"), count: 30_000)))),
    ])
    func inertOddBodiesAreAccepted(name: String, extra: [UInt8]) async throws {
        let (engine, token) = try await Self.engine.value
        let id = TestEnvironment.uniqueID("inert")
        let response = try await runOffPool { try Self.post(Self.body(id: id, extra: extra), port: engine.apiPort, token: token) }
        #expect(response.status == 200, "\(name): \(response.status) \(response.text)")
        #expect(response.string("authenticationStatus") == "PENDING", "\(name)")
    }

    /// Every file of JSONTestSuite (valid, invalid and implementation-defined JSON; none is an
    /// Authenticate body) as a body: always a 4xx, never a 5xx.
    @Test func jsonTestSuiteFilesNeverGetA5xx() async throws {
        let (engine, token) = try await Self.engine.value
        let folder = TestEnvironment.repositoryRoot + "/Tests/JSONTests/Resources/JSONTestSuite/test_parsing"
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") }.sorted()
        #expect(names.count > 250)
        let port = engine.apiPort
        let results = try await runOffPool { () throws -> [(String, Int)] in
            try names.map { name in
                let body = try [UInt8](Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)))
                return (name, try Self.post(body, port: port, token: token).status)
            }
        }
        for (name, status) in results {
            #expect((400...499).contains(status), "\(name): got \(status)")
        }
        try await Self.expectHealthy(engine, token: token)
    }

    static func post(_ body: [UInt8], port: Int, token: String) throws -> RawHTTPConnection.Response {
        let connection = try RawHTTPConnection(port: port, receiveTimeoutSeconds: 15)
        let head = "POST \(path) HTTP/1.1\r\nHost: engine\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        // Over the limit the engine answers 413 after the head and may close before the body is in.
        try? connection.send(Array(head.utf8) + body)
        guard let response = try connection.readResponse() else { throw TestSetupError("no answer") }
        return response
    }

    static func expectHealthy(_ engine: EngineProcess, token: String) async throws {
        #expect(engine.process.isRunning, "the engine did not crash")
        let id = TestEnvironment.uniqueID("after")
        let response = try await HTTPClient(port: engine.apiPort, token: token).asyncSend("POST", path, body: D1.authenticateBody(id))
        #expect(response.string("authenticationStatus") == "PENDING")
    }
}
