import MetanodeCore
import Testing

@Suite struct JSONSchemaValidationTests {
    /// Messages of validating `instance` against `schema` (a JSON text).
    private func messages(_ schema: String, _ instance: JSONValue) throws -> [String] {
        try JSONSchema(JSONValue.parse(schema)).validate(instance).map(\.message)
    }

    /// Validates `instance` as the member "x" of an object, so paths read "$.x".
    private func messagesAtX(_ schema: String, _ instance: JSONValue) throws -> [String] {
        try messages(#"{"properties": {"x": \#(schema)}}"#, ["x": instance])
    }

    @Test func typeAcceptsMatchingValues() throws {
        #expect(try messagesAtX(#"{"type": "string"}"#, "a") == [])
        #expect(try messagesAtX(#"{"type": ["string", "null"]}"#, nil) == [])
        #expect(try messagesAtX(#"{"type": "number"}"#, 3) == [])
        #expect(try messagesAtX(#"{"type": "object"}"#, [:]) == [])
    }

    @Test func typeRefusesOthersAndNamesBoth() throws {
        #expect(try messagesAtX(#"{"type": "string"}"#, 5) == ["$.x: expected string but got integer 5"])
        #expect(
            try messagesAtX(#"{"type": ["boolean", "null"]}"#, "y") == [
                #"$.x: expected boolean or null but got string "y""#
            ])
    }

    @Test func integerAcceptsIntegralNumbersOnly() throws {
        #expect(try messagesAtX(#"{"type": "integer"}"#, 2) == [])
        #expect(try messagesAtX(#"{"type": "integer"}"#, .uint(.max)) == [])
        #expect(try messagesAtX(#"{"type": "integer"}"#, 2.0) == [])
        #expect(try messagesAtX(#"{"type": "integer"}"#, 2.5) == ["$.x: expected integer but got number 2.5"])
    }

    @Test func enumComparesNumbersByValue() throws {
        #expect(try messagesAtX(#"{"enum": ["a", 1, null]}"#, 1.0) == [])
        #expect(try messagesAtX(#"{"enum": ["a", 1]}"#, "b") == [#"$.x: "b" is not one of ["a",1]"#])
    }

    @Test func constRequiresAnEqualValue() throws {
        #expect(try messagesAtX(#"{"const": {"a": [1]}}"#, ["a": [1.0]]) == [])
        #expect(try messagesAtX(#"{"const": 3}"#, 4) == ["$.x: 4 is not the required value 3"])
    }

    @Test func minimumAndMaximumAreInclusive() throws {
        let schema = #"{"minimum": 1, "maximum": 65535}"#
        #expect(try messagesAtX(schema, 1) == [])
        #expect(try messagesAtX(schema, 65535) == [])
        #expect(try messagesAtX(schema, 70000) == ["$.x: 70000 is greater than the maximum 65535"])
        #expect(try messagesAtX(schema, 0.5) == ["$.x: 0.5 is less than the minimum 1"])
    }

    @Test func exclusiveBoundsRefuseTheBoundItself() throws {
        let schema = #"{"exclusiveMinimum": 0, "exclusiveMaximum": 1.5}"#
        #expect(try messagesAtX(schema, 1) == [])
        #expect(try messagesAtX(schema, 0) == ["$.x: 0 is not greater than the exclusive minimum 0"])
        #expect(try messagesAtX(schema, 1.5) == ["$.x: 1.5 is not less than the exclusive maximum 1.5"])
    }

