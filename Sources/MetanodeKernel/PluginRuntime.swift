import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeHostBridge
import NIOCore
import Prometheus
import Synchronization

/// The kernel's record of one loaded plugin: its package, executor, instance and everything it registered.
public final class PluginRuntime: @unchecked Sendable {
    public enum Status: Sendable, Equatable {
        case loaded
        case starting
        case running
        case failed(String)
        case stopping
        case stopped

        public var name: String {
            switch self {
            case .loaded: "loaded"
            case .starting: "starting"
            case .running: "running"
            case .failed: "failed"
            case .stopping: "stopping"
            case .stopped: "stopped"
            }
        }

        public var reason: String? {
            if case .failed(let reason) = self { return reason }
            return nil
        }
    }

    public let slot: Int
    public let name: String
    /// The name's UTF-8 bytes, allocated once and never freed (runtimes live as long as the process): bus messages
    /// carry it as the sender without reference counting.
    let nameBytes: UnsafeRawBufferPointer
    public let package: PluginPackage
    public let grants: HostCapabilities
    public let bundled: Bool
    /// The validated JSON config handed to on_init.
    public let config: [UInt8]
    /// Key prefix of the plugin's namespace in RocksDB (see Kernel.namespacePrefix).
    let namespace: [UInt8]
    /// The same bytes in memory that is never freed, for the kv hot path (no reference counting per call).
    let namespaceBytes: UnsafeRawBufferPointer
    let executor: PluginExecutor
    private let instanceBox: InstanceBox
    public internal(set) var instance: PluginInstance? {
        get { instanceBox.instance }
        set { instanceBox.instance = newValue }
    }
    /// Exported functions resolved with dlsym at load: name → (symbol address, prototype).
    var exports: [String: (address: UnsafeMutableRawPointer, prototype: CPrototype)] = [:]

    private let statusLock = HostLock(Status.loaded)
    let routes = HostLock(HTTPRouteTable())
    let metrics = HostLock([PluginMetric]())
    let timers = HostLock(TimerTable())

    init(slot: Int, package: PluginPackage, grants: HostCapabilities, bundled: Bool, config: [UInt8],
         namespace: [UInt8]) {
        self.slot = slot
        self.name = package.manifest.name
        let utf8 = Array(package.manifest.name.utf8)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(utf8.count, 1), alignment: 1)
        storage.copyBytes(from: utf8)
        self.nameBytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[..<utf8.count])
        self.package = package
        self.grants = grants
        self.bundled = bundled
        self.config = config
        self.namespace = namespace
        let prefix = UnsafeMutableRawBufferPointer.allocate(byteCount: max(namespace.count, 1), alignment: 1)
        prefix.copyBytes(from: namespace)
        self.namespaceBytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(prefix)[..<namespace.count])
        let box = InstanceBox()
        self.instanceBox = box
        self.executor = PluginExecutor(
            name: package.manifest.name, messageDepthMax: Int(MN_MAILBOX_DEPTH_MAX),
            deliver: { topic, payload, sender, replyToken in
                box.instance?.deliver(topic: topic, payload: payload, sender: sender, replyToken: replyToken)
            },
            deliverNet: { callback, peer, message in
                box.instance?.deliverNet(callback, from: peer, message: message)
            })
    }

    public var status: Status {
        get { statusLock.withLock { $0 } }
        set {
            statusLock.withLock { $0 = newValue }
            switch newValue {
            case .running, .starting: accepting.store(true, ordering: .releasing)
            default: accepting.store(false, ordering: .releasing)
            }
        }
    }

    /// Whether bus messages are queued for it: read on every publish, so an atomic rather than the status lock.
    private let accepting = Atomic<Bool>(false)

    var isAcceptingMessages: Bool { accepting.load(ordering: .acquiring) }

    public var version: SemanticVersion { package.manifest.version }
}

/// Set once at load, before the executor sees any message.
private final class InstanceBox: @unchecked Sendable {
    var instance: PluginInstance?
}

/// A metric a plugin registered.
enum PluginMetric {
    case counter(name: String, Counter)
    case gauge(name: String, Gauge)
    case histogram(name: String, ValueHistogram)

    var name: String {
        switch self {
        case .counter(let name, _), .gauge(let name, _), .histogram(let name, _): name
        }
    }
}

struct TimerTable {
    var nextID: mn_timer_id = 1
    var live: [mn_timer_id: TimerState] = [:]
}

/// One live timer. `cancelled` is checked on the executor right before the callback, so a cancel takes effect even
/// for a firing already queued.
final class TimerState: @unchecked Sendable {
    let id: mn_timer_id
    let callback: TimerCallback
    let intervalMs: UInt64
    let cancelled = Atomic<Bool>(false)
    var scheduled: Scheduled<Void>?  // guarded by the runtime's timer lock

    init(id: mn_timer_id, callback: TimerCallback, intervalMs: UInt64) {
        self.id = id
        self.callback = callback
        self.intervalMs = intervalMs
    }
}
