import MetanodeABI
import MetanodeHostBridge
import NIOCore
import Synchronization

/// The in-process bus: topic subscriptions, fan-out publish into each subscriber's mailbox, and request/reply with a
/// timeout. Never blocks a publisher: a full mailbox drops the message for that subscriber and counts it.
final class Bus: @unchecked Sendable {
    struct Subscription {
        let id: mn_subscription_id
        let pattern: String
        let prefix: Substring?  // for "a.b.*": "a.b."
        let subscriber: Int     // plugin slot
    }

    struct PendingRequest {
        let requester: Int
        let reply: BusReplyCallback
        /// Plugins the request was delivered to: only they may answer it.
        var recipients: [Int] = []
        var timeout: Scheduled<Void>?
    }

    private struct State {
        var nextSubscriptionID: mn_subscription_id = 1
        var exact: [String: [Subscription]] = [:]
        var wildcards: [Subscription] = []
        var perPlugin: [Int: Int] = [:]
        var nextToken: mn_reply_token = 1
        var pending: [mn_reply_token: PendingRequest] = [:]
        /// Subscribers by topic, as last resolved; cleared whenever a subscription changes.
        var resolved: [String: [Int]] = [:]
    }

    /// Topics whose subscribers are remembered at once; past it the cache starts over (topics can be unbounded).
    static let resolvedTopicsMax = 4096

    private let state = HostLock(State())
    private let timerLoop: any EventLoop
    /// Finds a plugin's mailbox and delivery by slot.
    private let runtime: @Sendable (Int) -> PluginRuntime?
    let published = Atomic<UInt64>(0)
    let delivered = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let onDrop: @Sendable (Int) -> Void

    /// Kernel-side listeners on exact topics (HTTP event streams), by topic and listener id. `tapCount` lets publish
    /// skip the lock when nobody listens, which is almost always.
    private let taps = HostLock([String: [UInt64: @Sendable ([UInt8]) -> Void]]())
    private let tapCount = Atomic<Int>(0)
    private let nextTap = Atomic<UInt64>(1)

    init(timerLoop: any EventLoop, runtime: @escaping @Sendable (Int) -> PluginRuntime?,
         onDrop: @escaping @Sendable (Int) -> Void) {
        self.timerLoop = timerLoop
        self.runtime = runtime
        self.onDrop = onDrop
    }

    func subscribe(slot: Int, pattern: String) throws(HostError) -> mn_subscription_id {
        let result: Result<mn_subscription_id, HostError> = state.withLock { state in
            let count = state.perPlugin[slot, default: 0]
            guard count < Int(MN_BUS_SUBSCRIPTIONS_MAX) else {
                return .failure(HostError(MN_ERR_LIMIT, "plugin has \(count) subscriptions; the limit is "
                    + "\(MN_BUS_SUBSCRIPTIONS_MAX)"))
            }
            let id = state.nextSubscriptionID
            state.nextSubscriptionID += 1
            let subscription = Subscription(id: id, pattern: pattern, prefix: BusTopic.wildcardPrefix(pattern),
                                            subscriber: slot)
            if subscription.prefix != nil {
                state.wildcards.append(subscription)
            } else {
                state.exact[pattern, default: []].append(subscription)
            }
            state.perPlugin[slot] = count + 1
            state.resolved.removeAll(keepingCapacity: true)
            return .success(id)
        }
        return try result.get()
    }

    func unsubscribe(slot: Int, id: mn_subscription_id) throws(HostError) {
        let removed = state.withLock { state -> Bool in
            if let index = state.wildcards.firstIndex(where: { $0.id == id && $0.subscriber == slot }) {
                state.wildcards.remove(at: index)
            } else if let (topic, list) = state.exact.first(where: { $0.value.contains { $0.id == id } }),
                      let index = list.firstIndex(where: { $0.id == id && $0.subscriber == slot }) {
                state.exact[topic]!.remove(at: index)
                if state.exact[topic]!.isEmpty { state.exact[topic] = nil }
            } else {
                return false
            }
            state.perPlugin[slot, default: 1] -= 1
            state.resolved.removeAll(keepingCapacity: true)
            return true
        }
        guard removed else { throw .notFound("no subscription \(id) of this plugin") }
    }

    /// Removes everything a stopping plugin subscribed to.
    func removeAll(slot: Int) {
        state.withLock { state in
            state.wildcards.removeAll { $0.subscriber == slot }
            for (topic, list) in state.exact {
                let kept = list.filter { $0.subscriber != slot }
                state.exact[topic] = kept.isEmpty ? nil : kept
            }
            state.perPlugin[slot] = nil
            state.resolved.removeAll(keepingCapacity: true)
        }
    }

    /// Slots subscribed to `topic` (each once, even with several matching subscriptions), cached per topic.
    private func subscribers(of topic: String) -> [Int] {
        state.withLock { state in
            if let cached = state.resolved[topic] { return cached }
            var slots: [Int] = []
            if let list = state.exact[topic] { for s in list where !slots.contains(s.subscriber) { slots.append(s.subscriber) } }
            for s in state.wildcards where !slots.contains(s.subscriber) {
                if let prefix = s.prefix, topic.utf8.count > prefix.utf8.count, topic.hasPrefix(prefix) {
                    slots.append(s.subscriber)
                }
            }
            if state.resolved.count >= Self.resolvedTopicsMax { state.resolved.removeAll(keepingCapacity: true) }
            state.resolved[topic] = slots
            return slots
        }
    }

