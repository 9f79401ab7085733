import Foundation
import Logging
import MetanodeABI
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeStorage
import NIOCore
import NIOPosix
import Prometheus
import Synchronization

/// The plugin host: it owns storage, the node key, the bus, timers, services and metrics, and serves every plugin's
/// host vtable (through MetanodeHostBridge, which has already validated each argument when these methods run).
public final class Kernel: PluginHostBackend, @unchecked Sendable {
    public let logger: Logger
    public let store: Store
    let nodeKey: Ed25519KeyPair
    public var nodePublicKey: Ed25519PublicKey { nodeKey.publicKey }
    public let metricsRegistry = PrometheusCollectorRegistry()
    let timerGroup: MultiThreadedEventLoopGroup
    var timerLoop: any EventLoop { timerGroup.next() }
    private(set) var bus: Bus!
    let crashGuard: CrashGuard?
    /// Loaded plugins by slot. Appended to only while loading, before any plugin runs.
    public private(set) var runtimes: [PluginRuntime] = []
    private let services = HostLock([String: ExportedService]())
    private let pluginLoggers = HostLock([Int: Logger]())
    private let busStopped = Atomic<Bool>(false)
    let net: KernelNet
    /// Plugin hooks (not one plugin's timeouts) get this long before an HTTP request answers 504.
    public var httpHandlerTimeoutMs: Int64 = 30_000

    private let busDropped: Counter
    private let capabilityDenied: Counter
    private let httpRequests: Counter
    /// Full metric names on the registry and who owns each ("" for the kernel). swift-prometheus stops the process
    /// when a name is registered again with another type or help text, and plugin names map onto full names many to
    /// one ("metric" + "x_total" and "metric-x" + "total"), so a taken name must be refused before the registry sees it.
    private let metricOwners = HostLock([String: String]())

    struct ExportedService {
        let owner: String
        let major: UInt32
        let minor: UInt32
        let table: UnsafeRawPointer
        let size: Int
    }

    public init(store: Store, nodeKey: Ed25519KeyPair, logger: Logger, crashGuard: CrashGuard?) {
        self.store = store
        self.nodeKey = nodeKey
        self.logger = logger
        self.crashGuard = crashGuard
        self.timerGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.net = KernelNet(metrics: metricsRegistry)
        let dropped = MetricNameDescriptor(
            namespace: "metanode", subsystem: "bus", metricName: "dropped", unitName: "total",
            helpText: "Bus messages dropped because a subscriber's mailbox was full")
        let denied = MetricNameDescriptor(
            namespace: "metanode", subsystem: "plugin", metricName: "capability_denied", unitName: "total",
            helpText: "Host calls refused because the plugin lacks the capability")
        let requests = MetricNameDescriptor(
            namespace: "metanode", subsystem: "http", metricName: "plugin_requests", unitName: "total",
            helpText: "HTTP requests routed to plugins")
        busDropped = metricsRegistry.makeCounter(descriptor: dropped)
        capabilityDenied = metricsRegistry.makeCounter(descriptor: denied)
        httpRequests = metricsRegistry.makeCounter(descriptor: requests)
        metricOwners.withLock { owners in
            for kernelMetric in [dropped, denied, requests] { owners[kernelMetric.name] = "" }
        }
        bus = Bus(timerLoop: timerGroup.next(), runtime: { [unowned self] slot in self.runtime(slot: slot) },
                  onDrop: { [unowned self] _ in self.busDropped.increment() })
    }

    // MARK: Looking plugins up

    @inline(__always)
    func runtime(slot: Int) -> PluginRuntime? { slot < runtimes.count ? runtimes[slot] : nil }

    @inline(__always)
    func runtime(_ plugin: PluginHostContext) -> PluginRuntime { unsafeDowncast(plugin.hostObject!, to: PluginRuntime.self) }

    public func runtime(named name: String) -> PluginRuntime? { runtimes.first { $0.name == name } }

    func register(_ runtime: PluginRuntime) {
        precondition(runtime.slot == runtimes.count, "plugins are registered in slot order")
        runtimes.append(runtime)
        var pluginLogger = logger
        pluginLogger[metadataKey: "plugin"] = "\(runtime.name)"
        pluginLoggers.withLock { $0[runtime.slot] = pluginLogger }
    }

