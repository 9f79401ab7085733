import CRocksDB
import MetanodeCore

/// The one way this module calls a RocksDB function that reports failure through `char **errptr` (STYLE point 3).
///
/// RocksDB leaves `*errptr` NULL on success and sets it to a malloc'd C string on failure; this frees that string and
/// throws `MetanodeError(.storage, "<operation> failed for <path>: <rocksdb message>")`. `path` is an autoclosure so
/// the hot path does not touch (retain) the path string unless the call fails.
@inline(__always)
func rocksdbCall<R>(
    _ operation: StaticString, path: @autoclosure () -> String,
    _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> R
) throws(MetanodeError) -> R {
    var error: UnsafeMutablePointer<CChar>? = nil
    let result = body(&error)
    if let error {
        let message = String(cString: error)
        rocksdb_free(error)
        throw storageError(operation, path: path(), rocksdbMessage: message)
    }
    return result
}

/// Turns a RocksDB error message into a message that says what to do, for the failures people can act on.
func storageError(_ operation: StaticString, path: String, rocksdbMessage message: String) -> MetanodeError {
    // Another process holds the fcntl lock ("While lock file: …/LOCK: Resource temporarily unavailable"), or this
    // process already has the directory open ("lock hold by current process, …").
    if message.contains("While lock file") || message.contains("lock hold by current process") {
        return MetanodeError(
            .storage,
            "the data directory \(path) is in use by another process (RocksDB lock) — stop the other metanode first "
                + "(\(message))")
    }
    if message.contains("not linked with the binary") {
        return MetanodeError(
            .storage,
            "\(operation) failed for \(path): \(message) — this RocksDB build lacks that compression; "
                + "set Store.Options.compression to .none or another type")
    }
    return MetanodeError(.storage, "\(operation) failed for \(path): \(message)")
}

extension UnsafeRawBufferPointer {
    /// The bytes as RocksDB's `const char *`. An empty buffer may have no base address, but c.h requires non-NULL
    /// pointer arguments, so empty buffers point at a static empty C string instead.
    @inline(__always)
    var cChars: UnsafePointer<CChar> {
        (baseAddress ?? UnsafeRawPointer(("" as StaticString).utf8Start)).assumingMemoryBound(to: CChar.self)
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` with a typed error: the standard one rethrows `any Error`, so the error is carried out in a
    /// `Result`.
    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(MetanodeError) -> R) throws(MetanodeError) -> R {
        try withUnsafeBytes { bytes in Result { () throws(MetanodeError) -> R in try body(bytes) } }.get()
    }
}
