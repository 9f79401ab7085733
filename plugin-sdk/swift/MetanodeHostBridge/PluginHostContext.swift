import MetanodeABI
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The host's record of one plugin instance; its address is the `mn_host_ctx *` the plugin holds.
///
/// Retained for the life of the process, like the plugin's library, because a plugin may keep `ctx` in globals and
/// call through it from its own threads at any time. Calls after `markStopped()` answer MN_ERR_STOPPED.
public final class PluginHostContext: @unchecked Sendable {
    public let name: String
    /// The plugin's index in its host (load order). Backends use it to find their own per-plugin state.
    public let slot: Int
    public let grants: HostCapabilities
    public let backend: any PluginHostBackend
    /// The host's own record of this plugin (the kernel keeps its PluginRuntime here), so backends reach it
    /// without a lookup on every call.
    public let hostObject: AnyObject?
    /// The plugin's vtable; see HostVTable.swift.
    public private(set) var vtable: UnsafeMutablePointer<mn_host_api>!
    /// The `mn_host_ctx *` handed to the plugin.
    public private(set) var opaque: OpaquePointer!
    /// Set by PluginInstance so backends can deliver callbacks.
    public internal(set) weak var instance: PluginInstance?

    let nameUTF8: [UInt8]
    private let lifecycle = Atomic<UInt8>(LifecycleState.created.rawValue)
    let handles = HostLock(HandleTable())
    /// Deferred HTTP responses not yet answered (DeferredHTTP.swift). Not reset at stop, so ids are never reused.
    let deferrals = HostLock(DeferralTable())
    private let deniedCounts = HostLock([String: Int]())

    enum LifecycleState: UInt8 {
        case created = 0, active = 1, stopped = 2
    }

    public init(name: String, slot: Int, grants: HostCapabilities, backend: any PluginHostBackend,
                hostObject: AnyObject? = nil) {
        self.name = name
        self.nameUTF8 = Array(name.utf8)
        self.slot = slot
        self.grants = grants
        self.backend = backend
        self.hostObject = hostObject
        self.vtable = HostVTable.make(grants: grants)
        self.opaque = OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    /// Host calls are served from here on (the kernel calls this right before on_init).
    public func activate() { lifecycle.store(LifecycleState.active.rawValue, ordering: .releasing) }

    /// Host calls answer MN_ERR_STOPPED from here on; open batches and snapshots are dropped, and deferred HTTP
    /// responses still open answer 503.
    public func markStopped() {
        lifecycle.store(LifecycleState.stopped.rawValue, ordering: .releasing)
        closeDeferrals()
        let dropped = handles.withLock { table -> [AnyObject] in
            let objects = table.snapshots.values.map { $0 as AnyObject }
            table = HandleTable()
            return objects
        }
        for snapshot in dropped { backend.kvSnapshotRelease(self, snapshot: snapshot) }
    }

    public var isStopped: Bool { lifecycle.load(ordering: .acquiring) == LifecycleState.stopped.rawValue }
    var isActive: Bool { lifecycle.load(ordering: .acquiring) == LifecycleState.active.rawValue }

    /// The context behind a `mn_host_ctx *`, if it is serving calls.
    @inline(__always)
    static func resolve(_ ctx: OpaquePointer?) -> PluginHostContext? {
        guard let ctx else { return nil }
        return Unmanaged<PluginHostContext>.fromOpaque(UnsafeRawPointer(ctx)).takeUnretainedValue()
    }

    /// Runs a host function body: validates the lifecycle, funnels `HostError` into a status plus last_error.
    @inline(__always)
    static func serve(_ ctx: OpaquePointer?, _ body: (PluginHostContext) throws(HostError) -> Void) -> mn_status {
        guard let ctx else { return MN_ERR_INVALID_ARGUMENT }
        // Contexts are never freed, so the call may borrow it without retaining it (this is every host call's path).
        return Unmanaged<PluginHostContext>.fromOpaque(UnsafeRawPointer(ctx))._withUnsafeGuaranteedRef { context in
            serve(context, body)
        }
    }

    @inline(__always)
    private static func serve(_ context: PluginHostContext, _ body: (PluginHostContext) throws(HostError) -> Void)
        -> mn_status
    {
        guard context.isActive else {
            LastError.set(context, context.isStopped
                ? "plugin \(context.name) is stopped; the host no longer serves it"
                : "plugin \(context.name) is not initialised yet")
            return MN_ERR_STOPPED
        }
        do {
            try body(context)
            return MN_OK
        } catch {
            LastError.set(context, error.message)
            return error.status
        }
    }

    /// The body of every function of an ungranted capability. Like every host function, it answers MN_ERR_STOPPED
    /// outside the plugin's active life.
    static func deny(_ ctx: OpaquePointer?, _ function: String, _ capability: String) -> mn_status {
        guard let context = resolve(ctx) else { return MN_ERR_INVALID_ARGUMENT }
        guard context.isActive else { return serve(ctx) { _ in } }
        let count = context.deniedCounts.withLock { counts -> Int in
            counts[function, default: 0] += 1
            return counts[function]!
        }
        context.backend.denied(context, function: function, capability: capability, count: count)
        LastError.set(context, "\(function) needs capability '\(capability)', which plugin \(context.name) was not "
            + "granted; grant it with `metanode plugin disable \(context.name)` then `metanode plugin enable "
            + "\(context.name) --grant \(capability) ...` listing every capability it should have")
        return MN_ERR_DENIED
    }
}

/// Opaque handles (batches, snapshots, in-flight HTTP responses) the plugin holds. Looked up, never dereferenced,
/// so a stale or foreign handle is an MN_ERR_INVALID_ARGUMENT rather than a crash.
struct HandleTable {
    var nextHandle: UInt = 1
    var batches: [UInt: BatchState] = [:]
    var snapshots: [UInt: AnyObject] = [:]
    var snapshotsOpening = 0
    var responses: [UInt: HTTPResponseBox] = [:]
    /// In-flight HTTP requests by their `host_private` value.
    var requests: [UInt: HTTPRequestBox] = [:]

