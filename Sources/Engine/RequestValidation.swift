package import JSON

/// Shared checks for the bodies of issue 6's endpoints. Every failure is a `ValidationError` that
/// names the member and the rule, never the value (it may be personal data or an OTP).
package enum RequestBody {
    /// Parses a request body that must be a JSON object.
    package static func object(_ body: [UInt8]) throws(ValidationError) -> JSONObject {
        guard !body.isEmpty else { throw ValidationError("empty body: a JSON object is required") }
        let root: JSONValue
        do {
            root = try JSONParser.parse(body)
        } catch {
            throw ValidationError(error.description)
        }
        return try RequestFields.object(root, "body")
    }
}

extension RequestFields {
    /// A required member that must be one of `values`.
    package static func requiredEnum(_ object: JSONObject, _ name: String, _ values: [String]) throws(ValidationError) -> String {
        guard let value = try optionalEnum(object, name, values) else { throw ValidationError("\(name) is required") }
        return value
    }

    package static func optionalEnum(_ object: JSONObject, _ name: String, _ values: [String]) throws(ValidationError) -> String? {
        guard let value = try optionalString(object, name) else { return nil }
        guard values.contains(value) else {
            throw ValidationError("\(name) must be one of \(values.joined(separator: ", "))")
        }
        return value
    }

    /// Printable text (no control characters, so it is safe to store and to log as a length),
    /// `length` Unicode scalars. The contract leaves many strings unconstrained; the engine still
    /// refuses control characters and absurd lengths.
    package static func optionalText(_ object: JSONObject, _ name: String, length: ClosedRange<Int> = 1...256) throws(ValidationError) -> String? {
        guard let value = try optionalString(object, name) else { return nil }
        guard Identifier.isPrintableText(value, maxLength: length.upperBound),
              value.unicodeScalars.count >= length.lowerBound else {
            if length.lowerBound == length.upperBound {
                throw ValidationError("\(name) must be \(length.lowerBound) printable characters")
            }
            throw ValidationError("\(name) must be \(length.lowerBound) to \(length.upperBound) printable characters")
        }
        return value
    }

    package static func requiredText(_ object: JSONObject, _ name: String, length: ClosedRange<Int> = 1...256) throws(ValidationError) -> String {
        guard let value = try optionalText(object, name, length: length) else { throw ValidationError("\(name) is required") }
        return value
    }

    /// `^[A-Za-z0-9_-]{1,maxLength}$`
    package static func optionalToken(_ object: JSONObject, _ name: String, maxLength: Int = 64) throws(ValidationError) -> String? {
        guard let value = try optionalString(object, name) else { return nil }
        guard Identifier.isToken(value, maxLength: maxLength) else {
            throw ValidationError("\(name) must match ^[A-Za-z0-9_-]{1,\(maxLength)}$")
        }
        return value
    }

    package static func requiredToken(_ object: JSONObject, _ name: String, maxLength: Int = 64) throws(ValidationError) -> String {
        guard let value = try optionalToken(object, name, maxLength: maxLength) else { throw ValidationError("\(name) is required") }
        return value
    }

    /// An array member (contract `rba.*`: arrays of anything).
    package static func optionalArray(_ object: JSONObject, _ name: String) throws(ValidationError) -> [JSONValue]? {
        switch object[lastComponent(name)] {
        case nil, .null?: return nil
        case .array(let items)?: return items
        default: throw ValidationError("\(name) must be an array")
        }
    }

    /// Members not in `allowed` (contract objects with `additionalProperties: false`).
    package static func refuseUnknownMembers(_ object: JSONObject, _ name: String, allowed: Set<String>) throws(ValidationError) {
        for key in object.keys where !allowed.contains(key) {
            throw ValidationError("\(name) allows no other members than \(allowed.sorted().joined(separator: ", "))")
        }
    }

    static func lastComponent(_ path: String) -> String {
        // By bytes: `Character` search costs grapheme breaking on every request.
        guard let dot = path.utf8.lastIndex(of: UInt8(ascii: ".")) else { return path }
        return String(path[path.utf8.index(after: dot)...])
    }
}

/// The `authnType` of an authenticator (contract: BIOMETRIC | PLATFORM).
package enum AuthnType {
    package static let values = ["BIOMETRIC", "PLATFORM"]
}
