import MetanodeABI

// The host side of the plugin ABI.
//
// A host (the Metanode kernel, or MetanodePluginTesting's in-memory host) implements `PluginHostBackend` in Swift.
// This module turns that into the C vtable a plugin sees: it validates every argument against the ABI's limits,
// answers MN_ERR_STOPPED after on_stop, gives ungranted capabilities functions that answer MN_ERR_DENIED, keeps the
// per-thread last-error message, and applies the ABI's own rules (signature scoping, name formats). Backends only
// do the work. So both hosts enforce exactly the same contract.

/// A failed host call: the status the plugin sees and the message `last_error` returns.
public struct HostError: Error, Sendable, CustomStringConvertible {
    public var status: mn_status
    public var message: String

    public init(_ status: mn_status, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(HostStatus.name(status)): \(message)" }

    public static func invalid(_ message: String) -> HostError { HostError(MN_ERR_INVALID_ARGUMENT, message) }
    public static func notFound(_ message: String) -> HostError { HostError(MN_ERR_NOT_FOUND, message) }
    public static func tooLarge(_ what: String, _ size: Int, max: UInt32) -> HostError {
        HostError(MN_ERR_TOO_LARGE, "\(what) is \(size) bytes; the limit is \(max)")
    }
}

/// Names for status codes, for messages and logs.
public enum HostStatus {
    public static func name(_ status: mn_status) -> String {
        switch status {
        case MN_OK: "MN_OK"
        case MN_ERR_DENIED: "MN_ERR_DENIED"
        case MN_ERR_INVALID_ARGUMENT: "MN_ERR_INVALID_ARGUMENT"
        case MN_ERR_NOT_FOUND: "MN_ERR_NOT_FOUND"
        case MN_ERR_TOO_LARGE: "MN_ERR_TOO_LARGE"
        case MN_ERR_STOPPED: "MN_ERR_STOPPED"
        case MN_ERR_TIMEOUT: "MN_ERR_TIMEOUT"
        case MN_ERR_EXISTS: "MN_ERR_EXISTS"
        case MN_ERR_IO: "MN_ERR_IO"
        case MN_ERR_VERSION: "MN_ERR_VERSION"
        case MN_ERR_INTERNAL: "MN_ERR_INTERNAL"
        case MN_ERR_NO_RESPONDER: "MN_ERR_NO_RESPONDER"
        case MN_ERR_LIMIT: "MN_ERR_LIMIT"
        case MN_ERR_BAD_SIGNATURE: "MN_ERR_BAD_SIGNATURE"
        default: "status \(status)"
        }
    }
}

/// The capability groups of the host vtable. Names match the manifest's "capabilities" strings.
public struct HostCapabilities: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let kv = HostCapabilities(rawValue: 1 << 0)
    public static let crypto = HostCapabilities(rawValue: 1 << 1)
    public static let sign = HostCapabilities(rawValue: 1 << 2)
    public static let bus = HostCapabilities(rawValue: 1 << 3)
    public static let timer = HostCapabilities(rawValue: 1 << 4)
    public static let http = HostCapabilities(rawValue: 1 << 5)
    public static let service = HostCapabilities(rawValue: 1 << 6)
    public static let metrics = HostCapabilities(rawValue: 1 << 7)
    /// ABI 1.1.
    public static let net = HostCapabilities(rawValue: 1 << 8)

    public static let all: HostCapabilities = [.kv, .crypto, .sign, .bus, .timer, .http, .service, .metrics, .net]

    /// The manifest spelling of each single capability.
    public static let names: [(String, HostCapabilities)] = [
        ("kv", .kv), ("crypto", .crypto), ("sign", .sign), ("bus", .bus), ("timer", .timer), ("http", .http),
        ("service", .service), ("metrics", .metrics), ("net", .net),
    ]

    /// Parses manifest names; names this ABI version does not know are ignored (they grant nothing here).
    public init(names: some Sequence<String>) {
        var set = HostCapabilities()
        for name in names {
            if let match = Self.names.first(where: { $0.0 == name }) { set.insert(match.1) }
        }
        self = set
    }

