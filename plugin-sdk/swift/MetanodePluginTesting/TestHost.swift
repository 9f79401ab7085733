import CSodium
@_exported import MetanodeABI
@_exported import MetanodeHostBridge
@_exported import MetanodePluginKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An in-memory, deterministic host for plugins: plugin logic is tested without a node, dlopen or threads.
///
/// Plugins get real host vtables from MetanodeHostBridge (the same validation, denial and stopped handling as the
/// kernel); this type is the backend behind them. Everything runs on the test's thread: bus deliveries, replies and
/// timer callbacks are queued and run by `runUntilIdle()` or `advance(byMs:)`, and time moves only when a test moves
/// it. Signatures are made with a fixed node key and `random_bytes` is a seeded stream, so runs are reproducible.
/// A deferred HTTP response (ABI 1.2) may be answered from any thread: `http` waits for it in real time, `send`
/// returns at once and lets the manual clock time it out (TestHost+HTTP.swift).
/// Plugins that talk to other nodes get a network from `attach(_:)`; a `Simulation` runs several hosts on a
/// SimulatedNetwork under one clock.
///
///     let host = TestHost()
///     let hello = try host.load(metanodePluginEntry(), config: #"{"greeting":"hi"}"#)
///     #expect(host.http(hello, "GET", "/hello").text == "hi from hello-swift\n")
///
/// `@unchecked Sendable`: all state sits behind one lock, which is never held while plugin code runs.
public final class TestHost: PluginHostBackend, @unchecked Sendable {
    /// The default node key seed (32 bytes) — signatures made through a default TestHost are the same on every run.
    public static let defaultNodeKeySeed: [UInt8] = Array("metanode-test-host-node-key-seed".utf8)
    /// Wall-clock time at `nowMs == 0`: 2025-01-01T00:00:00Z.
    public static let defaultStartUnixMs: UInt64 = 1_735_689_600_000
    /// Events `runUntilIdle()`/`advance(byMs:)` run before deciding the plugins are looping.
    public static let eventsPerRunMax = 1_000_000
    /// The name bus messages sent by the test itself carry as sender.
    public static let testSender = "test"

    /// The node's Ed25519 identity key (key id "node").
    public let nodePublicKey: [UInt8]
    private let nodeSecretKey: [UInt8]
    private let randomSeed: [UInt8]
    private let startUnixMs: UInt64
    let state = HostLock(State())

    /// `randomSeed` (any length) seeds `random_bytes`; by default it is derived from `nodeKeySeed`. A simulation gives a
    /// restarted node a new one, as a real restart gets fresh randomness.
    /// `storage`: each plugin's stored keys by plugin name, as `storedData` returned them from a host that crashed or
    /// stopped: the data directory a restarted node finds. A plugin loaded under that name starts with them.
    public init(nodeKeySeed: [UInt8] = TestHost.defaultNodeKeySeed, startUnixMs: UInt64 = TestHost.defaultStartUnixMs,
                randomSeed: [UInt8]? = nil, storage: [String: [[UInt8]: [UInt8]]] = [:]) {
        precondition(sodium_init() >= 0, "libsodium could not be initialized")
        precondition(nodeKeySeed.count == Int(crypto_sign_SEEDBYTES), "the node key seed must be 32 bytes")
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var secretKey = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        let rc = crypto_sign_seed_keypair(&publicKey, &secretKey, nodeKeySeed)
        precondition(rc == 0, "crypto_sign_seed_keypair failed")
        self.nodePublicKey = publicKey
        self.nodeSecretKey = secretKey
        var seed = [UInt8](repeating: 0, count: 32)
        let tag = Array("metanode-test-host-random".utf8) + (randomSeed ?? nodeKeySeed)
        _ = crypto_generichash(&seed, 32, tag, UInt64(tag.count), nil, 0)
        self.randomSeed = seed
        self.startUnixMs = startUnixMs
        state.withLock { $0.carriedStorage = storage }
    }

    // MARK: - State

    struct State {
        var plugins: [PluginState] = []
        /// Storage from an earlier incarnation, taken by the plugin of that name when it loads.
        var carriedStorage: [String: [[UInt8]: [UInt8]]] = [:]
        var nowMs: UInt64 = 0
        var queue: [Event] = []
        var queueHead = 0
        var nextSubscription: UInt64 = 1
        var nextTimer: UInt64 = 1
        var nextMetric: UInt64 = 1
        var nextToken: UInt64 = 1
        var nextRandom: UInt64 = 0
        var subscriptions: [BusSubscription] = []
        var requests: [mn_reply_token: PendingRequest] = [:]
        var services: [String: ServiceEntry] = [:]
        var logs: [LogLine] = []
        var denials: [Denial] = []
        var droppedMessages = 0
        var netProtocols = NetProtocolTable()
        var peerWatchers: [Int: NetPeerEventCallback] = [:]
        /// The network this host's plugins talk on (see `attach(_:)` in TestHost+Net.swift).
        var transport: (any PeerTransport)?
        var netCounters = NetCounters()
        /// HTTP requests whose handler deferred the response, until answered or timed out (TestHost+HTTP.swift).
        var deferredHTTP: [PendingHTTP] = []

