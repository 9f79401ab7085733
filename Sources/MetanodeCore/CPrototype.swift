/// A C type that may cross `metanode plugin call` through libffi (see "Exported functions" in `metanode/plugin.h`).
public enum CType: String, Sendable, CaseIterable {
    case void, int32, int64, uint32, uint64, double, cString, bytes

    /// The canonical C spelling, as printed in prototypes.
    public var cName: String {
        switch self {
        case .void: "void"
        case .int32: "int32_t"
        case .int64: "int64_t"
        case .uint32: "uint32_t"
        case .uint64: "uint64_t"
        case .double: "double"
        case .cString: "const char *"
        case .bytes: "mn_bytes"
        }
    }

    /// Spellings accepted in manifests, as token lists (`*` is its own token).
    static let spellings: [[String]: CType] = [
        ["void"]: .void,
        ["int32_t"]: .int32, ["int"]: .int32,
        ["int64_t"]: .int64,
        ["uint32_t"]: .uint32, ["unsigned"]: .uint32, ["unsigned", "int"]: .uint32,
        ["uint64_t"]: .uint64,
        ["double"]: .double,
        ["const", "char", "*"]: .cString,
        ["mn_bytes"]: .bytes,
    ]

    static let supportedList =
        "int32_t (or int), int64_t, uint32_t (or unsigned, unsigned int), uint64_t, double, const char *, mn_bytes, "
        + "and void as a result or as (void)"
}

public struct CParameter: Sendable, Hashable, CustomStringConvertible {
    public var name: String?
    public var type: CType

    public init(name: String?, type: CType) {
        self.name = name
        self.type = type
    }

    /// "int64_t a", "const char *name", or just the type when unnamed.
    public var description: String {
        guard let name else { return type.cName }
        return type == .cString ? type.cName + name : "\(type.cName) \(name)"
    }
}

/// The C prototype of a function a plugin exports, as declared in its manifest, e.g.
/// "int64_t hello_add(int64_t a, int64_t b)". Parsing accepts the spellings in `CType.spellings` with any spacing and
/// an optional trailing ';'. `()` is read as `(void)`.
public struct CPrototype: Sendable, Hashable, CustomStringConvertible {
    public var returnType: CType
    public var symbol: String
    public var parameters: [CParameter]

    public init(returnType: CType, symbol: String, parameters: [CParameter]) {
        self.returnType = returnType
        self.symbol = symbol
        self.parameters = parameters
    }

    /// Code `.invalidManifest` (prototypes come from manifests), naming the unsupported part and the supported types.
    public init(parsing text: String) throws(MetanodeError) {
        func fail(_ detail: String) -> MetanodeError {
            MetanodeError(.invalidManifest, "C prototype \(Text.quote(text)): \(detail)")
        }
        var tokens = try Self.tokenize(text, fail)
        if tokens.last == ";" { tokens.removeLast() }
        guard let open = tokens.firstIndex(of: "("), tokens.last == ")" else {
            throw fail("expected the form 'RESULT NAME(PARAMETERS)', e.g. 'int64_t add(int64_t a, int64_t b)'")
        }
        guard open >= 2, Self.isIdentifier(tokens[open - 1]) else {
            throw fail("expected a result type and a function name before '('")
        }
        symbol = tokens[open - 1]
        guard !Self.reserved.contains(symbol) else { throw fail("'\(symbol)' is a C keyword, not a function name") }
        guard let result = CType.spellings[Array(tokens[..<(open - 1)])] else {
            throw fail(
                "unsupported result type '\(Self.spell(tokens[..<(open - 1)]))'; supported: \(CType.supportedList)")
        }
        guard result != .bytes else {
            throw fail("mn_bytes cannot be a result type (the kernel could not know who owns the bytes)")
        }
        returnType = result

        let inner = Array(tokens[(open + 1)..<(tokens.count - 1)])
        parameters = []
        guard !inner.isEmpty, inner != ["void"] else { return }
        let groups = inner.split(separator: ",", omittingEmptySubsequences: false)
        guard groups.count <= Limits.ffiArgumentsMax else {
            throw fail("\(groups.count) parameters; at most \(Limits.ffiArgumentsMax) are supported")
        }
        for (position, group) in groups.enumerated() {
            let label = "parameter \(position + 1)"
            guard !group.isEmpty else { throw fail("\(label) is empty") }
            let parameter: CParameter
            if let type = CType.spellings[Array(group)] {
                parameter = CParameter(name: nil, type: type)
            } else if let name = group.last, Self.isIdentifier(name), !Self.reserved.contains(name),
                let type = CType.spellings[Array(group.dropLast())]
            {
                parameter = CParameter(name: name, type: type)
            } else {
                let spelled = Self.spell(group)
                throw fail("\(label) has unsupported type '\(spelled)'; supported: \(CType.supportedList)")
            }
            guard parameter.type != .void else {
                throw fail("\(label) is void; void is allowed only as the result or as the whole list '(void)'")
            }
            if let name = parameter.name, parameters.contains(where: { $0.name == name }) {
                throw fail("parameter name '\(name)' is used twice")
            }
            parameters.append(parameter)
        }
    }

