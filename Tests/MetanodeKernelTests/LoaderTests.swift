import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeHostBridge
@testable import MetanodeKernel
import Testing

/// What the loader checks between dlopen and giving a plugin a slot.
@Suite("Loader")
struct LoaderTests {
    static let kernelABI = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)"

    /// Loads `package` and expects the load to fail with `code` and every fragment in the message.
    static func expectLoadFailure(_ package: TestPackage, _ code: MetanodeError.Code, _ fragments: String...,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        let test = try TestKernel("loader")
        defer { test.kernel.close() }
        let request = try test.request(package)
        let error = expectFailure(code, sourceLocation: sourceLocation) { () throws(MetanodeError) in
            try test.kernel.load(request)
        }
        for fragment in fragments {
            #expect(error?.message.contains(fragment) == true, "message: \(error?.message ?? "none")",
                    sourceLocation: sourceLocation)
        }
        #expect(test.kernel.runtimes.isEmpty, "a refused plugin takes no slot", sourceLocation: sourceLocation)
    }

    @Test("a library without metanode_plugin_entry_v1 is refused, naming the symbol")
    func noEntrySymbol() throws {
        try Self.expectLoadFailure(TestPackage(name: "noentry", defines: ["NO_ENTRY": "1"]), .abi,
                                   "does not export metanode_plugin_entry_v1", "libnoentry.so")
    }

    @Test("a descriptor whose name differs from the manifest's is refused, naming both")
    func nameMismatch() throws {
        try Self.expectLoadFailure(TestPackage(name: "alpha", defines: ["PLUGIN_NAME": "\"beta\""]),
                                   .invalidManifest, "says it is plugin beta 1.0.0", "manifest says alpha 1.0.0")
    }

    @Test("a descriptor whose version differs from the manifest's is refused, naming both")
    func versionMismatch() throws {
        try Self.expectLoadFailure(TestPackage(name: "alpha", defines: ["PLUGIN_VERSION": "\"1.0.1\""]),
                                   .invalidManifest, "says it is plugin alpha 1.0.1", "manifest says alpha 1.0.0")
    }

    @Test("a descriptor built for another ABI major is refused with both versions")
    func otherMajor() throws {
        let major = MN_ABI_VERSION_MAJOR + 1
        try Self.expectLoadFailure(TestPackage(name: "future", defines: ["ABI_MAJOR": "\(major)"]), .abi,
                                   "built for plugin ABI \(major).\(MN_ABI_VERSION_MINOR)",
                                   "this kernel has ABI \(Self.kernelABI)")
    }

    @Test("a descriptor needing a newer ABI minor is refused with both versions")
    func newerMinor() throws {
        let minor = MN_ABI_VERSION_MINOR + 9
        try Self.expectLoadFailure(TestPackage(name: "future", defines: ["ABI_MINOR": "\(minor)"]), .abi,
                                   "needs plugin ABI \(MN_ABI_VERSION_MAJOR).\(minor)",
                                   "this kernel has ABI \(Self.kernelABI)")
    }

    @Test("loaded plugins get slots in load order and start in .running")
    func slotsInLoadOrder() async throws {
        try await withKernel("slots") { test in
            let first = try await test.start(TestPackage(name: "first"))
            let second = try await test.start(TestPackage(name: "second"))
            #expect(first.slot == 0 && second.slot == 1)
            #expect(first.status == .running && second.status == .running)
            #expect(test.kernel.runtime(named: "second") === second)
        }
    }

    // MARK: PluginInstance.inspect

    /// A descriptor with static strings, as a plugin would return it.
    static func descriptor(major: Int32 = MN_ABI_VERSION_MAJOR, minor: Int32 = MN_ABI_VERSION_MINOR,
                           size: Int = MemoryLayout<mn_plugin_descriptor>.size, named: Bool = true)
        -> mn_plugin_descriptor
    {
        mn_plugin_descriptor(
            struct_size: UInt32(size), abi_major: UInt16(major), abi_minor: UInt16(minor),
            name: named ? UnsafePointer(strdup("direct")) : nil, version: UnsafePointer(strdup("2.3.4")),
            on_init: nil, on_start: nil, on_stop: nil, on_message: nil)
    }

    static func inspect(_ descriptor: mn_plugin_descriptor) throws(HostError) -> PluginDescriptorInfo {
        var copy = descriptor
        return try withUnsafePointer(to: &copy) { pointer throws(HostError) in
            try PluginInstance.inspect(pointer, source: "libdirect.so")
        }
    }

    @Test("inspect reads name, version and ABI of a well-formed descriptor")
    func inspectReadsDescriptor() throws {
        let info = try Self.inspect(Self.descriptor())
        #expect(info.name == "direct" && info.version == "2.3.4")
        #expect(info.abiMajor == UInt16(MN_ABI_VERSION_MAJOR) && info.abiMinor == UInt16(MN_ABI_VERSION_MINOR))
    }

    @Test("inspect refuses another major and a newer minor with MN_ERR_VERSION and both versions")
    func inspectRefusesVersions() {
        let major = MN_ABI_VERSION_MAJOR + 1, minor = MN_ABI_VERSION_MINOR + 9
        for (descriptor, wanted) in [(Self.descriptor(major: major), "\(major).\(MN_ABI_VERSION_MINOR)"),
                                     (Self.descriptor(minor: minor), "\(MN_ABI_VERSION_MAJOR).\(minor)")] {
            do {
                _ = try Self.inspect(descriptor)
                Issue.record("ABI \(wanted) was accepted")
            } catch {
                #expect(error.status == MN_ERR_VERSION)
                #expect(error.message.contains("libdirect.so"), "\(error.message)")
                #expect(error.message.contains("ABI \(wanted)"), "\(error.message)")
                #expect(error.message.contains("this kernel has ABI \(Self.kernelABI)"), "\(error.message)")
            }
        }
    }

    /// Expects `body` to throw a HostError with `status` whose message contains `fragment`.
    static func expectHostError(_ status: mn_status, _ fragment: String,
                                sourceLocation: SourceLocation = #_sourceLocation,
                                _ body: () throws(HostError) -> PluginDescriptorInfo) {
        do {
            let info = try body()
            Issue.record("expected \(HostStatus.name(status)), got \(info)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.status == status, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("inspect refuses a NULL descriptor, a short struct_size and a NULL name")
    func inspectRefusesMalformedDescriptors() {
        Self.expectHostError(MN_ERR_INVALID_ARGUMENT, "libdirect.so: metanode_plugin_entry_v1 returned NULL") {
            () throws(HostError) in try PluginInstance.inspect(nil, source: "libdirect.so")
        }
        Self.expectHostError(MN_ERR_INVALID_ARGUMENT, "struct_size is \(PluginInstance.minimumDescriptorSize - 8)") {
            () throws(HostError) in try Self.inspect(Self.descriptor(size: PluginInstance.minimumDescriptorSize - 8))
        }
        Self.expectHostError(MN_ERR_INVALID_ARGUMENT, "name or version is NULL") {
            () throws(HostError) in try Self.inspect(Self.descriptor(named: false))
        }
    }
}