        var queued: Int { queue.count - queueHead }

        /// The slot of a plugin this host loaded (a TestPlugin from another host is a test bug).
        func owned(_ plugin: TestPlugin) -> Int {
            precondition(plugins.indices.contains(plugin.slot) && plugins[plugin.slot].plugin === plugin,
                         "plugin \(plugin.name) was loaded by another TestHost")
            return plugin.slot
        }

        mutating func enqueue(_ event: Event) { queue.append(event) }

        mutating func dequeue() -> Event? {
            guard queueHead < queue.count else {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
                return nil
            }
            defer { queueHead += 1 }
            return queue[queueHead]
        }

        func queuedEvents(for slot: Int) -> Int {
            queue[queueHead...].reduce(0) { $0 + ($1.slot == slot ? 1 : 0) }
        }
    }

    struct PluginState {
        var plugin: TestPlugin
        var config: [UInt8]
        var kv: [[UInt8]: [UInt8]] = [:]
        var failNextCommit: String?
        var timers: [mn_timer_id: TimerEntry] = [:]
        var routes = HTTPRouteTable()
        var metrics: [mn_metric_id: TestMetric] = [:]
    }

    struct BusSubscription {
        var id: mn_subscription_id
        var slot: Int
        var topic: String
    }

    enum Requester {
        case plugin(slot: Int, callback: BusReplyCallback)
        case test(TestRequest)
    }

    struct PendingRequest {
        var requester: Requester
        var recipients: Set<Int>
        var deadlineMs: UInt64
    }

    struct TimerEntry {
        var dueMs: UInt64
        var intervalMs: UInt64
        var callback: TimerCallback
    }

    struct ServiceEntry {
        var slot: Int
        var plugin: String
        var major: UInt32
        var minor: UInt32
        var table: UnsafeRawPointer
        var size: Int
    }

    enum Event {
        case message(slot: Int, topic: String, payload: [UInt8], sender: String, token: mn_reply_token)
        case reply(Requester, status: mn_status, payload: [UInt8])
        case timer(slot: Int, callback: TimerCallback, id: mn_timer_id)
        /// A message from another node for a plugin's net_register callback (TestHost+Net.swift).
        case net(slot: Int, callback: NetReceiveCallback, peer: PeerID, message: [UInt8])
        case peerEvent(slot: Int, callback: NetPeerEventCallback, peer: PeerID, up: Bool)
        /// A deferred HTTP response's timeout passed on the host's clock: it answers 504.
        case httpTimeout(PendingHTTP)

        var slot: Int? {
            switch self {
            case .httpTimeout: nil
            case .message(let slot, _, _, _, _), .timer(let slot, _, _): slot
            case .net(let slot, _, _, _), .peerEvent(let slot, _, _, _): slot
            case .reply(.plugin(let slot, _), _, _): slot
            case .reply(.test, _, _): nil
            }
        }
    }

    final class BatchObject {
        var operations: [(key: [UInt8], value: [UInt8]?)] = []
    }

    final class SnapshotObject {
        let data: [[UInt8]: [UInt8]]
        init(data: [[UInt8]: [UInt8]]) { self.data = data }
    }

    // MARK: - Loading and stopping

    /// Loads a plugin from the descriptor its entry function returned: checks the descriptor like the kernel, gives it
    /// a vtable with `grants`, calls on_init with `config` and then (if `start`) on_start.
    /// Throws the HostError the kernel would report (a bad descriptor, on_init or on_start failing).
    @discardableResult
    public func load(_ descriptor: UnsafeRawPointer?, name: String? = nil, config: String = "{}",
                     grants: HostCapabilities = .all, start: Bool = true) throws(HostError) -> TestPlugin {
        let typed = descriptor?.assumingMemoryBound(to: mn_plugin_descriptor.self)
        return try loadDescriptor(UnsafePointer(typed), name: name, config: config, grants: grants, start: start)
    }

    @discardableResult
    public func load(_ descriptor: UnsafePointer<mn_plugin_descriptor>?, name: String? = nil, config: String = "{}",
                     grants: HostCapabilities = .all, start: Bool = true) throws(HostError) -> TestPlugin {
        try loadDescriptor(descriptor, name: name, config: config, grants: grants, start: start)
    }

