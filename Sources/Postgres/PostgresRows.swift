/// A query result copied out of libpq (the `PGresult` is freed as soon as this exists), in text
/// format. Reads out of range answer nil rather than trapping.
package struct PostgresRows: Sendable {
    package let columns: [String]
    /// Rows returned.
    package let count: Int
    /// Rows inserted, updated, deleted, copied or selected, from the command tag (0 if none).
    package let affectedRows: Int
    /// Row-major values; nil is SQL NULL.
    private let values: [String?]

    package init(columns: [String], values: [String?], affectedRows: Int) {
        self.columns = columns
        self.values = values
        self.count = columns.isEmpty ? 0 : values.count / columns.count
        self.affectedRows = affectedRows
    }

    package subscript(row row: Int, column column: Int) -> String? {
        guard row >= 0, row < count, column >= 0, column < columns.count else { return nil }
        return values[row * columns.count + column]
    }

    package func columnIndex(_ name: String) -> Int? {
        columns.firstIndex(of: name)
    }

    package func string(_ row: Int, _ column: String) -> String? {
        guard let index = columnIndex(column) else { return nil }
        return self[row: row, column: index]
    }

    /// Integer columns (and any text holding a decimal integer); nil for NULL or non-integers.
    package func int(_ row: Int, _ column: String) -> Int? {
        string(row, column).flatMap { Int($0) }
    }

    /// PostgreSQL's text form of boolean is "t" / "f".
    package func bool(_ row: Int, _ column: String) -> Bool? {
        switch string(row, column) {
        case "t": true
        case "f": false
        default: nil
        }
    }
}
