import CRocksDB
import MetanodeCore
import Synchronization

/// A consistent read view of a `Store`, from `Store.snapshot()`. Pass it to `get`, `getMalloced` or `scan`.
///
/// Released by `release()` (idempotent) or when the last reference goes away; reads through a released snapshot throw
/// `.invalidArgument`. `Store.close()` releases snapshots still open. Thread-safe: its handle is guarded by its own
/// lock (reads share it; `release()` waits for reads in flight, after turning new ones away with a flag as
/// `Store.close()` does), hence `@unchecked Sendable`.
public final class Snapshot: @unchecked Sendable {
    let store: Store
    private let lock = ReadWriteLock()
    private let releasing = Atomic<Bool>(false)
    /// nil once released.
    private var handle: OpaquePointer?
    /// Readoptions bound to this snapshot, created once so point reads through it allocate nothing extra.
    private let readOptions: OpaquePointer

    init(store: Store, handle: OpaquePointer) {
        self.store = store
        self.handle = handle
        readOptions = rocksdb_readoptions_create()
        rocksdb_readoptions_set_snapshot(readOptions, handle)
    }

    deinit {
        release()
        rocksdb_readoptions_destroy(readOptions)
    }

    /// Releases the snapshot so RocksDB may discard the old versions it kept for it. Idempotent. Must not be called
    /// from inside a scan through this same snapshot.
    public func release() {
        store.release(self)
    }

    /// Runs `body` with the RocksDB snapshot and its readoptions; the snapshot stays valid until `body` returns.
    @inline(__always)
    func withHandle<R>(_ body: (OpaquePointer, OpaquePointer) throws(MetanodeError) -> R) throws(MetanodeError) -> R {
        guard !releasing.load(ordering: .relaxed) else { throw releasedError() }
        return try lock.withReadLock { () throws(MetanodeError) -> R in
            guard let handle else { throw releasedError() }
            return try body(handle, readOptions)
        }
    }

    private func releasedError() -> MetanodeError {
        MetanodeError(.invalidArgument, "this snapshot of \(store.path) was released; take a new one with snapshot()")
    }

    /// Marks the snapshot released and returns the RocksDB handle to release (nil if already done). Waits for reads
    /// in flight through it.
    func takeHandle() -> OpaquePointer? {
        releasing.store(true, ordering: .relaxed)
        return lock.withWriteLock {
            defer { handle = nil }
            return handle
        }
    }
}