    private func loadDescriptor(_ descriptor: UnsafePointer<mn_plugin_descriptor>?, name: String?, config: String,
                                grants: HostCapabilities, start: Bool) throws(HostError) -> TestPlugin {
        let info = try PluginInstance.inspect(descriptor, source: "test plugin \(name ?? "(unnamed)")")
        guard let descriptor else { throw .invalid("descriptor is NULL") }
        let pluginName = name ?? info.name
        let configBytes = Array(config.utf8)
        let plugin = try state.withLock { state throws(HostError) -> TestPlugin in
            guard !state.plugins.contains(where: { $0.plugin.name == pluginName }) else {
                throw HostError(MN_ERR_EXISTS, "a plugin named \(pluginName) is already loaded; pass another `name:` "
                    + "to load it again")
            }
            let slot = state.plugins.count
            let context = PluginHostContext(name: pluginName, slot: slot, grants: grants, backend: self)
            let instance = PluginInstance(context: context, descriptor: descriptor)
            let plugin = TestPlugin(name: pluginName, slot: slot, context: context, instance: instance,
                                    descriptor: info)
            var pluginState = PluginState(plugin: plugin, config: configBytes)
            pluginState.kv = state.carriedStorage.removeValue(forKey: pluginName) ?? [:]
            state.plugins.append(pluginState)
            return plugin
        }
        try plugin.instance.initialize(config: configBytes)
        if start { try self.start(plugin) }
        return plugin
    }

    /// Calls on_start (for a plugin loaded with `start: false`). If it fails the plugin is stopped.
    public func start(_ plugin: TestPlugin) throws(HostError) {
        do {
            try plugin.instance.start()
        } catch {
            stop(plugin)
            throw error
        }
    }

    /// Calls on_stop; from then on the plugin's host calls answer MN_ERR_STOPPED. Its subscriptions and timers go,
    /// and events still queued for it are dropped when their turn comes.
    public func stop(_ plugin: TestPlugin) {
        plugin.instance.stop()
        state.withLock { state in
            state.subscriptions.removeAll { $0.slot == plugin.slot }
            state.netProtocols.removeAll(slot: plugin.slot)
            state.peerWatchers[plugin.slot] = nil
            state.plugins[state.owned(plugin)].timers.removeAll()
            for (token, request) in state.requests {
                if case .plugin(let slot, _) = request.requester, slot == plugin.slot { state.requests[token] = nil }
            }
        }
    }

    /// Stops every running plugin, last loaded first.
    public func stopAll() {
        let plugins = state.withLock { state in state.plugins.map(\.plugin) }
        for plugin in plugins.reversed() where !plugin.isStopped { stop(plugin) }
    }

    // MARK: - Time and the event queue

    /// Milliseconds since the host was created (the manual clock).
    public var nowMs: UInt64 { state.withLock { $0.nowMs } }

    /// Events waiting to run.
    public var queuedEventCount: Int { state.withLock { $0.queued } }

    /// Runs queued bus deliveries, replies and timer callbacks (and whatever they cause) until nothing is left at the
    /// current time. Returns how many events ran.
    @discardableResult
    public func runUntilIdle() -> Int { advance(byMs: 0) }

    /// Moves the clock forward, running everything due on the way in time order: timers (repeating ones once per
    /// period), request timeouts, and the queue after each instant. Returns how many events ran.
    @discardableResult
    public func advance(byMs delta: UInt64) -> Int {
        let targetMs = state.withLock { $0.nowMs + delta }
        var ran = 0
        while true {
            ran += drainQueue(limit: Self.eventsPerRunMax - ran)
            let due = state.withLock { state -> Bool in
                guard let nextMs = Self.nextDeadline(state), nextMs <= targetMs else { return false }
                state.nowMs = nextMs
                Self.enqueueDue(&state, at: nextMs)
                return true
            }
            if !due { break }
        }
        state.withLock { $0.nowMs = targetMs }
        return ran
    }

    /// When the next timer or request timeout is due (nil if none): the next time `advance` has work, besides the
    /// queue. A simulation steps every host to the earliest of these.
    public var nextDueMs: UInt64? { state.withLock { Self.nextDeadline($0) } }

    /// Moves the clock forward to `targetMs` (not backwards), like `advance(byMs:)`. Returns how many events ran.
    @discardableResult
    public func advance(toMs targetMs: UInt64) -> Int {
        let nowMs = self.nowMs
        precondition(targetMs >= nowMs, "TestHost.advance(toMs: \(targetMs)) would move the clock back from \(nowMs)")
        return advance(byMs: targetMs - nowMs)
    }

    private static func nextDeadline(_ state: State) -> UInt64? {
        var next: UInt64?
        for plugin in state.plugins {
            for timer in plugin.timers.values where next.map({ timer.dueMs < $0 }) ?? true { next = timer.dueMs }
        }
        for request in state.requests.values where next.map({ request.deadlineMs < $0 }) ?? true {
            next = request.deadlineMs
        }
        for pending in state.deferredHTTP where !pending.exchange.isAnswered {
            if next.map({ pending.deadlineMs < $0 }) ?? true { next = pending.deadlineMs }
        }
        return next
    }

