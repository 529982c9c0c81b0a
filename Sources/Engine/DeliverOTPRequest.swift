package import JSON

/// Deliver OTP (contract deliver-otp.json), validated. The OTP value is a secret: it goes into the
/// outbox payload only, never into a log line or an error message.
package struct DeliverOTPRequest: Sendable, Hashable {
    package static let reasons = ["CARD-DIGITIZATION", "DEVICE-BINDING", "CARDHOLDER-VERIFICATION", "3DS-AUTHENTICATION"]
    package static let channels = ["SMS", "EMAIL"]

    package var value: String
    package var reason: String
    package var expirationDate: String?
    package var deliveryChannel: String
    package var panSuffix: String
    /// The contract's optional objects, as validated (only their known members).
    package var digitalCardRequestor: JSONObject?
    package var deviceInformation: JSONObject?
    package var threeDSDetails: JSONObject?

    package init(value: String, reason: String, expirationDate: String? = nil, deliveryChannel: String, panSuffix: String,
                 digitalCardRequestor: JSONObject? = nil, deviceInformation: JSONObject? = nil, threeDSDetails: JSONObject? = nil) {
        self.value = value
        self.reason = reason
        self.expirationDate = expirationDate
        self.deliveryChannel = deliveryChannel
        self.panSuffix = panSuffix
        self.digitalCardRequestor = digitalCardRequestor
        self.deviceInformation = deviceInformation
        self.threeDSDetails = threeDSDetails
    }

    package static func decode(_ body: [UInt8]) throws(ValidationError) -> DeliverOTPRequest {
        let object = try RequestBody.object(body)
        guard let otp = try RequestFields.optionalObject(object, "otp") else { throw ValidationError("otp is required") }
        // The value is checked without quoting it back.
        let value = try RequestFields.requiredText(otp, "otp.value", length: 1...15)
        let reason = try RequestFields.requiredEnum(otp, "otp.reason", reasons)
        let expirationDate = try RequestFields.optionalText(otp, "otp.expirationDate", length: 4...32)
        let channel = try RequestFields.requiredEnum(object, "deliveryChannel", channels)
        guard let panSuffix = try RequestFields.optionalString(object, "panSuffix") else { throw ValidationError("panSuffix is required") }
        guard Identifier.isDigits(panSuffix, length: 4...4) else { throw ValidationError("panSuffix must be 4 digits") }
        var request = DeliverOTPRequest(value: value, reason: reason, expirationDate: expirationDate,
                                        deliveryChannel: channel, panSuffix: panSuffix)
        request.digitalCardRequestor = try requestor(object)
        request.deviceInformation = try device(object)
        request.threeDSDetails = try threeDS(object)
        return request
    }

    static func requestor(_ object: JSONObject) throws(ValidationError) -> JSONObject? {
        let name = "digitalCardRequestor"
        guard let requestor = try RequestFields.optionalObject(object, name) else { return nil }
        try RequestFields.refuseUnknownMembers(requestor, name, allowed: ["id", "walletId", "name", "tspId", "originalDigitalCardRequestorId"])
        var out: [(String, JSONValue)] = []
        for (key, length) in [("id", 11...11), ("walletId", 0...32), ("name", 0...256), ("tspId", 11...11),
                              ("originalDigitalCardRequestorId", 11...11)] {
            if let value = try text(requestor, "\(name).\(key)", length: length) { out.append((key, .string(value))) }
        }
        return JSONObject(out)
    }

    static func device(_ object: JSONObject) throws(ValidationError) -> JSONObject? {
        let name = "deviceInformation"
        guard let device = try RequestFields.optionalObject(object, name) else { return nil }
        try RequestFields.refuseUnknownMembers(device, name, allowed: ["digitalCardStorageType", "phoneNumber", "deviceName"])
        var out: [(String, JSONValue)] = []
        for (key, length) in [("digitalCardStorageType", 0...32), ("phoneNumber", 1...20), ("deviceName", 0...128)] {
            if let value = try text(device, "\(name).\(key)", length: length) { out.append((key, .string(value))) }
        }
        return JSONObject(out)
    }

    static func threeDS(_ object: JSONObject) throws(ValidationError) -> JSONObject? {
        guard let details = try RequestFields.optionalObject(object, "threeDSDetails") else { return nil }
        var out: [(String, JSONValue)] = []
        if let acs = try text(details, "threeDSDetails.acsTransactionId", length: 1...64) {
            out.append(("acsTransactionId", .string(acs)))
        }
        if let purchase = try RequestFields.optionalObject(details, "threeDSDetails.purchase") {
            var members: [(String, JSONValue)] = []
            if let merchant = try text(purchase, "threeDSDetails.purchase.merchantName", length: 1...256) {
                members.append(("merchantName", .string(merchant)))
            }
            if let amount = try RequestFields.optionalString(purchase, "threeDSDetails.purchase.amount") {
                guard Identifier.isDigits(amount, length: 1...48) else {
                    throw ValidationError("threeDSDetails.purchase.amount must be 1 to 48 digits (minor units)")
                }
                members.append(("amount", .string(amount)))
            }
            if let currency = try text(purchase, "threeDSDetails.purchase.currencyCode", length: 1...3) {
                members.append(("currencyCode", .string(currency)))
            }
            out.append(("purchase", .object(JSONObject(members))))
        }
        return JSONObject(out)
    }

    /// An optional string of `length` printable characters; an empty string is allowed when the
    /// contract sets no minimum.
    static func text(_ object: JSONObject, _ name: String, length: ClosedRange<Int>) throws(ValidationError) -> String? {
        if length.lowerBound == 0, case .string("")? = object[RequestFields.lastComponent(name)] { return "" }
        return try RequestFields.optionalText(object, name, length: max(1, length.lowerBound)...length.upperBound)
    }

    /// What the OTP delivery adapter must send, as JSON text for the outbox `payload`.
    package func payload(issuerId: String, consumerId: String) -> String {
        var otp: [(String, JSONValue)] = [("value", .string(value)), ("reason", .string(reason))]
        if let expirationDate { otp.append(("expirationDate", .string(expirationDate))) }
        var members: [(String, JSONValue)] = [
            ("issuerId", .string(issuerId)), ("consumerId", .string(consumerId)),
            ("otp", .object(JSONObject(otp))), ("deliveryChannel", .string(deliveryChannel)),
            ("panSuffix", .string(panSuffix)),
        ]
        if let digitalCardRequestor { members.append(("digitalCardRequestor", .object(digitalCardRequestor))) }
        if let deviceInformation { members.append(("deviceInformation", .object(deviceInformation))) }
        if let threeDSDetails { members.append(("threeDSDetails", .object(threeDSDetails))) }
        return String(decoding: JSONValue.object(JSONObject(members)).serialized(), as: UTF8.self)
    }
}
