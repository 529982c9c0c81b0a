/// D1 request builders shared by the end-to-end tests.
enum D1 {
    static func authenticationPath(issuer: String = "ISSUER0001", consumer: String = "alice") -> String {
        "/banking/d1/v1/issuers/\(issuer)/consumers/\(consumer)/authentication"
    }

    static func authenticateBody(_ id: String, amount: String = "78999", merchant: String = "Books & Co") -> String {
        """
        {"authenticationId":"\(id)","operation":"3DS_CHALLENGE_OOB_ISSUER",
         "details":{"cardId":"card-1","panSuffix":"1234","acsTransactionId":"\(id)",
                    "purchase":{"merchantName":"\(merchant)","amount":"\(amount)","currencyCode":"EUR"}}}
        """
    }
}