    /// Queues every timer callback and request timeout due at `nowMs`, timers first, each group in creation order.
    private static func enqueueDue(_ state: inout State, at nowMs: UInt64) {
        var fired: [(id: mn_timer_id, slot: Int, callback: TimerCallback)] = []
        for slot in state.plugins.indices {
            for (id, timer) in state.plugins[slot].timers where timer.dueMs <= nowMs {
                fired.append((id, slot, timer.callback))
                if timer.intervalMs == 0 {
                    state.plugins[slot].timers[id] = nil
                } else {
                    state.plugins[slot].timers[id]!.dueMs = nowMs + timer.intervalMs
                }
            }
        }
        for timer in fired.sorted(by: { $0.id < $1.id }) {
            state.enqueue(.timer(slot: timer.slot, callback: timer.callback, id: timer.id))
        }
        let expired = state.requests.filter { $0.value.deadlineMs <= nowMs }.keys.sorted()
        for token in expired {
            let request = state.requests.removeValue(forKey: token)!
            state.enqueue(.reply(request.requester, status: MN_ERR_TIMEOUT, payload: []))
        }
        state.deferredHTTP.removeAll { $0.exchange.isAnswered }
        for pending in state.deferredHTTP where pending.deadlineMs <= nowMs { state.enqueue(.httpTimeout(pending)) }
        state.deferredHTTP.removeAll { $0.deadlineMs <= nowMs }
    }

    private func drainQueue(limit: Int) -> Int {
        var ran = 0
        while let event = state.withLock({ $0.dequeue() }) {
            precondition(ran < limit, "TestHost ran \(Self.eventsPerRunMax) events without going idle: the plugins "
                + "are looping (e.g. a message handler that publishes to its own topic)")
            ran += 1
            switch event {
            case .message(let slot, let topic, let payload, let sender, let token):
                guard let instance = instance(slot) else { continue }
                let topic = Array(topic.utf8), sender = Array(sender.utf8)
                topic.withUnsafeBytes { topic in
                    payload.withUnsafeBytes { payload in
                        sender.withUnsafeBytes { sender in
                            instance.deliver(topic: topic, payload: payload, sender: sender, replyToken: token)
                        }
                    }
                }
            case .reply(.plugin(let slot, let callback), let status, let payload):
                guard let instance = instance(slot) else { continue }
                payload.withUnsafeBytes { instance.deliverReply(callback, status: status, payload: $0) }
            case .reply(.test(let request), let status, let payload):
                request.status = status
                request.reply = payload
            case .timer(let slot, let callback, let id):
                guard let instance = instance(slot) else { continue }
                instance.fire(callback, id: id)
            case .net, .peerEvent:
                deliverNetEvent(event)
            case .httpTimeout(let pending):
                pending.expire()
            }
        }
        return ran
    }

    private func instance(_ slot: Int) -> PluginInstance? {
        state.withLock { $0.plugins.indices.contains(slot) ? $0.plugins[slot].plugin.instance : nil }
    }

    // MARK: - Driving plugins from a test

    /// Publishes as the test (sender "test"); returns how many plugins got it. Run the queue to deliver it.
    @discardableResult
    public func publish(_ topic: String, _ payload: [UInt8] = []) -> Int {
        state.withLock { state in
            Self.deliver(&state, topic: topic, payload: payload, sender: Self.testSender, token: 0)
        }
    }

    @discardableResult
    public func publish(_ topic: String, _ payload: String) -> Int { publish(topic, Array(payload.utf8)) }

    /// Sends a bus request as the test; the returned request is answered while the queue runs.
    public func request(_ topic: String, _ payload: [UInt8] = [], timeoutMs: UInt32 = 5000) -> TestRequest {
        let request = TestRequest(topic: topic)
        state.withLock { state in
            Self.sendRequest(&state, requester: .test(request), topic: topic, payload: payload,
                             sender: Self.testSender, timeoutMs: timeoutMs)
        }
        return request
    }

    public func request(_ topic: String, _ payload: String, timeoutMs: UInt32 = 5000) -> TestRequest {
        request(topic, Array(payload.utf8), timeoutMs: timeoutMs)
    }

    // MARK: - Reading what plugins did

    /// Every line logged so far, in order.
    public var logs: [LogLine] { state.withLock { $0.logs } }

    /// The messages `plugin` logged, in order.
    public func logMessages(of plugin: TestPlugin) -> [String] {
        state.withLock { state in state.logs.filter { $0.plugin == plugin.name }.map(\.message) }
    }

    /// Calls to ungranted capabilities, as the bridge reported them.
    public var denials: [Denial] { state.withLock { $0.denials } }

    /// Bus messages not delivered because a mailbox was full (MN_MAILBOX_DEPTH_MAX).
    public var droppedMessages: Int { state.withLock { $0.droppedMessages } }

    /// A stored value of `plugin`, read directly (no capability needed).
    public func storedValue(_ plugin: TestPlugin, _ key: String) -> [UInt8]? {
        state.withLock { $0.plugins[$0.owned(plugin)].kv[Array(key.utf8)] }
    }

