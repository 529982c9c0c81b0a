/// A JSON document as parsed, keeping object member order (RFC 8259).
///
/// Numbers keep the text they were written with, so nothing is lost to floating point:
/// an amount of "12345678901234567890" survives a round trip unchanged.
package enum JSONValue: Sendable, Equatable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    package var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    package var objectValue: JSONObject? {
        if case .object(let object) = self { return object }
        return nil
    }

    package var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    package var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }

    package var int64Value: Int64? {
        if case .number(let number) = self { return number.int64 }
        return nil
    }

    package var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByNilLiteral {
    package init(stringLiteral value: String) { self = .string(value) }
    package init(integerLiteral value: Int64) { self = .number(JSONNumber(value)) }
    package init(booleanLiteral value: Bool) { self = .bool(value) }
    package init(nilLiteral: ()) { self = .null }
}

/// A JSON number, held as its validated text.
package struct JSONNumber: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The number's text, always valid RFC 8259 number syntax.
    package let text: String

    /// Only for text the parser has validated.
    init(validatedText: String) { self.text = validatedText }

    package init(_ value: Int64) { self.text = String(value) }
    package init(_ value: Int) { self.text = String(value) }

    /// Finite doubles only; JSON has no NaN or infinity.
    package init?(_ value: Double) {
        guard value.isFinite else { return nil }
        if value == value.rounded(), abs(value) < 1e15 {
            self.text = String(Int64(value))
        } else {
            self.text = "\(value)"
        }
    }

    /// The value when the text is an integer (no fraction, no exponent) that fits in 64 bits.
    package var int64: Int64? { Int64(text) }

    package var double: Double? { Double(text) }

    package var description: String { text }
}

/// A JSON object: members in document order, with keyed lookup. Keys are unique (the
/// parser refuses duplicates: RFC 8259 leaves their meaning open, and an attacker can use
/// that ambiguity against two parsers that disagree).
package struct JSONObject: Sendable, Equatable, Hashable, Sequence {
    package private(set) var members: [(key: String, value: JSONValue)]

    package init() { members = [] }

    /// Later pairs with a key already present replace the earlier value in place.
    package init(_ pairs: [(String, JSONValue)]) {
        members = []
        members.reserveCapacity(pairs.count)
        for (key, value) in pairs { self[key] = value }
    }

    package var count: Int { members.count }
    package var isEmpty: Bool { members.isEmpty }
    package var keys: [String] { members.map(\.key) }

    package subscript(key: String) -> JSONValue? {
        get {
            for member in members where member.key == key { return member.value }
            return nil
        }
        set {
            if let index = members.firstIndex(where: { $0.key == key }) {
                if let newValue { members[index].value = newValue } else { members.remove(at: index) }
            } else if let newValue {
                members.append((key, newValue))
            }
        }
    }

    package mutating func reserveCapacity(_ capacity: Int) { members.reserveCapacity(capacity) }

    /// For the parser, which has already checked that `key` is new.
    mutating func appendUnchecked(_ key: String, _ value: JSONValue) {
        members.append((key, value))
    }

    package func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> {
        members.makeIterator()
    }

    package static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for (left, right) in zip(lhs.members, rhs.members) where left.key != right.key || left.value != right.value {
            return false
        }
        return true
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(members.count)
        for member in members {
            hasher.combine(member.key)
            hasher.combine(member.value)
        }
    }
}
