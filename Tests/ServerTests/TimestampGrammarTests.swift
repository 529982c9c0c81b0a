import Foundation
import Server
import Testing

/// `OpsQueries.isTimestamp` (ops API `createdBefore`, CLI `--created-before`): a byte-wise
/// check of the grammar the engine used to match with a regular expression.
@Suite struct TimestampGrammarTests {
    static let formerPattern = #"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"#

    static let accepted = [
        "2026-12-01", "2026-12-01T10:00", "2026-12-01 10:00", "2026-12-01T10:00:00", "2026-12-01T10:00:00Z",
        "2026-12-01T10:00Z", "2026-12-01T10:00:00.1Z", "2026-12-01T10:00:00.123456Z", "2026-12-01T10:00:00.123+01:00",
        "2026-12-01T10:00:00-0530", "2026-12-01T10:00+01", "2026-12-01 10:00:00.5-01:00", "0000-00-00",
    ]
    static let refused = [
        "", "2026", "2026-12", "2026-1-01", "2026-12-1", "26-12-01", "2026/12/01", "2026-12-01T", "2026-12-01T10",
        "2026-12-01T10:0", "2026-12-01t10:00", "2026-12-01T10:00:0", "2026-12-01T10:00:00.", "2026-12-01T10:00:00.1234567",
        "2026-12-01T10:00:00z", "2026-12-01T10:00:00+1", "2026-12-01T10:00:00+01:0", "2026-12-01T10:00:00+01:000",
        "2026-12-01T10:00:00Z ", " 2026-12-01", "x2026-12-01", "2026-12-01T10:00:00+01:00:00", "2026-12-01Z",
        "2026-12-01T10:00:00.12Z+01", "2026-12-01T10:00:00ZZ", "2026-12-01T10:00:00+01:00 ",
        "2026-12-01T10:00:00.123456+01:00" + "0000000000",
    ]

    @Test(arguments: accepted)
    func accepts(_ text: String) {
        #expect(OpsQueries.isTimestamp(text))
        #expect(Self.formerAnswer(text), "the former regex agreed")
    }

    @Test(arguments: refused)
    func refuses(_ text: String) {
        #expect(!OpsQueries.isTimestamp(text))
        #expect(!Self.formerAnswer(text), "the former regex agreed")
    }

    /// Stricter than the regex on purpose: only ASCII digits (ICU's \d took any Unicode digit,
    /// which PostgreSQL then refused), and no trailing line break (ICU's $ matched before one).
    @Test(arguments: ["２０２６-12-01", "2026-12-01\n", "2026-12-٠١"])
    func refusesWhatTheRegexLetThrough(_ text: String) {
        #expect(!OpsQueries.isTimestamp(text))
    }

    static func formerAnswer(_ text: String) -> Bool {
        text.utf8.count <= 40 && text.range(of: formerPattern, options: .regularExpression) != nil
    }
}