    public func storedText(_ plugin: TestPlugin, _ key: String) -> String? {
        storedValue(plugin, key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every plugin's stored keys by plugin name (what survives a crash: kv writes are durable when they return),
    /// for `init(storage:)`.
    public var storedData: [String: [[UInt8]: [UInt8]]] {
        state.withLock { state in
            Dictionary(state.plugins.map { ($0.plugin.name, $0.kv) }, uniquingKeysWith: { $1 })
        }
    }

    /// All of `plugin`'s keys, ascending.
    public func storedKeys(_ plugin: TestPlugin) -> [[UInt8]] {
        state.withLock { $0.plugins[$0.owned(plugin)].kv.keys.sorted(by: [UInt8].precedes) }
    }

    /// Makes `plugin`'s next kv_batch_commit fail with MN_ERR_IO and `message`, writing nothing — like a failed disk.
    public func failNextBatchCommit(_ plugin: TestPlugin, message: String = "injected storage failure") {
        state.withLock { $0.plugins[$0.owned(plugin)].failNextCommit = message }
    }

    /// A metric `plugin` registered, by name.
    public func metric(_ plugin: TestPlugin, _ name: String) -> TestMetric? {
        state.withLock { state in state.plugins[state.owned(plugin)].metrics.values.first { $0.name == name } }
    }

    /// The topics `plugin` subscribes to, in subscription order.
    public func subscriptions(_ plugin: TestPlugin) -> [String] {
        state.withLock { state in state.subscriptions.filter { $0.slot == plugin.slot }.map(\.topic) }
    }

    /// How many timers `plugin` has live.
    public func liveTimerCount(_ plugin: TestPlugin) -> Int {
        state.withLock { $0.plugins[$0.owned(plugin)].timers.count }
    }

    /// `plugin`'s routes as "METHOD path".
    public func routes(_ plugin: TestPlugin) -> [String] {
        state.withLock { state in state.plugins[state.owned(plugin)].routes.descriptions }
    }

    // MARK: - PluginHostBackend: always available

    public func log(_ plugin: PluginHostContext, level: Int32, message: String) {
        let line = LogLine(plugin: plugin.name, level: LogLevel(rawValue: level) ?? .error, message: message)
        state.withLock { $0.logs.append(line) }
    }

    public func config(_ plugin: PluginHostContext) -> [UInt8] {
        state.withLock { $0.plugins[plugin.slot].config }
    }

    public func clockUnixMs() -> UInt64 { startUnixMs + nowMs }

    public func clockMonotonicNs() -> UInt64 { nowMs * 1_000_000 }

    public func denied(_ plugin: PluginHostContext, function: String, capability: String, count: Int) {
        let denial = Denial(plugin: plugin.name, function: function, capability: capability, count: count)
        state.withLock { $0.denials.append(denial) }
    }

    // MARK: - kv

    public func kvGet(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer, snapshot: AnyObject?)
        throws(HostError) -> mn_buf?
    {
        let key = Array(key)
        let value: [UInt8]?
        if let snapshot {
            guard let snapshot = snapshot as? SnapshotObject else { throw HostError(MN_ERR_INTERNAL, "not a snapshot") }
            value = snapshot.data[key]
        } else {
            value = state.withLock { $0.plugins[plugin.slot].kv[key] }
        }
        return value.map(Self.malloced)
    }

    public func kvPut(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
        throws(HostError)
    {
        let key = Array(key), value = Array(value)
        state.withLock { $0.plugins[plugin.slot].kv[key] = value }
    }

    public func kvDelete(_ plugin: PluginHostContext, key: UnsafeRawBufferPointer) throws(HostError) {
        let key = Array(key)
        state.withLock { $0.plugins[plugin.slot].kv[key] = nil }
    }

    public func kvBatchBegin(_ plugin: PluginHostContext) throws(HostError) -> AnyObject { BatchObject() }

    public func kvBatchPut(_ plugin: PluginHostContext, batch: AnyObject, key: UnsafeRawBufferPointer,
                           value: UnsafeRawBufferPointer) throws(HostError) {
        try Self.batch(batch).operations.append((Array(key), Array(value)))
    }

    public func kvBatchDelete(_ plugin: PluginHostContext, batch: AnyObject, key: UnsafeRawBufferPointer)
        throws(HostError)
    {
        try Self.batch(batch).operations.append((Array(key), nil))
    }

    public func kvBatchCommit(_ plugin: PluginHostContext, batch: AnyObject) throws(HostError) {
        let operations = try Self.batch(batch).operations
        try state.withLock { state throws(HostError) in
            if let failure = state.plugins[plugin.slot].failNextCommit {
                state.plugins[plugin.slot].failNextCommit = nil
                throw HostError(MN_ERR_IO, "\(failure); nothing was written")
            }
            var kv = state.plugins[plugin.slot].kv  // applied to a copy, then swapped in: all or nothing
            for (key, value) in operations { kv[key] = value }
            state.plugins[plugin.slot].kv = kv
        }
    }

    public func kvSnapshotOpen(_ plugin: PluginHostContext) throws(HostError) -> AnyObject {
        SnapshotObject(data: state.withLock { $0.plugins[plugin.slot].kv })
    }

    public func kvSnapshotRelease(_ plugin: PluginHostContext, snapshot: AnyObject) {}

    public func kvScan(_ plugin: PluginHostContext, snapshot: AnyObject?, prefix: UnsafeRawBufferPointer,
                       start: UnsafeRawBufferPointer,
                       visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) throws(HostError) {
        let prefix = Array(prefix), start = Array(start)
        let data: [[UInt8]: [UInt8]]
        if let snapshot {
            guard let snapshot = snapshot as? SnapshotObject else { throw HostError(MN_ERR_INTERNAL, "not a snapshot") }
            data = snapshot.data
        } else {
            data = state.withLock { $0.plugins[plugin.slot].kv }  // a copy: visit runs without the lock
        }
        let keys = data.keys.filter { $0.starts(with: prefix) && !$0.lexicographicallyPrecedes(start) }
            .sorted(by: [UInt8].precedes)
        for key in keys {
            let value = data[key]!
            let more = key.withUnsafeBytes { key in value.withUnsafeBytes { value in visit(key, value) } }
            if !more { break }
        }
    }

    private static func batch(_ object: AnyObject) throws(HostError) -> BatchObject {
        guard let batch = object as? BatchObject else { throw HostError(MN_ERR_INTERNAL, "not a batch") }
        return batch
    }

    /// A malloc'd copy (the bridge's buf_free frees with free()).
    private static func malloced(_ bytes: [UInt8]) -> mn_buf {
        guard !bytes.isEmpty, let memory = malloc(bytes.count) else { return mn_buf(ptr: nil, len: 0) }
        bytes.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return mn_buf(ptr: memory.assumingMemoryBound(to: UInt8.self), len: bytes.count)
    }

    // MARK: - crypto and sign

    public func hashBlake2b256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        let rc = crypto_generichash(out.assumingMemoryBound(to: UInt8.self), 32,
                                    data.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(data.count), nil, 0)
        precondition(rc == 0, "crypto_generichash failed")
    }

    public func hashSHA256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        let rc = crypto_hash_sha256(out.assumingMemoryBound(to: UInt8.self),
                                    data.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(data.count))
        precondition(rc == 0, "crypto_hash_sha256 failed")
    }

    public func ed25519Verify(publicKey: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer,
                              signature: UnsafeRawBufferPointer) -> Bool {
        Self.withNonNullBytes(message) { message in
            crypto_sign_verify_detached(
                signature.baseAddress!.assumingMemoryBound(to: UInt8.self), message.baseAddress, UInt64(message.count),
                publicKey.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 0
        }
    }

    public func randomBytes(into out: UnsafeMutableRawBufferPointer) {
        guard let base = out.baseAddress, out.count > 0 else { return }
        let counter = state.withLock { state -> UInt64 in
            defer { state.nextRandom += 1 }
            return state.nextRandom
        }
        var seed = [UInt8](repeating: 0, count: 32)
        let input = randomSeed + withUnsafeBytes(of: counter.littleEndian) { Array($0) }
        _ = crypto_generichash(&seed, 32, input, UInt64(input.count), nil, 0)
        randombytes_buf_deterministic(base, out.count, seed)
    }

    public func ed25519PublicKey(_ plugin: PluginHostContext, keyID: String) throws(HostError) -> [UInt8] {
        try Self.checkKeyID(keyID)
        return nodePublicKey
    }

    public func ed25519Sign(_ plugin: PluginHostContext, keyID: String, message: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawPointer) throws(HostError) {
        try Self.checkKeyID(keyID)
        let rc = Self.withNonNullBytes(message) { message in
            crypto_sign_detached(out.assumingMemoryBound(to: UInt8.self), nil, message.baseAddress,
                                 UInt64(message.count), nodeSecretKey)
        }
        guard rc == 0 else { throw HostError(MN_ERR_INTERNAL, "crypto_sign_detached failed") }
    }

    private static func checkKeyID(_ keyID: String) throws(HostError) {
        guard keyID == "node" else {
            throw .notFound("no key '\(keyID)'; ABI \(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR) knows one key "
                + "id, 'node'")
        }
    }

    /// libsodium reads through the pointer even for an empty message on some paths; never hand it NULL.
    private static func withNonNullBytes<R>(_ bytes: UnsafeRawBufferPointer,
                                            _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let base = bytes.baseAddress {
            return body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: bytes.count))
        }
        var zero: UInt8 = 0
        return withUnsafePointer(to: &zero) { body(UnsafeBufferPointer(start: $0, count: 0)) }
    }

