import Foundation
import MetanodeABI
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// Versioned service tables between C plugins. Fixtures/probe.c exports a table whose `add` function the looking-up
/// plugin then calls directly.
@Suite("Services")
struct ServiceTests {
    static func withProviderAndUser(_ body: (TestKernel) async throws -> Void) async throws {
        try await withKernel("svc") { test in
            try await test.start(TestPackage(name: "provider"), grants: ["service"])
            try await test.start(TestPackage(name: "user"), grants: ["service"])
            #expect(try await test.int32("provider", "export_service", "provider.svc", 1, 2) == MN_OK)
            try await body(test)
        }
    }

    @Test("a lookup for an older minor of the same major finds the table and reports the exported minor")
    func compatibleLookup() async throws {
        try await Self.withProviderAndUser { test async throws in
            #expect(try await test.int32("user", "lookup_service", "provider.svc", 1, 0) == MN_OK)
            #expect(try await test.call("user", "found_service_minor") == .uint32(2))
            #expect(try await test.call("user", "call_found_add", 40, 2) == .int64(42),
                    "the table is the provider's own")
            #expect(try await test.int32("user", "lookup_service", "provider.svc", 1, 2) == MN_OK)
        }
    }

    @Test("a lookup needing a newer minor fails with MN_ERR_VERSION naming both versions")
    func newerMinorRefused() async throws {
        try await Self.withProviderAndUser { test async throws in
            #expect(try await test.int32("user", "lookup_service", "provider.svc", 1, 3) == MN_ERR_VERSION)
            let message = try await test.string("user", "last_error_text")
            #expect(message.contains("version 1.2"), "\(message)")
            #expect(message.contains("needs 1.3"), "\(message)")
        }
    }

    @Test("a lookup for another major fails with MN_ERR_VERSION")
    func otherMajorRefused() async throws {
        try await Self.withProviderAndUser { test async throws in
            #expect(try await test.int32("user", "lookup_service", "provider.svc", 2, 0) == MN_ERR_VERSION)
            let message = try await test.string("user", "last_error_text")
            #expect(message.contains("version 1.2") && message.contains("needs 2.0"), "\(message)")
        }
    }

    @Test("a lookup for a name nobody exports fails with MN_ERR_NOT_FOUND")
    func unknownName() async throws {
        try await Self.withProviderAndUser { test async throws in
            #expect(try await test.int32("user", "lookup_service", "provider.other", 1, 0) == MN_ERR_NOT_FOUND)
            #expect(try await test.string("user", "last_error_text").contains("provider.other"))
        }
    }

    @Test("exporting a name outside the plugin's own namespace fails with MN_ERR_INVALID_ARGUMENT")
    func exportOutsideNamespace() async throws {
        try await Self.withProviderAndUser { test async throws in
            #expect(try await test.int32("user", "export_service", "provider.fake", 1, 0) == MN_ERR_INVALID_ARGUMENT)
            #expect(try await test.string("user", "last_error_text").contains("must start with 'user.'"))
            #expect(try await test.int32("user", "lookup_service", "provider.svc", 1, 0) == MN_OK)
            #expect(try await test.call("user", "found_service_minor") == .uint32(2), "the provider's export stands")
        }
    }

    @Test("exporting the same name twice fails with MN_ERR_EXISTS")
    func duplicateExport() async throws {
        try await Self.withProviderAndUser { test async throws in
            #expect(try await test.int32("provider", "export_service", "provider.svc", 1, 3) == MN_ERR_EXISTS)
        }
    }

    @Test("a stopped plugin's services can no longer be looked up")
    func stopWithdrawsServices() async throws {
        try await Self.withProviderAndUser { test async throws in
            await test.kernel.stop(try #require(test.kernel.runtime(named: "provider")))
            #expect(try await test.int32("user", "lookup_service", "provider.svc", 1, 0) == MN_ERR_NOT_FOUND)
        }
    }
}
