/// Bounds on a JSON document, checked while parsing so a hostile document costs at most these.
public struct JSONLimits: Sendable, Hashable {
    /// Size of the whole document.
    public var bytesMax: Int
    /// Containers inside containers; a top-level scalar has depth 0, `[]` depth 1.
    public var depthMax: Int
    /// Decoded UTF-8 size of any one string, keys included.
    public var stringBytesMax: Int
    /// Elements of one array or members of one object.
    public var containerCountMax: Int

    public init(
        bytesMax: Int = Limits.jsonBytesMax, depthMax: Int = Limits.jsonDepthMax,
        stringBytesMax: Int = Limits.jsonBytesMax, containerCountMax: Int = Limits.jsonContainerCountMax
    ) {
        self.bytesMax = bytesMax
        self.depthMax = depthMax
        self.stringBytesMax = stringBytesMax
        self.containerCountMax = containerCountMax
    }

    public static let `default` = JSONLimits()
}

/// A strict RFC 8259 parser: one value (any type) surrounded by optional whitespace; no comments, trailing commas,
/// leading zeros, NaN/Infinity, byte-order mark, unescaped control characters, invalid UTF-8 or lone surrogates
/// (escaped or not); duplicate keys in one object are refused rather than silently resolved, because two readers
/// could resolve them differently.
///
/// Errors: code `.invalidJSON` for malformed input, `.limitExceeded` for a document beyond its `JSONLimits`. Messages
/// give the 0-based byte offset and the 1-based line and column (columns count characters, not bytes):
/// "invalid JSON at byte 17 (line 2, column 5): expected ':' after object key".
struct JSONParser {
    private let bytes: [UInt8]
    private let limits: JSONLimits
    private var index = 0

    static func parse(_ bytes: [UInt8], limits: JSONLimits) throws(MetanodeError) -> JSONValue {
        guard bytes.count <= limits.bytesMax else {
            throw MetanodeError(
                .limitExceeded, "JSON document is \(bytes.count) bytes; the limit is \(limits.bytesMax) bytes")
        }
        var parser = JSONParser(bytes: bytes, limits: limits)
        parser.skipWhitespace()
        guard parser.index < bytes.count else {
            throw parser.invalid("expected a JSON value but the input is empty", at: parser.index)
        }
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else {
            throw parser.invalid(
                "unexpected \(Text.describe(byte: bytes[parser.index])) after the end of the JSON value",
                at: parser.index)
        }
        return value
    }

    private init(bytes: [UInt8], limits: JSONLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(MetanodeError) -> JSONValue {
        guard index < bytes.count else { throw invalid("unexpected end of input; expected a value", at: index) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case let byte: throw invalid("unexpected \(Text.describe(byte: byte)); expected a value", at: index)
        }
    }

    private mutating func parseObject(depth: Int) throws(MetanodeError) -> JSONValue {
        try checkDepth(depth)
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { return .object(members) }
        while true {
            let keyStart = index
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                let trailing = index < bytes.count && bytes[index] == UInt8(ascii: "}") && !members.isEmpty
                throw invalid(
                    trailing ? "trailing comma before '}'" : "expected '\"' to start an object key", at: index)
            }
            let key = try parseString()
            guard members[key] == nil else { throw invalid("duplicate object key \(Text.quote(key))", at: keyStart) }
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { throw invalid("expected ':' after object key", at: index) }
            skipWhitespace()
            members[key] = try parseValue(depth: depth)
            guard members.count <= limits.containerCountMax else {
                throw tooLarge("object has more than \(limits.containerCountMax) members", at: keyStart)
            }
            skipWhitespace()
            if consume(UInt8(ascii: "}")) { return .object(members) }
            guard consume(UInt8(ascii: ",")) else {
                throw invalid("expected ',' or '}' after object member", at: index)
            }
            skipWhitespace()
        }
    }

    private mutating func parseArray(depth: Int) throws(MetanodeError) -> JSONValue {
        try checkDepth(depth)
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if consume(UInt8(ascii: "]")) { return .array(elements) }
        while true {
            if index < bytes.count, bytes[index] == UInt8(ascii: "]"), !elements.isEmpty {
                throw invalid("trailing comma before ']'", at: index)
            }
            let elementStart = index
            elements.append(try parseValue(depth: depth))
            guard elements.count <= limits.containerCountMax else {
                throw tooLarge("array has more than \(limits.containerCountMax) elements", at: elementStart)
            }
            skipWhitespace()
            if consume(UInt8(ascii: "]")) { return .array(elements) }
            guard consume(UInt8(ascii: ",")) else {
                throw invalid("expected ',' or ']' after array element", at: index)
            }
            skipWhitespace()
        }
    }