    // MARK: - bus

    public func busSubscribe(_ plugin: PluginHostContext, topic: String) throws(HostError) -> mn_subscription_id {
        try state.withLock { state throws(HostError) -> mn_subscription_id in
            let count = state.subscriptions.reduce(0) { $0 + ($1.slot == plugin.slot ? 1 : 0) }
            guard count < Int(MN_BUS_SUBSCRIPTIONS_MAX) else {
                throw HostError(MN_ERR_LIMIT, "plugin \(plugin.name) has \(count) subscriptions; the limit is "
                    + "\(MN_BUS_SUBSCRIPTIONS_MAX) — unsubscribe some, or subscribe to a prefix ('topic.*')")
            }
            let id = state.nextSubscription
            state.nextSubscription += 1
            state.subscriptions.append(BusSubscription(id: id, slot: plugin.slot, topic: topic))
            return id
        }
    }

    public func busUnsubscribe(_ plugin: PluginHostContext, subscription: mn_subscription_id) throws(HostError) {
        try state.withLock { state throws(HostError) in
            guard let index = state.subscriptions.firstIndex(where: { $0.id == subscription && $0.slot == plugin.slot })
            else { throw .notFound("plugin \(plugin.name) has no subscription \(subscription)") }
            state.subscriptions.remove(at: index)
        }
    }

