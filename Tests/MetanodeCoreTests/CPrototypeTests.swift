import MetanodeCore
import Testing

@Suite struct CPrototypeParsingTests {
    private func parse(_ text: String) throws(MetanodeError) -> CPrototype { try CPrototype(parsing: text) }

    @Test func parsesTheHeaderExample() throws {
        let p = try parse("int64_t hello_add(int64_t a, int64_t b)")
        #expect(p.returnType == .int64)
        #expect(p.symbol == "hello_add")
        #expect(p.parameters == [CParameter(name: "a", type: .int64), CParameter(name: "b", type: .int64)])
    }

    @Test(arguments: [
        ("int32_t f(int32_t x)", CType.int32), ("int f(int x)", .int32), ("int64_t f(int64_t x)", .int64),
        ("uint32_t f(uint32_t x)", .uint32), ("unsigned f(unsigned x)", .uint32),
        ("unsigned int f(unsigned int x)", .uint32), ("uint64_t f(uint64_t x)", .uint64),
        ("double f(double x)", .double),
        ("const char *f(const char *x)", .cString), ("const char* f(const char* x)", .cString),
        ("const   char  *  f( const char *x )", .cString),
    ])
    func acceptsEverySpelling(text: String, type: CType) throws {
        let p = try parse(text)
        #expect(p.returnType == type)
        #expect(p.parameters == [CParameter(name: "x", type: type)])
    }

    @Test func acceptsConstCharStarGluedToTheName() throws {
        #expect(try parse("void f(const char*name)").parameters == [CParameter(name: "name", type: .cString)])
    }

    @Test func acceptsBytesAsAParameter() throws {
        #expect(try parse("uint64_t hello_sum(mn_bytes data)").parameters == [CParameter(name: "data", type: .bytes)])
    }

    @Test func voidListAndEmptyListMeanNoParameters() throws {
        #expect(try parse("void hello_reset(void)").parameters == [])
        #expect(try parse("void hello_reset()").parameters == [])
        #expect(try parse("void hello_reset(void)").returnType == .void)
    }

    @Test func parametersMayBeUnnamed() throws {
        #expect(
            try parse("int f(int, unsigned int, const char *);").parameters == [
                CParameter(name: nil, type: .int32), CParameter(name: nil, type: .uint32),
                CParameter(name: nil, type: .cString),
            ])
    }

    @Test(arguments: [
        "int64_t hello_add(int64_t a, int64_t b)", "const char *hello_greet(const char *name)",
        "void hello_reset(void)",
        "uint64_t hello_sum(mn_bytes data)", "double f(uint32_t, const char *s)",
    ])
    func descriptionIsCanonicalAndParsesBack(text: String) throws {
        let p = try parse(text)
        #expect(p.description == text)
        #expect(try parse(p.description) == p)
    }

    @Test func sixteenParametersAreTheLimit() throws {
        let list = (0..<16).map { "int a\($0)" }.joined(separator: ", ")
        #expect(try parse("void f(\(list))").parameters.count == 16)
        expectFailure(.invalidManifest, "17 parameters; at most 16 are supported") { () throws(MetanodeError) in
            try parse("void f(\(list), int z)")
        }
    }

    @Test(arguments: [
        ("char *f(void)", "unsupported result type 'char *'"),
        ("long f(void)", "unsupported result type 'long'"),
        ("int f(float x)", "parameter 1 has unsupported type 'float x'"),
        ("int f(int a, size_t n)", "parameter 2 has unsupported type 'size_t n'"),
        ("mn_bytes f(void)", "mn_bytes cannot be a result type"),
        ("int f(void x)", "parameter 1 is void"),
        ("int f(int a, void)", "parameter 2 is void"),
        ("int f(int a, int a)", "parameter name 'a' is used twice"),
        ("int f(int a,)", "parameter 2 is empty"),
        ("int f", "expected the form 'RESULT NAME(PARAMETERS)'"),
        ("f(int a)", "expected a result type and a function name before '('"),
        ("int 9f(int a)", "expected a result type and a function name"),
        ("int int(int a)", "'int' is a C keyword"),
        ("int f(int a[])", "unexpected character '['"),
    ])
    func refusesUnsupportedDeclarations(text: String, fragment: String) {
        expectFailure(.invalidManifest, fragment) { () throws(MetanodeError) in try parse(text) }
    }

    @Test func unsupportedTypeMessageListsTheSupportedOnes() {
        expectFailure(
            .invalidManifest,
            "supported: int32_t (or int), int64_t, uint32_t (or unsigned, unsigned int), uint64_t, double, const char *, mn_bytes"
        ) { () throws(MetanodeError) in try parse("float f(void)") }
    }
}

