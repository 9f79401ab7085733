import CRocksDB
import MetanodeCore

extension Store {
    /// Visits, in ascending byte order, every key that starts with `prefix` and is >= `start`, until `visit` returns
    /// false. A `start` below the prefix means from the prefix; one past every key with the prefix visits nothing.
    /// The empty prefix visits everything.
    ///
    /// The key and value views point into RocksDB's iterator and are valid only during the call to `visit`. The
    /// iterator's upper bound is the prefix's successor, so RocksDB itself stops at the end of the range.
    ///
    /// `visit` may throw any error, so closures need no `throws(MetanodeError)` annotation (Swift infers `any Error`
    /// for closures that `try`); a `MetanodeError` it throws comes out unchanged, any other error as `.internal` with
    /// the error as its cause.
    public func scan(
        prefix: UnsafeRawBufferPointer, from start: [UInt8]? = nil, snapshot: Snapshot? = nil,
        _ visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws(MetanodeError) {
        let upperBound = Self.successor(of: prefix)
        // Keys >= prefix and < successor(prefix) are exactly the keys with the prefix, so seeking to the larger of
        // prefix and start and stopping at the bound needs no per-key prefix check.
        let seek: [UInt8] =
            if let start, prefix.lexicographicallyPrecedes(start) { start } else { Array(prefix) }
        try withRead(snapshot) { (read: Read) throws(MetanodeError) in
            let readOptions = rocksdb_readoptions_create()
            defer { rocksdb_readoptions_destroy(readOptions) }
            if let snapshot = read.snapshot { rocksdb_readoptions_set_snapshot(readOptions, snapshot) }
            // RocksDB keeps a pointer to the bound, not a copy: it must outlive the iterator, so the whole iteration
            // runs inside withUnsafeBytes.
            try (upperBound ?? []).withBytes { (bound) throws(MetanodeError) in
                if upperBound != nil {
                    rocksdb_readoptions_set_iterate_upper_bound(readOptions, bound.cChars, bound.count)
                }
                let iterator = rocksdb_create_iterator(read.db, readOptions)!
                defer { rocksdb_iter_destroy(iterator) }
                seek.withUnsafeBytes { rocksdb_iter_seek(iterator, $0.cChars, $0.count) }
                while rocksdb_iter_valid(iterator) != 0 {
                    var keyLength = 0
                    var valueLength = 0
                    let key = rocksdb_iter_key(iterator, &keyLength)
                    let value = rocksdb_iter_value(iterator, &valueLength)
                    let more: Bool
                    do {
                        more = try visit(
                            UnsafeRawBufferPointer(start: key, count: keyLength),
                            UnsafeRawBufferPointer(start: value, count: valueLength))
                    } catch {
                        throw Self.visitorError(error)
                    }
                    guard more else { break }
                    rocksdb_iter_next(iterator)
                }
                try rocksdbCall("scan", path: self.path) { rocksdb_iter_get_error(iterator, $0) }
            }
        }
    }

    public func scan(
        prefix: [UInt8], from start: [UInt8]? = nil, snapshot: Snapshot? = nil,
        _ visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws(MetanodeError) {
        try prefix.withBytes { (prefix) throws(MetanodeError) in
            try scan(prefix: prefix, from: start, snapshot: snapshot, visit)
        }
    }

    static func visitorError(_ error: any Error) -> MetanodeError {
        if let error = error as? MetanodeError { return error }
        return MetanodeError(.internal, "a scan visitor threw \(error)", cause: error)
    }

    /// The smallest key greater than every key with `prefix`: drop trailing 0xFF bytes and increment the last byte.
    /// nil when there is none (the empty prefix or all 0xFF), meaning the range runs to the end of the keyspace.
    static func successor(of prefix: UnsafeRawBufferPointer) -> [UInt8]? {
        var bytes = Array(prefix)
        while let last = bytes.last {
            if last != 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }
}
