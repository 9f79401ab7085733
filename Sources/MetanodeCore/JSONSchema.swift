import Synchronization

/// One way an instance fails a schema. `message` starts with the path:
/// "$.port: 70000 is greater than the maximum 65535".
public struct SchemaViolation: Sendable, Hashable, CustomStringConvertible {
    /// Where in the instance: "$" is the root, then ".name" for object members (`["odd key"]` when not an identifier)
    /// and "[2]" for array elements, e.g. "$.http.port", "$.peers[2]".
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { message }
}

/// A validator for the subset of JSON Schema 2020-12 that plugin configs need.
///
/// Supported keywords:
/// - any type: `type` (a name or an array of names; "integer" accepts integral numbers such as `2.0`), `enum`,
///   `const` (numbers compare by value, so `1` equals `1.0`), `allOf`, `anyOf`, `oneOf`, `not`;
/// - objects: `properties`, `required`, `additionalProperties` (boolean or schema), `patternProperties`,
///   `minProperties`, `maxProperties`;
/// - arrays: `items` (a schema), `prefixItems`, `minItems`, `maxItems`, `uniqueItems`;
/// - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers, as in 2020-12), `multipleOf`;
/// - strings: `minLength`, `maxLength` (counted in Unicode scalars, i.e. code points, as the spec says), `pattern`
///   (an unanchored search with Swift `Regex`, compiled here), `format` (accepted but not enforced);
/// - annotations, ignored by validation: `$schema`, `$id`, `$comment`, `title`, `description`, `default`, `examples`,
///   `deprecated`, `readOnly`, `writeOnly`. `default` must itself satisfy its schema and feeds `applyingDefaults`.
///
/// `true` and `false` are schemas too. Anything else, notably `$ref`, is refused by `init` with code `.invalidSchema`
/// naming the keyword, so a typo such as "maxium" is an error instead of a silently absent rule. Subschemas nest at
/// most `Limits.schemaDepthMax` deep.
public struct JSONSchema: Sendable, Equatable {
    /// The schema as given.
    public let source: JSONValue
    private let root: Node

    public init(_ schema: JSONValue) throws(MetanodeError) {
        source = schema
        root = try Node(schema, path: "$", depth: 0)
    }

    /// Every violation, in a deterministic order (object members by name). Empty means valid.
    public func validate(_ instance: JSONValue) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []
        root.validate(instance, path: "$", into: &violations)
        return violations
    }

    /// `instance` with every missing object property that has a `default` filled in, recursively through
    /// `properties` (also into the defaults just added, so a parent with `"default": {}` gets its children's
    /// defaults). Values present, even `null`, are kept.
    public func applyingDefaults(to instance: JSONValue) -> JSONValue {
        root.applyingDefaults(to: instance)
    }

    public static func == (a: JSONSchema, b: JSONSchema) -> Bool { a.source == b.source }

    static let annotations: Set<String> = [
        "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly",
        "writeOnly",
    ]
    static let keywords: Set<String> = [
        "type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "properties", "required", "additionalProperties",
        "patternProperties", "minProperties", "maxProperties", "items", "prefixItems", "minItems", "maxItems",
        "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
        "maxLength", "pattern", "format",
    ]
    static let typeNames: Set<String> = ["null", "boolean", "object", "array", "number", "integer", "string"]
}

// MARK: - Compiled schema

/// Heap box for a single subschema (a struct cannot contain itself directly).
private final class Box: Sendable {
    let node: Node
    init(_ node: Node) { self.node = node }
}

/// A compiled regular expression. `Regex` is not `Sendable`, so it sits behind a mutex; validation is rare and short.
private final class Pattern: Sendable {
    let source: String
    private let regex: Mutex<Regex<AnyRegexOutput>>

    init(_ source: String, path: String) throws(MetanodeError) {
        self.source = source
        do {
            // Closer to ECMA-262, which JSON Schema patterns are written for: match code points, not grapheme
            // clusters, and \d and \w are ASCII-only.
            regex = Mutex(
                try Regex(source).matchingSemantics(.unicodeScalar).asciiOnlyDigits().asciiOnlyWordCharacters())
        } catch {
            throw MetanodeError(
                .invalidSchema,
                "invalid schema at \(path): pattern \(Text.quote(source)) is not a valid regular expression: \(error)")
        }
    }

