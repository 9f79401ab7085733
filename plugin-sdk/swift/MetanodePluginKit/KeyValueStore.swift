import MetanodeABI

/// One key and its value, as a scan returns them.
public struct KVPair: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }

    public var keyText: String { String(decoding: key, as: UTF8.self) }
    public var valueText: String { String(decoding: value, as: UTF8.self) }
}

/// The plugin's own namespace in the node's key-value store (capability "kv"). Keys are 1...1024 bytes.
public struct KeyValueStore: Sendable {
    let host: Host

    /// The value of `key`, or nil if it is absent.
    public func get(_ key: some ByteConvertible) throws(PluginError) -> [UInt8]? {
        try KVRead.get(host, snapshot: nil, key)
    }

    /// The value of `key` as UTF-8 text, or nil if it is absent.
    public func string(_ key: some ByteConvertible) throws(PluginError) -> String? {
        try get(key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes `key` (durable when this returns).
    public func put(_ key: some ByteConvertible, _ value: some ByteConvertible) throws(PluginError) {
        let status = key.withMNBytes { key in
            value.withMNBytes { value in host.api.pointee.kv_put(host.ctx, key, value) }
        }
        try host.check(status, "kv_put")
    }

    /// Deletes `key`; deleting an absent key succeeds.
    public func delete(_ key: some ByteConvertible) throws(PluginError) {
        let status = key.withMNBytes { host.api.pointee.kv_delete(host.ctx, $0) }
        try host.check(status, "kv_delete")
    }

    /// Runs `body` with a batch and commits it atomically when `body` returns: every operation applies, or none.
    /// If `body` throws, the batch is discarded and the error rethrown. Do not keep the batch past `body`.
    public func batch<R>(_ body: (KVBatch) throws -> R) throws -> R {
        var raw: OpaquePointer?
        try host.check(host.api.pointee.kv_batch_begin(host.ctx, &raw), "kv_batch_begin")
        guard let raw else {
            throw PluginError(MN_ERR_INTERNAL, "kv_batch_begin gave no batch", function: "kv_batch_begin")
        }
        let batch = KVBatch(host: host, raw: raw)
        let result: R
        do {
            result = try body(batch)
        } catch {
            host.api.pointee.kv_batch_discard(host.ctx, raw)
            throw error
        }
        try host.check(host.api.pointee.kv_batch_commit(host.ctx, raw), "kv_batch_commit")
        return result
    }

    /// Runs `body` with a consistent read view of the store, released when `body` returns.
    public func withSnapshot<R>(_ body: (KVSnapshot) throws -> R) throws -> R {
        var raw: OpaquePointer?
        try host.check(host.api.pointee.kv_snapshot_open(host.ctx, &raw), "kv_snapshot_open")
        guard let raw else {
            throw PluginError(MN_ERR_INTERNAL, "kv_snapshot_open gave no snapshot", function: "kv_snapshot_open")
        }
        defer { host.api.pointee.kv_snapshot_release(host.ctx, raw) }
        return try body(KVSnapshot(host: host, raw: raw))
    }

    /// Every key that starts with `prefix` and is >= `start` (empty: from the prefix), ascending, with its value.
    public func scan(prefix: some ByteConvertible, start: some ByteConvertible = [UInt8]()) throws(PluginError)
        -> [KVPair]
    {
        var pairs: [KVPair] = []
        try KVRead.scan(host, snapshot: nil, prefix: prefix, start: start) { pairs.append($0); return true }
        return pairs
    }

    /// Visits keys that start with `prefix` and are >= `start`, ascending, until `visit` returns false.
    /// `visit` must not write to the store.
    public func scan(prefix: some ByteConvertible, start: some ByteConvertible = [UInt8](),
                     _ visit: (KVPair) -> Bool) throws(PluginError) {
        try KVRead.scan(host, snapshot: nil, prefix: prefix, start: start, visit)
    }
}

/// An atomic write batch, valid inside `KeyValueStore.batch`'s body.
public struct KVBatch {
    let host: Host
    let raw: OpaquePointer

    public func put(_ key: some ByteConvertible, _ value: some ByteConvertible) throws(PluginError) {
        let status = key.withMNBytes { key in
            value.withMNBytes { value in host.api.pointee.kv_batch_put(host.ctx, raw, key, value) }
        }
        try host.check(status, "kv_batch_put")
    }

    public func delete(_ key: some ByteConvertible) throws(PluginError) {
        let status = key.withMNBytes { host.api.pointee.kv_batch_delete(host.ctx, raw, $0) }
        try host.check(status, "kv_batch_delete")
    }
}

/// A consistent read view, valid inside `KeyValueStore.withSnapshot`'s body.
public struct KVSnapshot {
    let host: Host
    let raw: OpaquePointer

    public func get(_ key: some ByteConvertible) throws(PluginError) -> [UInt8]? {
        try KVRead.get(host, snapshot: raw, key)
    }

    public func string(_ key: some ByteConvertible) throws(PluginError) -> String? {
        try get(key).map { String(decoding: $0, as: UTF8.self) }
    }

    public func scan(prefix: some ByteConvertible, start: some ByteConvertible = [UInt8]()) throws(PluginError)
        -> [KVPair]
    {
        var pairs: [KVPair] = []
        try KVRead.scan(host, snapshot: raw, prefix: prefix, start: start) { pairs.append($0); return true }
        return pairs
    }

    public func scan(prefix: some ByteConvertible, start: some ByteConvertible = [UInt8](),
                     _ visit: (KVPair) -> Bool) throws(PluginError) {
        try KVRead.scan(host, snapshot: raw, prefix: prefix, start: start, visit)
    }
}

/// Reads shared by the store and snapshots.
enum KVRead {
    static func get(_ host: Host, snapshot: OpaquePointer?, _ key: some ByteConvertible) throws(PluginError)
        -> [UInt8]?
    {
        var buffer = mn_buf(ptr: nil, len: 0)
        let status = key.withMNBytes { key in
            if let snapshot {
                host.api.pointee.kv_snapshot_get(host.ctx, snapshot, key, &buffer)
            } else {
                host.api.pointee.kv_get(host.ctx, key, &buffer)
            }
        }
        if status == MN_ERR_NOT_FOUND { return nil }
        try host.check(status, snapshot == nil ? "kv_get" : "kv_snapshot_get")
        return host.take(buffer)
    }

    /// The visitor's state, passed through kv_scan_prefix's user_data.
    private struct Visit {
        var body: (KVPair) -> Bool
    }

    static func scan(_ host: Host, snapshot: OpaquePointer?, prefix: some ByteConvertible,
                     start: some ByteConvertible, _ visit: (KVPair) -> Bool) throws(PluginError) {
        let status = withoutActuallyEscaping(visit) { visit in
            var state = Visit(body: visit)
            return withUnsafeMutablePointer(to: &state) { state in
                prefix.withMNBytes { prefix in
                    start.withMNBytes { start in
                        host.api.pointee.kv_scan_prefix(host.ctx, snapshot, prefix, start, { userData, key, value in
                            let state = userData!.assumingMemoryBound(to: Visit.self)
                            return state.pointee.body(KVPair(key: key.array, value: value.array)) ? 0 : 1
                        }, state)
                    }
                }
            }
        }
        try host.check(status, "kv_scan_prefix")
    }
}
