import MetanodePluginKit
import MetanodePluginTesting
import Testing

@Suite struct TimerTests {
    let host = TestHost()

    @Test func oneShotTimerFiresWhenTheClockReachesItsDelay() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let firedAt = Recorded<[UInt64]>([])
        try probe.context.timers.schedule(afterMs: 100) { firedAt.value.append(probe.context.monotonicNs / 1_000_000) }
        host.advance(byMs: 99)
        #expect(firedAt.value.isEmpty)
        host.advance(byMs: 1)
        #expect(firedAt.value == [100])
        host.advance(byMs: 1000)
        #expect(firedAt.value == [100])
        #expect(host.liveTimerCount(plugin) == 0)
    }

    @Test func repeatingTimerFiresOncePerPeriod() throws {
        let (_, probe) = try Probe.load(into: host)
        let firedAt = Recorded<[UInt64]>([])
        try probe.context.timers.schedule(afterMs: 10, everyMs: 25) {
            firedAt.value.append(probe.context.monotonicNs / 1_000_000)
        }
        host.advance(byMs: 70)
        #expect(firedAt.value == [10, 35, 60])
    }

    @Test func timersDueTogetherFireInCreationOrder() throws {
        let (_, probe) = try Probe.load(into: host)
        let order = Recorded<[String]>([])
        try probe.context.timers.schedule(afterMs: 50) { order.value.append("b") }
        try probe.context.timers.schedule(afterMs: 20) { order.value.append("a") }
        try probe.context.timers.schedule(afterMs: 50) { order.value.append("c") }
        host.advance(byMs: 50)
        #expect(order.value == ["a", "b", "c"])
    }

    @Test func cancelledRepeatingTimerStopsFiring() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let fired = Recorded(0)
        let timer = try probe.context.timers.schedule(afterMs: 10, everyMs: 10) { fired.value += 1 }
        host.advance(byMs: 30)
        #expect(fired.value == 3)
        try probe.context.timers.cancel(timer)
        host.advance(byMs: 100)
        #expect(fired.value == 3)
        #expect(host.liveTimerCount(plugin) == 0)
        #expect(probe.context.timers.liveCount == 0)
    }

    @Test func timerCancelledAfterItsCallbackWasQueuedDoesNotRun() throws {
        // Both are due at 10 ms, so the host queues both callbacks before either runs; the first cancels the second.
        let (_, probe) = try Probe.load(into: host)
        let ran = Recorded<[String]>([])
        let second = Recorded<TimerHandle?>(nil)
        try probe.context.timers.schedule(afterMs: 10) {
            ran.value.append("first")
            if let timer = second.value { try? probe.context.timers.cancel(timer) }
        }
        second.value = try probe.context.timers.schedule(afterMs: 10) { ran.value.append("second") }
        host.advance(byMs: 10)
        #expect(ran.value == ["first"])
    }

    @Test func zeroDelayTimerRunsOnTheNextRunUntilIdle() throws {
        let (_, probe) = try Probe.load(into: host)
        let fired = Recorded(false)
        try probe.context.timers.schedule(afterMs: 0) { fired.value = true }
        #expect(!fired.value)
        host.runUntilIdle()
        #expect(fired.value)
    }
}
