import Foundation
import MetanodeCore
import Testing

@Suite struct JSONParsingTests {
    private func parse(_ text: String, limits: JSONLimits = .default) throws(MetanodeError) -> JSONValue {
        try JSONValue.parse(text, limits: limits)
    }

    @Test func parsesEveryKindOfValue() throws {
        let value = try parse(#" {"a": [1, -2, 3.5, true, false, null, "x"], "b": {}} "#)
        #expect(
            value
                == .object([
                    "a": .array([.int(1), .int(-2), .double(3.5), .bool(true), .bool(false), .null, .string("x")]),
                    "b": .object([:]),
                ]))
    }

    @Test func parsesTopLevelScalars() throws {
        #expect(try parse("42") == .int(42))
        #expect(try parse(#""hi""#) == .string("hi"))
        #expect(try parse(" null ") == .null)
    }

    @Test func keepsIntegersExactAcrossTheWhole64BitRange() throws {
        #expect(try parse("9223372036854775807") == .int(.max))
        #expect(try parse("-9223372036854775808") == .int(.min))
        #expect(try parse("9223372036854775808") == .uint(9_223_372_036_854_775_808))
        #expect(try parse("18446744073709551615") == .uint(.max))
    }

    @Test func readsIntegersBeyond64BitsAndExponentsAsDoubles() throws {
        #expect(try parse("18446744073709551616") == .double(18446744073709551616.0))
        #expect(try parse("-9223372036854775809") == .double(-9223372036854775809.0))
        #expect(try parse("1e2") == .double(100))
        #expect(try parse("1.0") == .double(1))
        #expect(try parse("-0.5E-1") == .double(-0.05))
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        #expect(try parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        #expect(try parse(#""\u00e9\u20AC\ud83d\ude00""#) == .string("é€😀"))
        #expect(try parse(#""\u0000""#) == .string("\u{0}"))
    }

    @Test func acceptsValidMultiByteUTF8() throws {
        #expect(try parse("\"é€😀\"") == .string("é€😀"))
    }

    @Test func errorGivesByteLineAndColumn() {
        expectFailure(.invalidJSON, "invalid JSON at byte 8 (line 2, column 7): expected ':' after object key") {
            () throws(MetanodeError) in try parse("{\n  \"a\" 1}")
        }
    }

