import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeHostBridge
@testable import MetanodeKernel
import Synchronization
import Testing

/// Deferred HTTP responses (ABI 1.2) through the real kernel: a dlopen'ed C plugin (Fixtures/deferred.c) defers and
/// answers from its own threads while `Kernel.handleHTTP` waits without holding the plugin's executor.
@Suite("Deferred HTTP responses")
struct DeferredHTTPTests {
    static let exports = [
        "uint64_t host_struct_size(void)", "uint64_t c_sizeof_host_api(void)", "const char *respond_log(void)",
        "const char *misuse_log(void)", "int32_t held_count(void)", "uint64_t held_id(int32_t index)",
        "int32_t respond_id(uint64_t id, const char *body)",
    ]

    static func package(_ name: String) -> TestPackage {
        TestPackage(name: name, fixture: "deferred.c", capabilities: ["http"], exports: exports,
                    compilerArguments: ["-pthread"])
    }

    /// Starts the fixture plugin with the "http" grant.
    @discardableResult
    static func start(_ test: TestKernel, _ name: String) async throws -> PluginRuntime {
        try await test.start(package(name), grants: ["http"])
    }

    static func send(_ test: TestKernel, _ plugin: String, _ method: String, _ target: String) async
        -> HTTPResponseParts
    {
        let parts = target.split(separator: "?", maxSplits: 1).map(String.init)
        return await test.kernel.handleHTTP(plugin: plugin, request: HTTPRequestParts(
            method: method, path: parts[0], query: parts.count > 1 ? parts[1] : ""))
    }

    static func openDeferrals(_ runtime: PluginRuntime) -> Int { runtime.instance?.context.openDeferralCount ?? -1 }