@Suite struct FFIArgumentTests {
    let add: CPrototype
    let all: CPrototype

    init() throws {
        add = try CPrototype(parsing: "int64_t hello_add(int64_t a, int64_t b)")
        all = try CPrototype(
            parsing: "void f(int32_t i, int64_t l, uint32_t u, uint64_t q, double d, const char *s, mn_bytes b)")
    }

    @Test func convertsCommandLineWordsOfEveryType() throws {
        let args = try all.arguments(fromCommandLine: [
            "-5", "0x10", "4294967295", "18446744073709551615", "2.5", "hi", "0xCAFE",
        ])
        #expect(
            args == [
                .int32(-5), .int64(16), .uint32(.max), .uint64(.max), .double(2.5), .string("hi"),
                .bytes([0xca, 0xfe]),
            ])
    }

    @Test func bytesWithoutHexPrefixAreTheUTF8Text() throws {
        let sum = try CPrototype(parsing: "uint64_t hello_sum(mn_bytes data)")
        #expect(try sum.arguments(fromCommandLine: ["hé"]) == [.bytes([0x68, 0xc3, 0xa9])])
        #expect(try sum.arguments(fromCommandLine: ["0x"]) == [.bytes([])])
    }

    @Test func doubleAcceptsIntegers() throws {
        let f = try CPrototype(parsing: "double f(double x)")
        #expect(try f.arguments(fromCommandLine: ["3"]) == [.double(3)])
        #expect(try f.arguments(fromJSON: [3]) == [.double(3)])
    }

    @Test func wrongArgumentCountListsTheParameters() {
        expectFailure(.invalidArgument, "hello_add takes 2 arguments (int64_t a, int64_t b); got 1") {
            () throws(MetanodeError) in try add.arguments(fromCommandLine: ["1"])
        }
        expectFailure(.invalidArgument, "hello_reset takes no arguments; got 1") { () throws(MetanodeError) in
            try CPrototype(parsing: "void hello_reset(void)").arguments(fromJSON: [1])
        }
        expectFailure(.invalidArgument, "hello_greet takes 1 argument (const char *name); got 0") {
            () throws(MetanodeError) in
            try CPrototype(parsing: "const char *hello_greet(const char *name)").arguments(fromCommandLine: [])
        }
    }

    @Test(arguments: [
        ("int32_t", "2147483648", "2147483648 is out of range for int32_t (-2147483648...2147483647)"),
        ("int32_t", "-2147483649", "-2147483649 is out of range for int32_t"),
        ("uint32_t", "-1", "-1 is out of range for uint32_t (0...4294967295)"),
        ("uint64_t", "18446744073709551616", "18446744073709551616 is out of range for uint64_t"),
        ("int64_t", "0x8000000000000000", "0x8000000000000000 is out of range for int64_t"),
        (
            "int64_t", "99999999999999999999999999999999999999999",
            "99999999999999999999999999999999999999999 is out of range"
        ),
    ])
    func commandLineIntegersMustFitTheirType(type: String, word: String, fragment: String) throws {
        let f = try CPrototype(parsing: "void f(\(type) x)")
        expectFailure(.invalidArgument, "f argument 1 (\(type) x): " + fragment) { () throws(MetanodeError) in
            try f.arguments(fromCommandLine: [word])
        }
    }

    @Test(arguments: ["1.5", "12abc", "", "--1", "0x", "1 ", "one"])
    func commandLineIntegersMustBeDecimalOrHex(word: String) {
        expectFailure(.invalidArgument, "hello_add argument 2 (int64_t b): ") { () throws(MetanodeError) in
            try add.arguments(fromCommandLine: ["1", word])
        }
    }

    @Test func commandLineDoublesMustBeFinite() throws {
        let f = try CPrototype(parsing: "double f(double x)")
        expectFailure(.invalidArgument, "f argument 1 (double x): 'inf' is not a finite number") {
            () throws(MetanodeError) in
            try f.arguments(fromCommandLine: ["inf"])
        }
    }

    @Test func badHexBytesNameTheParameter() throws {
        let sum = try CPrototype(parsing: "uint64_t hello_sum(mn_bytes data)")
        expectFailure(.invalidArgument, "hello_sum argument 1 (mn_bytes data): hex text has an odd number of digits") {
            () throws(MetanodeError) in try sum.arguments(fromCommandLine: ["0xabc"])
        }
        expectFailure(.invalidArgument, "invalid hex digit 'z'") { () throws(MetanodeError) in
            try sum.arguments(fromJSON: ["0xzz"])
        }
    }

    @Test func stringsMustNotContainNUL() throws {
        let greet = try CPrototype(parsing: "const char *hello_greet(const char *name)")
        expectFailure(.invalidArgument, "hello_greet argument 1 (const char *name): the text contains a NUL character")
        {
            () throws(MetanodeError) in try greet.arguments(fromJSON: ["a\u{0}b"])
        }
    }

    @Test func convertsJSONValuesOfEveryType() throws {
        let args = try all.arguments(fromJSON: [-5, 16, 4_294_967_295, .uint(.max), 2.5, "hi", "0xcafe"])
        #expect(
            args == [
                .int32(-5), .int64(16), .uint32(.max), .uint64(.max), .double(2.5), .string("hi"),
                .bytes([0xca, 0xfe]),
            ])
    }

    @Test func jsonIntegersMayBeIntegralDoublesButNotFractions() throws {
        #expect(try add.arguments(fromJSON: [3.0, -1]) == [.int64(3), .int64(-1)])
        expectFailure(.invalidArgument, "hello_add argument 1 (int64_t a): 3.5 is not an integer") {
            () throws(MetanodeError) in try add.arguments(fromJSON: [3.5, 1])
        }
    }

    @Test func jsonIntegersMustFitTheirType() throws {
        let f = try CPrototype(parsing: "void f(uint32_t n)")
        expectFailure(.invalidArgument, "f argument 1 (uint32_t n): 4294967296 is out of range for uint32_t") {
            () throws(MetanodeError) in try f.arguments(fromJSON: [4_294_967_296])
        }
        expectFailure(
            .invalidArgument, "hello_add argument 1 (int64_t a): 18446744073709551615 is out of range for int64_t"
        ) {
            () throws(MetanodeError) in try add.arguments(fromJSON: [.uint(.max), 1])
        }
    }

    @Test func jsonArgumentsMustHaveTheRightJSONType() {
        expectFailure(.invalidArgument, "hello_add argument 1 (int64_t a): expected an integer, got string") {
            () throws(MetanodeError) in try add.arguments(fromJSON: ["1", 2])
        }
        expectFailure(.invalidArgument, "f argument 6 (const char *s): expected a string, got integer") {
            () throws(MetanodeError) in try all.arguments(fromJSON: [1, 1, 1, 1, 1, 1, "b"])
        }
        expectFailure(.invalidArgument, "f argument 5 (double d): expected a number, got boolean") {
            () throws(MetanodeError) in try all.arguments(fromJSON: [1, 1, 1, 1, true, "s", "b"])
        }
    }

    @Test func resultsConvertToJSON() {
        #expect(FFIResult.void.jsonValue == .null)
        #expect(FFIResult.int32(-1).jsonValue == .int(-1))
        #expect(FFIResult.uint64(5).jsonValue == .int(5))
        #expect(FFIResult.uint64(.max).jsonValue == .uint(.max))
        #expect(FFIResult.double(0.5).jsonValue == .double(0.5))
        #expect(FFIResult.string("hi").jsonValue == .string("hi"))
    }

    @Test func resultsPrintPlainlyForTheCommandLine() {
        #expect(FFIResult.int64(42).description == "42")
        #expect(FFIResult.string("hello").description == "hello")
        #expect(FFIResult.void.description == "")
    }
}