    mutating func allocate() -> UInt {
        defer { nextHandle += 1 }
        // Keep handles looking like pointers: non-null, word-aligned.
        return nextHandle << 4
    }
}

struct BatchState {
    var object: AnyObject
    var operations: Int = 0
    var bytes: Int = 0
}

/// The response of a running handler. Touched by the handler's thread only (the handle is live while it runs).
final class HTTPResponseBox: @unchecked Sendable {
    let method: String
    let path: String
    var response: HTTPResponseParts?
    /// Set by http_response_defer (ABI 1.2); then `response` stays nil.
    var deferral: DeferredHTTPResponse?
    var extraHeaders: [(name: String, value: String)] = []

    init(method: String, path: String) {
        self.method = method
        self.path = path
    }
}

/// The per-thread message of the last failed host call (`last_error`).
enum LastError {
    final class Slot {
        var context: ObjectIdentifier?
        var message: UnsafeMutableBufferPointer<UInt8> = .init(start: nil, count: 0)
        deinit { message.deallocate() }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<Slot>.fromOpaque(pointer).release()
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()

    private static func slot() -> Slot {
        if let existing = pthread_getspecific(key) {
            return Unmanaged<Slot>.fromOpaque(existing).takeUnretainedValue()
        }
        let slot = Slot()
        pthread_setspecific(key, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }

    static func set(_ context: PluginHostContext, _ message: String) {
        let slot = slot()
        slot.message.deallocate()
        let bytes = Array(message.utf8.prefix(Int(MN_LOG_MESSAGE_LEN_MAX)))
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bytes.count, 1))
        _ = buffer.initialize(from: bytes)
        slot.message = UnsafeMutableBufferPointer(start: buffer.baseAddress, count: bytes.count)
        slot.context = ObjectIdentifier(context)
    }

    static func get(_ context: PluginHostContext) -> mn_str? {
        let slot = slot()
        guard slot.context == ObjectIdentifier(context), slot.message.count > 0 else { return nil }
        return mn_str(ptr: UnsafePointer(slot.message.baseAddress), len: slot.message.count)
    }
}
