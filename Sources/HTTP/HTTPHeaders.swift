/// Header fields in the order they arrived (or were added), with case-insensitive lookup.
///
/// Field names are compared ASCII case-insensitively as RFC 9110 §5.1 requires; values are kept
/// exactly as received (after the parser trimmed optional whitespace).
package struct HTTPHeaders: Sendable, Sequence {
    package typealias Element = (name: String, value: String)

    private var fields: [Element] = []

    package init() {}

    package init(_ pairs: [(String, String)]) {
        fields = pairs.map { (name: $0.0, value: $0.1) }
    }

    package mutating func add(_ name: String, _ value: String) {
        // One allocation for a typical message's fields, instead of regrowing at 1, 2, 4.
        if fields.capacity == 0 { fields.reserveCapacity(8) }
        fields.append((name: name, value: value))
    }

    /// Removes every field with this name (case-insensitive).
    package mutating func remove(_ name: String) {
        fields.removeAll { Self.namesEqual($0.name, name) }
    }

    /// The first value of the named field, or nil.
    package subscript(name: String) -> String? {
        fields.first { Self.namesEqual($0.name, name) }?.value
    }

    /// Every value of the named field, in order.
    package func values(_ name: String) -> [String] {
        fields.filter { Self.namesEqual($0.name, name) }.map(\.value)
    }

    package func contains(_ name: String) -> Bool {
        fields.contains { Self.namesEqual($0.name, name) }
    }

    package var count: Int { fields.count }

    package var isEmpty: Bool { fields.isEmpty }

    package func makeIterator() -> IndexingIterator<[Element]> {
        fields.makeIterator()
    }

    /// ASCII-only case folding: header names are tokens, so no Unicode rules apply.
    /// Runs on every header of every request and response, so it compares contiguous bytes
    /// (the lengths first) instead of iterating two UTF-8 views.
    static func namesEqual(_ lhs: String, _ rhs: String) -> Bool {
        guard lhs.utf8.count == rhs.utf8.count else { return false }
        var lhs = lhs, rhs = rhs
        return lhs.withUTF8 { a in
            rhs.withUTF8 { b in
                for index in 0..<a.count where asciiLowercase(a[index]) != asciiLowercase(b[index]) { return false }
                return true
            }
        }
    }
}

extension HTTPHeaders: Equatable {
    package static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

@inline(__always)
func asciiLowercase(_ byte: UInt8) -> UInt8 {
    (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
}
