import MetanodeABI

/// A scheduled timer; pass it to `Timers.cancel(_:)`.
public struct TimerHandle: Sendable, Hashable {
    public let id: UInt64
}

/// Timers on the plugin's executor (capability "timer").
///
/// Bodies are kept in a table by timer id, and the host's callback looks them up there: a callback the host had
/// already queued when the timer was cancelled finds nothing and does nothing.
public struct Timers: Sendable {
    let host: Host
    let table: TimerTable

    init(host: Host) {
        self.host = host
        self.table = TimerTable()
    }

    /// Runs `body` after `afterMs`, then every `everyMs` if that is non-zero, until cancelled or the plugin stops.
    @discardableResult
    public func schedule(afterMs: UInt64, everyMs: UInt64 = 0, _ body: @escaping () -> Void) throws(PluginError)
        -> TimerHandle
    {
        let userData = Unmanaged.passUnretained(table).toOpaque()  // the table lives as long as the context
        // Held across timer_start so a callback on the executor cannot look the id up before it is in the table.
        let result: Result<TimerHandle, PluginError> = table.entries.withLock { entries in
            var id: mn_timer_id = 0
            let status = host.api.pointee.timer_start(host.ctx, afterMs, everyMs, { userData, id in
                guard let userData else { return }
                Unmanaged<TimerTable>.fromOpaque(userData).takeUnretainedValue().fire(id)
            }, userData, &id)
            guard status == MN_OK else { return .failure(host.error(status, "timer_start")) }
            entries[id] = TimerTable.Entry(body: body, repeats: everyMs != 0)
            return .success(TimerHandle(id: id))
        }
        return try result.get()
    }

    /// Cancels a timer; its body does not run again, even if the host had already queued a callback. Cancelling a
    /// timer that already finished (a one-shot that ran) does nothing.
    public func cancel(_ timer: TimerHandle) throws(PluginError) {
        table.entries.withLock { _ = $0.removeValue(forKey: timer.id) }
        let status = host.api.pointee.timer_cancel(host.ctx, timer.id)
        if status == MN_ERR_NOT_FOUND { return }  // the host already retired it (a one-shot fired or is queued)
        try host.check(status, "timer_cancel")
    }

    /// How many timers are scheduled and not yet finished or cancelled.
    public var liveCount: Int { table.entries.withLock { $0.count } }
}

/// `@unchecked Sendable`: the entries sit behind a lock; bodies run only on the plugin's executor.
final class TimerTable: @unchecked Sendable {
    struct Entry {
        var body: () -> Void
        var repeats: Bool
    }

    let entries = Locked<[mn_timer_id: Entry]>([:])

    func fire(_ id: mn_timer_id) {
        let body = entries.withLock { entries -> (() -> Void)? in
            guard let entry = entries[id] else { return nil }  // cancelled: a late callback is ignored
            if !entry.repeats { entries[id] = nil }
            return entry.body
        }
        body?()  // outside the lock: the body may schedule or cancel timers
    }
}
