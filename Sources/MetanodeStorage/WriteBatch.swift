import CRocksDB

/// Puts and deletes applied together, all or nothing, by `Store.write(_:)`. A batch dropped without being written
/// changes nothing. Not thread-safe: build a batch on one thread.
public final class WriteBatch {
    let handle: OpaquePointer
    /// Operations added since creation or `clear()`.
    public private(set) var count = 0
    /// Sum of key and value bytes added; the kernel bounds batches by it.
    public private(set) var byteCount = 0

    public init() {
        handle = rocksdb_writebatch_create()
    }

    deinit {
        rocksdb_writebatch_destroy(handle)
    }

    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        rocksdb_writebatch_put(handle, key.cChars, key.count, value.cChars, value.count)
        count += 1
        byteCount += key.count + value.count
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) {
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in put(key, value) } }
    }

    public func delete(_ key: UnsafeRawBufferPointer) {
        rocksdb_writebatch_delete(handle, key.cChars, key.count)
        count += 1
        byteCount += key.count
    }

    public func delete(_ key: [UInt8]) {
        key.withUnsafeBytes { delete($0) }
    }

    /// Empties the batch so it can be reused.
    public func clear() {
        rocksdb_writebatch_clear(handle)
        count = 0
        byteCount = 0
    }
}
