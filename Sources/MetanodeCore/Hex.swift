/// Lowercase hexadecimal encoding, used for hashes, keys and `0x`-prefixed byte arguments.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`, two characters per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex text (either case, no prefix, even length). Code `.invalidArgument` on anything else.
    public static func decode(_ text: String) throws(MetanodeError) -> [UInt8] {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else {
            throw MetanodeError(
                .invalidArgument, "hex text has an odd number of digits (\(utf8.count)); each byte needs two")
        }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else {
                let bad = value(utf8[index]) == nil ? index : index + 1
                throw MetanodeError(
                    .invalidArgument,
                    "invalid hex digit \(Text.describe(byte: utf8[bad])) at position \(bad); use 0-9 and a-f")
            }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    /// True if `text` is exactly `count` lowercase hex digits (the form manifests store hashes in).
    public static func isLowercase(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
}
