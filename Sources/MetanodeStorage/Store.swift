import CRocksDB
import MetanodeCore
import Synchronization

/// One RocksDB database: the node's key-value store, shared by all plugins (each in its own key prefix).
///
/// **Threads.** A RocksDB handle is safe for concurrent reads and writes from any number of threads, and the
/// readoptions and writeoptions objects are only ever read after `init`. The mutable Swift state (the handle, nil
/// once closed) is guarded by a reader-writer lock: every operation holds the read lock while it uses the handle, and
/// `close()` takes the write lock, so it waits for operations in flight and every later operation throws `.stopped`
/// instead of touching a destroyed handle. Hence `@unchecked Sendable`. glibc's rwlock prefers readers, so `close()`
/// first raises a flag that turns new operations away; without it a steady stream of overlapping readers would keep
/// the write lock from ever being granted.
///
/// Do not call `close()` or release the snapshot being scanned from inside a `scan` visitor: the visitor runs under
/// the read lock, and those wait for it.
///
/// **Durability.** Every write goes to the write-ahead log before it returns. With `Options.syncWrites == false` (the
/// default) the log is written to the OS, not fsynced: writes survive a crash or SIGKILL of the process, not a power
/// loss or kernel crash. `flush()` and `close()` fsync the log. With `syncWrites == true` every write is fsynced.
public final class Store: @unchecked Sendable {
    public struct Options: Sendable {
        public enum Compression: Sendable {
            case none, snappy, lz4, zstd

            var rocksdbType: Int32 {
                switch self {
                case .none: Int32(rocksdb_no_compression)
                case .snappy: Int32(rocksdb_snappy_compression)
                case .lz4: Int32(rocksdb_lz4_compression)
                case .zstd: Int32(rocksdb_zstd_compression)
                }
            }
        }

        /// Create the database directory (one level; its parent must exist) if it is missing.
        public var createIfMissing = true
        /// false: the WAL is written to the OS before each write returns, which survives a process crash.
        /// true: each write also fsyncs the WAL, which survives power loss and costs a disk flush per write.
        public var syncWrites = false
        /// The LRU cache of uncompressed data blocks, shared by all reads.
        public var blockCacheBytes = 32 << 20
        /// Memtable size; RocksDB writes an SST file when one fills.
        public var writeBufferBytes = 32 << 20
        /// Debian's librocksdb 7.8.3 links lz4, snappy and zstd; lz4 is cheap on CPU and still halves typical data.
        public var compression = Compression.lz4
        /// Bound on SST files kept open; each is a file descriptor. -1 means no bound.
        public var maxOpenFiles = 512

        public init(
            createIfMissing: Bool = true, syncWrites: Bool = false, blockCacheBytes: Int = 32 << 20,
            writeBufferBytes: Int = 32 << 20, compression: Compression = .lz4, maxOpenFiles: Int = 512
        ) {
            self.createIfMissing = createIfMissing
            self.syncWrites = syncWrites
            self.blockCacheBytes = blockCacheBytes
            self.writeBufferBytes = writeBufferBytes
            self.compression = compression
            self.maxOpenFiles = maxOpenFiles
        }
    }

    /// RocksDB's own LOG files in the data directory: how many to keep and how large each may grow.
    static let infoLogFilesMax = 5
    static let infoLogFileBytesMax = 16 << 20
    /// Smallest accepted `maxOpenFiles` (other than -1): RocksDB needs a few descriptors for the WAL, MANIFEST, LOCK.
    public static let maxOpenFilesMin = 16
    /// Bloom filter bits per key: about 1% false positives, so reads of absent keys rarely touch disk.
    static let bloomBitsPerKey = 10.0
    /// Memtable inserts whose keys share this many leading bytes start from where the last such insert ended, rather
    /// than from the top of the skip list. 5 is the kernel's 4-byte plugin namespace and the first byte of the plugin's
    /// key, which plugins use as a table tag (BPI's 't' transactions, 's' state, …); `WriteBatch` sorts its keys so
    /// consecutive inserts of one tag land close together.
    static let insertHintPrefixBytes = 5

