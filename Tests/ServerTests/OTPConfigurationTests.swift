import Server
import Testing

/// The `otp` section (Deliver OTP's delivery adapter), shaped like `push`.
@Suite struct OTPConfigurationTests {
    func parse(_ otp: String) throws(ConfigurationError) -> ConfigFile {
        try ConfigFile.parse(Array(#"{"issuers": [{"id": "ISSUER0001"}], "otp": \#(otp)}"#.utf8), source: "test")
    }

    @Test func defaultsToSimulatedWithAFiveMinuteDeadline() throws {
        let file = try ConfigFile.parse(Array(#"{"issuers": [{"id": "ISSUER0001"}]}"#.utf8), source: "test")
        #expect(file.otp.kind == .simulated)
        #expect(file.otp.deliveryDeadlineSeconds == 300)
        #expect(file.unknownKeys.isEmpty)
    }

    @Test func readsAWebhook() throws {
        let otp = try parse(#"""
            {"kind": "webhook", "url": "https://sms.bank.example/otp", "secret": "0123456789abcdef",
             "timeoutMilliseconds": 1500, "deliveryDeadlineSeconds": 120}
            """#).otp
        #expect(otp.kind == .webhook)
        #expect(otp.url == "https://sms.bank.example/otp")
        #expect(otp.secret == "0123456789abcdef")
        #expect(otp.timeoutMilliseconds == 1500)
        #expect(otp.deliveryDeadlineSeconds == 120)
    }

    @Test(arguments: [
        (#"{"kind": "sms"}"#, "otp.kind"),
        (#"{}"#, "otp.kind"),
        (#"{"kind": "webhook", "secret": "0123456789abcdef"}"#, "otp.url"),
        (#"{"kind": "webhook", "url": "ftp://x.example", "secret": "0123456789abcdef"}"#, "otp.url"),
        (#"{"kind": "webhook", "url": "https://x.example"}"#, "otp.secret"),
        (#"{"kind": "webhook", "url": "https://x.example", "secret": "short"}"#, "otp.secret"),
        (#"{"kind": "simulated", "deliveryDeadlineSeconds": 0}"#, "otp.deliveryDeadlineSeconds"),
        (#""simulated""#, "otp"),
    ])
    func refusesAndNamesTheSetting(_ otp: String, _ setting: String) {
        do {
            _ = try parse(otp)
            Issue.record("accepted \(otp)")
        } catch {
            #expect(error.setting.contains(setting), "\(error)")
        }
    }
}