    func matches(_ text: String) -> Bool { regex.withLock { text.contains($0) } }
}

private struct Node: Sendable {
    var always: Bool?  // a boolean schema
    var types: [String]?
    var enumValues: [JSONValue]?
    var constValue: JSONValue?
    var allOf: [Node] = []
    var anyOf: [Node] = []
    var oneOf: [Node] = []
    var not: Box?
    var properties: [String: Node] = [:]
    var required: [String] = []
    var additional: Box?
    var patternProperties: [(Pattern, Node)] = []
    var minProperties: Int?
    var maxProperties: Int?
    var items: Box?
    var prefixItems: [Node] = []
    var minItems: Int?
    var maxItems: Int?
    var uniqueItems = false
    var minimum: JSONValue?
    var maximum: JSONValue?
    var exclusiveMinimum: JSONValue?
    var exclusiveMaximum: JSONValue?
    var multipleOf: JSONValue?
    var minLength: Int?
    var maxLength: Int?
    var pattern: Pattern?
    var defaultValue: JSONValue?

    // MARK: Compiling

    init(_ schema: JSONValue, path: String, depth: Int) throws(MetanodeError) {
        func fail(_ message: String) -> MetanodeError {
            MetanodeError(.invalidSchema, "invalid schema at \(path): \(message)")
        }
        guard depth <= Limits.schemaDepthMax else {
            throw fail("subschemas nest deeper than the limit of \(Limits.schemaDepthMax)")
        }
        if case .bool(let b) = schema {
            always = b
            return
        }
        guard case .object(let object) = schema else {
            throw fail("a schema must be an object or a boolean, not \(schema.typeName)")
        }
        let unknown = JSONValue.sortedKeys(object).filter {
            !JSONSchema.keywords.contains($0) && !JSONSchema.annotations.contains($0)
        }
        if !unknown.isEmpty {
            let known = JSONSchema.keywords.union(JSONSchema.annotations)
            let names = unknown.map { Text.quote($0) + Text.didYouMean($0, known) }.joined(separator: ", ")
            throw fail(
                "unknown keyword\(unknown.count == 1 ? "" : "s") \(names); supported keywords are "
                    + known.sorted().joined(separator: ", "))
        }

        func sub(_ value: JSONValue, _ at: String) throws(MetanodeError) -> Node {
            try Node(value, path: at, depth: depth + 1)
        }
        func subArray(_ keyword: String) throws(MetanodeError) -> [Node] {
            guard let array = object[keyword]?.arrayValue, !array.isEmpty else {
                throw fail("'\(keyword)' must be a non-empty array of schemas")
            }
            var nodes: [Node] = []
            for (i, element) in array.enumerated() { nodes.append(try sub(element, "\(path).\(keyword)[\(i)]")) }
            return nodes
        }
        func count(_ keyword: String) throws(MetanodeError) -> Int? {
            guard let value = object[keyword] else { return nil }
            guard let n = value.intValue, n >= 0, let int = Int(exactly: n) else {
                throw fail("'\(keyword)' must be a non-negative integer, not \(Text.clip(value.serialized()))")
            }
            return int
        }
        func number(_ keyword: String) throws(MetanodeError) -> JSONValue? {
            guard let value = object[keyword] else { return nil }
            guard value.isNumber else { throw fail("'\(keyword)' must be a number, not \(value.typeName)") }
            return value
        }
        func string(_ keyword: String) throws(MetanodeError) -> String? {
            guard let value = object[keyword] else { return nil }
            guard let s = value.stringValue else { throw fail("'\(keyword)' must be a string, not \(value.typeName)") }
            return s
        }

        switch object["type"] {
        case nil: break
        case .string(let name)?: types = [name]
        case .array(let names)?:
            types = names.compactMap(\.stringValue)
            guard types!.count == names.count, !names.isEmpty, Set(types!).count == names.count else {
                throw fail("'type' must be a type name or a non-empty array of distinct type names")
            }
        case let other?: throw fail("'type' must be a string or an array, not \(other.typeName)")
        }
        for name in types ?? [] where !JSONSchema.typeNames.contains(name) {
            throw fail(
                "unknown type \(Text.quote(name))\(Text.didYouMean(name, JSONSchema.typeNames)); types are "
                    + JSONSchema.typeNames.sorted().joined(separator: ", "))
        }
        if let value = object["enum"] {
            guard let values = value.arrayValue else { throw fail("'enum' must be an array") }
            enumValues = values
        }
        constValue = object["const"]
        if object["allOf"] != nil { allOf = try subArray("allOf") }
        if object["anyOf"] != nil { anyOf = try subArray("anyOf") }
        if object["oneOf"] != nil { oneOf = try subArray("oneOf") }
        if let value = object["not"] { not = Box(try sub(value, "\(path).not")) }

        if let value = object["properties"] {
            guard let members = value.objectValue else { throw fail("'properties' must be an object of schemas") }
            for key in JSONValue.sortedKeys(members) {
                properties[key] = try sub(members[key]!, Node.child(Node.child(path, "properties"), key))
            }
        }
        if let value = object["required"] {
            let names = value.arrayValue?.compactMap(\.stringValue)
            guard let names, names.count == value.arrayValue!.count, Set(names).count == names.count else {
                throw fail("'required' must be an array of distinct property names")
            }
            required = names
        }
        if let value = object["additionalProperties"] {
            additional = Box(try sub(value, "\(path).additionalProperties"))
        }
        if let value = object["patternProperties"] {
            guard let members = value.objectValue else {
                throw fail("'patternProperties' must be an object of schemas")
            }
            for key in JSONValue.sortedKeys(members) {
                let at = Node.child(Node.child(path, "patternProperties"), key)
                patternProperties.append((try Pattern(key, path: at), try sub(members[key]!, at)))
            }
        }
        minProperties = try count("minProperties")
        maxProperties = try count("maxProperties")

        if let value = object["items"] {
            if case .array = value {
                throw fail(
                    "'items' must be a single schema; for per-position schemas use 'prefixItems' (JSON Schema 2020-12)")
            }
            items = Box(try sub(value, "\(path).items"))
        }
        if object["prefixItems"] != nil { prefixItems = try subArray("prefixItems") }
        minItems = try count("minItems")
        maxItems = try count("maxItems")
        if let value = object["uniqueItems"] {
            guard let b = value.boolValue else { throw fail("'uniqueItems' must be a boolean") }
            uniqueItems = b
        }

        minimum = try number("minimum")
        maximum = try number("maximum")
        exclusiveMinimum = try number("exclusiveMinimum")
        exclusiveMaximum = try number("exclusiveMaximum")
        multipleOf = try number("multipleOf")
        if let m = multipleOf, Node.compare(m, .int(0)) != .orderedDescending {
            throw fail("'multipleOf' must be greater than 0")
        }
        minLength = try count("minLength")
        maxLength = try count("maxLength")
        if let source = try string("pattern") { pattern = try Pattern(source, path: path + ".pattern") }
        _ = try string("format")

        for keyword in ["$schema", "$id", "$comment", "title", "description"] { _ = try string(keyword) }
        for keyword in ["deprecated", "readOnly", "writeOnly"] where object[keyword] != nil {
            guard object[keyword]!.boolValue != nil else { throw fail("'\(keyword)' must be a boolean") }
        }
        if let value = object["examples"], value.arrayValue == nil { throw fail("'examples' must be an array") }

        // A default that breaks its own schema would make every config that omits the field invalid.
        if let value = object["default"] {
            var violations: [SchemaViolation] = []
            validate(value, path: "$", into: &violations)
            if let first = violations.first {
                throw fail("'default' does not satisfy its own schema: \(first.message)")
            }
            defaultValue = value
        }
    }