    public let path: String
    public let options: Options

    /// Operations pass through it; `close()` closes it and waits for those in flight.
    private let gate = UseGate()
    /// nil once closed. Read only inside the gate; written only by `close()` once the gate is empty.
    private var db: OpaquePointer?
    /// Created once and shared by all non-snapshot reads and all writes: RocksDB only reads them.
    private let readOptions: OpaquePointer
    private let writeOptions: OpaquePointer
    /// RocksDB snapshots not yet released (as addresses: pointers are not Sendable), so `close()` can release them.
    private let openSnapshots = Mutex<Set<UInt>>([])

    /// Opens (or creates) the database at `path`.
    ///
    /// Throws `.invalidArgument` for bad options and `.storage` when RocksDB cannot open the directory; when another
    /// process has it open the message says "the data directory <path> is in use by another process (RocksDB lock)".
    public init(path: String, options: Options = .init()) throws(MetanodeError) {
        guard options.blockCacheBytes > 0, options.writeBufferBytes > 0 else {
            throw MetanodeError(
                .invalidArgument,
                "storage options for \(path): blockCacheBytes (\(options.blockCacheBytes)) and writeBufferBytes "
                    + "(\(options.writeBufferBytes)) must be positive")
        }
        guard options.maxOpenFiles == -1 || (Self.maxOpenFilesMin...Int(Int32.max)).contains(options.maxOpenFiles)
        else {
            throw MetanodeError(
                .invalidArgument,
                "storage options for \(path): maxOpenFiles is \(options.maxOpenFiles); use -1 (no bound) or at least "
                    + "\(Self.maxOpenFilesMin)")
        }
        self.path = path
        self.options = options

        let cache = rocksdb_cache_create_lru(options.blockCacheBytes)
        defer { rocksdb_cache_destroy(cache) }  // the table options keep their own reference
        let table = rocksdb_block_based_options_create()
        defer { rocksdb_block_based_options_destroy(table) }  // the options keep a copy
        rocksdb_block_based_options_set_block_cache(table, cache)
        // set_filter_policy takes ownership of the policy.
        rocksdb_block_based_options_set_filter_policy(
            table, rocksdb_filterpolicy_create_bloom_full(Self.bloomBitsPerKey))

        let dbOptions = rocksdb_options_create()
        defer { rocksdb_options_destroy(dbOptions) }  // the database keeps a copy
        rocksdb_options_set_block_based_table_factory(dbOptions, table)
        rocksdb_options_set_create_if_missing(dbOptions, options.createIfMissing ? 1 : 0)
        rocksdb_options_set_write_buffer_size(dbOptions, options.writeBufferBytes)
        rocksdb_options_set_compression(dbOptions, options.compression.rocksdbType)
        rocksdb_options_set_max_open_files(dbOptions, Int32(options.maxOpenFiles))
        rocksdb_options_set_keep_log_file_num(dbOptions, Self.infoLogFilesMax)
        rocksdb_options_set_max_log_file_size(dbOptions, Self.infoLogFileBytesMax)
        // Not in RocksDB's C API, so set by name. Best effort: without it writes are only slower.
        let hinted = rocksdb_options_create()
        defer { rocksdb_options_destroy(hinted) }
        let hintSet = (try? rocksdbCall("set options", path: path) {
            rocksdb_get_options_from_string(
                dbOptions, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.\(Self.insertHintPrefixBytes)",
                hinted, $0)
        }) != nil

        let opened = try rocksdbCall("open", path: path) { rocksdb_open(hintSet ? hinted : dbOptions, path, $0) }
        precondition(opened != nil, "rocksdb_open returned neither a handle nor an error")
        db = opened
        readOptions = rocksdb_readoptions_create()
        writeOptions = rocksdb_writeoptions_create()
        rocksdb_writeoptions_set_sync(writeOptions, options.syncWrites ? 1 : 0)
    }

    deinit {
        close()  // snapshots keep their store alive, so none is open here
        rocksdb_readoptions_destroy(readOptions)
        rocksdb_writeoptions_destroy(writeOptions)
    }

