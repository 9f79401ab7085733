import Foundation
import MetanodeABI
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// Exported functions called through libffi (`metanode plugin call`, POST /v1/plugins/NAME/call/FUNCTION), against
/// Fixtures/ffi.c, with arguments as JSON and as command-line words.
/// Runs `body` with Fixtures/ffi.c loaded and started as plugin "ffi".
private func withFFIPlugin(_ body: (TestKernel) async throws -> Void) async throws {
    try await withKernel("ffi") { test in
        try await test.start(TestPackage(name: FFICallTests.plugin, fixture: "ffi.c", exports: FFIFixture.exports))
        try await body(test)
    }
}

@Suite("Exported functions through libffi")
struct FFICallTests {
    static let plugin = "ffi"


    static func json(_ test: TestKernel, _ function: String, _ arguments: [JSONValue]) async throws -> FFIResult {
        try await test.kernel.call(plugin: plugin, function: function, arguments: .json(arguments))
    }

    static func words(_ test: TestKernel, _ function: String, _ arguments: [String]) async throws -> FFIResult {
        try await test.kernel.call(plugin: plugin, function: function, arguments: .commandLine(arguments))
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(14_695_981_039_346_656_037 as UInt64) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
    }

    @Test("int32_t arguments and results keep their sign, up to the extremes")
    func int32() async throws {
        try await withFFIPlugin { test async throws in
            #expect(try await Self.json(test, "i32_negate", [-5]) == .int32(5))
            #expect(try await Self.json(test, "i32_negate", [7]) == .int32(-7))
            #expect(try await Self.json(test, "i32_negate", [.int(Int64(Int32.max))]) == .int32(-Int32.max))
            #expect(try await Self.words(test, "i32_negate", ["-2147483647"]) == .int32(Int32.max))
            #expect(try await Self.words(test, "i32_negate", ["-0x10"]) == .int32(16))
        }
    }

    @Test("int64_t passes INT64_MIN and INT64_MAX exactly")
    func int64() async throws {
        try await withFFIPlugin { test async throws in
            #expect(try await Self.json(test, "i64_echo", [.int(Int64.min)]) == .int64(Int64.min))
            #expect(try await Self.json(test, "i64_echo", [.int(Int64.max)]) == .int64(Int64.max))
            #expect(try await Self.words(test, "i64_echo", ["-9223372036854775808"]) == .int64(Int64.min))
            #expect(try await Self.words(test, "i64_echo", ["0x7fffffffffffffff"]) == .int64(Int64.max))
        }
    }

    @Test("uint32_t and uint64_t pass their whole range, UINT64_MAX included")
    func unsigned() async throws {
        try await withFFIPlugin { test async throws in
            #expect(try await Self.json(test, "u32_complement", [0]) == .uint32(UInt32.max))
            #expect(try await Self.words(test, "u32_complement", ["0xffffffff"]) == .uint32(0))
            #expect(try await Self.json(test, "u64_echo", [.uint(UInt64.max)]) == .uint64(UInt64.max))
            #expect(try await Self.words(test, "u64_echo", ["18446744073709551615"]) == .uint64(UInt64.max))
            #expect(try await Self.json(test, "u64_echo", [3.0]) == .uint64(3), "an integral JSON double is an integer")
        }
    }

    @Test("double arguments and results are exact")
    func double() async throws {
        try await withFFIPlugin { test async throws in
            #expect(try await Self.json(test, "f64_multiply", [1.5, -4]) == .double(-6))
            #expect(try await Self.words(test, "f64_multiply", ["0.1", "3"]) == .double(0.1 * 3))
            #expect(try await Self.json(test, "f64_multiply", [1e300, 1e-300]) == .double(1e300 * 1e-300))
        }
    }

    @Test("const char * goes in and comes out as UTF-8, byte for byte")
    func strings() async throws {
        try await withFFIPlugin { test async throws in
            let text = "héllo wörld ✓ 日本"
            #expect(try await Self.json(test, "str_upper", [.string(text)]) == .string("HéLLO WöRLD ✓ 日本"))
            #expect(try await Self.words(test, "str_upper", ["abc"]) == .string("ABC"))
            #expect(try await Self.json(test, "str_bytes", [.string(text)]) == .uint64(UInt64(text.utf8.count)))
            #expect(try await Self.words(test, "str_bytes", [""]) == .uint64(0))
        }
    }

