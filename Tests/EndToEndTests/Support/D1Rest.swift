import Foundation

/// Request builders for issue 6's endpoints (notifications, consumer information, OTP, app API).
enum D1Rest {
    static func consumerPath(issuer: String = "ISSUER0001", consumer: String) -> String {
        "/banking/d1/v1/issuers/\(issuer)/consumers/\(consumer)"
    }

    static func notificationsPath(issuer: String = "ISSUER0001", consumer: String) -> String {
        consumerPath(issuer: issuer, consumer: consumer) + "/notifications"
    }

    static func otpPath(issuer: String = "ISSUER0001", consumer: String) -> String {
        consumerPath(issuer: issuer, consumer: consumer) + "/otp"
    }

    static func cardNotificationsPath(issuer: String = "ISSUER0001", card: String) -> String {
        "/notifications/d1/v1/issuers/\(issuer)/cards/\(card)/3ds/notifications"
    }

    static func appConsumerPath(issuer: String = "ISSUER0001", consumer: String) -> String {
        "/app/v1/issuers/\(issuer)/consumers/\(consumer)"
    }

    static func authenticatorsPath(issuer: String = "ISSUER0001", consumer: String) -> String {
        appConsumerPath(issuer: issuer, consumer: consumer) + "/authenticators"
    }

    static func enrolBody(operationId: String, consumer: String, status: String = "SUCCESSFUL",
                          appInstanceId: String = "phone-1", authnType: String = "BIOMETRIC") -> String {
        """
        {"operationId":"\(operationId)","operation":"ENROLL_AUTHN","status":"\(status)",
         "startTime":"2026-12-01T10:00:00+01:00","endTime":"2026-12-01T10:00:02+01:00",
         "requestorType":"USER","requestorId":"\(consumer)",
         "details":{"appInstanceId":"\(appInstanceId)","authnType":"\(authnType)"}}
        """
    }

    static func cardOperationBody(operationId: String, operation: String = "3DS_CHALLENGE_OOB_ISSUER",
                                  status: String = "SUCCESSFUL", acsTransactionId: String,
                                  transStatus: String = "Y", eci: String = "05") -> String {
        """
        {"operationId":"\(operationId)","operation":"\(operation)","status":"\(status)",
         "startTime":"2026-12-01T10:00:00Z","consumerId":"alice",
         "details":{"acsTransactionId":"\(acsTransactionId)","threeDSServerTransId":"3ds-1","dsTransId":"ds-1",
                    "purchase":{"merchantName":"Books & Co","merchantType":"5942","amount":"78999","currencyCode":"EUR",
                                "countryCode":"FR","merchantUrl":"https://books.example"},
                    "acquirer":{"bin":"412345","countryCode":"FR"},
                    "device":{"deviceChannel":"02"},
                    "eci":"\(eci)","authenticationMethod":"09","transStatus":"\(transStatus)","transStatusReason":"01",
                    "rba":{"evaluatedRule":[],"selectedRule":[],"appliedExemption":[]}}}
        """
    }

    static let consumerInfo = """
        {"language":"fr-FR","firstName":"Zoé","middleName":"Marie-Anne","lastName":"d'Arc","dateOfBirth":"1990-02-28",
         "title":"Mme","email":"zoe.darc@example.fr","mobilePhoneNumber":{"countryCode":"+33","phoneNumber":"612345678"},
         "residencyAddress":{"line1":"1, rue de l'Église","city":"Orléans","zipCode":"45000","countryCode":"FR"}}
        """

    static func otpBody(value: String = "483920", reason: String = "3DS-AUTHENTICATION", channel: String = "SMS",
                        panSuffix: String = "1234") -> String {
        """
        {"otp":{"value":"\(value)","reason":"\(reason)","expirationDate":"2026-12-01T10:05:00.000Z"},
         "deliveryChannel":"\(channel)","panSuffix":"\(panSuffix)",
         "digitalCardRequestor":{"id":"40010030273","name":"Wallet"},
         "deviceInformation":{"digitalCardStorageType":"ANDROID_PHONE","deviceName":"Pixel"},
         "threeDSDetails":{"acsTransactionId":"acs-otp-1",
                           "purchase":{"merchantName":"Books & Co","amount":"78999","currencyCode":"978"}}}
        """
    }
}

