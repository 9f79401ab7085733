import MetanodeABI

/// A ledger module's state as one handler call sees it, through ledger.h's state_get, state_read, state_put and
/// state_delete (valid only during that call). Swift modules adapt their pure rules' state protocol to it.
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

    /// Whether BPI's table has ledger 1.2's `state_read` (a 1.1 BPI's ends before it).
    private var hasStateRead: Bool {
        Int(api.pointee.struct_size) >= MemoryLayout<mn_ledger_api>.offset(of: \mn_ledger_api.state_read)!
            + MemoryLayout<UnsafeRawPointer>.size
    }

    /// The value as 8 big-endian bytes; nil when the key has none or its value is not 8 bytes long. Read with
    /// `state_read` into a word on the stack where BPI has it: balances and counters are most of what handlers read,
    /// and `state_get` costs a buffer BPI allocates, an array here and a `buf_free`.
    public func u64(_ key: [UInt8]) -> UInt64? {
        var word: UInt64 = 0
        guard withUnsafeMutableBytes(of: &word, { read(key, into: $0) }) == 8 else { return nil }
        return UInt64(bigEndian: word)
    }

    /// Reads the value into `buffer` (with `state_read`, or `state_get` from a 1.1 BPI) and returns its length, nil
    /// when the key has none. The bytes are copied only when they fit: a longer value leaves `buffer` as it was, and
    /// the length tells so.
    public func read(_ key: [UInt8], into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard hasStateRead else {
            guard let value = get(key) else { return nil }
            if value.count <= buffer.count { buffer.copyBytes(from: value) }
            return value.count
        }
        var length = 0
        let status = key.withMNBytes { key in
            api.pointee.state_read(state, key, buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count,
                                   &length)
        }
        // MN_ERR_TOO_LARGE with the length past the room: a value longer than the buffer. With none, the key was
        // too long to have a value.
        return status == MN_OK || (status == MN_ERR_TOO_LARGE && length > buffer.count) ? length : nil
    }

    /// Whether the key has a value (an empty one counts), asked with no room, so nothing is copied.
    public func contains(_ key: [UInt8]) -> Bool {
        read(key, into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) != nil
    }

    /// Writes `value` as 8 big-endian bytes, straight from the stack (BPI copies what it keeps).
    public mutating func putU64(_ key: [UInt8], _ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { put(key, bytes: $0) }
    }

    /// Writes `bytes` as the value, with no array of them (BPI copies what it keeps).
    public mutating func put(_ key: [UInt8], bytes: UnsafeRawBufferPointer) {
        let status = key.withMNBytes { key in
            api.pointee.state_put(state, key, mn_bytes(ptr: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                       len: bytes.count))
        }
        if status != MN_OK && failure == nil { failure = status }
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