    /// Canonical C: "int64_t hello_add(int64_t a, int64_t b)", "const char *hello_greet(const char *name)",
    /// "void hello_reset(void)". Parses back to an equal prototype.
    public var description: String {
        let params = parameters.isEmpty ? "void" : parameters.map(\.description).joined(separator: ", ")
        let result = returnType == .cString ? returnType.cName : returnType.cName + " "
        return "\(result)\(symbol)(\(params))"
    }

    /// The parameter list as in messages: "int64_t a, int64_t b".
    var parameterList: String { parameters.map(\.description).joined(separator: ", ") }

    // MARK: Lexing

    private static func tokenize(
        _ text: String, _ fail: (String) -> MetanodeError
    ) throws(MetanodeError) -> [String] {
        var tokens: [String] = []
        var word = ""
        for c in text {
            if c == "_" || (c.isASCII && (c.isLetter || c.isNumber)) {
                word.append(c)
                continue
            }
            if !word.isEmpty { tokens.append(word); word = "" }
            if c.isWhitespace { continue }
            guard "*(),;".contains(c) else {
                throw fail(
                    "unexpected character \(Text.quote(String(c))); "
                        + "a prototype has only C identifiers, '*', '(', ')' and ','"
                )
            }
            tokens.append(String(c))
        }
        if !word.isEmpty { tokens.append(word) }
        return tokens
    }

    /// Tokens back to C text for messages: "char *", "unsigned long".
    private static func spell(_ tokens: some Sequence<String>) -> String {
        tokens.reduce("") { text, token in
            text.isEmpty ? token : token == "*" ? text + " *" : text.hasSuffix("*") ? text + token : text + " " + token
        }
    }

    static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.first, first == "_" || (first.isASCII && first.isLetter) else { return false }
        return s.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
    }

    /// Words that cannot be a function or parameter name here (C keywords and the type names we accept).
    private static let reserved: Set<String> = [
        "void", "int", "unsigned", "signed", "char", "const", "double", "float", "long", "short", "struct", "union",
        "enum", "volatile", "restrict", "static", "extern", "return", "if", "else", "while", "for", "do", "switch",
        "case", "default", "break", "continue", "goto", "sizeof", "typedef", "auto", "register", "inline", "_Bool",
        "int32_t", "int64_t", "uint32_t", "uint64_t", "mn_bytes",
    ]
}

// MARK: - Arguments and results

/// One argument converted to its C type, ready for libffi.
public enum FFIArgument: Sendable, Hashable {
    case int32(Int32), int64(Int64), uint32(UInt32), uint64(UInt64), double(Double), string(String), bytes([UInt8])
}

/// What an exported function returned.
public enum FFIResult: Sendable, Hashable, CustomStringConvertible {
    case void, int32(Int32), int64(Int64), uint32(UInt32), uint64(UInt64), double(Double), string(String)

    /// `null` for void; numbers as JSON numbers (a `uint64` above `Int64.max` as `.uint`); strings as strings.
    public var jsonValue: JSONValue {
        switch self {
        case .void: .null
        case .int32(let v): .int(Int64(v))
        case .int64(let v): .int(v)
        case .uint32(let v): .int(Int64(v))
        case .uint64(let v): Int64(exactly: v).map(JSONValue.int) ?? .uint(v)
        case .double(let v): .double(v)
        case .string(let s): .string(s)
        }
    }

    /// For the command line: the number or the text itself, empty for void.
    public var description: String {
        switch self {
        case .void: ""
        case .int32(let v): String(v)
        case .int64(let v): String(v)
        case .uint32(let v): String(v)
        case .uint64(let v): String(v)
        case .double(let v): String(v)
        case .string(let s): s
        }
    }
}

extension CPrototype {
    /// Converts command-line words. Integers: decimal or `0x` hex, optionally signed, within the type's range;
    /// doubles: any finite decimal; `const char *`: the text (no NUL); `mn_bytes`: `0x` + an even number of hex digits,
    /// or else the word's UTF-8 bytes. Code `.invalidArgument`, naming the parameter by position and name.
    public func arguments(fromCommandLine words: [String]) throws(MetanodeError) -> [FFIArgument] {
        try checkCount(words.count)
        var result: [FFIArgument] = []
        for word in words {
            result.append(try convert(word, parameter: result.count, allowHex: true))
        }
        return result
    }

