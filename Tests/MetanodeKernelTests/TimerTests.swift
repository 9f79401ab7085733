import Foundation
import MetanodeABI
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// Timers started by a C plugin; Fixtures/probe.c counts its timer callbacks.
@Suite("Timers")
struct TimerTests {
    /// Polls the plugin's fire count until it reaches `count`. The deadline is generous: these tests are about how
    /// often a timer fires, not how soon, and they share two cores with the simulations running in parallel (a CI run
    /// once saw a 1 ms timer not fire within 5 s).
    static func waitForFires(_ test: TestKernel, _ plugin: String, atLeast count: Int32) async throws -> Int32 {
        try await TestKernel.poll(timeout: .seconds(30), until: { $0 >= count }) {
            try await test.int32(plugin, "timer_fires")
        }
    }

    @Test("a repeating timer fires again and again, and not after timer_cancel")
    func repeatingUntilCancelled() async throws {
        try await withKernel("timer") { test in
            try await test.start(TestPackage(name: "ticker"), grants: ["timer"])
            #expect(try await test.int32("ticker", "start_timer", 1, 5) == MN_OK)
            #expect(try await Self.waitForFires(test, "ticker", atLeast: 3) >= 3)

            #expect(try await test.int32("ticker", "cancel_timer") == MN_OK)
            let atCancel = try await test.int32("ticker", "timer_fires")
            try await Task.sleep(for: .milliseconds(60))
            #expect(try await test.int32("ticker", "timer_fires") == atCancel)
            #expect(try await test.int32("ticker", "cancel_timer") == MN_ERR_NOT_FOUND, "a cancelled timer is gone")
        }
    }

    @Test("a one-shot timer fires once and is then no longer live")
    func oneShot() async throws {
        try await withKernel("timer-once") { test in
            try await test.start(TestPackage(name: "once"), grants: ["timer"])
            #expect(try await test.int32("once", "start_timer", 1, 0) == MN_OK)
            #expect(try await Self.waitForFires(test, "once", atLeast: 1) == 1)
            try await Task.sleep(for: .milliseconds(30))
            #expect(try await test.int32("once", "timer_fires") == 1)
            #expect(try await test.int32("once", "cancel_timer") == MN_ERR_NOT_FOUND)
        }
    }

    @Test("stopping a plugin cancels its timers")
    func stopCancelsTimers() async throws {
        try await withKernel("timer-stop") { test in
            let runtime = try await test.start(TestPackage(name: "ticker"), grants: ["timer"])
            #expect(try await test.int32("ticker", "start_timer", 1, 5) == MN_OK)
            #expect(try await Self.waitForFires(test, "ticker", atLeast: 2) >= 2)
            await test.kernel.stop(runtime)

            #expect(runtime.timers.withLock { $0.live.isEmpty }, "the kernel keeps no live timer for a stopped plugin")
            let handle = try #require(dlopen(runtime.package.libraryPath, RTLD_NOW | RTLD_NOLOAD))
            typealias Count = @convention(c) () -> Int32
            let fires = unsafeBitCast(try #require(dlsym(handle, "timer_fires")), to: Count.self)
            let atStop = fires()
            try await Task.sleep(for: .milliseconds(60))
            #expect(fires() == atStop)
        }
    }
}