    // MARK: Validating

    func validate(_ value: JSONValue, path: String, into out: inout [SchemaViolation]) {
        func report(_ message: String) { out.append(SchemaViolation(path: path, message: "\(path): \(message)")) }
        let shown = Text.clip(value.serialized())

        if let always {
            if !always { report("no value is allowed here") }
            return
        }
        if let types, !types.contains(where: { Node.has(value, type: $0) }) {
            // Other keywords would only repeat the mismatch.
            return report("expected \(types.joined(separator: " or ")) but got \(value.typeName) \(shown)")
        }
        if let enumValues, !enumValues.contains(where: { Node.equal($0, value) }) {
            report("\(shown) is not one of \(Text.clip(JSONValue.array(enumValues).serialized()))")
        }
        if let constValue, !Node.equal(constValue, value) {
            report("\(shown) is not the required value \(Text.clip(constValue.serialized()))")
        }

        switch value {
        case .int, .uint, .double:
            func check(_ bound: JSONValue?, _ failsIf: [ComparisonResult], _ words: String) {
                if let bound, failsIf.contains(Node.compare(value, bound)) {
                    report("\(shown) is \(words) \(bound.serialized())")
                }
            }
            check(minimum, [.orderedAscending], "less than the minimum")
            check(maximum, [.orderedDescending], "greater than the maximum")
            check(exclusiveMinimum, [.orderedAscending, .orderedSame], "not greater than the exclusive minimum")
            check(exclusiveMaximum, [.orderedDescending, .orderedSame], "not less than the exclusive maximum")
            if let multipleOf, !Node.isMultiple(value, of: multipleOf) {
                report("\(shown) is not a multiple of \(multipleOf.serialized())")
            }
        case .string(let s):
            let length = s.unicodeScalars.count
            if let minLength, length < minLength {
                report("is \(Text.count(length, "character")) long, shorter than the minimum length \(minLength)")
            }
            if let maxLength, length > maxLength {
                report("is \(Text.count(length, "character")) long, longer than the maximum length \(maxLength)")
            }
            if let pattern, !pattern.matches(s) { report("\(shown) does not match the pattern \(pattern.source)") }
        case .array(let elements):
            if let minItems, elements.count < minItems {
                report("has \(Text.count(elements.count, "item")), fewer than the minimum \(minItems)")
            }
            if let maxItems, elements.count > maxItems {
                report("has \(Text.count(elements.count, "item")), more than the maximum \(maxItems)")
            }
            if uniqueItems, let (i, j) = Node.firstDuplicate(elements) {
                report("items \(i) and \(j) are equal, but items must be unique")
            }
            for (i, element) in elements.enumerated() {
                let node = i < prefixItems.count ? prefixItems[i] : items?.node
                node?.validate(element, path: "\(path)[\(i)]", into: &out)
            }
        case .object(let members):
            if let minProperties, members.count < minProperties {
                report(
                    "has \(Text.count(members.count, "property", "properties")), fewer than the minimum \(minProperties)"
                )
            }
            if let maxProperties, members.count > maxProperties {
                report(
                    "has \(Text.count(members.count, "property", "properties")), more than the maximum \(maxProperties)"
                )
            }
            for name in required where members[name] == nil {
                let at = Node.child(path, name)
                out.append(SchemaViolation(path: at, message: "\(at): required property is missing"))
            }
            for key in JSONValue.sortedKeys(members) {
                let at = Node.child(path, key)
                var matched = false
                if let node = properties[key] {
                    matched = true
                    node.validate(members[key]!, path: at, into: &out)
                }
                for (pattern, node) in patternProperties where pattern.matches(key) {
                    matched = true
                    node.validate(members[key]!, path: at, into: &out)
                }
                guard !matched, let additional = additional?.node else { continue }
                if additional.always == false {
                    let allowed =
                        properties.isEmpty
                        ? "" : " (known properties: \(properties.keys.sorted().joined(separator: ", ")))"
                    let hint = Text.didYouMean(key, properties.keys)
                    out.append(SchemaViolation(path: at, message: "\(at): property is not allowed\(hint)\(allowed)"))
                } else {
                    additional.validate(members[key]!, path: at, into: &out)
                }
            }
        default: break
        }

        for node in allOf { node.validate(value, path: path, into: &out) }
        if !anyOf.isEmpty {
            let results = anyOf.map { $0.violations(value, path: path) }
            if !results.contains(where: \.isEmpty) {
                report("matches none of the schemas in anyOf: " + Node.summary(results))
            }
        }
        if !oneOf.isEmpty {
            let results = oneOf.map { $0.violations(value, path: path) }
            let passing = results.indices.filter { results[$0].isEmpty }
            if passing.isEmpty {
                report("matches none of the schemas in oneOf: " + Node.summary(results))
            } else if passing.count > 1 {
                report(
                    "matches \(passing.count) of the schemas in oneOf (\(passing.map { "[\($0)]" }.joined(separator: ", "))); "
                        + "it must match exactly one")
            }
        }
        if let not, not.node.violations(value, path: path).isEmpty { report("must not match the schema in 'not'") }
    }