    // MARK: Lifecycle

    /// Runs on_init then on_start on the plugin's executor.
    public func start(_ runtime: PluginRuntime) async throws(MetanodeError) {
        guard let instance = runtime.instance else {
            throw MetanodeError(.internal, "plugin \(runtime.name) was not loaded")
        }
        runtime.status = .starting
        let config = runtime.config
        let result: Result<Void, HostError> = await runtime.executor.run {
            do throws(HostError) {
                try instance.initialize(config: config)
            } catch {
                return .failure(error)  // initialize already stopped serving the context
            }
            do throws(HostError) {
                try instance.start()
                return .success(())
            } catch {
                instance.stop()  // on_init succeeded, so the plugin gets on_stop to release what it set up
                return .failure(error)
            }
        }
        if case .failure(let error) = result {
            runtime.status = .failed(error.message)
            cleanUp(runtime)
            throw MetanodeError(.internal, error.message)
        }
        runtime.status = .running
    }

    /// Calls on_stop on the plugin's executor (once) and drops what it registered.
    public func stop(_ runtime: PluginRuntime) async {
        switch runtime.status {
        case .running, .starting: break
        default: return
        }
        runtime.status = .stopping
        bus.removeAll(slot: runtime.slot)
        cancelTimers(runtime)
        if let instance = runtime.instance { await runtime.executor.run { instance.stop() } }
        cleanUp(runtime)
        runtime.status = .stopped
    }

    private func cleanUp(_ runtime: PluginRuntime) {
        bus.removeAll(slot: runtime.slot)
        cancelTimers(runtime)
        runtime.routes.withLock { $0.removeAll() }
        net.removeAll(slot: runtime.slot)
        services.withLock { services in services = services.filter { $0.value.owner != runtime.name } }
    }

    /// Stops the bus's clock: pending bus requests and plugin timers never fire again. Call after every plugin has
    /// stopped. Idempotent.
    public func stopBus() {
        guard !busStopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        bus.cancelPendingRequests()
        try? timerGroup.syncShutdownGracefully()
    }

    /// Stops the bus (if still running) and closes storage. Call after every plugin has stopped.
    public func close() {
        stopBus()
        store.close()
    }

    // MARK: HTTP

    public func handleHTTP(plugin name: String, request: HTTPRequestParts) async -> HTTPResponseParts {
        httpRequests.increment()
        guard let runtime = runtime(named: name) else {
            return .text(404, "no plugin named '\(name)' is loaded on this node\n")
        }
        guard runtime.status == .running, let instance = runtime.instance else {
            return .text(503, "plugin \(name) is \(runtime.status.name)\n")
        }
        let handler: HTTPHandler
        switch runtime.routes.withLock({ $0.match(method: request.method, path: request.path) }) {
        case .handler(let found): handler = found
        case .methodNotAllowed: return .text(405, "plugin \(name) has no \(request.method) handler for \(request.path)\n")
        case .notFound: return .text(404, "plugin \(name) has no route \(request.path)\n")
        }
        let timeout = httpHandlerTimeoutMs
        let outcome: HTTPHandlerOutcome = await runtime.executor.run(timeoutMs: timeout, on: timerLoop, onTimeout: {
            .answered(.text(504,
                            "plugin \(name) did not answer \(request.method) \(request.path) within \(timeout) ms\n"))
        }, onLate: { late in
            // The client already got 504; a deferral the slow handler opened must not stay open (it counts against
            // MN_HTTP_DEFERRED_MAX), so it expires now and the plugin's answer finds MN_ERR_NOT_FOUND.
            if case .deferred(let deferral) = late {
                instance.context.expireDeferral(deferral, answer: deferral.timeoutAnswer)
            }
        }) {
            instance.handleHTTP(handler, request: request)
        }
        switch outcome {
        case .answered(let answer): return answer
        case .deferred(let deferral): return await awaitDeferred(deferral, of: instance)
        }
    }

    /// Set once the node starts shutting down: deferred HTTP responses answer 503 from then on (`drainDeferredHTTP`).
    private let deferredHTTPDrained = Atomic<Bool>(false)

