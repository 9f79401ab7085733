import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A reader-writer lock over `pthread_rwlock_t`, heap-allocated so Swift never moves it.
///
/// Read locks nest: glibc's default kind prefers readers, so a thread holding a read lock gets another one even while a
/// writer waits (a scan visitor may call `Store.get`). A thread that holds a read lock must not ask for the write lock
/// of the same lock: it would wait for itself forever.
final class ReadWriteLock: @unchecked Sendable {
    private let raw: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        raw = .allocate(capacity: 1)
        raw.initialize(to: pthread_rwlock_t())
        let rc = pthread_rwlock_init(raw, nil)
        precondition(rc == 0, "pthread_rwlock_init failed: \(rc)")
    }

    deinit {
        pthread_rwlock_destroy(raw)
        raw.deallocate()
    }

    @inline(__always)
    func withReadLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        let rc = pthread_rwlock_rdlock(raw)
        precondition(rc == 0, "pthread_rwlock_rdlock failed: \(rc)")
        defer { pthread_rwlock_unlock(raw) }
        return try body()
    }

    @inline(__always)
    func withWriteLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        let rc = pthread_rwlock_wrlock(raw)
        precondition(rc == 0, "pthread_rwlock_wrlock failed: \(rc)")
        defer { pthread_rwlock_unlock(raw) }
        return try body()
    }
}

/// Admission for a store's operations, cheaper than a reader-writer lock on the hot path: an operation counts itself
/// in and checks the closing flag; `close()` raises the flag and waits until the count drains. Both steps use
/// sequentially consistent atomics, so either the operation sees the flag and backs out, or `close()` sees the
/// operation and waits for it. Operations nest (a scan's visitor may `get`). `close()` must not be called from
/// inside an operation: it would wait for itself.
final class UseGate: @unchecked Sendable {
    private let inUse = Atomic<Int>(0)
    private let closing = Atomic<Bool>(false)

    /// False once closing; on true, the caller must call `exit()`.
    @inline(__always)
    func enter() -> Bool {
        inUse.add(1, ordering: .sequentiallyConsistent)
        guard !closing.load(ordering: .sequentiallyConsistent) else {
            inUse.subtract(1, ordering: .sequentiallyConsistent)
            return false
        }
        return true
    }

    @inline(__always)
    func exit() { inUse.subtract(1, ordering: .releasing) }

    /// Closes the gate and waits for every operation inside to leave. False if it was already closed.
    func close() -> Bool {
        guard !closing.exchange(true, ordering: .sequentiallyConsistent) else { return false }
        while inUse.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
        return true
    }
}