    private func violations(_ value: JSONValue, path: String) -> [SchemaViolation] {
        var out: [SchemaViolation] = []
        validate(value, path: path, into: &out)
        return out
    }

    func applyingDefaults(to value: JSONValue) -> JSONValue {
        guard case .object(var members) = value, !properties.isEmpty else { return value }
        for (key, node) in properties {
            if members[key] == nil, let defaultValue = node.defaultValue { members[key] = defaultValue }
            if let present = members[key] { members[key] = node.applyingDefaults(to: present) }
        }
        return .object(members)
    }

    // MARK: Helpers

    /// The first violation of each alternative: "[0] $.x: ...; [1] $.x: ...".
    private static func summary(_ results: [[SchemaViolation]]) -> String {
        results.enumerated().map { "[\($0.offset)] \($0.element.first?.message ?? "")" }.joined(separator: "; ")
    }

    /// `$.a.b` for identifier keys, `$["odd key"]` otherwise, so every path can be read back unambiguously.
    static func child(_ path: String, _ key: String) -> String {
        let isIdentifier =
            key.first.map { $0 == "_" || ($0.isASCII && $0.isLetter) } == true
            && key.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
        return isIdentifier ? "\(path).\(key)" : "\(path)[\(JSONValue.string(key).serialized())]"
    }

