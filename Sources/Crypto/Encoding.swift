/// Lowercase hexadecimal (RFC 4648 §8 "base16").
package enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    package static func encode(_ bytes: [UInt8]) -> String {
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Accepts either case; nil for an odd length or any non-hex character.
    package static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Base64 (RFC 4648 §4) and base64url (RFC 4648 §5). Encoding only, no cryptography, so plain Swift.
package enum Base64 {
    private static let standardAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let padding = UInt8(ascii: "=")

    /// Standard alphabet with `=` padding.
    package static func encode(_ bytes: [UInt8]) -> String {
        encode(bytes, alphabet: standardAlphabet, pad: true)
    }

    /// base64url without padding, as JWS uses it (RFC 7515 §2).
    package static func encodeURL(_ bytes: [UInt8]) -> String {
        encode(bytes, alphabet: urlAlphabet, pad: false)
    }

    /// Strict: standard alphabet, length a multiple of 4, correct padding, canonical trailing bits.
    package static func decode(_ text: String) -> [UInt8]? {
        var symbols = Array(text.utf8)
        guard symbols.count % 4 == 0 else { return nil }
        var padCount = 0
        while padCount < 2, symbols.last == padding {
            symbols.removeLast()
            padCount += 1
        }
        guard symbols.count % 4 != 1 else { return nil }
        return decodeSymbols(symbols[...], standard: true, url: false, requireCanonical: true)
    }

    /// Strict base64url for JWS (RFC 7515 §2): url alphabet, no padding, canonical trailing bits,
    /// so that every byte string has exactly one accepted encoding.
    package static func decodeURL(_ text: String) -> [UInt8]? {
        decodeSymbols(Array(text.utf8)[...], standard: false, url: true, requireCanonical: true)
    }

    /// As `decodeURL(_:)`, straight from bytes (a JWT's segments), without building a String.
    package static func decodeURL(_ symbols: ArraySlice<UInt8>) -> [UInt8]? {
        decodeSymbols(symbols, standard: false, url: true, requireCanonical: true)
    }

    /// For interoperability (e.g. HTTP Basic credentials that peers call "base64URL"): either
    /// alphabet, padding optional but correct when present.
    package static func decodeLenient(_ text: String) -> [UInt8]? {
        var symbols = Array(text.utf8)
        let hadPadding = symbols.last == padding
        if hadPadding {
            guard symbols.count % 4 == 0 else { return nil }
            var padCount = 0
            while padCount < 2, symbols.last == padding {
                symbols.removeLast()
                padCount += 1
            }
        }
        return decodeSymbols(symbols[...], standard: true, url: true, requireCanonical: false)
    }

    private static func encode(_ bytes: [UInt8], alphabet: [UInt8], pad: Bool) -> String {
        var output = [UInt8]()
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            output.append(alphabet[Int(group >> 18 & 0x3F)])
            output.append(alphabet[Int(group >> 12 & 0x3F)])
            output.append(alphabet[Int(group >> 6 & 0x3F)])
            output.append(alphabet[Int(group & 0x3F)])
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let group = UInt32(bytes[index]) << 16
            output.append(alphabet[Int(group >> 18 & 0x3F)])
            output.append(alphabet[Int(group >> 12 & 0x3F)])
            if pad { output.append(padding); output.append(padding) }
        case 2:
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            output.append(alphabet[Int(group >> 18 & 0x3F)])
            output.append(alphabet[Int(group >> 12 & 0x3F)])
            output.append(alphabet[Int(group >> 6 & 0x3F)])
            if pad { output.append(padding) }
        default:
            break
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Sextet values by symbol: bits 0-5 the value; 0x40 standard-only, 0x80 URL-only, 0xFF none.
    private static let symbolTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, symbol) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8.enumerated() {
            table[Int(symbol)] = UInt8(index)
        }
        table[Int(UInt8(ascii: "+"))] = 62 | 0x40
        table[Int(UInt8(ascii: "/"))] = 63 | 0x40
        table[Int(UInt8(ascii: "-"))] = 62 | 0x80
        table[Int(UInt8(ascii: "_"))] = 63 | 0x80
        return table
    }()

    @inline(__always)
    private static func value(of symbol: UInt8, in table: UnsafeBufferPointer<UInt8>, refused: UInt8) -> UInt32? {
        let entry = table[Int(symbol)]
        if entry == 0xFF || entry & refused != 0 { return nil }
        return UInt32(entry & 0x3F)
    }

    /// Decodes unpadded symbols. A final group of 1 symbol cannot encode a byte; in a final group
    /// of 2 or 3 symbols the unused low bits must be zero when `requireCanonical` is set.
    private static func decodeSymbols(_ slice: ArraySlice<UInt8>, standard: Bool, url: Bool, requireCanonical: Bool) -> [UInt8]? {
        slice.withUnsafeBufferPointer { symbols in
            symbolTable.withUnsafeBufferPointer { table in
                // The flag bits of the alphabet not accepted here.
                let refused: UInt8 = (standard ? 0 : 0x40) | (url ? 0 : 0x80)
                return decodeSymbols(symbols, table: table, refused: refused, requireCanonical: requireCanonical)
            }
        }
    }

    private static func decodeSymbols(_ symbols: UnsafeBufferPointer<UInt8>, table: UnsafeBufferPointer<UInt8>,
                                      refused: UInt8, requireCanonical: Bool) -> [UInt8]? {
        let remainder = symbols.count % 4
        guard remainder != 1 else { return nil }
        let fullGroups = symbols.count / 4
        let outputCount = fullGroups * 3 + (remainder == 0 ? 0 : remainder - 1)
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: outputCount) { output, initialized in
            initialized = 0
            var index = 0
            var written = 0
            for _ in 0..<fullGroups {
                var group: UInt32 = 0
                for offset in 0..<4 {
                    guard let sextet = value(of: symbols[index + offset], in: table, refused: refused) else { failed = true; return }
                    group = group << 6 | sextet
                }
                output[written] = UInt8(truncatingIfNeeded: group >> 16)
                output[written + 1] = UInt8(truncatingIfNeeded: group >> 8)
                output[written + 2] = UInt8(truncatingIfNeeded: group)
                written += 3
                index += 4
            }
            if remainder > 0 {
                var group: UInt32 = 0
                for offset in 0..<remainder {
                    guard let sextet = value(of: symbols[index + offset], in: table, refused: refused) else { failed = true; return }
                    group = group << 6 | sextet
                }
                if remainder == 2 {
                    // 12 bits carry 8: the low 4 bits are padding.
                    if requireCanonical, group & 0x0F != 0 { failed = true; return }
                    output[written] = UInt8(truncatingIfNeeded: group >> 4)
                    written += 1
                } else {
                    // 18 bits carry 16: the low 2 bits are padding.
                    if requireCanonical, group & 0x03 != 0 { failed = true; return }
                    output[written] = UInt8(truncatingIfNeeded: group >> 10)
                    output[written + 1] = UInt8(truncatingIfNeeded: group >> 2)
                    written += 2
                }
            }
            initialized = written
        }
        return failed ? nil : bytes
    }
}
