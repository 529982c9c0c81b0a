import HTTP
import Testing

/// The webhook URL parser (push.url, otp.url): what it accepts and how it splits it.
@Suite struct HTTPURLTests {
    @Test(arguments: [
        ("https://bank.example/push", HTTPURL.Scheme.https, "bank.example", 443, "/push", "bank.example"),
        ("http://127.0.0.1:8080/challenges?x=1", .http, "127.0.0.1", 8080, "/challenges?x=1", "127.0.0.1:8080"),
        ("HTTPS://Bank.Example:8443", .https, "bank.example", 8443, "/", "bank.example:8443"),
        ("http://[::1]:9000/a/b", .http, "::1", 9000, "/a/b", "[::1]:9000"),
        ("https://[2001:DB8::1]/otp", .https, "2001:db8::1", 443, "/otp", "[2001:db8::1]"),
        ("http://sms.bank.example?q=1#frag", .http, "sms.bank.example", 80, "/?q=1", "sms.bank.example"),
        ("http://host:80/p%20q#x", .http, "host", 80, "/p%20q", "host"),
        ("https://my_host-1.example/", .https, "my_host-1.example", 443, "/", "my_host-1.example"),
    ])
    func parses(_ text: String, _ scheme: HTTPURL.Scheme, _ host: String, _ port: Int, _ target: String, _ hostHeader: String) throws {
        let url = try #require(HTTPURL(text))
        #expect(url.scheme == scheme)
        #expect(url.host == host)
        #expect(url.port == port)
        #expect(url.target == target)
        #expect(url.hostHeader == hostHeader)
    }

    @Test(arguments: [
        "", "bank.example/push", "ftp://bank.example/", "https://", "https:///path", "http://:80/",
        "https://user:secret@bank.example/", "https://bank.example:0/", "https://bank.example:65536/",
        "https://bank.example:/", "https://bank.example:8o/", "https://bank.example:123456/",
        "https://bank example/", "https://bank.example/a b", "https://bänk.example/", "https://bank.example/\u{7F}",
        "http://[::1/", "http://[zz::1]/", "http://[127.0.0.1]/", "http://[::1]x/", "https//bank.example",
        "mailto:ops@bank.example", "http:/bank.example/",
    ])
    func refuses(_ text: String) {
        #expect(HTTPURL(text) == nil, "\(text)")
    }

    @Test func tellsAddressLiteralsFromNames() throws {
        #expect(try #require(HTTPURL("https://127.0.0.1/")).hostIsIPLiteral)
        #expect(try #require(HTTPURL("https://[::1]/")).hostIsIPLiteral)
        #expect(try #require(HTTPURL("https://localhost/")).hostIsIPLiteral == false)
        #expect(try #require(HTTPURL("https://1.2.3.example/")).hostIsIPLiteral == false)
    }
}
