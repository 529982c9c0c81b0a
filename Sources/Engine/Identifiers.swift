/// Identifier rules from the D1 contract (../shared/d1-contract/README.md, "Identifiers").
/// Checked on bytes, without regular expressions, because they run on every request.
package enum Identifier {
    /// `issuerId`: exactly 10 characters. The contract gives no alphabet; we accept the
    /// printable ASCII that can appear in a URL path segment without escaping.
    package static func isValidIssuerID(_ value: String) -> Bool {
        value.utf8.count == 10 && allBytes(of: value, satisfy: isUnreservedOrSafe)
    }

    /// `consumerId`, `authenticationId`, `operationId`, `x-correlation-id`: `^[A-Za-z0-9_-]{1,64}$`.
    package static func isValidToken64(_ value: String) -> Bool { isToken(value, maxLength: 64) }

    /// `cardId`: `^[A-Za-z0-9_-]{1,48}$`.
    package static func isValidCardID(_ value: String) -> Bool { isToken(value, maxLength: 48) }

    /// `^[A-Za-z0-9_-]{1,maxLength}$`
    package static func isToken(_ value: String, maxLength: Int) -> Bool {
        let count = value.utf8.count
        return count >= 1 && count <= maxLength && allBytes(of: value, satisfy: isTokenByte)
    }

    /// Over the contiguous UTF-8 (a String's `utf8` view iterates byte by byte, several times
    /// slower, and these checks run on every request's identifiers).
    private static func allBytes(of value: String, satisfy test: (UInt8) -> Bool) -> Bool {
        var value = value
        return value.withUTF8 { $0.allSatisfy(test) }
    }

    /// Exactly `length` ASCII digits.
    package static func isDigits(_ value: String, length: ClosedRange<Int>) -> Bool {
        var count = 0
        for byte in value.utf8 {
            guard byte >= 0x30 && byte <= 0x39 else { return false }
            count += 1
            if count > length.upperBound { return false }
        }
        return length.contains(count)
    }

    /// ISO 4217 alphabetic code: three ASCII letters.
    package static func isCurrencyCode(_ value: String) -> Bool {
        var count = 0
        for byte in value.utf8 {
            let upper = byte & 0xDF
            guard upper >= 0x41 && upper <= 0x5A else { return false }
            count += 1
        }
        return count == 3
    }

    /// Printable text without control characters, 1...maxLength Unicode scalars.
    package static func isPrintableText(_ value: String, maxLength: Int) -> Bool {
        var count = 0
        for scalar in value.unicodeScalars {
            if scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0xA0) { return false }
            if scalar.value == 0x2028 || scalar.value == 0x2029 { return false }
            count += 1
            if count > maxLength { return false }
        }
        return count >= 1
    }

    @inline(__always)
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "_"), UInt8(ascii: "-"): return true
        default: return false
        }
    }

    @inline(__always)
    static func isUnreservedOrSafe(_ byte: UInt8) -> Bool {
        // RFC 3986 unreserved characters: ALPHA / DIGIT / "-" / "." / "_" / "~"
        isTokenByte(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "~")
    }
}
