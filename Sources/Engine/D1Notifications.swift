import JSON

/// Notify Consumer Operation (contract notify-consumer-operation-v1.json), validated.
package struct ConsumerOperationNotification: Sendable, Hashable {
    package static let operations = ["ENROLL_AUTHN"]
    package static let statuses = ["SUCCESSFUL", "FAILED"]

    package var operationId: String
    package var operation: String
    package var status: String
    package var startTime: String
    package var endTime: String?
    package var requestorId: String
    package var appInstanceId: String?
    package var authnType: String?
    /// Human-readable reason of a failed operation (D1's text; stored, never logged).
    package var error: String?

    package var isSuccessful: Bool { status == "SUCCESSFUL" }

    /// `consumerId` is the path's: `requestorId` must name the same consumer (contract: "the
    /// consumerId of the end user"), so a misrouted call cannot enrol someone else's app.
    package static func decode(_ body: [UInt8], consumerId: String) throws(ValidationError) -> ConsumerOperationNotification {
        let object = try RequestBody.object(body)
        let operationId = try RequestFields.requiredToken(object, "operationId")
        let operation = try RequestFields.requiredEnum(object, "operation", operations)
        let status = try RequestFields.requiredEnum(object, "status", statuses)
        let startTime = try RequestFields.requiredText(object, "startTime", length: 1...64)
        let endTime = try RequestFields.optionalText(object, "endTime", length: 1...64)
        _ = try RequestFields.requiredEnum(object, "requestorType", ["USER"])
        let requestorId = try RequestFields.requiredString(object, "requestorId")
        guard requestorId == consumerId else {
            throw ValidationError("requestorId must be the consumerId of the path")
        }
        var notification = ConsumerOperationNotification(
            operationId: operationId, operation: operation, status: status, startTime: startTime, endTime: endTime,
            requestorId: requestorId)
        notification.error = try RequestFields.optionalText(object, "error", length: 1...1024)
        if let details = try RequestFields.optionalObject(object, "details") {
            notification.appInstanceId = try RequestFields.optionalText(details, "details.appInstanceId", length: 1...128)
            notification.authnType = try RequestFields.optionalEnum(details, "details.authnType", AuthnType.values)
        }
        // A successful enrolment must say what was enrolled, or there is nothing to register.
        if notification.isSuccessful && operation == "ENROLL_AUTHN" {
            guard notification.appInstanceId != nil else {
                throw ValidationError("details.appInstanceId is required for a SUCCESSFUL ENROLL_AUTHN")
            }
            guard notification.authnType != nil else {
                throw ValidationError("details.authnType is required for a SUCCESSFUL ENROLL_AUTHN")
            }
        }
        return notification
    }

    package init(operationId: String, operation: String, status: String, startTime: String, endTime: String? = nil,
                 requestorId: String, appInstanceId: String? = nil, authnType: String? = nil, error: String? = nil) {
        self.operationId = operationId
        self.operation = operation
        self.status = status
        self.startTime = startTime
        self.endTime = endTime
        self.requestorId = requestorId
        self.appInstanceId = appInstanceId
        self.authnType = authnType
        self.error = error
    }
}

