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
