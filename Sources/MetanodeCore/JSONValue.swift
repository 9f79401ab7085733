/// A JSON document as a value. Produced by the kernel's own strict parser (`parse`) and printed canonically
/// (`serialized`): keys sorted by their UTF-8 bytes, no insignificant whitespace unless pretty, so equal values give
/// equal bytes — manifests and configs are hashed and signed in that form.
///
/// Numbers keep their kind: an integer literal that fits `Int64` is `.int`; one above `Int64.max` that fits `UInt64` is
/// `.uint` (only used there, so `.uint(5)` never comes out of the parser); anything else (fraction, exponent, or a
/// larger magnitude) is `.double`. Equality is structural: `.int(1) != .double(1)`. JSON Schema compares numbers by
/// value instead (see `JSONSchema`).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    // MARK: Accessors

    /// The member `key` of an object; nil for a missing key or a non-object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The element at `index` of an array; nil when out of range or not an array.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let elements) = self, elements.indices.contains(index) { return elements[index] }
        return nil
    }

    public var isNull: Bool { self == .null }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The number as an `Int64` if it is integral and fits, including integral doubles such as `8080.0` (JSON Schema's
    /// "integer" accepts those, so validated configs may hold them).
    public var intValue: Int64? {
        switch self {
        case .int(let v): v
        case .uint(let v): Int64(exactly: v)
        case .double(let d): Int64(exactly: d)
        default: nil
        }
    }

    /// The number as a `UInt64` if it is integral, non-negative and fits.
    public var uintValue: UInt64? {
        switch self {
        case .int(let v): UInt64(exactly: v)
        case .uint(let v): v
        case .double(let d): UInt64(exactly: d)
        default: nil
        }
    }

    /// Any number as a `Double` (large integers round to the nearest double).
    public var doubleValue: Double? {
        switch self {
        case .int(let v): Double(v)
        case .uint(let v): Double(v)
        case .double(let d): d
        default: nil
        }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNumber: Bool {
        switch self {
        case .int, .uint, .double: true
        default: false
        }
    }

    /// The number as an exact integer if its value is integral (`3.0` included); exact for every 64-bit integer.
    var exactInteger: Int128? {
        switch self {
        case .int(let i): Int128(i)
        case .uint(let u): Int128(u)
        case .double(let d): Int128(exactly: d)
        default: nil
        }
    }

    /// The JSON type name used in messages and by JSON Schema: null, boolean, number (integers: "integer"), string,
    /// array, object.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .uint: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    // MARK: Parsing

    /// Parses a JSON document strictly per RFC 8259. See `JSONParser` for the exact rules and error texts.
    public static func parse(_ bytes: [UInt8], limits: JSONLimits = .default) throws(MetanodeError) -> JSONValue {
        try JSONParser.parse(bytes, limits: limits)
    }

    public static func parse(_ string: String, limits: JSONLimits = .default) throws(MetanodeError) -> JSONValue {
        try JSONParser.parse(Array(string.utf8), limits: limits)
    }

    // MARK: Serialization

    /// Canonical JSON text: keys sorted by UTF-8 bytes; compact, or indented by two spaces with `": "` when `pretty`.
    /// Doubles print in the shortest form that parses back to the same value; non-finite doubles (which JSON cannot
    /// express and the parser never produces) print as `null`.
    public func serialized(pretty: Bool = false) -> String {
        String(decoding: serializedBytes(pretty: pretty), as: UTF8.self)
    }

    public func serializedBytes(pretty: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        write(to: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(to out: inout [UInt8], pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null".utf8
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .int(let v): out += String(v).utf8
        case .uint(let v): out += String(v).utf8
        case .double(let d): out += (d.isFinite ? "\(d)" : "null").utf8
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let elements):
            guard !elements.isEmpty else { return out += "[]".utf8 }
            out.append(UInt8(ascii: "["))
            for (n, element) in elements.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                Self.newline(&out, pretty: pretty, indent: indent + 1)
                element.write(to: &out, pretty: pretty, indent: indent + 1)
            }
            Self.newline(&out, pretty: pretty, indent: indent)
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            guard !members.isEmpty else { return out += "{}".utf8 }
            out.append(UInt8(ascii: "{"))
            for (n, key) in Self.sortedKeys(members).enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                Self.newline(&out, pretty: pretty, indent: indent + 1)
                Self.writeString(key, to: &out)
                out += (pretty ? ": " : ":").utf8
                members[key]!.write(to: &out, pretty: pretty, indent: indent + 1)
            }
            Self.newline(&out, pretty: pretty, indent: indent)
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Keys in canonical order: by UTF-8 bytes, not by Swift's `String <` (which normalises Unicode).
    static func sortedKeys(_ members: [String: JSONValue]) -> [String] {
        members.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    private static func newline(_ out: inout [UInt8], pretty: Bool, indent: Int) {
        guard pretty else { return }
        out.append(UInt8(ascii: "\n"))
        out += repeatElement(UInt8(ascii: " "), count: indent * 2)
    }

    /// Escapes only what JSON requires (quote, backslash, control characters); everything else is written as UTF-8.
    private static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += #"\""#.utf8
            case UInt8(ascii: "\\"): out += #"\\"#.utf8
            case 0x0a: out += #"\n"#.utf8
            case 0x0d: out += #"\r"#.utf8
            case 0x09: out += #"\t"#.utf8
            case 0x08: out += #"\b"#.utf8
            case 0x0c: out += #"\f"#.utf8
            case 0..<0x20: out += "\\u00\(Hex.encode([byte]))".utf8
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact canonical serialization.
    public var description: String { serialized() }
}

// MARK: Literals (for tests and for building responses)

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// Traps on a duplicate key, as `Dictionary(uniqueKeysWithValues:)` does: a literal with one is a bug.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(uniqueKeysWithValues: elements))
    }
}

// MARK: Codable

/// Encodes and decodes through any `Encoder`/`Decoder` (e.g. Foundation's `JSONEncoder`), so a `JSONValue` can sit
/// inside a `Codable` type. The kernel's own parser is stricter; use `parse` for untrusted input.
extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let v = try? container.decode(Int64.self) {
            self = .int(v)
        } else if let v = try? container.decode(UInt64.self) {
            self = .uint(v)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let v): try container.encode(v)
        case .uint(let v): try container.encode(v)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}