    // MARK: Reads

    /// The value stored under `key`, or nil when there is none (an empty value is `[]`, not nil).
    public func get(_ key: UnsafeRawBufferPointer, snapshot: Snapshot? = nil) throws(MetanodeError) -> [UInt8]? {
        try withRead(snapshot) { (read: Read) throws(MetanodeError) -> [UInt8]? in
            // get_pinned copies once (into the array) where rocksdb_get copies twice.
            let pinned = try rocksdbCall("get", path: self.path) {
                rocksdb_get_pinned(read.db, read.options, key.cChars, key.count, $0)
            }
            guard let pinned else { return nil }
            defer { rocksdb_pinnableslice_destroy(pinned) }
            var length = 0
            let value = rocksdb_pinnableslice_value(pinned, &length)
            return [UInt8](UnsafeRawBufferPointer(start: value, count: length))
        }
    }

    public func get(_ key: [UInt8], snapshot: Snapshot? = nil) throws(MetanodeError) -> [UInt8]? {
        try key.withBytes { (key) throws(MetanodeError) in try get(key, snapshot: snapshot) }
    }

    /// The value under `key` in a buffer RocksDB malloc'd (rocksdb_get), handed over without another copy, or nil when
    /// there is none. The caller owns the buffer and frees it with `Store.freeValue(_:)`.
    ///
    /// A present empty value comes back as a buffer of count 0 with a non-nil base address: RocksDB allocates values
    /// with `malloc(size)`, and glibc's `malloc(0)` returns a unique non-NULL pointer, which `freeValue` frees.
    public func getMalloced(_ key: UnsafeRawBufferPointer, snapshot: Snapshot? = nil) throws(MetanodeError)
        -> UnsafeMutableRawBufferPointer?
    {
        try withRead(snapshot) { (read: Read) throws(MetanodeError) -> UnsafeMutableRawBufferPointer? in
            var length = 0
            let value = try rocksdbCall("get", path: self.path) {
                rocksdb_get(read.db, read.options, key.cChars, key.count, &length, $0)
            }
            guard let value else { return nil }
            return UnsafeMutableRawBufferPointer(start: value, count: length)
        }
    }

    /// Frees a buffer returned by `getMalloced`.
    public static func freeValue(_ value: UnsafeMutableRawBufferPointer) {
        rocksdb_free(value.baseAddress)
    }

    // MARK: Writes

    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(MetanodeError) {
        try withDB { (db) throws(MetanodeError) in
            try rocksdbCall("put", path: self.path) {
                rocksdb_put(db, writeOptions, key.cChars, key.count, value.cChars, value.count, $0)
            }
        }
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) throws(MetanodeError) {
        try key.withBytes { (key) throws(MetanodeError) in
            try value.withBytes { (value) throws(MetanodeError) in try put(key, value) }
        }
    }

    /// Removes `key`; removing an absent key is not an error.
    public func delete(_ key: UnsafeRawBufferPointer) throws(MetanodeError) {
        try withDB { (db) throws(MetanodeError) in
            try rocksdbCall("delete", path: self.path) {
                rocksdb_delete(db, writeOptions, key.cChars, key.count, $0)
            }
        }
    }

    public func delete(_ key: [UInt8]) throws(MetanodeError) {
        try key.withBytes { (key) throws(MetanodeError) in try delete(key) }
    }

    /// Applies every operation in `batch` or none of them. The batch keeps its contents and may be written again.
    public func write(_ batch: WriteBatch) throws(MetanodeError) {
        try withDB { (db) throws(MetanodeError) in
            try batch.withSortedRocksDBBatch { (handle) throws(MetanodeError) in
                try rocksdbCall("write batch", path: self.path) { rocksdb_write(db, writeOptions, handle, $0) }
            }
        }
    }

    // MARK: Snapshots

