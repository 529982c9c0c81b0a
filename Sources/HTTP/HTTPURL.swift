/// An absolute `http://` or `https://` URL as the engine's webhook client needs it: scheme,
/// host (a name, an IPv4 literal, or an IPv6 literal in brackets), optional port, and the
/// request target (path and query). Stricter than RFC 3986 where the engine has no use for a
/// form: user information (`user:password@`) is refused (credentials do not belong in a
/// configuration URL that may be logged), as are spaces, control characters and non-ASCII
/// bytes (percent-encode them). A fragment is dropped, as a client never sends it.
package struct HTTPURL: Sendable, Hashable, CustomStringConvertible {
    package enum Scheme: String, Sendable {
        case http, https

        var defaultPort: Int { self == .http ? 80 : 443 }
    }

    package var scheme: Scheme
    /// Without brackets for IPv6 literals; names as written (lowercased).
    package var host: String
    package var port: Int
    /// Path and query, at least "/".
    package var target: String

    package init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        let lowered = String(decoding: bytes.prefix(8).map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
        let rest: ArraySlice<UInt8>
        if lowered.hasPrefix("https://") {
            scheme = .https
            rest = bytes[8...]
        } else if lowered.hasPrefix("http://") {
            scheme = .http
            rest = bytes[7...]
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) ?? rest.endIndex
        let authority = rest[rest.startIndex..<authorityEnd]
        guard !authority.contains(UInt8(ascii: "@")) else { return nil }
        var portText: ArraySlice<UInt8>?
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            let literal = authority[(authority.startIndex + 1)..<close]
            let isIPv6Character: (UInt8) -> Bool = { byte in
                Self.isHexDigit(byte) || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")
            }
            guard literal.contains(UInt8(ascii: ":")), literal.allSatisfy(isIPv6Character) else { return nil }
            host = String(decoding: literal.map(Self.lowercased), as: UTF8.self)
            let after = authority[(close + 1)...]
            if !after.isEmpty {
                guard after.first == UInt8(ascii: ":") else { return nil }
                portText = after.dropFirst()
            }
        } else {
            let colon = authority.firstIndex(of: UInt8(ascii: ":"))
            let name = authority[authority.startIndex..<(colon ?? authority.endIndex)]
            let isNameCharacter: (UInt8) -> Bool = { byte in
                Self.isHexDigit(byte) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
            }
            guard !name.isEmpty, name.allSatisfy(isNameCharacter) else { return nil }
            host = String(decoding: name.map(Self.lowercased), as: UTF8.self)
            if let colon { portText = authority[(colon + 1)...] }
        }
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let number = Int(String(decoding: portText, as: UTF8.self)), (1...65535).contains(number) else { return nil }
            port = number
        } else {
            port = scheme.defaultPort
        }
        let afterAuthority = rest[authorityEnd...]
        let targetBytes = afterAuthority.prefix(while: { $0 != UInt8(ascii: "#") })
        if targetBytes.isEmpty {
            target = "/"
        } else if targetBytes.first == UInt8(ascii: "?") {
            target = "/" + String(decoding: targetBytes, as: UTF8.self)
        } else {
            target = String(decoding: targetBytes, as: UTF8.self)
        }
    }

    /// The `Host` header value: brackets around IPv6 literals, the port only when not the default.
    package var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == scheme.defaultPort ? name : "\(name):\(port)"
    }

    /// True for an IPv4 or IPv6 literal (TLS then verifies the certificate's IP address, and sends no SNI).
    package var hostIsIPLiteral: Bool {
        host.contains(":") || (host.split(separator: ".", omittingEmptySubsequences: false).count == 4
            && host.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") })
    }

    package var description: String { "\(scheme.rawValue)://\(hostHeader)\(target)" }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) || (byte >= 0x41 && byte <= 0x46)
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte }
}