    /// Polls until `condition` holds, for at most `timeoutMs`.
    /// Polls every 2 ms, `timeoutMs / 2` times. A budget of polls, not a wall-clock deadline: when other suites'
    /// long synchronous simulations hold every cooperative thread, nothing here (or in the kernel's handlers) runs,
    /// and a deadline would expire during a stall that is no fault of the code under test.
    static func eventually(timeoutMs: Int = 5000, _ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<max(1, timeoutMs / 2) {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(2))
        }
        return try await condition()
    }

    @Test("a response deferred and answered from another thread 50 ms later reaches the client")
    func answeredFromAnotherThread() async throws {
        try await withKernel("defer-later") { test in
            let runtime = try await Self.start(test, "later")
            let started = ContinuousClock.now
            let answer = await Self.send(test, "later", "POST", "/later?timeout=5000&delay=50")
            #expect(answer.status == 200)
            #expect(String(decoding: answer.body, as: UTF8.self) == "later\n")
            #expect(ContinuousClock.now - started >= .milliseconds(50))
            #expect(try await Self.eventually { try await test.string("later", "respond_log") == "0;" })
            #expect(Self.openDeferrals(runtime) == 0)
        }
    }

    @Test("while a response is deferred, the plugin's executor serves its other requests")
    func executorServesOthersMeanwhile() async throws {
        try await withKernel("defer-free") { test in
            let runtime = try await Self.start(test, "free")
            let firstDone = Flag()
            let first = Task {
                let answer = await Self.send(test, "free", "POST", "/hold?timeout=60000")
                firstDone.set()
                return answer
            }
            #expect(try await Self.eventually { Self.openDeferrals(runtime) == 1 })
            let second = await Self.send(test, "free", "GET", "/now")
            #expect(String(decoding: second.body, as: UTF8.self) == "now\n")
            #expect(!firstDone.isSet, "the deferred request was still open when /now answered")
            let id = try await test.uint64("free", "held_id", .int(0))
            #expect(try await test.int32("free", "respond_id", .uint(id), "held, then answered") == MN_OK)
            let answer = await first.value
            #expect(String(decoding: answer.body, as: UTF8.self) == "held, then answered")
        }
    }

    @Test("a deferral not answered in time answers 504 naming plugin, method and path; the late answer is NOT_FOUND")
    func timeoutAnswers504() async throws {
        try await withKernel("defer-timeout") { test in
            let runtime = try await Self.start(test, "slowpoke")
            let started = ContinuousClock.now
            let answer = await Self.send(test, "slowpoke", "POST", "/hold?timeout=50")
            #expect(ContinuousClock.now - started >= .milliseconds(50))
            #expect(answer.status == 504)
            #expect(String(decoding: answer.body, as: UTF8.self)
                == "plugin slowpoke deferred its response to POST /hold and did not answer within 50 ms\n")
            #expect(Self.openDeferrals(runtime) == 0)
            let id = try await test.uint64("slowpoke", "held_id", .int(0))
            #expect(try await test.int32("slowpoke", "respond_id", .uint(id), "too late") == MN_ERR_NOT_FOUND)
        }
    }

    @Test("a second answer to one deferral is refused with MN_ERR_NOT_FOUND and the client sees the first")
    func secondAnswerRefused() async throws {
        try await withKernel("defer-twice") { test in
            try await Self.start(test, "twice")
            let answer = await Self.send(test, "twice", "POST", "/later?delay=10&twice=1")
            #expect(String(decoding: answer.body, as: UTF8.self) == "later\n")
            #expect(try await Self.eventually {
                try await test.string("twice", "respond_log") == "\(MN_OK);\(MN_ERR_NOT_FOUND);"
            })
        }
    }

    @Test("an id the plugin never got is refused with MN_ERR_NOT_FOUND")
    func unknownIDRefused() async throws {
        try await withKernel("defer-unknown") { test in
            try await Self.start(test, "unknown")
            #expect(try await test.int32("unknown", "respond_id", .uint(424_242), "x") == MN_ERR_NOT_FOUND)
        }
    }

    @Test("misuse inside the handler is refused argument by argument, and the deferral still answers, with headers")
    func misuseInsideTheHandler() async throws {
        try await withKernel("defer-misuse") { test in
            try await Self.start(test, "misuse")
            let answer = await Self.send(test, "misuse", "POST", "/misuse")
            #expect(answer.status == 200)
            // timeout 0, timeout over the max, the deferral, a second deferral, http_response_set after deferring, a
            // status of 99, then a header for the deferred answer.
            let invalid = MN_ERR_INVALID_ARGUMENT
            #expect(String(decoding: answer.body, as: UTF8.self)
                == "\(invalid),\(invalid),\(MN_OK),\(invalid),\(invalid),\(invalid),\(MN_OK)")
            #expect(answer.headers.contains { $0.name == "x-deferred" && $0.value == "yes" })
            #expect(try await test.string("misuse", "misuse_log") == "answered=0 twice=\(MN_ERR_NOT_FOUND);")

            let set = await Self.send(test, "misuse", "POST", "/set-then-defer")
            #expect(String(decoding: set.body, as: UTF8.self) == "set\n")
            #expect(try await test.string("misuse", "misuse_log").hasSuffix("setThenDefer=\(invalid);"))
        }
    }

    @Test("at most MN_HTTP_DEFERRED_MAX deferrals are open per plugin; the next defer gets MN_ERR_LIMIT")
    func deferralLimit() async throws {
        try await withKernel("defer-limit") { test in
            let runtime = try await Self.start(test, "limit")
            let max = Int(MN_HTTP_DEFERRED_MAX)
            let held = Task {
                await withTaskGroup(of: UInt16.self) { group in
                    for _ in 0..<max { group.addTask { await Self.send(test, "limit", "POST", "/hold").status } }
                    return await group.reduce(into: [UInt16]()) { $0.append($1) }
                }
            }
            #expect(try await Self.eventually(timeoutMs: 20_000) { Self.openDeferrals(runtime) == max })
            let refused = await Self.send(test, "limit", "POST", "/hold")
            #expect(refused.status == 503)
            let text = String(decoding: refused.body, as: UTF8.self)
            #expect(text.hasPrefix("\(MN_ERR_LIMIT): ") && text.contains("MN_HTTP_DEFERRED_MAX"), "\(text)")
            // Answering one frees a place.
            let id = try await test.uint64("limit", "held_id", .int(0))
            #expect(try await test.int32("limit", "respond_id", .uint(id), "done") == MN_OK)
            #expect(Self.openDeferrals(runtime) == max - 1)
            await test.kernel.stop(runtime)
            let statuses = await held.value
            #expect(statuses.filter { $0 == 200 }.count == 1)
            #expect(statuses.filter { $0 == 503 }.count == max - 1)
        }
    }

    @Test("open deferrals answer 503 when their plugin stops")
    func pluginStopAnswers503() async throws {
        try await withKernel("defer-stop") { test in
            let runtime = try await Self.start(test, "stopper")
            let held = Task { await Self.send(test, "stopper", "POST", "/hold?timeout=60000") }
            #expect(try await Self.eventually { Self.openDeferrals(runtime) == 1 })
            await test.kernel.stop(runtime)
            let answer = await held.value
            #expect(answer.status == 503)
            #expect(String(decoding: answer.body, as: UTF8.self)
                == "plugin stopper stopped before answering POST /hold\n")
        }
    }

    @Test("when the node starts shutting down, open deferrals and later ones answer 503")
    func shutdownAnswers503() async throws {
        try await withKernel("defer-drain") { test in
            let runtime = try await Self.start(test, "drained")
            let held = Task { await Self.send(test, "drained", "POST", "/hold?timeout=60000") }
            #expect(try await Self.eventually { Self.openDeferrals(runtime) == 1 })
            test.kernel.drainDeferredHTTP()
            let answer = await held.value
            #expect(answer.status == 503)
            #expect(String(decoding: answer.body, as: UTF8.self).contains("the node is shutting down"))
            let later = await Self.send(test, "drained", "POST", "/hold?timeout=60000")
            #expect(later.status == 503)
            #expect(Self.openDeferrals(runtime) == 0)
            #expect(try await Self.eventually {
                let id = try await test.uint64("drained", "held_id", .int(1))
                return try await test.int32("drained", "respond_id", .uint(id), "late")
                    == MN_ERR_NOT_FOUND
            })
        }
    }

    @Test("a deferral opened by a handler that overran the handler timeout does not stay open")
    func lateDeferralExpires() async throws {
        try await withKernel("defer-overrun") { test in
            let runtime = try await Self.start(test, "overrun")
            test.kernel.httpHandlerTimeoutMs = 50
            let answer = await Self.send(test, "overrun", "POST", "/slow-defer?sleep=200")
            #expect(answer.status == 504)
            #expect(String(decoding: answer.body, as: UTF8.self).contains("within 50 ms"))
            // The handler returns (and defers) after the client got 504; the deferral is expired right then, before
            // the executor's next job.
            test.kernel.httpHandlerTimeoutMs = 30_000
            #expect(await Self.send(test, "overrun", "GET", "/now").status == 200)
            #expect(Self.openDeferrals(runtime) == 0)
        }
    }

    @Test("a plugin built against the ABI 1.1 header loads and answers, and sees the 1.1 part of the vtable")
    func abi11PluginUnaffected() async throws {
        try await withKernel("defer-abi11") { test in
            var package = TestPackage(name: "old", abi: "1.1", fixture: "deferred.c", capabilities: ["http"],
                                      exports: ["uint64_t host_struct_size(void)", "uint64_t c_sizeof_host_api(void)"],
                                      compilerArguments: ["-pthread"])
            package.includes = [Repo.fixtures + "/abi-1.1"]
            let runtime = try await test.start(package, grants: ["http"])
            #expect(runtime.instance?.descriptor.pointee.abi_minor == 1)
            let answer = await Self.send(test, "old", "GET", "/now")
            #expect(String(decoding: answer.body, as: UTF8.self) == "now\n")
            #expect(await Self.send(test, "old", "POST", "/later").status == 404)
            let compiled = try await test.uint64("old", "c_sizeof_host_api")
            #expect(Int(compiled) == MemoryLayout<mn_host_api>.offset(of: \mn_host_api.http_response_defer)!,
                    "a 1.1 mn_host_api ends where the 1.2 functions begin")
            #expect(try await test.uint64("old", "host_struct_size") == UInt64(MemoryLayout<mn_host_api>.size))
        }
    }
}

/// A flag one task sets and another reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