    public func busPublish(_ plugin: PluginHostContext, topic: String, payload: UnsafeRawBufferPointer)
        throws(HostError) -> UInt32
    {
        let payload = Array(payload)
        return UInt32(state.withLock { state in
            Self.deliver(&state, topic: topic, payload: payload, sender: plugin.name, token: 0)
        })
    }

    public func busListeners(_ plugin: PluginHostContext, topic: String) throws(HostError) -> UInt32 {
        UInt32(state.withLock { Self.subscribers($0, topic: topic).count })
    }

    public func busRequest(_ plugin: PluginHostContext, topic: String, payload: UnsafeRawBufferPointer,
                           timeoutMs: UInt32, reply: BusReplyCallback) throws(HostError) {
        let payload = Array(payload)
        state.withLock { state in
            Self.sendRequest(&state, requester: .plugin(slot: plugin.slot, callback: reply), topic: topic,
                             payload: payload, sender: plugin.name, timeoutMs: timeoutMs)
        }
    }

    public func busReply(_ plugin: PluginHostContext, token: mn_reply_token, payload: UnsafeRawBufferPointer)
        throws(HostError)
    {
        let payload = Array(payload)
        try state.withLock { state throws(HostError) in
            guard let request = state.requests[token] else {
                throw .notFound("no open request with reply token \(token) (already answered, timed out, or never "
                    + "sent)")
            }
            guard request.recipients.contains(plugin.slot) else {
                throw .invalid("reply token \(token) belongs to a request plugin \(plugin.name) did not receive")
            }
            state.requests[token] = nil
            state.enqueue(.reply(request.requester, status: MN_OK, payload: payload))
        }
    }

    /// The slots of running plugins with a subscription matching `topic`, each once, in load order.
    private static func subscribers(_ state: State, topic: String) -> [Int] {
        let slots = Set(state.subscriptions.filter { BusTopic.matches(subscription: $0.topic, topic: topic) }
            .map(\.slot))
        return slots.sorted().filter { !state.plugins[$0].plugin.isStopped }
    }

    /// Queues one message per subscribing plugin; returns how many were queued.
    private static func deliver(_ state: inout State, topic: String, payload: [UInt8], sender: String,
                                token: mn_reply_token) -> Int {
        var delivered = 0
        for slot in subscribers(state, topic: topic) {
            guard state.queuedEvents(for: slot) < Int(MN_MAILBOX_DEPTH_MAX) else {
                state.droppedMessages += 1
                continue
            }
            state.enqueue(.message(slot: slot, topic: topic, payload: payload, sender: sender, token: token))
            delivered += 1
        }
        return delivered
    }

    private static func sendRequest(_ state: inout State, requester: Requester, topic: String, payload: [UInt8],
                                    sender: String, timeoutMs: UInt32) {
        let token = state.nextToken
        state.nextToken += 1
        state.requests[token] = PendingRequest(requester: requester, recipients: [],
                                               deadlineMs: state.nowMs + UInt64(timeoutMs))
        var recipients = Set<Int>()
        for slot in subscribers(state, topic: topic) where state.queuedEvents(for: slot) < Int(MN_MAILBOX_DEPTH_MAX) {
            recipients.insert(slot)
            state.enqueue(.message(slot: slot, topic: topic, payload: payload, sender: sender, token: token))
        }
        if recipients.isEmpty {
            state.requests[token] = nil
            state.enqueue(.reply(requester, status: MN_ERR_NO_RESPONDER, payload: []))
        } else {
            state.requests[token]!.recipients = recipients
        }
    }

    // MARK: - timer

