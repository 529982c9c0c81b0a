package import JSON

/// The body of D1's Authenticate call, validated (contract authenticate.json and README.md).
package struct AuthenticateRequest: Sendable, Hashable {
    package static let operation = "3DS_CHALLENGE_OOB_ISSUER"

    package var authenticationId: String
    package var cardId: String?
    package var panSuffix: String?
    package var acsTransactionId: String?
    package var merchantName: String?
    /// Digits, minor units (`"78999"` is 789.99 EUR).
    package var amount: String?
    package var currencyCode: String?

    package init(authenticationId: String, cardId: String? = nil, panSuffix: String? = nil,
                 acsTransactionId: String? = nil, merchantName: String? = nil,
                 amount: String? = nil, currencyCode: String? = nil) {
        self.authenticationId = authenticationId
        self.cardId = cardId
        self.panSuffix = panSuffix
        self.acsTransactionId = acsTransactionId
        self.merchantName = merchantName
        self.amount = amount
        self.currencyCode = currencyCode
    }

    /// Decodes and validates. Unknown members are ignored (D1 may add fields); known members
    /// must have the contract's type and pattern. `null` counts as absent for optional members.
    package static func decode(_ body: [UInt8]) throws(ValidationError) -> AuthenticateRequest {
        guard !body.isEmpty else { throw ValidationError("empty body: a JSON object is required") }
        let root: JSONValue
        do {
            root = try JSONParser.parse(body)
        } catch {
            throw ValidationError(error.description)
        }
        let object = try RequestFields.object(root, "body")
        let authenticationId = try RequestFields.requiredString(object, "authenticationId")
        guard Identifier.isValidToken64(authenticationId) else {
            throw ValidationError("authenticationId must match ^[A-Za-z0-9_-]{1,64}$")
        }
        let operation = try RequestFields.requiredString(object, "operation")
        guard operation == Self.operation else {
            throw ValidationError("operation must be \(Self.operation)")
        }
        var request = AuthenticateRequest(authenticationId: authenticationId)
        guard let details = try RequestFields.optionalObject(object, "details") else { return request }

        if let cardId = try RequestFields.optionalString(details, "details.cardId") {
            guard Identifier.isValidCardID(cardId) else {
                throw ValidationError("details.cardId must match ^[A-Za-z0-9_-]{1,48}$")
            }
            request.cardId = cardId
        }
        if let panSuffix = try RequestFields.optionalString(details, "details.panSuffix") {
            guard Identifier.isDigits(panSuffix, length: 4...4) else {
                throw ValidationError("details.panSuffix must be 4 digits")
            }
            request.panSuffix = panSuffix
        }
        if let acs = try RequestFields.optionalString(details, "details.acsTransactionId") {
            guard Identifier.isPrintableText(acs, maxLength: 64) else {
                throw ValidationError("details.acsTransactionId must be 1 to 64 printable characters")
            }
            request.acsTransactionId = acs
        }
        if let purchase = try RequestFields.optionalObject(details, "details.purchase") {
            if let merchant = try RequestFields.optionalString(purchase, "details.purchase.merchantName") {
                guard Identifier.isPrintableText(merchant, maxLength: 128) else {
                    throw ValidationError("details.purchase.merchantName must be 1 to 128 printable characters")
                }
                request.merchantName = merchant
            }
            if let amount = try RequestFields.optionalString(purchase, "details.purchase.amount") {
                guard Identifier.isDigits(amount, length: 1...48) else {
                    throw ValidationError("details.purchase.amount must be 1 to 48 digits (minor units)")
                }
                request.amount = amount
            }
            if let currency = try RequestFields.optionalString(purchase, "details.purchase.currencyCode") {
                guard Identifier.isCurrencyCode(currency) else {
                    throw ValidationError("details.purchase.currencyCode must be 3 letters (ISO 4217)")
                }
                request.currencyCode = currency
            }
            // A payment carries both; a non-payment authentication neither (contract: purchase).
            if (request.amount == nil) != (request.currencyCode == nil) {
                throw ValidationError("details.purchase.amount and currencyCode go together")
            }
        }
        return request
    }
}

/// A client error that is safe to show the client and to log: it names the field and the rule,
/// never the value.
package struct ValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// Typed access to JSON request members with errors that name the member.
package enum RequestFields {
    package static func object(_ value: JSONValue, _ name: String) throws(ValidationError) -> JSONObject {
        guard case .object(let object) = value else { throw ValidationError("\(name) must be a JSON object") }
        return object
    }

    package static func requiredString(_ object: JSONObject, _ name: String) throws(ValidationError) -> String {
        guard let value = try optionalString(object, name) else { throw ValidationError("\(name) is required") }
        return value
    }

    package static func optionalString(_ object: JSONObject, _ name: String) throws(ValidationError) -> String? {
        switch object[memberName(name)] {
        case nil, .null?: return nil
        case .string(let string)?: return string
        default: throw ValidationError("\(name) must be a string")
        }
    }

    package static func optionalObject(_ object: JSONObject, _ name: String) throws(ValidationError) -> JSONObject? {
        switch object[memberName(name)] {
        case nil, .null?: return nil
        case .object(let member)?: return member
        default: throw ValidationError("\(name) must be a JSON object")
        }
    }

    /// "details.purchase.amount" → "amount": the path is for messages, the last part is the key.
    private static func memberName(_ path: String) -> String {
        // By bytes: `Character` search costs grapheme breaking on every request.
        guard let dot = path.utf8.lastIndex(of: UInt8(ascii: ".")) else { return path }
        return String(path[path.utf8.index(after: dot)...])
    }
}
