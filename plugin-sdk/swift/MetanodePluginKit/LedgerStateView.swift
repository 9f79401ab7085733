import MetanodeABI

/// A ledger module's state as one handler call sees it, through ledger.h's state_get, state_put and state_delete
/// (valid only during that call). Swift modules adapt their pure rules' state protocol to it.
public struct LedgerStateView {
    public let api: UnsafePointer<mn_ledger_api>
    public let state: OpaquePointer
    /// The first write BPI refused (a limit): the handler then fails rather than commit half its writes.
    public private(set) var failure: mn_status?

    public init(api: UnsafePointer<mn_ledger_api>, state: OpaquePointer) {
        self.api = api
        self.state = state
    }

    /// The value, an empty array for an empty value, nil when the key has none.
    public func get(_ key: [UInt8]) -> [UInt8]? {
        var buffer = mn_buf(ptr: nil, len: 0)
        let status = key.withMNBytes { api.pointee.state_get(state, $0, &buffer) }
        guard status == MN_OK else { return nil }
        defer { api.pointee.buf_free(buffer) }
        guard let pointer = buffer.ptr, buffer.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: pointer, count: buffer.len))
    }

    /// Writes `value`; nil deletes the key.
    public mutating func put(_ key: [UInt8], _ value: [UInt8]?) {
        let status = key.withMNBytes { key in
            if let value { return value.withMNBytes { api.pointee.state_put(state, key, $0) } }
            return api.pointee.state_delete(state, key)
        }
        if status != MN_OK && failure == nil { failure = status }
    }
}
