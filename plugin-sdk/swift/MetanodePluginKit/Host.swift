import MetanodeABI

/// The plugin's `mn_host_api` and `mn_host_ctx`, and the one place their statuses become `PluginError`s.
///
/// `@unchecked Sendable`: both pointers are host-owned, immutable and valid for the life of the process, and every
/// host function is thread-safe (plugin.h, "Threads").
struct Host: @unchecked Sendable {
    let api: UnsafePointer<mn_host_api>
    let ctx: OpaquePointer

    /// The funnel: every host call that returns a status hands it here, naming the function.
    @inline(__always)
    func check(_ status: mn_status, _ function: StaticString) throws(PluginError) {
        guard status == MN_OK else { throw error(status, function) }
    }

    /// The error for a failed call, with the host's `last_error` message (copied: it is borrowed until the next call).
    func error(_ status: mn_status, _ function: StaticString) -> PluginError {
        var view = mn_str(ptr: nil, len: 0)
        let message: String
        if api.pointee.last_error(ctx, &view) == MN_OK, let pointer = view.ptr {
            message = String(decoding: UnsafeBufferPointer(start: pointer, count: view.len), as: UTF8.self)
        } else {
            message = "the host gave no message"
        }
        return PluginError(status, message, function: "\(function)")
    }

    /// Copies a host-owned buffer into Swift memory and frees it.
    func take(_ buffer: mn_buf) -> [UInt8] {
        defer { api.pointee.buf_free(ctx, buffer) }
        guard let pointer = buffer.ptr, buffer.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: pointer, count: buffer.len))
    }

    func log(_ level: LogLevel, _ message: String) {
        var message = message
        message.withUTF8 { api.pointee.log(ctx, level.rawValue, mn_str(ptr: $0.baseAddress, len: $0.count)) }
    }
}

// MARK: - Bytes

/// Something that can be viewed as bytes for the length of a host call: `[UInt8]`, `String` (its UTF-8),
/// `Substring`, `ArraySlice<UInt8>`.
public protocol ByteConvertible {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R
}

extension Array: ByteConvertible where Element == UInt8 {
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R { withUnsafeBytes(body) }
}

extension ArraySlice: ByteConvertible where Element == UInt8 {
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R { withUnsafeBytes(body) }
}

extension String: ByteConvertible {
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var copy = self
        return copy.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }
}

extension Substring: ByteConvertible {
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var copy = self
        return copy.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }
}

extension ByteConvertible {
    /// The bytes as an `mn_bytes` view, borrowed for `body` (for service tables such as ledger.h's).
    @inline(__always)
    public func withMNBytes<R>(_ body: (mn_bytes) -> R) -> R {
        withBytes { body(mn_bytes($0)) }
    }
}

extension mn_bytes {
    /// A view of `bytes`, valid while they are.
    public init(_ bytes: UnsafeRawBufferPointer) {
        self.init(ptr: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bytes.count)
    }

    /// A copy of the viewed bytes.
    public var array: [UInt8] {
        guard let ptr, len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: ptr, count: len))
    }

    /// The viewed bytes decoded as UTF-8 (invalid sequences become U+FFFD).
    public var string: String {
        guard let ptr, len > 0 else { return "" }
        return String(decoding: UnsafeBufferPointer(start: ptr, count: len), as: UTF8.self)
    }
}

// MARK: - Locks

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex, for the tables of closures a context keeps. Never held while plugin code runs.
/// (`Synchronization.Mutex` would insist on `sending` values; the closures here are deliberately not Sendable.)
final class Locked<Value>: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var value: Value

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    @inline(__always)
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body(&value)
    }
}