    /// Waits, without holding the plugin's executor, for the answer to a deferred response: the plugin's, or 504 once
    /// `timeoutMs` passes, or 503 when the plugin stops or the node shuts down. The continuation is resumed exactly
    /// once: `whenAnswered` delivers once, and only whoever removes the deferral from its plugin's table completes it.
    private func awaitDeferred(_ deferral: DeferredHTTPResponse, of instance: PluginInstance) async
        -> HTTPResponseParts
    {
        let context = instance.context
        return await withCheckedContinuation { (continuation: CheckedContinuation<HTTPResponseParts, Never>) in
            let timeout = timerLoop.scheduleTask(in: .milliseconds(Int64(deferral.timeoutMs))) {
                context.expireDeferral(deferral, answer: deferral.timeoutAnswer)
            }
            deferral.whenAnswered { answer in
                timeout.cancel()
                continuation.resume(returning: answer)
            }
            // Checked after the deferral exists, so one opened while the node began shutting down is not missed.
            if deferredHTTPDrained.load(ordering: .acquiring) {
                context.expireDeferral(deferral, answer: deferral.shutdownAnswer)
            }
        }
    }

    /// Answers every deferred HTTP request still waiting for its plugin with 503, now and from now on. The node calls
    /// it when shutdown begins: the HTTP server waits for open requests before the plugins stop, and a deferred
    /// response may be an hour away.
    public func drainDeferredHTTP() {
        deferredHTTPDrained.store(true, ordering: .releasing)
        for runtime in runtimes {
            runtime.instance?.context.expireAllDeferrals { $0.shutdownAnswer }
        }
    }

    // MARK: Exported functions (libffi)

    public enum CallArguments: Sendable {
        case commandLine([String])
        case json([JSONValue])
    }

    public func call(plugin name: String, function: String, arguments: CallArguments) async throws(MetanodeError)
        -> FFIResult
    {
        guard let runtime = runtime(named: name) else {
            throw MetanodeError(.notFound, "no plugin named '\(name)' is loaded on this node")
        }
        guard runtime.status == .running, let instance = runtime.instance else {
            throw MetanodeError(.stopped, "plugin \(name) is \(runtime.status.name)")
        }
        guard let export = runtime.exports[function] else {
            let known = runtime.exports.keys.sorted()
            throw MetanodeError(.notFound, "plugin \(name) exports no function '\(function)'"
                + (known.isEmpty ? " (it exports none)" : " (it exports: \(known.joined(separator: ", ")))"))
        }
        let values: [FFIArgument]
        switch arguments {
        case .commandLine(let strings): values = try export.prototype.arguments(fromCommandLine: strings)
        case .json(let json): values = try export.prototype.arguments(fromJSON: json)
        }
        let address = UInt(bitPattern: export.address)
        let prototype = export.prototype
        let result: Result<FFIResult, MetanodeError> = await runtime.executor.run {
            Result { () throws(MetanodeError) in
                try FFICall.invoke(UnsafeMutableRawPointer(bitPattern: address)!, prototype: prototype,
                                   arguments: values, instance: instance)
            }
        }
        return try result.get()
    }

    // MARK: Metrics text

    public func metricsText() -> String { metricsRegistry.emitToString() }

    /// Messages at most kept per HTTP event stream for a client that reads slower than they come; older ones go.
    public static let streamBufferMax = 1024
    public static let streamKeepaliveMs = 15_000