    @Test func columnsCountCharactersNotBytes() {
        expectFailure(.invalidJSON, "(line 1, column 6)") { () throws(MetanodeError) in try parse(#"["é" x]"#) }
    }

    @Test func refusesEmptyInput() {
        expectFailure(.invalidJSON, "input is empty") { () throws(MetanodeError) in try parse("  ") }
    }

    @Test func refusesTrailingGarbage() {
        expectFailure(.invalidJSON, "at byte 3 (line 1, column 4): unexpected 'x' after the end of the JSON value") {
            () throws(MetanodeError) in try parse("{} x")
        }
    }

    @Test func refusesDuplicateKeys() {
        expectFailure(.invalidJSON, "at byte 9 (line 1, column 10): duplicate object key 'a'") {
            () throws(MetanodeError) in try parse(#"{"a": 1, "a": 2}"#)
        }
    }

    @Test func refusesTrailingCommas() {
        expectFailure(.invalidJSON, "trailing comma before ']'") { () throws(MetanodeError) in try parse("[1,]") }
        expectFailure(.invalidJSON, "trailing comma before '}'") { () throws(MetanodeError) in try parse(#"{"a":1,}"#) }
    }

    @Test(arguments: [
        ("01", "leading zeros are not allowed"),
        ("-", "expected a digit"),
        ("1.", "expected a digit after the decimal point"),
        ("1e", "expected a digit in the exponent"),
        (".5", "unexpected '.'; expected a value"),
        ("+1", "unexpected '+'; expected a value"),
        ("NaN", "unexpected 'N'; expected a value"),
        ("1e400", "number 1e400 is out of range"),
    ])
    func refusesMalformedNumbers(text: String, fragment: String) {
        expectFailure(.invalidJSON, fragment) { () throws(MetanodeError) in try parse(text) }
    }

    @Test(arguments: [
        ("tru", "invalid literal; expected true, false or null"),
        ("nul", "invalid literal"),
        ("[1 2]", "expected ',' or ']' after array element"),
        (#"{"a":1 "b":2}"#, "expected ',' or '}' after object member"),
        ("{1:2}", "expected '\"' to start an object key"),
        ("[", "unexpected end of input; expected a value"),
        ("// c\n1", "unexpected '/'"),
    ])
    func refusesMalformedStructure(text: String, fragment: String) {
        expectFailure(.invalidJSON, fragment) { () throws(MetanodeError) in try parse(text) }
    }

    @Test(arguments: [
        (#""abc"#, "at byte 0 (line 1, column 1): unterminated string"),
        ("\"a\nb\"", "control character 0x0a in a string must be escaped"),
        (#""\x""#, "invalid escape '\\x'"),
        (#""\u12""#, "expected four hex digits after '\\u'"),
        (#""\ud800""#, "lone high surrogate \\uD800"),
        (#""\udc00""#, "lone low surrogate \\uDC00"),
        (#""\ud800\u0041""#, "is followed by \\u0041, not a low surrogate"),
    ])
    func refusesMalformedStrings(text: String, fragment: String) {
        expectFailure(.invalidJSON, fragment) { () throws(MetanodeError) in try parse(text) }
    }

    @Test(
        arguments: [
            ([0x22, 0xff, 0x22], "invalid UTF-8 byte 0xff"),
            ([0x22, 0xc0, 0x80, 0x22], "invalid UTF-8 byte 0xc0"),  // overlong NUL
            ([0x22, 0xed, 0xa0, 0x80, 0x22], "invalid UTF-8 sequence starting with 0xed"),  // encoded surrogate
            ([0x22, 0xe2, 0x82, 0x22], "invalid UTF-8 sequence starting with 0xe2"),  // truncated
            ([0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], "invalid UTF-8 sequence starting with 0xf4"),  // above U+10FFFF
            ([0xef, 0xbb, 0xbf, 0x31], "unexpected 0xef"),  // byte-order mark
        ] as [([UInt8], String)])
    func refusesInvalidUTF8(input: [UInt8], fragment: String) {
        expectFailure(.invalidJSON, fragment) { () throws(MetanodeError) in try JSONValue.parse(input) }
    }

    @Test func refusesADocumentOverBytesMax() {
        expectFailure(.limitExceeded, "JSON document is 11 bytes; the limit is 10 bytes") { () throws(MetanodeError) in
            try parse("[1,2,3,4,5]", limits: JSONLimits(bytesMax: 10))
        }
    }

    @Test func refusesNestingDeeperThanDepthMax() throws {
        #expect(try parse("[[[]]]", limits: JSONLimits(depthMax: 3)) == .array([.array([.array([])])]))
        expectFailure(.limitExceeded, "at byte 3 (line 1, column 4): nesting is deeper than the limit of 3 levels") {
            () throws(MetanodeError) in try parse("[[[[]]]]", limits: JSONLimits(depthMax: 3))
        }
    }

    @Test func defaultDepthLimitStopsDeepNestingBeforeTheStackDoes() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        expectFailure(.limitExceeded, "deeper than the limit of 64") { () throws(MetanodeError) in try parse(deep) }
    }

    @Test func refusesStringsOverStringBytesMax() throws {
        #expect(try parse(#""abcd""#, limits: JSONLimits(stringBytesMax: 4)) == .string("abcd"))
        expectFailure(.limitExceeded, "string is longer than 4 bytes") { () throws(MetanodeError) in
            try parse(#""abcde""#, limits: JSONLimits(stringBytesMax: 4))
        }
    }

    @Test func refusesContainersOverContainerCountMax() throws {
        let limits = JSONLimits(containerCountMax: 2)
        #expect(try parse("[1,2]", limits: limits) == .array([1, 2]))
        expectFailure(.limitExceeded, "array has more than 2 elements") { () throws(MetanodeError) in
            try parse("[1,2,3]", limits: limits)
        }
        expectFailure(.limitExceeded, "object has more than 2 members") { () throws(MetanodeError) in
            try parse(#"{"a":1,"b":2,"c":3}"#, limits: limits)
        }
    }
}

@Suite struct JSONSerializationTests {
    @Test func compactOutputSortsKeys() {
        let value: JSONValue = ["b": 1, "a": [true, nil, "x"], "c": ["z": 1.5, "y": -2]]
        #expect(value.serialized() == #"{"a":[true,null,"x"],"b":1,"c":{"y":-2,"z":1.5}}"#)
    }

    @Test func prettyOutputIndentsByTwoSpaces() {
        let value: JSONValue = ["b": [1, 2], "a": [:], "c": []]
        #expect(value.serialized(pretty: true) == "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": []\n}")
    }

    @Test func keysSortByUTF8Bytes() {
        let value: JSONValue = ["é": 1, "z": 2, "Z": 3]
        #expect(value.serialized() == #"{"Z":3,"z":2,"é":1}"#)
    }

    @Test func escapesOnlyWhatJSONRequires() {
        #expect(JSONValue.string("q\"b\\n\n\u{1}/é").serialized() == #""q\"b\\n\n\u0001/é""#)
    }

    @Test func doublesPrintShortestRoundTripAndIntegersAsIntegers() {
        #expect(JSONValue.double(0.1).serialized() == "0.1")
        #expect(JSONValue.double(1).serialized() == "1.0")
        #expect(JSONValue.double(1e21).serialized() == "1e+21")
        #expect(JSONValue.int(-7).serialized() == "-7")
        #expect(JSONValue.uint(.max).serialized() == "18446744073709551615")
        #expect(JSONValue.double(.infinity).serialized() == "null")
    }

    @Test(arguments: [
        #"{"a":[1,-2,3.25,1e-7,true,false,null],"b":{"c":"\u0000é😀\n"},"d":18446744073709551615}"#,
        "[]", "{}", "0", "-0.0", "1.7976931348623157e+308", "5e-324", #""""#,
    ])
    func roundTripsThroughText(text: String) throws {
        let value = try JSONValue.parse(text)
        #expect(try JSONValue.parse(value.serialized()) == value)
        #expect(try JSONValue.parse(value.serialized(pretty: true)) == value)
        #expect(value.serializedBytes() == Array(value.serialized().utf8))
    }

    @Test func serializationIsCanonical() throws {
        let a = try JSONValue.parse(#"{ "b" : [1, 2], "a" : "x" }"#)
        let b = try JSONValue.parse(#"{"a":"x","b":[1,2]}"#)
        #expect(a.serialized() == b.serialized())
    }

    @Test func codableRoundTripsThroughFoundation() throws {
        let value: JSONValue = ["a": [1, 2.5, "s", true, nil], "b": ["c": -3]]
        let data = try JSONEncoder().encode(value)
        #expect(try JSONDecoder().decode(JSONValue.self, from: data) == value)
        #expect(try JSONValue.parse(Array(data)) == value)
    }
}

@Suite struct JSONAccessorTests {
    let value: JSONValue = ["name": "x", "port": 8080, "ratio": 0.5, "on": true, "list": [1, 2], "whole": 3.0]

    @Test func subscriptsReadMembersAndElements() {
        #expect(value["name"] == .string("x"))
        #expect(value["missing"] == nil)
        #expect(value["list"]?[1] == .int(2))
        #expect(value["list"]?[5] == nil)
        #expect(JSONValue.int(1)["a"] == nil)
    }

    @Test func typedAccessorsReturnOnlyTheirType() {
        #expect(value["name"]?.stringValue == "x")
        #expect(value["port"]?.stringValue == nil)
        #expect(value["port"]?.intValue == 8080)
        #expect(value["on"]?.boolValue == true)
        #expect(value["list"]?.arrayValue == [1, 2])
        #expect(value.objectValue?.count == 6)
        #expect(value["name"]?.objectValue == nil)
    }

    @Test func intValueAcceptsIntegralDoublesOnly() {
        #expect(value["whole"]?.intValue == 3)
        #expect(value["ratio"]?.intValue == nil)
        #expect(JSONValue.uint(.max).intValue == nil)
        #expect(JSONValue.uint(.max).uintValue == .max)
    }

    @Test func doubleValueReadsIntegersToo() {
        #expect(value["port"]?.doubleValue == 8080)
        #expect(value["ratio"]?.doubleValue == 0.5)
        #expect(value["name"]?.doubleValue == nil)
    }
}
