import Foundation
import MetanodeABI
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// Capabilities and namespaces, through the vtable the kernel really hands a C plugin.
@Suite("Capabilities and the kv namespace")
struct CapabilityTests {
    @Test("without the kv grant, kv_put answers MN_ERR_DENIED naming the capability and the command that grants it")
    func kvDeniedWithoutGrant() async throws {
        try await withKernel("deny") { test in
            try await test.start(TestPackage(name: "nokv", capabilities: ["kv"]), grants: [])
            #expect(try await test.int32("nokv", "try_kv_put", "greeting", "hello") == MN_ERR_DENIED)
            let message = try await test.string("nokv", "last_error_text")
            #expect(message.contains("kv_put"), "\(message)")
            #expect(message.contains("capability 'kv'"), "\(message)")
            #expect(message.contains("metanode plugin enable nokv --grant kv"), "\(message)")
            #expect(try test.stored("nokv", "greeting") == nil)
        }
    }

    @Test("a denied call is logged with the fix and counted in metanode_plugin_capability_denied_total")
    func deniedCallIsLoggedAndCounted() async throws {
        try await withKernel("deny-log") { test in
            try await test.start(TestPackage(name: "nokv"), grants: [])
            #expect(try await test.int32("nokv", "try_kv_put", "k", "v") == MN_ERR_DENIED)
            let warnings = test.log.messages.filter { $0.contains("denied kv_put") }
            #expect(warnings.count == 1, "\(warnings)")
            #expect(warnings.first?.contains("enabling it again with --grant kv") == true, "\(warnings)")
            #expect(test.kernel.metricsText().contains("metanode_plugin_capability_denied_total 1\n"),
                    "\(test.kernel.metricsText())")
        }
    }

    @Test("repeated denials of one function are all counted but not logged again for every call")
    func repeatedDenialsAreCountedButThrottledInTheLog() async throws {
        try await withKernel("deny-throttle") { test in
            try await test.start(TestPackage(name: "nokv"), grants: [])
            for _ in 0..<5 { #expect(try await test.int32("nokv", "try_kv_put", "k", "v") == MN_ERR_DENIED) }
            #expect(test.log.messages.filter { $0.contains("denied kv_put") }.count == 1)
            #expect(test.kernel.metricsText().contains("metanode_plugin_capability_denied_total 5\n"))
        }
    }

    @Test("with the kv grant, kv_put succeeds and the value is stored under the plugin's namespace prefix")
    func kvPutWithGrantIsNamespaced() async throws {
        try await withKernel("grant") { test in
            try await test.start(TestPackage(name: "writer", capabilities: ["kv"]), grants: ["kv"])
            #expect(try await test.int32("writer", "try_kv_put", "greeting", "hello") == MN_OK)
            #expect(try test.stored("writer", "greeting") == "hello")
            #expect(try test.kernel.store.get(Array("greeting".utf8)) == nil, "nothing outside the namespace")
            #expect(try await test.int32("writer", "try_kv_get", "greeting") == MN_OK)
            #expect(try await test.string("writer", "kv_value") == "hello")
        }
    }

    @Test("one plugin cannot read another plugin's keys, even with the kv grant")
    func kvIsIsolatedBetweenPlugins() async throws {
        try await withKernel("isolate") { test in
            try await test.start(TestPackage(name: "writer"), grants: ["kv"])
            try await test.start(TestPackage(name: "reader"), grants: ["kv"])
            #expect(try await test.int32("writer", "try_kv_put", "secret", "42") == MN_OK)
            #expect(try await test.int32("reader", "try_kv_get", "secret") == MN_ERR_NOT_FOUND)
            #expect(try await test.int32("reader", "try_kv_put", "secret", "mine") == MN_OK)
            #expect(try test.stored("writer", "secret") == "42")
            #expect(try test.stored("reader", "secret") == "mine")
        }
    }

    @Test("after stop, a host call through the kept vtable answers MN_ERR_STOPPED and writes nothing")
    func hostCallAfterStopIsRefused() async throws {
        try await withKernel("stopped") { test in
            let runtime = try await test.start(TestPackage(name: "stopper"), grants: ["kv"])
            #expect(try await test.int32("stopper", "try_kv_put", "before", "1") == MN_OK)
            await test.kernel.stop(runtime)

            // The library stays loaded (RTLD_NODELETE); call its exported C function directly, from this thread.
            let handle = try #require(dlopen(runtime.package.libraryPath, RTLD_NOW | RTLD_NOLOAD),
                                      "the plugin's library is no longer loaded")
            typealias Put = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32
            typealias Text = @convention(c) () -> UnsafePointer<CChar>
            let put = unsafeBitCast(try #require(dlsym(handle, "try_kv_put")), to: Put.self)
            let lastError = unsafeBitCast(try #require(dlsym(handle, "last_error_text")), to: Text.self)

            #expect(put("after", "2") == MN_ERR_STOPPED)
            let message = String(cString: lastError())
            #expect(message.contains("stopper is stopped"), "\(message)")
            #expect(try test.stored("stopper", "after") == nil)
            #expect(try test.stored("stopper", "before") == "1")
        }
    }

    @Test("kernel.call refuses a stopped plugin's exported functions")
    func callAfterStopIsRefused() async throws {
        try await withKernel("stopped-call") { test in
            let runtime = try await test.start(TestPackage(name: "stopper"), grants: ["kv"])
            await test.kernel.stop(runtime)
            await expectFailure(.stopped, "stopper is stopped") {
                try await test.call("stopper", "try_kv_put", "k", "v")
            }
        }
    }
}