    /// The payloads plugin `plugin` publishes on bus topic "<plugin>.stream.<name>", from now until the consumer
    /// stops iterating (HTTP event streams), with an empty element every `streamKeepaliveMs` (empty payloads
    /// published by the plugin are not relayed, so an empty element is always a keepalive).
    /// `stop` ends the stream from outside (at shutdown).
    public func stream(plugin: String, name: String) -> (events: AsyncStream<[UInt8]>, stop: @Sendable () -> Void) {
        let topic = "\(plugin).stream.\(name)"
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(Self.streamBufferMax))
        let stop: @Sendable () -> Void = { continuation.finish() }
        guard let bus else {
            continuation.finish()
            return (stream, stop)
        }
        let id = bus.tap(topic: topic) { payload in if !payload.isEmpty { continuation.yield(payload) } }
        // An empty element now and then lets the consumer notice a client that went away.
        let keepalive = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Self.streamKeepaliveMs))
                continuation.yield([])
            }
        }
        continuation.onTermination = { [weak bus] _ in
            keepalive.cancel()
            bus?.untap(topic: topic, id: id)
        }
        return (stream, stop)
    }

    // MARK: - PluginHostBackend

    public func log(_ plugin: PluginHostContext, level: Int32, message: String) {
        let pluginLogger = pluginLoggers.withLock { $0[plugin.slot] } ?? logger
        let mapped: Logger.Level = switch level {
        case MN_LOG_TRACE: .trace
        case MN_LOG_DEBUG: .debug
        case MN_LOG_INFO: .info
        case MN_LOG_WARN: .warning
        default: .error
        }
        pluginLogger.log(level: mapped, "\(message)")
    }

    public func config(_ plugin: PluginHostContext) -> [UInt8] { runtime(plugin).config }

    public func clockUnixMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    public func clockMonotonicNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    // kv: every key is stored under the plugin's namespace prefix, assembled on the stack.

    @inline(__always)
    private func withNamespacedKey<T>(_ plugin: PluginHostContext, _ key: UnsafeRawBufferPointer,
                                      _ body: (UnsafeRawBufferPointer) throws(MetanodeError) -> T) throws(HostError) -> T
    {
        let namespace = runtime(plugin).namespaceBytes
        let result: Result<T, MetanodeError> = withUnsafeTemporaryAllocation(
            byteCount: namespace.count + key.count, alignment: 1
        ) { buffer in
            buffer.copyMemory(from: namespace)
            if key.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: buffer[namespace.count...]).copyMemory(from: key)
            }
            return Result { () throws(MetanodeError) in try body(UnsafeRawBufferPointer(buffer)) }
        }
        do {
            return try result.get()
        } catch {
            throw HostError(error.code == .stopped ? MN_ERR_STOPPED : MN_ERR_IO, error.message)
        }
    }

    public func kvGet(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer, snapshot: AnyObject?)
        throws(HostError) -> mn_buf?
    {
        try withNamespacedKey(plugin, key) { full throws(MetanodeError) in
            guard let value = try store.getMalloced(full, snapshot: snapshot as? Snapshot) else { return nil }
            return mn_buf(ptr: value.baseAddress?.assumingMemoryBound(to: UInt8.self), len: value.count)
        }
    }

    public func kvPut(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
        throws(HostError)
    {
        try withNamespacedKey(plugin, key) { full throws(MetanodeError) in try store.put(full, value) }
    }

    public func kvDelete(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer) throws(HostError) {
        try withNamespacedKey(plugin, key) { full throws(MetanodeError) in try store.delete(full) }
    }

    public func kvBatchBegin(_ plugin: PluginHostContext) throws(HostError) -> AnyObject { WriteBatch() }

    public func kvBatchPut(_ plugin: PluginHostContext, batch: AnyObject, key: UnsafeRawBufferPointer,
                           value: UnsafeRawBufferPointer) throws(HostError) {
        let batch = batch as! WriteBatch
        try withNamespacedKey(plugin, key) { full throws(MetanodeError) in batch.put(full, value) }
    }

    public func kvBatchDelete(_ plugin: PluginHostContext, batch: AnyObject, key: UnsafeRawBufferPointer)
        throws(HostError)
    {
        let batch = batch as! WriteBatch
        try withNamespacedKey(plugin, key) { full throws(MetanodeError) in batch.delete(full) }
    }

    public func kvBatchCommit(_ plugin: PluginHostContext, batch: AnyObject) throws(HostError) {
        do {
            try store.write(batch as! WriteBatch)
        } catch {
            throw HostError(error.code == .stopped ? MN_ERR_STOPPED : MN_ERR_IO, error.message)
        }
    }

    public func kvSnapshotOpen(_ plugin: PluginHostContext) throws(HostError) -> AnyObject {
        do {
            return try store.snapshot()
        } catch {
            throw HostError(error.code == .stopped ? MN_ERR_STOPPED : MN_ERR_IO, error.message)
        }
    }

    public func kvSnapshotRelease(_ plugin: PluginHostContext, snapshot: AnyObject) {
        (snapshot as? Snapshot)?.release()
    }

    public func kvScan(_ plugin: PluginHostContext, snapshot: AnyObject?, prefix: UnsafeRawBufferPointer,
                       start: UnsafeRawBufferPointer, visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool)
        throws(HostError)
    {
        let namespace = runtime(plugin).namespace
        let fullPrefix = namespace + Array(prefix)
        let fullStart: [UInt8]? = start.isEmpty ? nil : namespace + Array(start)
        do {
            try store.scan(prefix: fullPrefix, from: fullStart, snapshot: snapshot as? Snapshot) { key, value in
                visit(UnsafeRawBufferPointer(rebasing: key[namespace.count...]), value)
            }
        } catch {
            throw HostError(MN_ERR_IO, error.message)
        }
    }

    // crypto

    public func hashBlake2b256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        Hash.blake2b256(data, into: out)
    }

    public func hashSHA256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        Hash.sha256(data, into: out)
    }

    public func ed25519Verify(publicKey: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer,
                              signature: UnsafeRawBufferPointer) -> Bool {
        guard let key = try? Ed25519PublicKey(bytes: Array(publicKey)) else { return false }
        return key.isValidSignature(signature, for: message)
    }

    public func randomBytes(into out: UnsafeMutableRawBufferPointer) { SecureRandom.fill(out) }

    public func ed25519PublicKey(_ plugin: PluginHostContext, keyID: String) throws(HostError) -> [UInt8] {
        guard keyID == "node" else { throw unknownKey(keyID) }
        return nodeKey.publicKey.bytes
    }

    public func ed25519Sign(_ plugin: PluginHostContext, keyID: String, message: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawPointer) throws(HostError) {
        guard keyID == "node" else { throw unknownKey(keyID) }
        nodeKey.sign(message, into: out)
    }

    private func unknownKey(_ keyID: String) -> HostError {
        .notFound("unknown key id '\(keyID)'; this node has one key id: \"node\"")
    }

    // bus

    public func busSubscribe(_ plugin: PluginHostContext, topic: String) throws(HostError) -> mn_subscription_id {
        try bus.subscribe(slot: plugin.slot, pattern: topic)
    }

    public func busUnsubscribe(_ plugin: PluginHostContext, subscription: mn_subscription_id) throws(HostError) {
        try bus.unsubscribe(slot: plugin.slot, id: subscription)
    }

    public func busPublish(_ plugin: PluginHostContext, topic: String, payload: UnsafeRawBufferPointer)
        throws(HostError) -> UInt32
    {
        bus.publish(from: runtime(plugin), topic: topic, payload: payload)
    }

    public func busListeners(_ plugin: PluginHostContext, topic: String) throws(HostError) -> UInt32 {
        bus.listeners(of: topic, publisher: runtime(plugin))
    }

    public func busRequest(_ plugin: PluginHostContext, topic: String, payload: UnsafeRawBufferPointer,
                           timeoutMs: UInt32, reply: BusReplyCallback) throws(HostError) {
        bus.request(from: runtime(plugin), topic: topic, payload: payload, timeoutMs: timeoutMs, reply: reply)
    }

    public func busReply(_ plugin: PluginHostContext, token: mn_reply_token, payload: UnsafeRawBufferPointer)
        throws(HostError)
    {
        try bus.reply(from: runtime(plugin), token: token, payload: payload)
    }

    // timers

    public func timerStart(_ plugin: PluginHostContext, delayMs: UInt64, intervalMs: UInt64, callback: TimerCallback)
        throws(HostError) -> mn_timer_id
    {
        let runtime = runtime(plugin)
        let timer: TimerState? = runtime.timers.withLock { table in
            guard table.live.count < Int(MN_TIMERS_MAX) else { return nil }
            let timer = TimerState(id: table.nextID, callback: callback, intervalMs: intervalMs)
            table.nextID += 1
            table.live[timer.id] = timer
            return timer
        }
        guard let timer else {
            throw HostError(MN_ERR_LIMIT, "plugin has \(MN_TIMERS_MAX) live timers, the limit; cancel some first")
        }
        schedule(timer, in: runtime, afterMs: delayMs)
        return timer.id
    }

    private func schedule(_ timer: TimerState, in runtime: PluginRuntime, afterMs delay: UInt64) {
        let scheduled = timerLoop.scheduleTask(in: .milliseconds(Int64(delay))) { [weak self, weak runtime] in
            guard let self, let runtime, !timer.cancelled.load(ordering: .acquiring) else { return }
            runtime.executor.submit {
                guard !timer.cancelled.load(ordering: .acquiring) else { return }
                if timer.intervalMs == 0 { _ = runtime.timers.withLock { $0.live.removeValue(forKey: timer.id) } }
                runtime.instance?.fire(timer.callback, id: timer.id)
            }
            if timer.intervalMs > 0 { self.schedule(timer, in: runtime, afterMs: timer.intervalMs) }
        }
        runtime.timers.withLock { _ in timer.scheduled = scheduled }
        if timer.cancelled.load(ordering: .acquiring) { scheduled.cancel() }
    }

    public func timerCancel(_ plugin: PluginHostContext, timer id: mn_timer_id) throws(HostError) {
        let runtime = runtime(plugin)
        guard let timer = runtime.timers.withLock({ $0.live.removeValue(forKey: id) }) else {
            throw .notFound("no live timer \(id) (it may have fired already)")
        }
        timer.cancelled.store(true, ordering: .releasing)
        runtime.timers.withLock { _ in timer.scheduled }?.cancel()
    }

    private func cancelTimers(_ runtime: PluginRuntime) {
        let timers = runtime.timers.withLock { table -> [TimerState] in
            defer { table.live.removeAll() }
            return Array(table.live.values)
        }
        for timer in timers {
            timer.cancelled.store(true, ordering: .releasing)
            runtime.timers.withLock { _ in timer.scheduled }?.cancel()
        }
    }

    // http

    public func httpRoute(_ plugin: PluginHostContext, method: String, path: String, handler: HTTPHandler)
        throws(HostError)
    {
        let result: Result<Void, HostError> = runtime(plugin).routes.withLock { routes in
            Result { () throws(HostError) in try routes.add(method: method, path: path, handler: handler) }
        }
        try result.get()
    }

    // services

    public func serviceExport(_ plugin: PluginHostContext, name: String, major: UInt32, minor: UInt32,
                              table: UnsafeRawPointer, size: Int) throws(HostError) {
        let owner = plugin.name
        let existing: String? = services.withLock { services in
            if let existing = services[name] { return existing.owner }
            services[name] = ExportedService(owner: owner, major: major, minor: minor, table: table, size: size)
            return nil
        }
        if let existing { throw HostError(MN_ERR_EXISTS, "service \(name) is already exported by plugin \(existing)") }
    }

    public func serviceLookup(_ plugin: PluginHostContext, name: String, major: UInt32, minMinor: UInt32)
        throws(HostError) -> (table: UnsafeRawPointer, minor: UInt32, size: Int)
    {
        guard let service = services.withLock({ $0[name] }) else {
            throw .notFound("no plugin exports service \(name); is its plugin enabled, and listed in "
                + "\(plugin.name)'s dependencies so that it starts first?")
        }
        guard service.major == major, service.minor >= minMinor else {
            throw HostError(MN_ERR_VERSION, "service \(name) from plugin \(service.owner) is version "
                + "\(service.major).\(service.minor); plugin \(plugin.name) needs \(major).\(minMinor) or a later "
                + "\(major).x")
        }
        return (service.table, service.minor, service.size)
    }

    // metrics

    public func metricRegister(_ plugin: PluginHostContext, kind: MetricKind, name: String, help: String,
                               buckets: [Double]) throws(HostError) -> mn_metric_id {
        let runtime = runtime(plugin)
        let subsystem = "plugin_" + runtime.name.replacingOccurrences(of: "-", with: "_")
        let fullName = "metanode_\(subsystem)_\(name)"
        let result: Result<mn_metric_id, HostError> = runtime.metrics.withLock { metrics in
            guard metrics.count < Int(MN_METRICS_MAX) else {
                return .failure(HostError(MN_ERR_LIMIT, "plugin has \(MN_METRICS_MAX) metrics, the limit"))
            }
            guard !metrics.contains(where: { $0.name == name }) else {
                return .failure(HostError(MN_ERR_EXISTS, "metric \(name) is already registered as \(fullName)"))
            }
            // A histogram also writes <name>_bucket, _count and _sum series; those names are taken too.
            let series = kind == .histogram ? ["", "_bucket", "_count", "_sum"].map { fullName + $0 } : [fullName]
            let clash: (name: String, owner: String)? = metricOwners.withLock { owners in
                if let taken = series.first(where: { owners[$0] != nil }) { return (taken, owners[taken]!) }
                for name in series { owners[name] = runtime.name }
                return nil
            }
            if let clash {
                let holder = clash.owner.isEmpty ? "the kernel uses" : "plugin \(clash.owner) already registered"
                return .failure(HostError(MN_ERR_EXISTS, "metric \(name) would write \(clash.name), which \(holder); "
                    + "choose another name"))
            }
            let descriptor = MetricNameDescriptor(
                namespace: "metanode", subsystem: subsystem, metricName: name, unitName: "", helpText: help)
            switch kind {
            case .counter: metrics.append(.counter(name: name, metricsRegistry.makeCounter(descriptor: descriptor)))
            case .gauge: metrics.append(.gauge(name: name, metricsRegistry.makeGauge(descriptor: descriptor)))
            case .histogram:
                metrics.append(.histogram(
                    name: name, metricsRegistry.makeValueHistogram(descriptor: descriptor, buckets: buckets)))
            }
            return .success(mn_metric_id(metrics.count))
        }
        return try result.get()
    }

    private func metric(_ plugin: PluginHostContext, _ id: mn_metric_id) throws(HostError) -> PluginMetric {
        let found = runtime(plugin).metrics.withLock { metrics -> PluginMetric? in
            guard id >= 1, id <= UInt64(metrics.count) else { return nil }
            return metrics[Int(id - 1)]
        }
        guard let found else { throw .notFound("no metric \(id); register it with metric_register first") }
        return found
    }

    public func metricCounterAdd(_ plugin: PluginHostContext, metric id: mn_metric_id, delta: UInt64) throws(HostError) {
        guard case .counter(_, let counter) = try metric(plugin, id) else {
            throw .invalid("metric \(id) is not a counter")
        }
        counter.increment(by: Int64(clamping: delta))
    }

    public func metricGaugeSet(_ plugin: PluginHostContext, metric id: mn_metric_id, value: Double) throws(HostError) {
        guard case .gauge(_, let gauge) = try metric(plugin, id) else { throw .invalid("metric \(id) is not a gauge") }
        gauge.set(to: value)
    }

    public func metricHistogramObserve(_ plugin: PluginHostContext, metric id: mn_metric_id, value: Double)
        throws(HostError)
    {
        guard case .histogram(_, let histogram) = try metric(plugin, id) else {
            throw .invalid("metric \(id) is not a histogram")
        }
        histogram.record(value)
    }

    public func denied(_ plugin: PluginHostContext, function: String, capability: String, count: Int) {
        capabilityDenied.increment()
        // Every denial counts; the log says the first and then every 1000th, so a looping plugin cannot flood it.
        guard count == 1 || count % 1000 == 0 else { return }
        let pluginLogger = pluginLoggers.withLock { $0[plugin.slot] } ?? logger
        pluginLogger.warning(
            Logger.Message(stringLiteral: "denied \(function): capability '\(capability)' was not granted (\(count) denied call(s) so far); grant "
                + "it by disabling \(plugin.name) and enabling it again with --grant \(capability) and its other grants"))
    }
}

extension HTTPResponseParts {
    static func text(_ status: UInt16, _ body: String) -> HTTPResponseParts {
        HTTPResponseParts(status: status, contentType: "text/plain; charset=utf-8", body: Array(body.utf8))
    }
}

extension PluginExecutor {
    /// Runs `body` on the executor; if it has not finished after `timeoutMs`, answers `onTimeout()` instead (the plugin
    /// code keeps running; its late result goes to `onLate`, on the executor, and is otherwise dropped).
    func run<T: Sendable>(timeoutMs: Int64, on loop: any EventLoop, onTimeout: @escaping @Sendable () -> T,
                          onLate: @escaping @Sendable (T) -> Void = { _ in },
                          _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let once = OnceFlag()
            let timeout = loop.scheduleTask(in: .milliseconds(timeoutMs)) {
                if once.claim() { continuation.resume(returning: onTimeout()) }
            }
            submit {
                let value = body()
                timeout.cancel()
                if once.claim() { continuation.resume(returning: value) } else { onLate(value) }
            }
        }
    }
}

/// One-shot claim shared by a completion and its timeout: the first to claim it wins.
final class OnceFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func claim() -> Bool { !flag.exchange(true, ordering: .acquiringAndReleasing) }
}