    public var nameList: [String] { Self.names.filter { contains($0.1) }.map(\.0) }
}

/// A plugin callback and its opaque argument, as the plugin registered them.
public struct PluginCallback<Function>: @unchecked Sendable {
    public let function: Function
    public let userData: UnsafeMutableRawPointer?
    public init(function: Function, userData: UnsafeMutableRawPointer?) {
        self.function = function
        self.userData = userData
    }
}

public typealias TimerCallback = PluginCallback<@convention(c) (UnsafeMutableRawPointer?, mn_timer_id) -> Void>
public typealias BusReplyCallback = PluginCallback<@convention(c) (UnsafeMutableRawPointer?, mn_status, mn_bytes) -> Void>
public typealias HTTPHandler = PluginCallback<
    @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<mn_http_request>?, OpaquePointer?) -> Void
>

/// A metric kind as registered through the ABI.
public enum MetricKind: Int32, Sendable {
    case counter = 1  // MN_METRIC_COUNTER
    case gauge = 2
    case histogram = 3
}

/// An HTTP request for a plugin route, as the host received it.
public struct HTTPRequestParts: Sendable {
    public var method: String
    public var path: String
    public var query: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, path: String, query: String = "", headers: [(name: String, value: String)] = [],
                body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// The response a plugin's HTTP handler built.
public struct HTTPResponseParts: Sendable {
    public var status: UInt16
    public var contentType: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: UInt16, contentType: String, headers: [(name: String, value: String)] = [], body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }
}

/// What a host does for its plugins. Functions run on the thread the plugin called from (any thread); arguments are
/// already validated against the ABI's limits. Buffers passed in are borrowed for the call.
public protocol PluginHostBackend: AnyObject, Sendable {
    // Always available
    func log(_ plugin: PluginHostContext, level: Int32, message: String)
    func config(_ plugin: PluginHostContext) -> [UInt8]
    func clockUnixMs() -> UInt64
    func clockMonotonicNs() -> UInt64

