import MetanodeABI

/// A bus message delivered to `Plugin.receive(_:)`; a copy, so it may be kept.
public struct BusMessage: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    /// The name of the publishing plugin.
    public var sender: String
    /// Non-zero for a request; answer it with `context.bus.reply(to:_:)`.
    public var replyToken: UInt64

    public init(topic: String, payload: [UInt8], sender: String, replyToken: UInt64 = 0) {
        self.topic = topic
        self.payload = payload
        self.sender = sender
        self.replyToken = replyToken
    }

    public var isRequest: Bool { replyToken != 0 }
    /// The payload as UTF-8 text.
    public var text: String { String(decoding: payload, as: UTF8.self) }
}

/// A bus subscription; pass it to `Bus.unsubscribe(_:)`.
public struct Subscription: Sendable, Hashable {
    public let id: UInt64
}

/// In-process publish/subscribe and request/reply between plugins (capability "bus").
public struct Bus: Sendable {
    let host: Host

    /// Subscribes to an exact topic ("orders.created") or a prefix ending in ".*" ("orders.*"). Messages arrive in
    /// `Plugin.receive(_:)`.
    @discardableResult
    public func subscribe(_ topic: String) throws(PluginError) -> Subscription {
        var id: mn_subscription_id = 0
        let status = topic.withMNBytes { host.api.pointee.bus_subscribe(host.ctx, $0, &id) }
        try host.check(status, "bus_subscribe")
        return Subscription(id: id)
    }

    public func unsubscribe(_ subscription: Subscription) throws(PluginError) {
        try host.check(host.api.pointee.bus_unsubscribe(host.ctx, subscription.id), "bus_unsubscribe")
    }

    /// Delivers `payload` to every subscriber of `topic`; returns how many got it.
    @discardableResult
    public func publish(_ topic: String, _ payload: some ByteConvertible = [UInt8]()) throws(PluginError) -> Int {
        var delivered: UInt32 = 0
        let status = topic.withMNBytes { topic in
            payload.withMNBytes { payload in host.api.pointee.bus_publish(host.ctx, topic, payload, &delivered) }
        }
        try host.check(status, "bus_publish")
        return Int(delivered)
    }

    /// How many would get a message published on `topic` now: subscribed plugins, and for this plugin's own
    /// "<plugin>.stream.<name>" topics the node's clients of that stream. Needs a host with ABI 1.3 (MN_ERR_VERSION
    /// on an older one).
    public func listenerCount(_ topic: String) throws(PluginError) -> Int {
        guard host.api.pointee.abi_minor >= 3, Int(host.api.pointee.struct_size) >= Self.vtableSizeForListeners else {
            throw PluginError(MN_ERR_VERSION, "bus_listeners needs plugin ABI 1.3; this host offers ABI "
                + "\(host.api.pointee.abi_major).\(host.api.pointee.abi_minor)", function: "bus_listeners")
        }
        var count: UInt32 = 0
        let status = topic.withMNBytes { host.api.pointee.bus_listeners(host.ctx, $0, &count) }
        try host.check(status, "bus_listeners")
        return Int(count)
    }

    /// Whether anyone would get a message published on `topic` now; true when the host cannot tell (before ABI 1.3,
    /// or on an error), so a message is only ever skipped for certain. For messages costly to build.
    public func hasListeners(_ topic: String) -> Bool {
        ((try? listenerCount(topic)) ?? 1) > 0
    }

    static let vtableSizeForListeners = MemoryLayout<mn_host_api>.offset(of: \mn_host_api.bus_listeners)!
        + MemoryLayout<UnsafeRawPointer>.size

    /// Sends a request to the subscribers of `topic`; the first reply wins. `completion` runs once, on the plugin's
    /// executor: with the reply, or with a PluginError whose status is MN_ERR_TIMEOUT or MN_ERR_NO_RESPONDER. It is
    /// not called if this plugin stops first. Throws (and never calls `completion`) if the request could not be sent.
    public func request(_ topic: String, _ payload: some ByteConvertible = [UInt8](), timeoutMs: UInt32 = 5000,
                        _ completion: @escaping (Result<[UInt8], PluginError>) -> Void) throws(PluginError) {
        let pending = PendingReply(topic: topic, timeoutMs: timeoutMs, completion: completion)
        // Retained until the single callback (or released here if the request is refused).
        let userData = Unmanaged.passRetained(pending).toOpaque()
        let status = topic.withMNBytes { topic in
            payload.withMNBytes { payload in
                host.api.pointee.bus_request(host.ctx, topic, payload, timeoutMs, { userData, status, reply in
                    guard let userData else { return }
                    let pending = Unmanaged<PendingReply>.fromOpaque(userData).takeRetainedValue()
                    pending.finish(status: status, reply: reply.array)
                }, userData)
            }
        }
        if status != MN_OK {
            Unmanaged<PendingReply>.fromOpaque(userData).release()
            throw host.error(status, "bus_request")
        }
    }

    /// Answers a request received in `Plugin.receive(_:)`. A second reply to the same request is MN_ERR_NOT_FOUND.
    public func reply(to message: BusMessage, _ payload: some ByteConvertible) throws(PluginError) {
        guard message.isRequest else {
            throw PluginError(MN_ERR_INVALID_ARGUMENT,
                              "the message on '\(message.topic)' from \(message.sender) is not a request",
                              function: "bus_reply")
        }
        let status = payload.withMNBytes { host.api.pointee.bus_reply(host.ctx, message.replyToken, $0) }
        try host.check(status, "bus_reply")
    }
}

/// One outstanding bus request. `@unchecked Sendable`: created by the requester and touched again only by the single
/// reply callback, on the plugin's executor.
final class PendingReply: @unchecked Sendable {
    let topic: String
    let timeoutMs: UInt32
    let completion: (Result<[UInt8], PluginError>) -> Void

    init(topic: String, timeoutMs: UInt32, completion: @escaping (Result<[UInt8], PluginError>) -> Void) {
        self.topic = topic
        self.timeoutMs = timeoutMs
        self.completion = completion
    }

    func finish(status: mn_status, reply: [UInt8]) {
        switch status {
        case MN_OK:
            completion(.success(reply))
        case MN_ERR_TIMEOUT:
            completion(.failure(PluginError(status, "no reply to the request on '\(topic)' within \(timeoutMs) ms",
                                            function: "bus_request")))
        case MN_ERR_NO_RESPONDER:
            completion(.failure(PluginError(status, "no plugin subscribes to '\(topic)'", function: "bus_request")))
        case MN_ERR_STOPPED:
            completion(.failure(PluginError(status, "the request on '\(topic)' ended because a plugin stopped",
                                            function: "bus_request")))
        default:
            completion(.failure(PluginError(status, "the request on '\(topic)' failed", function: "bus_request")))
        }
    }
}