    public func timerStart(_ plugin: PluginHostContext, delayMs: UInt64, intervalMs: UInt64, callback: TimerCallback)
        throws(HostError) -> mn_timer_id
    {
        try state.withLock { state throws(HostError) -> mn_timer_id in
            let live = state.plugins[plugin.slot].timers.count
            guard live < Int(MN_TIMERS_MAX) else {
                throw HostError(MN_ERR_LIMIT, "plugin \(plugin.name) has \(live) live timers; the limit is "
                    + "\(MN_TIMERS_MAX) — cancel some")
            }
            let id = state.nextTimer
            state.nextTimer += 1
            state.plugins[plugin.slot].timers[id] = TimerEntry(
                dueMs: state.nowMs + delayMs, intervalMs: intervalMs, callback: callback)
            return id
        }
    }

    public func timerCancel(_ plugin: PluginHostContext, timer: mn_timer_id) throws(HostError) {
        try state.withLock { state throws(HostError) in
            guard state.plugins[plugin.slot].timers.removeValue(forKey: timer) != nil else {
                throw .notFound("plugin \(plugin.name) has no live timer \(timer)")
            }
        }
    }

    // MARK: - http

    public func httpRoute(_ plugin: PluginHostContext, method: String, path: String, handler: HTTPHandler)
        throws(HostError)
    {
        try state.withLock { state throws(HostError) in
            try state.plugins[plugin.slot].routes.add(method: method, path: path, handler: handler)
        }
    }

    // MARK: - service

    public func serviceExport(_ plugin: PluginHostContext, name: String, major: UInt32, minor: UInt32,
                              table: UnsafeRawPointer, size: Int) throws(HostError) {
        try state.withLock { state throws(HostError) in
            if let existing = state.services[name] {
                throw HostError(MN_ERR_EXISTS, "service \(name) is already exported (version "
                    + "\(existing.major).\(existing.minor), by plugin \(existing.plugin))")
            }
            state.services[name] = ServiceEntry(slot: plugin.slot, plugin: plugin.name, major: major, minor: minor,
                                                table: table, size: size)
        }
    }

    public func serviceLookup(_ plugin: PluginHostContext, name: String, major: UInt32, minMinor: UInt32)
        throws(HostError) -> (table: UnsafeRawPointer, minor: UInt32, size: Int)
    {
        try state.withLock { state throws(HostError) in
            guard let service = state.services[name] else { throw .notFound("no plugin exports service \(name)") }
            guard service.major == major, service.minor >= minMinor else {
                throw HostError(MN_ERR_VERSION, "plugin \(plugin.name) needs service \(name) \(major).\(minMinor) "
                    + "(or a later \(major).x); plugin \(service.plugin) exports \(service.major).\(service.minor)")
            }
            return (service.table, service.minor, service.size)
        }
    }

    // MARK: - metrics

    public func metricRegister(_ plugin: PluginHostContext, kind: MetricKind, name: String, help: String,
                               buckets: [Double]) throws(HostError) -> mn_metric_id {
        try state.withLock { state throws(HostError) -> mn_metric_id in
            let metrics = state.plugins[plugin.slot].metrics
            guard metrics.count < Int(MN_METRICS_MAX) else {
                throw HostError(MN_ERR_LIMIT, "plugin \(plugin.name) has \(metrics.count) metrics; the limit is "
                    + "\(MN_METRICS_MAX)")
            }
            guard !metrics.values.contains(where: { $0.name == name }) else {
                throw HostError(MN_ERR_EXISTS, "plugin \(plugin.name) already has a metric named \(name)")
            }
            let id = state.nextMetric
            state.nextMetric += 1
            state.plugins[plugin.slot].metrics[id] = TestMetric(
                name: name, kind: kind, help: help, count: 0, value: 0, buckets: buckets, observations: [])
            return id
        }
    }

    public func metricCounterAdd(_ plugin: PluginHostContext, metric: mn_metric_id, delta: UInt64) throws(HostError) {
        try updateMetric(plugin, metric, .counter) { $0.count &+= delta }
    }

    public func metricGaugeSet(_ plugin: PluginHostContext, metric: mn_metric_id, value: Double) throws(HostError) {
        try updateMetric(plugin, metric, .gauge) { $0.value = value }
    }

    public func metricHistogramObserve(_ plugin: PluginHostContext, metric: mn_metric_id, value: Double)
        throws(HostError)
    {
        try updateMetric(plugin, metric, .histogram) { $0.observations.append(value) }
    }

    private func updateMetric(_ plugin: PluginHostContext, _ id: mn_metric_id, _ kind: MetricKind,
                              _ update: (inout TestMetric) -> Void) throws(HostError) {
        try state.withLock { state throws(HostError) in
            guard var metric = state.plugins[plugin.slot].metrics[id] else {
                throw .notFound("plugin \(plugin.name) has no metric \(id)")
            }
            guard metric.kind == kind else {
                throw .invalid("metric \(metric.name) is a \(metric.kind), not a \(kind)")
            }
            update(&metric)
            state.plugins[plugin.slot].metrics[id] = metric
        }
    }
}