    @Test func boundsCompareLargeIntegersExactly() throws {
        #expect(
            try messagesAtX(#"{"maximum": 9007199254740992}"#, 9_007_199_254_740_993) == [
                "$.x: 9007199254740993 is greater than the maximum 9007199254740992"
            ])
        #expect(try messagesAtX(#"{"minimum": 0}"#, .uint(.max)) == [])
    }

    @Test func multipleOfWorksForIntegersAndDecimals() throws {
        #expect(try messagesAtX(#"{"multipleOf": 5}"#, 15) == [])
        #expect(try messagesAtX(#"{"multipleOf": 0.1}"#, 0.3) == [])
        #expect(try messagesAtX(#"{"multipleOf": 5}"#, 7) == ["$.x: 7 is not a multiple of 5"])
        #expect(try messagesAtX(#"{"multipleOf": 0.5}"#, 0.7) == ["$.x: 0.7 is not a multiple of 0.5"])
    }

    @Test func lengthsCountUnicodeScalars() throws {
        let schema = #"{"minLength": 2, "maxLength": 3}"#
        #expect(try messagesAtX(schema, "é€😀") == [])  // 3 scalars, 9 bytes
        #expect(try messagesAtX(schema, "a") == ["$.x: is 1 character long, shorter than the minimum length 2"])
        #expect(try messagesAtX(schema, "abcd") == ["$.x: is 4 characters long, longer than the maximum length 3"])
    }

    @Test func patternSearchesUnanchored() throws {
        #expect(try messagesAtX(#"{"pattern": "[0-9]"}"#, "ab1") == [])
        #expect(
            try messagesAtX(#"{"pattern": "^[a-z]+$"}"#, "Ab") == [#"$.x: "Ab" does not match the pattern ^[a-z]+$"#])
    }

    @Test func patternDigitClassIsASCIIOnlyAsInECMAScript() throws {
        #expect(try messagesAtX(#"{"pattern": "^\\d+$"}"#, "42") == [])
        #expect(try messagesAtX(#"{"pattern": "^\\d+$"}"#, "\u{661}\u{662}").count == 1)
    }

    @Test func formatIsNotEnforced() throws {
        #expect(try messagesAtX(#"{"format": "email"}"#, "not an email") == [])
    }

    @Test func requiredReportsTheMissingMemberPath() throws {
        let schema = #"{"properties": {"http": {"required": ["port", "host"]}}}"#
        #expect(try messages(schema, ["http": ["host": "h"]]) == ["$.http.port: required property is missing"])
        #expect(try messages(schema, ["http": ["host": "h", "port": 1]]) == [])
    }

    @Test func additionalPropertiesFalseRefusesUnknownMembersWithAHint() throws {
        let schema = #"{"properties": {"port": {}, "host": {}}, "additionalProperties": false}"#
        #expect(try messages(schema, ["port": 1]) == [])
        #expect(
            try messages(schema, ["prot": 1]) == [
                "$.prot: property is not allowed (did you mean 'port'?) (known properties: host, port)"
            ])
    }

    @Test func additionalPropertiesSchemaChecksUnknownMembers() throws {
        let schema = #"{"additionalProperties": {"type": "integer"}}"#
        #expect(try messages(schema, ["a": 1]) == [])
        #expect(try messages(schema, ["b": "x"]) == [#"$.b: expected integer but got string "x""#])
    }

    @Test func patternPropertiesApplyToMatchingKeysAndExemptThemFromAdditional() throws {
        let schema = #"{"patternProperties": {"^n_": {"type": "number"}}, "additionalProperties": false}"#
        #expect(try messages(schema, ["n_a": 1]) == [])
        #expect(try messages(schema, ["n_a": "1"]) == [#"$.n_a: expected number but got string "1""#])
        #expect(try messages(schema, ["z": 1]) == ["$.z: property is not allowed"])
    }

    @Test func propertyCountsAreBounded() throws {
        let schema = #"{"minProperties": 1, "maxProperties": 1}"#
        #expect(try messages(schema, ["a": 1]) == [])
        #expect(try messages(schema, [:]) == ["$: has 0 properties, fewer than the minimum 1"])
        #expect(try messages(schema, ["a": 1, "b": 2]) == ["$: has 2 properties, more than the maximum 1"])
    }

    @Test func itemsChecksEveryElementWithItsIndex() throws {
        let schema = #"{"properties": {"peers": {"items": {"type": "string"}}}}"#
        #expect(try messages(schema, ["peers": ["a", "b"]]) == [])
        #expect(try messages(schema, ["peers": ["a", "b", 3]]) == ["$.peers[2]: expected string but got integer 3"])
    }

    @Test func prefixItemsCheckPositionsAndItemsTheRest() throws {
        let schema = #"{"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}"#
        #expect(try messages(schema, ["a", 1]) == [])
        #expect(
            try messages(schema, [1, 1, 2]) == [
                "$[0]: expected string but got integer 1", "$[2]: no value is allowed here",
            ])
    }

    @Test func itemCountsAreBounded() throws {
        let schema = #"{"minItems": 1, "maxItems": 2}"#
        #expect(try messagesAtX(schema, [1]) == [])
        #expect(try messagesAtX(schema, []) == ["$.x: has 0 items, fewer than the minimum 1"])
        #expect(try messagesAtX(schema, [1, 2, 3]) == ["$.x: has 3 items, more than the maximum 2"])
    }

    @Test func uniqueItemsNamesTheFirstDuplicatePair() throws {
        #expect(try messagesAtX(#"{"uniqueItems": true}"#, [1, "1", [1]]) == [])
        #expect(
            try messagesAtX(#"{"uniqueItems": true}"#, [1, 2, 1.0]) == [
                "$.x: items 0 and 2 are equal, but items must be unique"
            ])
        #expect(try messagesAtX(#"{"uniqueItems": false}"#, [1, 1]) == [])
    }

    @Test func allOfReportsEveryFailingSubschema() throws {
        let schema = #"{"allOf": [{"minimum": 2}, {"multipleOf": 2}]}"#
        #expect(try messagesAtX(schema, 4) == [])
        #expect(try messagesAtX(schema, 1) == ["$.x: 1 is less than the minimum 2", "$.x: 1 is not a multiple of 2"])
    }

    @Test func anyOfNeedsOneMatch() throws {
        let schema = #"{"anyOf": [{"type": "string"}, {"minimum": 10}]}"#
        #expect(try messagesAtX(schema, "s") == [])
        #expect(try messagesAtX(schema, 11) == [])
        #expect(
            try messagesAtX(schema, 5) == [
                "$.x: matches none of the schemas in anyOf: [0] $.x: expected string but got integer 5; [1] $.x: 5 is less than the minimum 10"
            ])
    }

    @Test func oneOfNeedsExactlyOneMatch() throws {
        let schema = #"{"oneOf": [{"type": "integer"}, {"minimum": 10}]}"#
        #expect(try messagesAtX(schema, 5) == [])
        #expect(try messagesAtX(schema, 10.5) == [])
        #expect(
            try messagesAtX(schema, 11) == [
                "$.x: matches 2 of the schemas in oneOf ([0], [1]); it must match exactly one"
            ])
        #expect(try messagesAtX(schema, 1.5).first?.hasPrefix("$.x: matches none of the schemas in oneOf") == true)
    }

    @Test func notRefusesMatches() throws {
        #expect(try messagesAtX(#"{"not": {"type": "null"}}"#, 1) == [])
        #expect(try messagesAtX(#"{"not": {"type": "null"}}"#, nil) == ["$.x: must not match the schema in 'not'"])
    }

    @Test func booleanSchemas() throws {
        #expect(try JSONSchema(true).validate(["any": 1]) == [])
        #expect(try JSONSchema(false).validate(1).map(\.message) == ["$: no value is allowed here"])
    }

    @Test func pathsQuoteKeysThatAreNotIdentifiers() throws {
        #expect(
            try messages(#"{"properties": {"a b": {"type": "string"}}}"#, ["a b": 1]) == [
                #"$["a b"]: expected string but got integer 1"#
            ])
    }

    @Test func violationCarriesPathSeparately() throws {
        let violations = try JSONSchema(
            JSONValue.parse(#"{"properties": {"http": {"properties": {"port": {"maximum": 10}}}}}"#)
        )
        .validate(["http": ["port": 11]])
        #expect(
            violations == [
                SchemaViolation(path: "$.http.port", message: "$.http.port: 11 is greater than the maximum 10")
            ])
    }

    @Test func annotationsAreIgnored() throws {
        let schema = #"""
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "$comment": "c", "title": "t",
             "description": "d", "examples": [1], "deprecated": false, "readOnly": false, "writeOnly": false}
            """#
        #expect(try messages(schema, 1) == [])
    }
}

@Suite struct JSONSchemaDefinitionTests {
    private func schema(_ text: String) throws(MetanodeError) -> JSONSchema {
        try JSONSchema(JSONValue.parse(text))
    }

    @Test func unknownKeywordIsRefusedWithASuggestion() {
        expectFailure(
            .invalidSchema, "invalid schema at $.properties.port: unknown keyword 'maxium' (did you mean 'maximum'?)"
        ) {
            () throws(MetanodeError) in try schema(#"{"properties": {"port": {"maxium": 5}}}"#)
        }
    }

    @Test func everyUnknownKeywordIsNamed() {
        expectFailure(.invalidSchema, "unknown keywords '$ref', 'foo'") { () throws(MetanodeError) in
            try schema(##"{"$ref": "#/x", "foo": 1}"##)
        }
    }

    @Test(arguments: [
        (#"{"type": "strin"}"#, "unknown type 'strin' (did you mean 'string'?)"),
        (#"{"type": []}"#, "'type' must be a type name or a non-empty array"),
        (#"{"minLength": -1}"#, "'minLength' must be a non-negative integer, not -1"),
        (#"{"maxItems": 1.5}"#, "'maxItems' must be a non-negative integer"),
        (#"{"minimum": "1"}"#, "'minimum' must be a number, not string"),
        (#"{"multipleOf": 0}"#, "'multipleOf' must be greater than 0"),
        (#"{"pattern": "[a-"}"#, "invalid schema at $.pattern: pattern '[a-' is not a valid regular expression"),
        (#"{"patternProperties": {"(": {}}}"#, "pattern '(' is not a valid regular expression"),
        (#"{"required": ["a", "a"]}"#, "'required' must be an array of distinct property names"),
        (#"{"items": [{}]}"#, "for per-position schemas use 'prefixItems'"),
        (#"{"anyOf": []}"#, "'anyOf' must be a non-empty array of schemas"),
        (#"{"enum": 1}"#, "'enum' must be an array"),
        (
            #"{"properties": {"a": 1}}"#,
            "invalid schema at $.properties.a: a schema must be an object or a boolean, not integer"
        ),
        (#"{"uniqueItems": 1}"#, "'uniqueItems' must be a boolean"),
        (#"{"title": 1}"#, "'title' must be a string"),
        (#"{"type": "integer", "default": "x"}"#, "'default' does not satisfy its own schema"),
        ("[]", "invalid schema at $: a schema must be an object or a boolean, not array"),
    ])
    func malformedKeywordsAreRefused(text: String, fragment: String) {
        expectFailure(.invalidSchema, fragment) { () throws(MetanodeError) in try schema(text) }
    }

    @Test func nestingIsBounded() throws {
        var text = "{}"
        for _ in 0..<Limits.schemaDepthMax { text = #"{"not": \#(text)}"# }
        _ = try schema(text)
        expectFailure(.invalidSchema, "subschemas nest deeper than the limit of \(Limits.schemaDepthMax)") {
            () throws(MetanodeError) in try schema(#"{"not": \#(text)}"#)
        }
    }

    @Test func keepsTheSourceAndComparesByIt() throws {
        let source: JSONValue = ["type": "object"]
        #expect(try JSONSchema(source).source == source)
        #expect(try JSONSchema(source) == JSONSchema(["type": "object"]))
        #expect(try JSONSchema(source) != JSONSchema(["type": "array"]))
    }
}

@Suite struct JSONSchemaDefaultsTests {
    let schema: JSONSchema

    init() throws {
        schema = try JSONSchema(
            JSONValue.parse(
                #"""
                {"type": "object", "properties": {
                   "greeting": {"type": "string", "default": "hi"},
                   "http": {"type": "object", "default": {}, "properties": {"port": {"type": "integer", "default": 8080}}},
                   "peers": {"type": "array", "default": []},
                   "limits": {"type": "object", "properties": {"max": {"default": 5}}}
                }}
                """#))
    }

    @Test func fillsMissingPropertiesRecursively() {
        #expect(schema.applyingDefaults(to: [:]) == ["greeting": "hi", "http": ["port": 8080], "peers": []])
    }

    @Test func keepsValuesThatArePresentEvenNull() {
        let filled = schema.applyingDefaults(to: ["greeting": nil, "http": ["port": 1], "limits": [:]])
        #expect(filled == ["greeting": nil, "http": ["port": 1], "peers": [], "limits": ["max": 5]])
    }

    @Test func leavesNonObjectsAlone() {
        #expect(schema.applyingDefaults(to: [1, 2]) == [1, 2])
    }
}
