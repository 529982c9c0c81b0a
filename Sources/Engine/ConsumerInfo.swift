package import JSON

/// The consumer's personal information (contract get-consumer-information.json, `consumerInfo`),
/// validated against the contract's patterns on the way in. Kept as the canonical JSON the engine
/// serves to D1; unknown members are dropped. Personal data: never logged, never in an error.
package struct ConsumerInfo: Sendable, Hashable {
    /// Only the contract's members, in the contract's order.
    package var json: JSONObject
    /// The consumer's cards (an engine extension, `cardIds`, not part of consumerInfo): lets
    /// `?cardId=` and the card notifications tell a known card from an unknown one.
    package var cardIds: [String]

    package init(json: JSONObject, cardIds: [String] = []) {
        self.json = json
        self.cardIds = cardIds
    }

    package static let maxCards = 100

    package static func decode(_ body: [UInt8]) throws(ValidationError) -> ConsumerInfo {
        let object = try RequestBody.object(body)
        var out: [(String, JSONValue)] = []
        func keep(_ key: String, _ value: String?) { if let value { out.append((key, .string(value))) } }

        keep("language", try pattern(object, "language", "^[a-z]{2}-[a-zA-Z]{2}$", ConsumerPatterns.isLanguage))
        guard object["firstName"] != nil, object["firstName"] != .null else { throw ValidationError("firstName is required") }
        keep("firstName", try name(object, "firstName", maxLength: 128))
        keep("middleName", try name(object, "middleName", maxLength: 128))
        guard object["lastName"] != nil, object["lastName"] != .null else { throw ValidationError("lastName is required") }
        keep("lastName", try name(object, "lastName", maxLength: 128))
        keep("dateOfBirth", try pattern(object, "dateOfBirth", #"^\d{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[0-1])$"#,
                                        ConsumerPatterns.isDateOfBirth))
        keep("title", try name(object, "title", maxLength: 40))
        keep("email", try pattern(object, "email", "the contract's email pattern", ConsumerPatterns.isEmail))
        if let phone = try RequestFields.optionalObject(object, "mobilePhoneNumber") {
            guard let code = try pattern(phone, "mobilePhoneNumber.countryCode", #"^\+[0-9]{1,10}$"#, {
                $0.utf8.first == UInt8(ascii: "+") && Identifier.isDigits(String($0.dropFirst()), length: 1...9)
            }) else { throw ValidationError("mobilePhoneNumber.countryCode is required") }
            guard let number = try pattern(phone, "mobilePhoneNumber.phoneNumber", "^[0-9]{1,14}$", {
                Identifier.isDigits($0, length: 1...14)
            }) else { throw ValidationError("mobilePhoneNumber.phoneNumber is required") }
            out.append(("mobilePhoneNumber", .object(JSONObject([("countryCode", .string(code)), ("phoneNumber", .string(number))]))))
        }
        if let address = try RequestFields.optionalObject(object, "residencyAddress") {
            var lines: [(String, JSONValue)] = []
            guard let line1 = try name(address, "residencyAddress.line1", maxLength: 256) else {
                throw ValidationError("residencyAddress.line1 is required")
            }
            lines.append(("line1", .string(line1)))
            if let line2 = try name(address, "residencyAddress.line2", maxLength: 256) { lines.append(("line2", .string(line2))) }
            if let city = try name(address, "residencyAddress.city", maxLength: 128) { lines.append(("city", .string(city))) }
            if let state = try name(address, "residencyAddress.state", maxLength: 128) { lines.append(("state", .string(state))) }
            guard let zip = try pattern(address, "residencyAddress.zipCode", "^[0-9a-zA-Z ]{1,10}$", ConsumerPatterns.isZipCode) else {
                throw ValidationError("residencyAddress.zipCode is required")
            }
            lines.append(("zipCode", .string(zip)))
            guard let country = try pattern(address, "residencyAddress.countryCode", "^[A-Z]{2}$", ConsumerPatterns.isCountryCode) else {
                throw ValidationError("residencyAddress.countryCode is required")
            }
            lines.append(("countryCode", .string(country)))
            out.append(("residencyAddress", .object(JSONObject(lines))))
        }
        var cardIds: [String] = []
        if let cards = try RequestFields.optionalArray(object, "cardIds") {
            guard cards.count <= maxCards else { throw ValidationError("cardIds holds at most \(maxCards) cards") }
            for card in cards {
                guard case .string(let id) = card, Identifier.isValidCardID(id) else {
                    throw ValidationError("cardIds must hold strings matching ^[A-Za-z0-9_-]{1,48}$")
                }
                if !cardIds.contains(id) { cardIds.append(id) }
            }
        }
        return ConsumerInfo(json: JSONObject(out), cardIds: cardIds)
    }

    static func name(_ object: JSONObject, _ field: String, maxLength: Int) throws(ValidationError) -> String? {
        try pattern(object, field, "^[\\p{L}\\p{N}\\u0600-\\u06FF ,.'_#;:\\/-]{1,\(maxLength)}$") {
            ConsumerPatterns.isName($0, maxLength: maxLength)
        }
    }

    static func pattern(_ object: JSONObject, _ field: String, _ rule: String,
                        _ matches: (String) -> Bool) throws(ValidationError) -> String? {
        guard let value = try RequestFields.optionalString(object, field) else { return nil }
        guard matches(value) else { throw ValidationError("\(field) must match \(rule)") }
        return value
    }
}