    /// Queues the message for every subscribing plugin; returns how many got it.
    private func fanOut(topic: String, payload: UnsafeRawBufferPointer, sender: PluginRuntime, token: mn_reply_token)
        -> Int
    {
        let slots = subscribers(of: topic)
        guard !slots.isEmpty else { return 0 }
        // One buffer per message, shared by every subscriber: the topic, then the payload.
        var topic = topic
        let bytes = topic.withUTF8 { topicBytes in
            [UInt8](unsafeUninitializedCapacity: topicBytes.count + payload.count) { buffer, count in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(topicBytes))
                if payload.count > 0 {
                    UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[topicBytes.count...])
                        .copyMemory(from: payload)
                }
                count = topicBytes.count + payload.count
            }
        }
        let topicCount = bytes.count - payload.count
        var reached = 0
        for slot in slots {
            guard let target = runtime(slot), target.isAcceptingMessages else { continue }
            if target.executor.submitMessage(bytes: bytes, topicCount: topicCount, sender: sender.nameBytes,
                                             replyToken: token) {
                reached += 1
            } else {
                dropped.add(1, ordering: .relaxed)
                onDrop(slot)
            }
        }
        delivered.add(UInt64(reached), ordering: .relaxed)
        return reached
    }

    func publish(from sender: PluginRuntime, topic: String, payload: UnsafeRawBufferPointer) -> UInt32 {
        published.add(1, ordering: .relaxed)
        if tapCount.load(ordering: .relaxed) > 0 { relay(topic: topic, payload: payload, sender: sender.name) }
        return UInt32(fanOut(topic: topic, payload: payload, sender: sender, token: 0))
    }

    /// How many would get a message `publisher` publishes on `topic` now: subscribed plugins, and the taps (stream
    /// clients) of the topic if `publisher` is the plugin that feeds it.
    func listeners(of topic: String, publisher: PluginRuntime) -> UInt32 {
        var count = subscribers(of: topic).count
        if tapCount.load(ordering: .relaxed) > 0, topic.hasPrefix(publisher.name + ".") {
            count += taps.withLock { $0[topic]?.count ?? 0 }
        }
        return UInt32(count)
    }

    /// Calls `listener` with the payload of every message published on `topic` by plugin `publisher` (only that
    /// plugin: a stream of "bpi.stream.blocks" cannot be fed by another plugin). Returns the id to remove it with.
    func tap(topic: String, listener: @escaping @Sendable ([UInt8]) -> Void) -> UInt64 {
        let id = nextTap.add(1, ordering: .relaxed).oldValue
        taps.withLock { $0[topic, default: [:]][id] = listener }
        tapCount.add(1, ordering: .relaxed)
        return id
    }

    func untap(topic: String, id: UInt64) {
        let removed = taps.withLock { taps -> Bool in
            guard taps[topic]?.removeValue(forKey: id) != nil else { return false }
            if taps[topic]?.isEmpty == true { taps[topic] = nil }
            return true
        }
        if removed { tapCount.subtract(1, ordering: .relaxed) }
    }

    private func relay(topic: String, payload: UnsafeRawBufferPointer, sender: String) {
        // Only the plugin the topic is named after feeds it.
        guard topic.hasPrefix(sender + "."), let listeners = taps.withLock({ $0[topic].map { Array($0.values) } })
        else { return }
        let bytes = Array(payload)
        for listener in listeners { listener(bytes) }
    }

    func request(from requester: PluginRuntime, topic: String, payload: UnsafeRawBufferPointer, timeoutMs: UInt32,
                 reply: BusReplyCallback) {
        let token = state.withLock { state -> mn_reply_token in
            let token = state.nextToken
            state.nextToken += 1
            state.pending[token] = PendingRequest(requester: requester.slot, reply: reply, timeout: nil)
            return token
        }
        // Recipients are recorded before delivery could let one of them answer.
        let slots = subscribers(of: topic)
        state.withLock { $0.pending[token]?.recipients = slots }
        let reached = fanOut(topic: topic, payload: payload, sender: requester, token: token)
        if reached == 0 {
            finish(token: token, status: MN_ERR_NO_RESPONDER, payload: [])
            return
        }
        let scheduled = timerLoop.scheduleTask(in: .milliseconds(Int64(timeoutMs))) { [weak self] () -> Void in
            self?.finish(token: token, status: MN_ERR_TIMEOUT, payload: [])
        }
        let stillPending = state.withLock { state -> Bool in
            guard state.pending[token] != nil else { return false }
            state.pending[token]!.timeout = scheduled
            return true
        }
        if !stillPending { scheduled.cancel() }
    }

    func reply(from responder: PluginRuntime, token: mn_reply_token, payload: UnsafeRawBufferPointer) throws(HostError) {
        switch state.withLock({ $0.pending[token]?.recipients.contains(responder.slot) }) {
        case nil:
            throw .notFound("no pending request for reply token \(token) (already answered, timed out, or never sent)")
        case false?:
            throw .invalid("reply token \(token) belongs to a request this plugin did not receive")
        case true?:
            break
        }
        guard finish(token: token, status: MN_OK, payload: Array(payload)) else {
            throw .notFound("no pending request for reply token \(token) (already answered or timed out)")
        }
    }

    /// Drops every pending request without answering (their requesters have stopped) and cancels the timeouts.
    func cancelPendingRequests() {
        let pending = state.withLock { state -> [PendingRequest] in
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        for request in pending { request.timeout?.cancel() }
    }

    /// Completes a request once: the first of reply, timeout or no-responder wins.
    @discardableResult
    private func finish(token: mn_reply_token, status: mn_status, payload: [UInt8]) -> Bool {
        guard let request = state.withLock({ $0.pending.removeValue(forKey: token) }) else { return false }
        request.timeout?.cancel()
        if let requester = runtime(request.requester) {
            requester.executor.submit {
                payload.withUnsafeBytes { requester.instance?.deliverReply(request.reply, status: status, payload: $0) }
            }
        }
        return true
    }
}