    // kv — every returned buffer is allocated with malloc; `buf_free` frees it with free().
    func kvGet(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer, snapshot: AnyObject?) throws(HostError)
        -> mn_buf?
    func kvPut(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
        throws(HostError)
    func kvDelete(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer) throws(HostError)
    func kvBatchBegin(_ plugin: PluginHostContext) throws(HostError) -> AnyObject
    func kvBatchPut(_ plugin: PluginHostContext, batch: AnyObject, key: UnsafeRawBufferPointer,
                    value: UnsafeRawBufferPointer) throws(HostError)
    func kvBatchDelete(_ plugin: PluginHostContext, batch: AnyObject, key: UnsafeRawBufferPointer) throws(HostError)
    func kvBatchCommit(_ plugin: PluginHostContext, batch: AnyObject) throws(HostError)
    func kvSnapshotOpen(_ plugin: PluginHostContext) throws(HostError) -> AnyObject
    func kvSnapshotRelease(_ plugin: PluginHostContext, snapshot: AnyObject)
    /// Visits keys with `prefix` that are >= `start`, ascending, until `visit` returns false.
    func kvScan(_ plugin: PluginHostContext, snapshot: AnyObject?, prefix: UnsafeRawBufferPointer,
                start: UnsafeRawBufferPointer, visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool)
        throws(HostError)

    // crypto
    func hashBlake2b256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer)
    func hashSHA256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer)
    func ed25519Verify(publicKey: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer,
                       signature: UnsafeRawBufferPointer) -> Bool
    func randomBytes(into out: UnsafeMutableRawBufferPointer)

    // sign — `message` is already scoped by the bridge (see ed25519_sign in plugin.h).
    func ed25519PublicKey(_ plugin: PluginHostContext, keyID: String) throws(HostError) -> [UInt8]
    func ed25519Sign(_ plugin: PluginHostContext, keyID: String, message: UnsafeRawBufferPointer,
                     into out: UnsafeMutableRawPointer) throws(HostError)

    // bus
    func busSubscribe(_ plugin: PluginHostContext, topic: String) throws(HostError) -> mn_subscription_id
    func busUnsubscribe(_ plugin: PluginHostContext, subscription: mn_subscription_id) throws(HostError)
    func busPublish(_ plugin: PluginHostContext, topic: String, payload: UnsafeRawBufferPointer) throws(HostError)
        -> UInt32
    /// How many would get a message published on `topic` now: subscribed plugins, and the node's clients of the
    /// topic's stream when `plugin` owns it (ABI 1.3).
    func busListeners(_ plugin: PluginHostContext, topic: String) throws(HostError) -> UInt32
    /// Sends a request; the backend later calls `plugin.instance?.deliverReply(...)` exactly once on the
    /// requester's executor.
    func busRequest(_ plugin: PluginHostContext, topic: String, payload: UnsafeRawBufferPointer, timeoutMs: UInt32,
                    reply: BusReplyCallback) throws(HostError)
    func busReply(_ plugin: PluginHostContext, token: mn_reply_token, payload: UnsafeRawBufferPointer)
        throws(HostError)

    // timer
    func timerStart(_ plugin: PluginHostContext, delayMs: UInt64, intervalMs: UInt64, callback: TimerCallback)
        throws(HostError) -> mn_timer_id
    func timerCancel(_ plugin: PluginHostContext, timer: mn_timer_id) throws(HostError)

    // http — method is upper case or "*"; path is validated ("/..." with an optional final "/*").
    func httpRoute(_ plugin: PluginHostContext, method: String, path: String, handler: HTTPHandler) throws(HostError)

    // service — the name is validated and starts with "<plugin>." for exports.
    func serviceExport(_ plugin: PluginHostContext, name: String, major: UInt32, minor: UInt32,
                       table: UnsafeRawPointer, size: Int) throws(HostError)
    func serviceLookup(_ plugin: PluginHostContext, name: String, major: UInt32, minMinor: UInt32)
        throws(HostError) -> (table: UnsafeRawPointer, minor: UInt32, size: Int)

    // metrics — names are validated ([a-z_][a-z0-9_]*); histogram buckets ascending.
    func metricRegister(_ plugin: PluginHostContext, kind: MetricKind, name: String, help: String,
                        buckets: [Double]) throws(HostError) -> mn_metric_id
    func metricCounterAdd(_ plugin: PluginHostContext, metric: mn_metric_id, delta: UInt64) throws(HostError)
    func metricGaugeSet(_ plugin: PluginHostContext, metric: mn_metric_id, value: Double) throws(HostError)
    func metricHistogramObserve(_ plugin: PluginHostContext, metric: mn_metric_id, value: Double) throws(HostError)

    // net (ABI 1.1) — `protocol` is validated; the host prefixes "<plugin>/" (see NetProtocolTable, NetEnvelope).
    func netRegister(_ plugin: PluginHostContext, protocol name: String, callback: NetReceiveCallback) throws(HostError)
    func netSend(_ plugin: PluginHostContext, to peer: PeerID, protocol name: String, message: UnsafeRawBufferPointer)
        throws(HostError)
    func netBroadcast(_ plugin: PluginHostContext, protocol name: String, message: UnsafeRawBufferPointer)
        throws(HostError) -> UInt32
    func netPeers(_ plugin: PluginHostContext) throws(HostError) -> [PeerStatus]
    /// Replaces the plugin's watcher; the backend then reports every connected peer as up.
    func netWatchPeers(_ plugin: PluginHostContext, callback: NetPeerEventCallback) throws(HostError)
    func netLocalKey(_ plugin: PluginHostContext) throws(HostError) -> PeerID

    /// A plugin called a function of a capability it was not granted; `count` is how many times it called that
    /// function so far. Called for every denial: throttle logging here.
    func denied(_ plugin: PluginHostContext, function: String, capability: String, count: Int)
}
