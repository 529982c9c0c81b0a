import Foundation
import JSON
import Testing

struct JSONParserTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(#" {"a": [1, -2.5e3, true, false, null, "x\u00e9\n"], "b": {}} "#)
        guard case .object(let object) = value else { Issue.record("not an object"); return }
        #expect(object.keys == ["a", "b"])
        #expect(object["a"] == .array([.number(JSONNumber(1)), .number(try #require(number("-2.5e3"))), .bool(true),
                                        .bool(false), .null, .string("xé\n")]))
        #expect(object["b"] == .object(JSONObject()))
        #expect(object["missing"] == nil)
    }

    func number(_ text: String) -> JSONNumber? {
        if case .number(let number)? = try? JSONParser.parse(text) { return number }
        return nil
    }

    @Test func numbersKeepTheirText() throws {
        #expect(number("12345678901234567890")?.text == "12345678901234567890")
        #expect(number("12345678901234567890")?.int64 == nil)
        #expect(number("9223372036854775807")?.int64 == Int64.max)
        #expect(number("-0")?.text == "-0")
        #expect(number("1.5")?.int64 == nil)
        #expect(number("1e2")?.double == 100)
    }

    @Test(arguments: [
        ("{\"a\":1,\"a\":2}", "duplicate key"),
        ("\u{FEFF}{}", "byte order mark"),
        ("[1,]", "expected a value"),
        ("{\"a\":1,}", "expected a string key"),
        ("01", "leading zeros"),
        ("\"\\ud800\"", "unpaired surrogate"),
        ("\"\\udc00\\ud800\"", "unpaired surrogate"),
        ("\"a\tb\"", "control character"),
        ("{} x", "after the JSON value"),
        ("", "empty document"),
        ("   ", "empty document"),
        ("\"abc", "unterminated string"),
        ("[1 2]", "expected ',' or ']'"),
        ("nul", "invalid literal"),
        ("\"\\x\"", "invalid escape"),
        ("1.", "truncated"),
        ("1.x", "digit after '.'"),
        ("1e", "truncated"),
        ("1ex", "exponent"),
        ("-", "truncated"),
        ("-x", "invalid number"),
        ("NaN", "expected a value"),
    ])
    func refusesWithAClearMessage(input: String, expected: String) {
        #expect {
            _ = try JSONParser.parse(input)
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func refusesInvalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],
                               [0x22, 0xE2, 0x82, 0x22], [0x22, 0xFF, 0x22], [0x22, 0x80, 0x22]] {
            #expect(throws: JSONError.self) { try JSONParser.parse(bytes) }
        }
        #expect((try? JSONParser.parse([0x22, 0xF0, 0x9F, 0x92, 0xB3, 0x22])) == .string("💳"))
    }

    @Test func limitsNestingDepth() throws {
        let ok = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        _ = try JSONParser.parse(ok)
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        #expect(throws: JSONError.self) { try JSONParser.parse(deep) }
        // A hostile 100,000-deep document is refused without exhausting the stack.
        let hostile = String(repeating: "{\"a\":", count: 100_000)
        #expect(throws: JSONError.self) { try JSONParser.parse(hostile) }
    }

    @Test func errorNamesTheOffset() {
        #expect(throws: JSONError("expected ':'", at: 5)) { try JSONParser.parse("{\"a\" 1}") }
    }

    @Test func surrogatePairsDecode() throws {
        #expect(try JSONParser.parse("\"\\ud83d\\udcb3\"") == .string("💳"))
    }
}

/// Nicolas Seriot's JSONTestSuite: y_ accepted, n_ refused, i_ either but never a crash.
struct JSONTestSuiteTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Resources/JSONTestSuite/test_parsing")

    static func cases() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }.sorted()
    }

    @Test func corpusIsPresent() throws {
        #expect(try Self.cases().count >= 300)
    }

    /// RFC 8259 grammar allows duplicate keys, so the suite lists them as y_; the engine
    /// refuses them on purpose (two parsers that disagree on which value wins are an attack).
    static let refusedOnPurpose: Set<String> = ["y_object_duplicated_key.json", "y_object_duplicated_key_and_value.json"]

    @Test func duplicateKeysAreRefusedOnPurpose() throws {
        for name in Self.refusedOnPurpose {
            let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent(name)))
            #expect(throws: JSONError.self) { try JSONParser.parse(bytes) }
        }
    }

    @Test func everyCaseGetsTheRightVerdict() throws {
        var wrong: [String] = []
        for name in try Self.cases() where !Self.refusedOnPurpose.contains(name) {
            let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent(name)))
            let accepted = (try? JSONParser.parse(bytes)) != nil
            if name.hasPrefix("y_"), !accepted { wrong.append(name) }
            if name.hasPrefix("n_"), accepted { wrong.append(name) }
        }
        #expect(wrong.isEmpty, "wrong verdicts: \(wrong)")
    }

    @Test func acceptedCasesRoundTrip() throws {
        for name in try Self.cases() where name.hasPrefix("y_") && !Self.refusedOnPurpose.contains(name) {
            let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent(name)))
            let value = try JSONParser.parse(bytes)
            #expect(try JSONParser.parse(value.serialized()) == value, "\(name)")
        }
    }
}

struct JSONWriterTests {
    @Test func escapesWhatMustBeEscaped() {
        let value = JSONValue.string("a\"b\\c\n\u{01}\u{2028}é")
        #expect(value.serializedString() == #""a\"b\\c\n\u0001\u2028é""#)
    }

    /// The writer copies unescaped runs whole: escapes at either end, next to each other, and
    /// the other three-byte characters that start with E2 (only U+2028 and U+2029 are escaped).
    @Test func escapesAtRunBoundaries() {
        #expect(JSONValue.string("\u{7F}\t\r").serializedString() == #""\u007f\t\r""#)
        #expect(JSONValue.string("€\u{2027}x\u{2029}").serializedString() == "\"€\u{2027}x\\u2029\"")
        #expect(JSONValue.string("").serializedString() == #""""#)
        #expect(JSONValue.string("plain text").serializedString() == #""plain text""#)
    }

    @Test func keepsMemberOrder() {
        let object = JSONValue.object(JSONObject([("z", 1), ("a", "x"), ("m", .array([true, nil]))]))
        #expect(object.serializedString() == #"{"z":1,"a":"x","m":[true,null]}"#)
    }

    @Test func objectSubscriptReplacesAndRemoves() {
        var object = JSONObject([("a", 1), ("b", 2)])
        object["a"] = 3
        object["b"] = nil
        object["c"] = "x"
        #expect(JSONValue.object(object).serializedString() == #"{"a":3,"c":"x"}"#)
    }
}