    private mutating func parseLiteral(_ word: String) throws(MetanodeError) {
        let expected = word.utf8
        guard bytes.count - index >= expected.count, bytes[index..<index + expected.count].elementsEqual(expected)
        else {
            throw invalid("invalid literal; expected true, false or null", at: index)
        }
        index += expected.count
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. Integers keep full 64-bit precision (see `JSONValue`).
    private mutating func parseNumber() throws(MetanodeError) -> JSONValue {
        let start = index
        _ = consume(UInt8(ascii: "-"))
        if consume(UInt8(ascii: "0")) {
            if index < bytes.count, isDigit(bytes[index]) {
                throw invalid("leading zeros are not allowed in numbers", at: start)
            }
        } else if !consumeDigits() {
            throw invalid("expected a digit", at: index)
        }
        var integral = true
        if consume(UInt8(ascii: ".")) {
            integral = false
            guard consumeDigits() else { throw invalid("expected a digit after the decimal point", at: index) }
        }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            integral = false
            if !consume(UInt8(ascii: "+")) { _ = consume(UInt8(ascii: "-")) }
            guard consumeDigits() else { throw invalid("expected a digit in the exponent", at: index) }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if integral {
            if let v = Int64(text) { return .int(v) }
            if let v = UInt64(text) { return .uint(v) }
        }
        guard let d = Double(text), d.isFinite else {
            throw invalid("number \(Text.clip(text)) is out of range", at: start)
        }
        return .double(d)
    }

    // MARK: Strings

    private mutating func parseString() throws(MetanodeError) -> String {
        let start = index
        index += 1  // the opening quote
        var buffer: [UInt8] = []
        while true {
            guard index < bytes.count else { throw invalid("unterminated string", at: start) }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &buffer)
            case 0..<0x20:
                throw invalid("control character \(Text.describe(byte: byte)) in a string must be escaped", at: index)
            case 0..<0x80:
                buffer.append(byte)
                index += 1
            default:
                let length = try utf8SequenceLength(at: index)
                buffer += bytes[index..<index + length]
                index += length
            }
            guard buffer.count <= limits.stringBytesMax else {
                throw tooLarge("string is longer than \(limits.stringBytesMax) bytes", at: start)
            }
        }
    }

    private mutating func parseEscape(into buffer: inout [UInt8]) throws(MetanodeError) {
        let start = index
        index += 1
        guard index < bytes.count else { throw invalid("unterminated string", at: start) }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(byte)
        case UInt8(ascii: "b"): buffer.append(0x08)
        case UInt8(ascii: "f"): buffer.append(0x0c)
        case UInt8(ascii: "n"): buffer.append(0x0a)
        case UInt8(ascii: "r"): buffer.append(0x0d)
        case UInt8(ascii: "t"): buffer.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4()
            if (0xDC00...0xDFFF).contains(scalar) {
                throw invalid("lone low surrogate \\u\(hex4(scalar)) (it must follow a high surrogate)", at: start)
            }
            if (0xD800...0xDBFF).contains(scalar) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                else {
                    throw invalid(
                        "lone high surrogate \\u\(hex4(scalar)) (it must be followed by a low surrogate)", at: start)
                }
                index += 2
                let low = try parseHex4()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw invalid(
                        "high surrogate \\u\(hex4(scalar)) is followed by \\u\(hex4(low)), not a low surrogate",
                        at: start)
                }
                scalar = 0x10000 + (scalar - 0xD800) << 10 + (low - 0xDC00)
            }
            buffer += String(Character(Unicode.Scalar(scalar)!)).utf8
        default:
            throw invalid("invalid escape '\\\(Character(Unicode.Scalar(byte)))'", at: start)
        }
    }

    private mutating func parseHex4() throws(MetanodeError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard index < bytes.count, let digit = hexValue(bytes[index]) else {
                throw invalid("expected four hex digits after '\\u'", at: index)
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// Validates one multi-byte UTF-8 sequence per Unicode table 3-7 (no overlongs, no surrogates, ≤ U+10FFFF).
    private func utf8SequenceLength(at start: Int) throws(MetanodeError) -> Int {
        let lead = bytes[start]
        let (length, secondRange): (Int, ClosedRange<UInt8>) =
            switch lead {
            case 0xC2...0xDF: (2, 0x80...0xBF)
            case 0xE0: (3, 0xA0...0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80...0xBF)
            case 0xED: (3, 0x80...0x9F)
            case 0xF0: (4, 0x90...0xBF)
            case 0xF1...0xF3: (4, 0x80...0xBF)
            case 0xF4: (4, 0x80...0x8F)
            default: (0, 0...0)
            }
        guard length > 0 else { throw invalid("invalid UTF-8 byte \(Text.describe(byte: lead))", at: start) }
        for offset in 1..<length {
            let position = start + offset
            guard position < bytes.count, (offset == 1 ? secondRange : 0x80...0xBF).contains(bytes[position]) else {
                throw invalid("invalid UTF-8 sequence starting with \(Text.describe(byte: lead))", at: start)
            }
        }
        return length
    }

    // MARK: Helpers

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0a, 0x0d: index += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func consumeDigits() -> Bool {
        let start = index
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        return index > start
    }

    private func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private func hex4(_ value: UInt32) -> String {
        Hex.encode([UInt8(value >> 8), UInt8(value & 0xff)]).uppercased()
    }

    private func checkDepth(_ depth: Int) throws(MetanodeError) {
        guard depth <= limits.depthMax else {
            throw tooLarge("nesting is deeper than the limit of \(limits.depthMax) levels", at: index)
        }
    }

    private func invalid(_ message: String, at offset: Int) -> MetanodeError {
        MetanodeError(.invalidJSON, "invalid JSON at \(location(offset)): \(message)")
    }

    private func tooLarge(_ message: String, at offset: Int) -> MetanodeError {
        MetanodeError(.limitExceeded, "JSON exceeds a limit at \(location(offset)): \(message)")
    }

    /// "byte 17 (line 2, column 5)"; computed only when an error is reported, so parsing does not track lines.
    private func location(_ offset: Int) -> String {
        var line = 1
        var column = 1
        for byte in bytes[..<min(offset, bytes.count)] {
            if byte == 0x0a {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {  // continuation bytes are part of the previous character
                column += 1
            }
        }
        return "byte \(offset) (line \(line), column \(column))"
    }
}