    @Test("mn_bytes arrive as 0x-hex or as the text's UTF-8 bytes, with their exact length")
    func bytes() async throws {
        try await withFFIPlugin { test async throws in
            #expect(try await Self.words(test, "bytes_len", ["0x00ff10"]) == .uint64(3))
            #expect(try await Self.words(test, "bytes_fnv1a", ["0x00ff10"]) == .uint64(Self.fnv1a([0x00, 0xff, 0x10])))
            #expect(try await Self.words(test, "bytes_len", ["abc"]) == .uint64(3))
            #expect(try await Self.words(test, "bytes_fnv1a", ["abc"]) == .uint64(Self.fnv1a(Array("abc".utf8))))
            #expect(try await Self.json(test, "bytes_fnv1a", ["0xDEADBEEF"])
                == .uint64(Self.fnv1a([0xde, 0xad, 0xbe, 0xef])))
            #expect(try await Self.json(test, "bytes_len", ["ü"]) == .uint64(2))
            #expect(try await Self.json(test, "bytes_len", ["0x"]) == .uint64(0))
        }
    }

    @Test("a void function runs and returns .void")
    func void() async throws {
        try await withFFIPlugin { test async throws in
            #expect(try await Self.json(test, "bump", []) == .void)
            #expect(try await Self.words(test, "bump", []) == .void)
            #expect(try await Self.json(test, "bumps", []) == .int32(2))
        }
    }

    @Test("every parameter kind in one call lands in its place")
    func mixed() async throws {
        try await withFFIPlugin { test async throws in
            let result = try await Self.json(
                test, "mixed", [-1, .int(10_000_000_000), .int(4_000_000_000), .int(1 << 40), 0.5, "ab", "0x0102"])
            let expected = -1.0 + 10_000_000_000 + 4_000_000_000 + Double(1 << 40) + 0.5 + 2 * 1000 + 2 * 100_000
            #expect(result == .double(expected))
        }
    }

    @Test("sixteen parameters, the maximum, are passed in order (the later ones on the stack)")
    func sixteenParameters() async throws {
        try await withFFIPlugin { test async throws in
            let values = (1...16).map { Int64($0.isMultiple(of: 2) ? $0 : -$0) * 1_000_000_007 }
            let expected = values.enumerated().reduce(Int64(0)) { $0 + $1.element * Int64($1.offset + 1) }
            #expect(try await Self.json(test, "weighted16", values.map { .int($0) }) == .int64(expected))
            #expect(try await Self.words(test, "weighted16", values.map(String.init)) == .int64(expected))
        }
    }

    @Test("a wrong argument count names the function and its parameters")
    func wrongCount() async throws {
        try await withFFIPlugin { test async throws in
            await expectFailure(.invalidArgument, "i32_negate", "int32_t x", "got 2") {
                try await Self.json(test, "i32_negate", [1, 2])
            }
            await expectFailure(.invalidArgument, "bump takes no arguments", "got 1") {
                try await Self.words(test, "bump", ["1"])
            }
        }
    }

    @Test("an integer out of its type's range names the parameter and the range")
    func overflow() async throws {
        try await withFFIPlugin { test async throws in
            await expectFailure(.invalidArgument, "argument 1 (int32_t x)", "out of range for int32_t") {
                try await Self.words(test, "i32_negate", ["2147483648"])
            }
            await expectFailure(.invalidArgument, "argument 1 (uint64_t x)", "out of range for uint64_t") {
                try await Self.words(test, "u64_echo", ["18446744073709551616"])
            }
            await expectFailure(.invalidArgument, "argument 1 (uint32_t x)", "out of range for uint32_t") {
                try await Self.json(test, "u32_complement", [-1])
            }
        }
    }

    @Test("a JSON value that is not an integer is refused for an integer parameter, naming it")
    func nonIntegerJSON() async throws {
        try await withFFIPlugin { test async throws in
            await expectFailure(.invalidArgument, "argument 1 (int64_t x)", "3.5 is not an integer") {
                try await Self.json(test, "i64_echo", [3.5])
            }
            await expectFailure(.invalidArgument, "argument 1 (int64_t x)", "expected an integer, got string") {
                try await Self.json(test, "i64_echo", ["3"])
            }
            await expectFailure(.invalidArgument, "argument 2 (double y)", "not a finite number") {
                try await Self.words(test, "f64_multiply", ["1", "nan"])
            }
        }
    }

    @Test("an unknown function name is refused, listing what the plugin exports")
    func unknownFunction() async throws {
        try await withFFIPlugin { test async throws in
            await expectFailure(.notFound, "exports no function 'nope'", "i64_echo") {
                try await Self.json(test, "nope", [])
            }
        }
    }

    @Test("a manifest export whose symbol is not in the library fails the load, naming the symbol")
    func missingSymbol() throws {
        let test = try TestKernel("ffi-missing")
        defer { test.kernel.close() }
        let package = TestPackage(name: "ffi", fixture: "ffi.c",
                                  exports: ["int32_t i32_negate(int32_t x)", "int32_t not_there(void)"])
        let request = try test.request(package)
        expectFailure(.invalidManifest, "not_there", "libffi.so") { () throws(MetanodeError) in
            try test.kernel.load(request)
        }
        #expect(test.kernel.runtimes.isEmpty, "a failed load takes no slot")
    }
}
