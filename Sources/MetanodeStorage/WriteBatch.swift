import CRocksDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Puts and deletes applied together, all or nothing, by `Store.write(_:)`. A batch dropped without being written
/// changes nothing. Not thread-safe: build a batch on one thread.
///
/// Operations are kept here and reach RocksDB in key order (operations on one key in the order they were added, so
/// the last still wins). Sorted, each insert into the memtable's skip list starts from where the previous one of its
/// key prefix ended (the store's insert-hint prefix) instead of from the top of the list: a block's batch of random
/// transaction ids costs about 40% less to insert that way.
public final class WriteBatch {
    /// Every key and value, back to back.
    private var arena: [UInt8] = []
    private var operations: [Operation] = []
    /// Operations added since creation or `clear()`.
    public var count: Int { operations.count }
    /// Sum of key and value bytes added; the kernel bounds batches by it.
    public var byteCount: Int { arena.count }

    private struct Operation {
        var keyStart: Int
        var keyCount: Int
        /// -1 for a delete.
        var valueCount: Int
    }

    public init() {}

    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        operations.append(Operation(keyStart: arena.count, keyCount: key.count, valueCount: value.count))
        arena.append(contentsOf: key)
        arena.append(contentsOf: value)
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) {
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in put(key, value) } }
    }

    public func delete(_ key: UnsafeRawBufferPointer) {
        operations.append(Operation(keyStart: arena.count, keyCount: key.count, valueCount: -1))
        arena.append(contentsOf: key)
    }

    public func delete(_ key: [UInt8]) {
        key.withUnsafeBytes { delete($0) }
    }

    /// Empties the batch so it can be reused.
    public func clear() {
        arena.removeAll(keepingCapacity: true)
        operations.removeAll(keepingCapacity: true)
    }

    /// Never written, only passed with a length of zero.
    nonisolated(unsafe) private static let nothing = UnsafePointer(UnsafeMutablePointer<CChar>.allocate(capacity: 1))

    /// Calls `body` with a RocksDB batch holding the operations in key order, then destroys it.
    func withSortedRocksDBBatch<T, E: Error>(_ body: (OpaquePointer) throws(E) -> T) throws(E) -> T {
        let handle = rocksdb_writebatch_create()!
        defer { rocksdb_writebatch_destroy(handle) }
        arena.withUnsafeBytes { bytes in
            // Only zero-length keys and values can meet an empty arena; RocksDB still wants a pointer for them.
            let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self) ?? Self.nothing
            // Ties keep insertion order: the index breaks them, so the later of two operations on a key stays later.
            let order = operations.indices.sorted { left, right in
                let a = operations[left], b = operations[right]
                let common = min(a.keyCount, b.keyCount)
                let compared = common == 0 ? 0 : memcmp(base + a.keyStart, base + b.keyStart, common)
                if compared != 0 { return compared < 0 }
                if a.keyCount != b.keyCount { return a.keyCount < b.keyCount }
                return left < right
            }
            for index in order {
                let operation = operations[index]
                let key = base + operation.keyStart
                if operation.valueCount < 0 {
                    rocksdb_writebatch_delete(handle, key, operation.keyCount)
                } else {
                    rocksdb_writebatch_put(handle, key, operation.keyCount, key + operation.keyCount,
                                           operation.valueCount)
                }
            }
        }
        return try body(handle)
    }
}
