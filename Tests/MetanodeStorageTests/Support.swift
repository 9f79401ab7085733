import Foundation
import MetanodeCore
import MetanodeStorage

/// Runs `body` with a fresh directory path under the system temporary directory and removes the directory afterwards.
/// The store lives in `<dir>/db`, so RocksDB creates it (one level) as it would a node's data directory.
func withTemporaryStorePath<R>(_ body: (String) async throws -> R) async throws -> R {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("metanode-storage-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory.appendingPathComponent("db").path)
}

/// Opens a store in a temporary directory, runs `body`, then closes it and removes the directory.
func withTemporaryStore<R>(_ body: (Store) async throws -> R) async throws -> R {
    try await withTemporaryStorePath { path in
        let store = try Store(path: path)
        defer { store.close() }
        return try await body(store)
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

extension Store {
    /// Every (key, value) pair a scan visits, copied out of the visitor's views.
    func collect(prefix: [UInt8], from start: [UInt8]? = nil, snapshot: Snapshot? = nil, limit: Int = .max)
        throws(MetanodeError) -> [[UInt8]]
    {
        var keys: [[UInt8]] = []
        try scan(prefix: prefix, from: start, snapshot: snapshot) { key, _ in
            keys.append(Array(key))
            return keys.count < limit
        }
        return keys
    }
}