/// The contract's consumerInfo patterns, checked on scalars (no regular expressions).
package enum ConsumerPatterns {
    /// `^[\p{L}\p{N}\u0600-\u06FF ,.'_#;:\/-]{1,maxLength}$`
    package static func isName(_ value: String, maxLength: Int) -> Bool {
        var count = 0
        for scalar in value.unicodeScalars {
            count += 1
            guard count <= maxLength else { return false }
            if (0x0600...0x06FF).contains(scalar.value) { continue }
            if " ,.'_#;:/-".unicodeScalars.contains(scalar) { continue }
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                 .decimalNumber, .letterNumber, .otherNumber:
                continue
            default:
                return false
            }
        }
        return count >= 1
    }

    /// `^[a-z]{2}-[a-zA-Z]{2}$`
    package static func isLanguage(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 5, bytes[2] == UInt8(ascii: "-") else { return false }
        return isLower(bytes[0]) && isLower(bytes[1]) && isLetter(bytes[3]) && isLetter(bytes[4])
    }

    /// `^\d{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[0-1])$`
    package static func isDateOfBirth(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return false }
        let digits = [0, 1, 2, 3, 5, 6, 8, 9]
        guard digits.allSatisfy({ bytes[$0] >= 0x30 && bytes[$0] <= 0x39 }) else { return false }
        let month = Int(bytes[5] - 0x30) * 10 + Int(bytes[6] - 0x30)
        let day = Int(bytes[8] - 0x30) * 10 + Int(bytes[9] - 0x30)
        return (1...12).contains(month) && (1...31).contains(day)
    }

    /// `^[a-zA-Z0-9_+&*-]+(?:\.[a-zA-Z0-9_+&*-]+)*@(?:[a-zA-Z0-9-]+\.)+[a-zA-Z]{2,15}$`
    package static func isEmail(_ value: String) -> Bool {
        let parts = value.utf8.split(separator: UInt8(ascii: "@"), omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        // Local part: dot-separated non-empty atoms of [a-zA-Z0-9_+&*-].
        let atoms = parts[0].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for atom in atoms {
            guard !atom.isEmpty, atom.allSatisfy({ isAlphanumeric($0) || "_+&*-".utf8.contains($0) }) else { return false }
        }
        // Domain: one or more labels of [a-zA-Z0-9-] each followed by a dot, then 2 to 15 letters.
        let labels = parts[1].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard labels.count >= 2, let top = labels.last, (2...15).contains(top.count), top.allSatisfy(isLetter) else { return false }
        for label in labels.dropLast() {
            guard !label.isEmpty, label.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else { return false }
        }
        return true
    }

    /// `^[0-9a-zA-Z ]{1,10}$`
    package static func isZipCode(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        return (1...10).contains(bytes.count) && bytes.allSatisfy { isAlphanumeric($0) || $0 == 0x20 }
    }

    /// `^[A-Z]{2}$`
    package static func isCountryCode(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        return bytes.count == 2 && bytes.allSatisfy { $0 >= 0x41 && $0 <= 0x5A }
    }

    static func isLower(_ byte: UInt8) -> Bool { byte >= 0x61 && byte <= 0x7A }
    static func isLetter(_ byte: UInt8) -> Bool { isLower(byte | 0x20) }
    static func isAlphanumeric(_ byte: UInt8) -> Bool { isLetter(byte) || (byte >= 0x30 && byte <= 0x39) }
}