    /// Converts JSON values (the `args` array of `POST /v1/plugins/NAME/call/FUNCTION`). Integers: JSON numbers with
    /// an integral value in the type's range (`3.0` is fine, `3.5` and `"3"` are not); doubles: any number;
    /// `const char *`: a string without NUL; `mn_bytes`: a string, read as for the command line.
    public func arguments(fromJSON values: [JSONValue]) throws(MetanodeError) -> [FFIArgument] {
        try checkCount(values.count)
        var result: [FFIArgument] = []
        for (position, value) in values.enumerated() {
            let type = parameters[position].type
            switch (type, value) {
            case (.cString, .string(let s)), (.bytes, .string(let s)):
                result.append(try convert(s, parameter: position, allowHex: false))
            case (.double, _) where value.isNumber:
                result.append(.double(value.doubleValue!))
            case (.int32, _), (.int64, _), (.uint32, _), (.uint64, _):
                guard value.isNumber else {
                    throw argumentError(position, "expected an integer, got \(value.typeName)")
                }
                guard let integer = value.exactInteger else {
                    throw argumentError(position, "\(value.serialized()) is not an integer")
                }
                result.append(try integerArgument(integer, text: value.serialized(), position: position))
            default:
                let expected = type == .double ? "a number" : "a string"
                throw argumentError(position, "expected \(expected), got \(value.typeName)")
            }
        }
        return result
    }

    private func checkCount(_ count: Int) throws(MetanodeError) {
        guard count != parameters.count else { return }
        let takes =
            parameters.isEmpty
            ? "takes no arguments"
            : "takes \(Text.count(parameters.count, "argument")) (\(parameterList))"
        throw MetanodeError(.invalidArgument, "\(symbol) \(takes); got \(count)")
    }

    private func argumentError(_ position: Int, _ detail: String) -> MetanodeError {
        MetanodeError(.invalidArgument, "\(symbol) argument \(position + 1) (\(parameters[position])): \(detail)")
    }

    /// Text to an argument. `allowHex` allows `0x` integers (the command line; JSON has real numbers).
    private func convert(_ text: String, parameter position: Int, allowHex: Bool) throws(MetanodeError) -> FFIArgument {
        switch parameters[position].type {
        case .cString:
            guard !text.utf8.contains(0) else {
                throw argumentError(position, "the text contains a NUL character, which a C string cannot hold")
            }
            return .string(text)
        case .bytes:
            guard text.hasPrefix("0x") || text.hasPrefix("0X") else { return .bytes(Array(text.utf8)) }
            do throws(MetanodeError) {
                return .bytes(try Hex.decode(String(text.dropFirst(2))))
            } catch {
                throw argumentError(
                    position, "\(error.message) (after '0x'; to pass text that starts with 0x, use hex)")
            }
        case .double:
            guard let d = Double(text), d.isFinite, !text.contains(where: \.isWhitespace) else {
                throw argumentError(position, "\(Text.quote(text)) is not a finite number")
            }
            return .double(d)
        case .int32, .int64, .uint32, .uint64:
            guard let integer = Self.parseInteger(text, allowHex: allowHex) else {
                throw argumentError(position, "\(Text.quote(text)) is not an integer (use decimal or 0x hex)")
            }
            return try integerArgument(integer, text: text, position: position)
        case .void:
            preconditionFailure("void parameters are refused when parsing")
        }
    }

    private func integerArgument(_ value: Int128, text: String, position: Int) throws(MetanodeError) -> FFIArgument {
        func range<T: FixedWidthInteger>(_: T.Type) -> MetanodeError {
            argumentError(
                position,
                "\(Text.clip(text)) is out of range for \(parameters[position].type.cName) (\(T.min)...\(T.max))")
        }
        switch parameters[position].type {
        case .int32:
            guard let v = Int32(exactly: value) else { throw range(Int32.self) }
            return .int32(v)
        case .int64:
            guard let v = Int64(exactly: value) else { throw range(Int64.self) }
            return .int64(v)
        case .uint32:
            guard let v = UInt32(exactly: value) else { throw range(UInt32.self) }
            return .uint32(v)
        case .uint64:
            guard let v = UInt64(exactly: value) else { throw range(UInt64.self) }
            return .uint64(v)
        default:
            preconditionFailure("only integer parameters get here")
        }
    }

    /// `[+-]digits` or `[+-]0x hexdigits`, as an Int128 so every 64-bit value and its overflow are representable.
    private static func parseInteger(_ text: String, allowHex: Bool) -> Int128? {
        var body = Substring(text)
        let negative = body.first == "-"
        if body.first == "-" || body.first == "+" { body = body.dropFirst() }
        var radix = 10
        if allowHex, body.hasPrefix("0x") || body.hasPrefix("0X") {
            body = body.dropFirst(2)
            radix = 16
        }
        // Int128's parser also takes a sign; we handled it, so refuse a second one. A well-formed number too large even
        // for Int128 saturates, so the range check reports it as out of range rather than malformed.
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isHexDigit && (radix == 16 || $0.isNumber) }) else {
            return nil
        }
        let magnitude = Int128(body, radix: radix) ?? .max
        return negative ? -magnitude : magnitude
    }
}