/// Notify 3-D Secure Card Operation (contract notify-3-d-secure-card-operation.json), validated.
/// Only what the engine acts on or reports by is kept as fields; the whole body is stored too.
package struct CardOperationNotification: Sendable, Hashable {
    package static let operations = ["3DS_FRICTIONLESS", "3DS_CHALLENGE_OOB", "3DS_CHALLENGE_OOB_ISSUER", "3DS_CHALLENGE_OTP_SMS"]
    /// The operation whose authentication this engine ran.
    package static let oobIssuer = "3DS_CHALLENGE_OOB_ISSUER"

    package var operationId: String
    package var operation: String
    package var status: String
    package var startTime: String
    package var consumerId: String?
    package var acsTransactionId: String?
    package var transStatus: String?
    package var transStatusReason: String?
    package var eci: String?

    package var isSuccessful: Bool { status == "SUCCESSFUL" }

    package init(operationId: String, operation: String, status: String, startTime: String, consumerId: String? = nil,
                 acsTransactionId: String? = nil, transStatus: String? = nil, transStatusReason: String? = nil,
                 eci: String? = nil) {
        self.operationId = operationId
        self.operation = operation
        self.status = status
        self.startTime = startTime
        self.consumerId = consumerId
        self.acsTransactionId = acsTransactionId
        self.transStatus = transStatus
        self.transStatusReason = transStatusReason
        self.eci = eci
    }

    package static func decode(_ body: [UInt8]) throws(ValidationError) -> CardOperationNotification {
        let object = try RequestBody.object(body)
        var notification = CardOperationNotification(
            operationId: try RequestFields.requiredToken(object, "operationId"),
            operation: try RequestFields.requiredEnum(object, "operation", operations),
            status: try RequestFields.requiredEnum(object, "status", ConsumerOperationNotification.statuses),
            startTime: try RequestFields.requiredText(object, "startTime", length: 1...64),
            consumerId: try RequestFields.optionalToken(object, "consumerId"))
        _ = try RequestFields.optionalText(object, "error", length: 1...1024)
        guard let details = try RequestFields.optionalObject(object, "details") else { return notification }

        notification.acsTransactionId = try RequestFields.optionalText(details, "details.acsTransactionId", length: 1...64)
        _ = try RequestFields.optionalText(details, "details.threeDSServerTransId", length: 1...64)
        _ = try RequestFields.optionalText(details, "details.dsTransId", length: 1...64)
        if let purchase = try RequestFields.optionalObject(details, "details.purchase") {
            _ = try RequestFields.optionalText(purchase, "details.purchase.merchantName")
            _ = try RequestFields.optionalText(purchase, "details.purchase.merchantType", length: 4...4)
            _ = try RequestFields.optionalText(purchase, "details.purchase.amount", length: 1...48)
            _ = try RequestFields.optionalText(purchase, "details.purchase.currencyCode", length: 3...3)
            _ = try RequestFields.optionalText(purchase, "details.purchase.merchantId")
            _ = try RequestFields.optionalText(purchase, "details.purchase.countryCode", length: 2...2)
            _ = try RequestFields.optionalText(purchase, "details.purchase.merchantUrl", length: 1...2048)
        }
        if let acquirer = try RequestFields.optionalObject(details, "details.acquirer") {
            _ = try RequestFields.optionalText(acquirer, "details.acquirer.bin", length: 1...16)
            _ = try RequestFields.optionalText(acquirer, "details.acquirer.countryCode", length: 2...2)
        }
        if let device = try RequestFields.optionalObject(details, "details.device") {
            _ = try RequestFields.optionalEnum(device, "details.device.deviceChannel", ["01", "02", "03"])
            _ = try RequestFields.optionalText(device, "details.device.appInstanceId", length: 1...128)
            _ = try RequestFields.optionalEnum(device, "details.device.authnType", AuthnType.values)
        }
        notification.eci = try RequestFields.optionalText(details, "details.eci", length: 1...8)
        _ = try RequestFields.optionalEnum(details, "details.authenticationMethod", ["02", "07", "09"])
        notification.transStatus = try RequestFields.optionalEnum(details, "details.transStatus", ["Y", "N", "U", "R"])
        notification.transStatusReason = try RequestFields.optionalText(details, "details.transStatusReason", length: 2...2)
        if let rba = try RequestFields.optionalObject(details, "details.rba") {
            _ = try RequestFields.optionalArray(rba, "details.rba.evaluatedRule")
            _ = try RequestFields.optionalArray(rba, "details.rba.selectedRule")
            _ = try RequestFields.optionalArray(rba, "details.rba.appliedExemption")
        }
        return notification
    }
}

/// How D1's final word on a 3DS_CHALLENGE_OOB_ISSUER compares with the engine's state.
package enum D1Agreement: String, Sendable, Hashable {
    case agreed
    /// D1 says SUCCESSFUL and the engine did not authenticate, or D1 says FAILED and the engine
    /// authenticated: worth a look by operations.
    case disagreed
    /// The engine's authentication is still PENDING (the end transition was refused or raced).
    case pending

    package static func compare(d1Successful: Bool, engine: AuthenticationState) -> D1Agreement {
        switch engine {
        case .pending: .pending
        case .authenticated: d1Successful ? .agreed : .disagreed
        case .authenticationFailed, .technicalError: d1Successful ? .disagreed : .agreed
        }
    }
}

extension AuthenticationService {
    /// D1 reports the 3DS operation as finished. A still-PENDING authentication ends as
    /// AUTHENTICATION_FAILED (`ended by D1`, cause `d1-notification`): only the cardholder's
    /// decision authenticates. Returns the authentication as it stands afterwards.
    package func endByD1(_ record: AuthenticationRecord, actor: String) async throws -> (record: AuthenticationRecord, ended: Bool) {
        var machine = AuthenticationStateMachine(status: record.status)
        guard case .transition(let target) = machine.handle(.endedByD1) else { return (record, false) }
        let request = TransitionRequest(issuerId: record.issuerId, authenticationId: record.authenticationId,
                                        to: target, cause: .d1Notification, actor: actor)
        switch try await store.transition(request) {
        case .applied(let ended):
            deadlines.forget(id: ended.id)
            onEnded?(ended.status, .d1Notification)
            return (ended, true)
        case .unchanged(let current):
            return (current, false)
        case .notFound:
            return (record, false)
        }
    }
}