    /// A consistent view of the store as of now; writes after it are invisible through it. Release it when done:
    /// an open snapshot keeps RocksDB from discarding the old versions it can see.
    public func snapshot() throws(MetanodeError) -> Snapshot {
        try withDB { (db) throws(MetanodeError) -> Snapshot in
            let handle = rocksdb_create_snapshot(db)!
            openSnapshots.withLock { _ = $0.insert(UInt(bitPattern: Int(bitPattern: handle))) }
            return Snapshot(store: self, handle: handle)
        }
    }

    /// Called by `Snapshot.release()`.
    func release(_ snapshot: Snapshot) {
        guard gate.enter() else { return }  // closing: close() releases every open snapshot
        defer { gate.exit() }
        // Waits for reads in flight through this snapshot, then makes later ones throw.
        guard let handle = snapshot.takeHandle(), let db else { return }
        openSnapshots.withLock { _ = $0.remove(UInt(bitPattern: Int(bitPattern: handle))) }
        rocksdb_release_snapshot(db, handle)
    }

    // MARK: Maintenance

    /// Makes every write so far durable: fsyncs the write-ahead log, then writes the memtables to SST files and waits.
    public func flush() throws(MetanodeError) {
        try withDB { (db) throws(MetanodeError) in
            try rocksdbCall("flush WAL", path: self.path) { rocksdb_flush_wal(db, 1, $0) }
            let flushOptions = rocksdb_flushoptions_create()
            defer { rocksdb_flushoptions_destroy(flushOptions) }
            rocksdb_flushoptions_set_wait(flushOptions, 1)
            try rocksdbCall("flush", path: self.path) { rocksdb_flush(db, flushOptions, $0) }
        }
    }

    /// Bytes in SST files plus memtables; a rough measure of the store's size for metrics.
    public func approximateSizeBytes() throws(MetanodeError) -> UInt64 {
        try withDB { (db) throws(MetanodeError) -> UInt64 in
            var total: UInt64 = 0
            for property in ["rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"] {
                var value: UInt64 = 0
                guard rocksdb_property_int(db, property, &value) == 0 else {
                    throw MetanodeError(.storage, "reading \(property) failed for \(path)")
                }
                total += value
            }
            return total
        }
    }

    /// Closes the database. Waits for operations in flight; afterwards every operation throws `.stopped`.
    /// Releases snapshots still open and fsyncs the write-ahead log first (best effort: call `flush()` before to see
    /// errors). Idempotent.
    public func close() {
        guard gate.close(), let db else { return }  // only the first close; every operation has left the gate
        for address in openSnapshots.withLock({ $0 }) {
            rocksdb_release_snapshot(db, OpaquePointer(bitPattern: address)!)
        }
        openSnapshots.withLock { $0.removeAll() }
        _ = try? rocksdbCall("flush WAL", path: path) { rocksdb_flush_wal(db, 1, $0) }
        rocksdb_close(db)
        self.db = nil
    }

    // MARK: Internals

    /// Runs `body` with the open handle inside the gate, so `close()` waits for it.
    @inline(__always)
    func withDB<R>(_ body: (OpaquePointer) throws(MetanodeError) -> R) throws(MetanodeError) -> R {
        guard gate.enter() else { throw closedError() }
        defer { gate.exit() }
        guard let db else { throw closedError() }
        return try body(db)
    }

    private func closedError() -> MetanodeError {
        MetanodeError(.stopped, "storage is closed (\(path))")
    }

    struct Read {
        let db: OpaquePointer
        /// The shared readoptions, or the snapshot's own.
        let options: OpaquePointer
        let snapshot: OpaquePointer?
    }

    /// Runs `body` with what a read needs, through `snapshot` when there is one.
    @inline(__always)
    func withRead<R>(_ snapshot: Snapshot?, _ body: (Read) throws(MetanodeError) -> R) throws(MetanodeError) -> R {
        try withDB { (db) throws(MetanodeError) -> R in
            guard let snapshot else { return try body(Read(db: db, options: readOptions, snapshot: nil)) }
            precondition(snapshot.store === self, "a snapshot of \(snapshot.store.path) was used with \(path)")
            return try snapshot.withHandle { (handle, options) throws(MetanodeError) -> R in
                try body(Read(db: db, options: options, snapshot: handle))
            }
        }
    }
}
