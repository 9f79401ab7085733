import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
@testable import MetanodeKernel
import Testing

/// The ABI header is the contract with every plugin ever compiled: it changes only on purpose.
@Suite("ABI header")
struct ABIHeaderTests {
    /// SHA-256 of plugin-sdk/include/metanode/plugin.h as last reviewed.
    static let pinnedHeaderSHA256 = "df1d966362351da5f6cd7c0ce2ae3e7f463698d0cfdae31d12eed70c9a547ce3"
    /// SHA-256 of the header as released for ABI 1.1; Fixtures/abi-1.1 keeps that copy to build a 1.1 plugin with.
    static let abi11HeaderSHA256 = "174fcdbd9dac05fff1a6c9f54063898d2b222b301a64dad9513478b83bc5e786"

    static func headerText() throws -> String { try String(contentsOfFile: Repo.header, encoding: .utf8) }

    /// The value of `#define NAME <integer>` in the header.
    static func define(_ name: String, in text: String) -> Int32? {
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 3, words[0] == "#define", words[1] == name { return Int32(words[2]) }
        }
        return nil
    }

    @Test("the ABI header is byte-for-byte the reviewed one")
    func headerIsPinned() throws {
        let bytes = try #require(FileManager.default.contents(atPath: Repo.header), "cannot read \(Repo.header)")
        let actual = Hex.encode(Hash.sha256(Array(bytes)))
        #expect(actual == Self.pinnedHeaderSHA256, """
            the ABI header changed (\(Repo.header)); if intended, append only (bump MN_ABI_VERSION_MINOR for \
            additions, MAJOR for breaking changes) and update the pinned hash in ABIHeaderTests.swift to \(actual)
            """)
    }

    @Test("the ABI 1.1 header the tests build an old plugin with is the one released as 1.1")
    func abi11CopyIsPinned() throws {
        let path = Repo.fixtures + "/abi-1.1/metanode/plugin.h"
        let bytes = try #require(FileManager.default.contents(atPath: path), "cannot read \(path)")
        #expect(Hex.encode(Hash.sha256(Array(bytes))) == Self.abi11HeaderSHA256)
    }

    @Test("the versions Swift imports from the header, and MetanodeCore's copy of them, are the header's text")
    func versionsMatchTheHeaderText() throws {
        let text = try Self.headerText()
        let major = try #require(Self.define("MN_ABI_VERSION_MAJOR", in: text))
        let minor = try #require(Self.define("MN_ABI_VERSION_MINOR", in: text))
        #expect(MN_ABI_VERSION_MAJOR == major)
        #expect(MN_ABI_VERSION_MINOR == minor)
        #expect(Int32(Limits.abiMajor) == major, "Limits.abiMajor in MetanodeCore must follow the header")
        #expect(Int32(Limits.abiMinor) == minor, "Limits.abiMinor in MetanodeCore must follow the header")
    }

    @Test("a vtable the bridge builds carries struct_size = MemoryLayout<mn_host_api>.size and the header's version")
    func vtableHeader() throws {
        let test = try TestKernel("abi")
        defer { test.kernel.close() }
        let context = PluginHostContext(name: "sizes", slot: 0, grants: [], backend: test.kernel)
        let table = try #require(context.vtable).pointee
        #expect(Int(table.struct_size) == MemoryLayout<mn_host_api>.size)
        #expect(table.abi_major == UInt16(MN_ABI_VERSION_MAJOR))
        #expect(table.abi_minor == UInt16(MN_ABI_VERSION_MINOR))
    }

    @Test("the struct_size a C plugin receives equals sizeof(mn_host_api) as its C compiler sees it")
    func vtableSizeAgreesWithC() async throws {
        try await withKernel("abi-c") { test in
            try await test.start(TestPackage(name: "sizes"))
            let received = try await test.uint64("sizes", "host_struct_size")
            let compiled = try await test.uint64("sizes", "c_sizeof_host_api")
            #expect(received == compiled)
            #expect(Int(received) == MemoryLayout<mn_host_api>.size)
        }
    }
}