    static func has(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object): true
        case ("number", .int), ("number", .uint), ("number", .double): true
        case ("integer", .int), ("integer", .uint): true
        case ("integer", .double(let d)): d.isFinite && d.rounded(.towardZero) == d
        default: false
        }
    }

    /// Numbers by value; integers exactly (via Int128), doubles against integers without rounding errors.
    static func compare(_ a: JSONValue, _ b: JSONValue) -> ComparisonResult {
        if let x = a.exactInteger, let y = b.exactInteger {
            return x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame
        }
        // One side is a non-integral (hence small) or huge double; the other converts to Double without changing order.
        let x = a.doubleValue ?? .nan, y = b.doubleValue ?? .nan
        return x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame
    }

    static func isMultiple(_ value: JSONValue, of divisor: JSONValue) -> Bool {
        if let x = value.exactInteger, let m = divisor.exactInteger { return x % m == 0 }
        guard let x = value.doubleValue, let m = divisor.doubleValue else { return false }
        let quotient = x / m
        // Binary fractions: 0.3 / 0.1 is 2.9999999999999996, so allow a relative error of a few ulps.
        return quotient.isFinite && abs(quotient - quotient.rounded()) <= 1e-9 * max(1, abs(quotient))
    }

    /// JSON equality with numbers compared by value.
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.array(let x), .array(let y)): x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.object(let x), .object(let y)):
            x.count == y.count && x.allSatisfy { key, value in y[key].map { equal(value, $0) } ?? false }
        default: a.isNumber && b.isNumber ? compare(a, b) == .orderedSame : a == b
        }
    }

    /// Hashes a canonical form (integral numbers as integers) rather than comparing all pairs: 100 000 items stay fast.
    static func firstDuplicate(_ elements: [JSONValue]) -> (Int, Int)? {
        var seen: [JSONValue: Int] = [:]
        for (j, element) in elements.enumerated() {
            if let i = seen.updateValue(j, forKey: canonical(element)) { return (i, j) }
        }
        return nil
    }

    /// Equal under `equal` exactly when equal under `==`.
    private static func canonical(_ v: JSONValue) -> JSONValue {
        switch v {
        case .uint(let u): Int64(exactly: u).map(JSONValue.int) ?? v
        case .double(let d): Int64(exactly: d).map(JSONValue.int) ?? UInt64(exactly: d).map(JSONValue.uint) ?? v
        case .array(let a): .array(a.map(canonical))
        case .object(let o): .object(o.mapValues(canonical))
        default: v
        }
    }
}

private enum ComparisonResult { case orderedAscending, orderedSame, orderedDescending }
