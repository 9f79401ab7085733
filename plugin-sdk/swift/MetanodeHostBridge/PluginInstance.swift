import MetanodeABI

/// Which plugin code is running, for crash attribution (the kernel's crash guard records it).
public enum PluginHook: UInt32, Sendable, CaseIterable {
    case entry = 1, initialize, start, stop, message, timer, busReply, http, exportedFunction, netMessage, peerEvent

    /// The name shown in logs and in `metanode plugin list` after a crash.
    public var name: String {
        switch self {
        case .entry: "metanode_plugin_entry_v1"
        case .initialize: "on_init"
        case .start: "on_start"
        case .stop: "on_stop"
        case .message: "on_message"
        case .timer: "a timer callback"
        case .busReply: "a bus reply callback"
        case .http: "an HTTP handler"
        case .exportedFunction: "an exported function"
        case .netMessage: "a network receive callback"
        case .peerEvent: "a peer event callback"
        }
    }
}

/// Told before and after every call into plugin code.
public protocol PluginCallObserver: AnyObject, Sendable {
    func willCall(slot: Int, hook: PluginHook) -> Int64
    func didCall(_ token: Int64)
}

/// What a descriptor says about its plugin.
public struct PluginDescriptorInfo: Sendable, Equatable {
    public var name: String
    public var version: String
    public var abiMajor: UInt16
    public var abiMinor: UInt16
}

/// A loaded plugin: its descriptor, its state pointer and the calls into its hooks. The host decides on which thread
/// each call runs (the ABI promises one executor thread per plugin); this type only makes the calls.
public final class PluginInstance: @unchecked Sendable {
    public let context: PluginHostContext
    public let descriptor: UnsafePointer<mn_plugin_descriptor>
    public let observer: (any PluginCallObserver)?
    private var state: UnsafeMutableRawPointer?

    /// The smallest descriptor a v1 plugin can have: every field through on_message.
    public static let minimumDescriptorSize =
        MemoryLayout<mn_plugin_descriptor>.offset(of: \mn_plugin_descriptor.on_message)!
        + MemoryLayout<UnsafeRawPointer>.size

    /// Reads and checks a descriptor returned by `metanode_plugin_entry_v1` of `source` (a path, for messages).
    public static func inspect(_ descriptor: UnsafePointer<mn_plugin_descriptor>?, source: String) throws(HostError)
        -> PluginDescriptorInfo
    {
        guard let descriptor else { throw .invalid("\(source): metanode_plugin_entry_v1 returned NULL") }
        let d = descriptor.pointee
        let kernel = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)"
        guard d.abi_major == UInt16(MN_ABI_VERSION_MAJOR) else {
            throw HostError(MN_ERR_VERSION, "\(source) was built for plugin ABI \(d.abi_major).\(d.abi_minor); this "
                + "kernel has ABI \(kernel) — rebuild the plugin against a \(MN_ABI_VERSION_MAJOR).x plugin-sdk")
        }
        guard d.abi_minor <= UInt16(MN_ABI_VERSION_MINOR) else {
            throw HostError(MN_ERR_VERSION, "\(source) needs plugin ABI \(d.abi_major).\(d.abi_minor); this kernel "
                + "has ABI \(kernel) — upgrade the node, or use a build of the plugin for ABI \(kernel)")
        }
        guard Int(d.struct_size) >= minimumDescriptorSize else {
            throw .invalid("\(source): descriptor struct_size is \(d.struct_size); ABI 1 needs at least "
                + "\(minimumDescriptorSize)")
        }
        guard let name = d.name, let version = d.version else {
            throw .invalid("\(source): descriptor name or version is NULL")
        }
        return PluginDescriptorInfo(
            name: String(cString: name), version: String(cString: version), abiMajor: d.abi_major,
            abiMinor: d.abi_minor)
    }

    public init(context: PluginHostContext, descriptor: UnsafePointer<mn_plugin_descriptor>,
                observer: (any PluginCallObserver)? = nil) {
        self.context = context
        self.descriptor = descriptor
        self.observer = observer
        context.instance = self
    }

    @inline(__always)
    private func guarded<T>(_ hook: PluginHook, _ body: () -> T) -> T {
        guard let observer else { return body() }
        let token = observer.willCall(slot: context.slot, hook: hook)
        defer { observer.didCall(token) }
        return body()
    }

    /// Runs plugin code the host calls by other means (exported functions through libffi) under the observer.
    public func callExported<T>(_ body: () -> T) -> T { guarded(.exportedFunction, body) }

    /// Calls on_init. The context serves host calls from here on; on failure it is stopped again.
    public func initialize(config: [UInt8]) throws(HostError) {
        context.activate()
        guard let onInit = descriptor.pointee.on_init else { return }
        var newState: UnsafeMutableRawPointer?
        let status = config.withUnsafeBufferPointer { bytes in
            guarded(.initialize) {
                onInit(context.vtable, context.opaque, mn_bytes(ptr: bytes.baseAddress, len: bytes.count), &newState)
            }
        }
        state = newState
        guard status == MN_OK else {
            context.markStopped()
            throw HostError(status, "plugin \(context.name): on_init returned \(HostStatus.name(status))")
        }
    }

    public func start() throws(HostError) {
        guard let onStart = descriptor.pointee.on_start else { return }
        let status = guarded(.start) { onStart(state) }
        guard status == MN_OK else {
            throw HostError(status, "plugin \(context.name): on_start returned \(HostStatus.name(status))")
        }
    }

    /// Calls on_stop (once) and stops serving host calls.
    public func stop() {
        guard !context.isStopped else { return }
        if let onStop = descriptor.pointee.on_stop { guarded(.stop) { onStop(state) } }
        context.markStopped()
    }

    /// Delivers a bus message to on_message. All views are borrowed for the call.
    @inline(__always)
    public func deliver(topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, sender: UnsafeRawBufferPointer,
                        replyToken: mn_reply_token) {
        guard let onMessage = descriptor.pointee.on_message, context.isActive else { return }
        var message = mn_message(
            struct_size: UInt32(MemoryLayout<mn_message>.size), topic: Buffers.view(topic),
            payload: Buffers.view(payload), sender: Buffers.view(sender), reply_token: replyToken)
        guarded(.message) { onMessage(state, &message) }
    }

    public func fire(_ timer: TimerCallback, id: mn_timer_id) {
        guard context.isActive else { return }
        guarded(.timer) { timer.function(timer.userData, id) }
    }

    /// Answers a bus_request. Called even after stop would be wrong (the plugin's memory may be gone), so it isn't.
    public func deliverReply(_ reply: BusReplyCallback, status: mn_status, payload: UnsafeRawBufferPointer) {
        guard context.isActive else { return }
        guarded(.busReply) { reply.function(reply.userData, status, Buffers.view(payload)) }
    }

    /// Delivers a message from another node to a plugin's net_register callback. Views are borrowed for the call.
    public func deliverNet(_ callback: NetReceiveCallback, from peer: UnsafeRawBufferPointer,
                           message: UnsafeRawBufferPointer) {
        guard context.isActive else { return }
        guarded(.netMessage) {
            callback.function(callback.userData, peer.baseAddress?.assumingMemoryBound(to: UInt8.self),
                              Buffers.view(message))
        }
    }

    /// Tells a plugin's net_watch_peers callback that `peer` went up or down.
    public func deliverPeerEvent(_ callback: NetPeerEventCallback, peer: PeerID, up: Bool) {
        guard context.isActive else { return }
        peer.bytes.withUnsafeBufferPointer { key in
            guarded(.peerEvent) { callback.function(callback.userData, key.baseAddress, up ? MN_NET_PEER_UP : MN_NET_PEER_DOWN) }
        }
    }

    /// Runs an HTTP handler and returns what it answered (500 if it set nothing), or the deferral it opened (ABI 1.2),
    /// which the host then waits for: `whenAnswered`, and `context.expireDeferral` once its `timeoutMs` has passed.
    public func handleHTTP(_ handler: HTTPHandler, request: HTTPRequestParts) -> HTTPHandlerOutcome {
        guard context.isActive else {
            return .answered(HTTPResponseParts(status: 503, contentType: "text/plain",
                                               body: Array("plugin \(context.name) is stopped\n".utf8)))
        }
        let headers = HTTPRequestBox(headers: request.headers)
        let response = HTTPResponseBox(method: request.method, path: request.path)
        let (handle, requestHandle) = context.handles.withLock { table -> (UInt, UInt) in
            let handle = table.allocate(), requestHandle = table.allocate()
            table.responses[handle] = response
            table.requests[requestHandle] = headers
            return (handle, requestHandle)
        }
        defer {
            context.handles.withLock { table in
                table.responses[handle] = nil
                table.requests[requestHandle] = nil
            }
        }

        let method = Array(request.method.utf8), path = Array(request.path.utf8), query = Array(request.query.utf8)
        method.withUnsafeBytes { method in
            path.withUnsafeBytes { path in
                query.withUnsafeBytes { query in
                    request.body.withUnsafeBytes { body in
                        var raw = mn_http_request(
                            struct_size: UInt32(MemoryLayout<mn_http_request>.size), method: Buffers.view(method),
                            path: Buffers.view(path), query: Buffers.view(query), body: Buffers.view(body),
                            host_private: UnsafeRawPointer(bitPattern: requestHandle))
                        guarded(.http) { handler.function(handler.userData, &raw, OpaquePointer(bitPattern: handle)) }
                    }
                }
            }
        }
        if let deferral = response.deferral {
            deferral.attachHeaders(response.extraHeaders)
            return .deferred(deferral)
        }
        guard var answer = response.response else {
            return .answered(HTTPResponseParts(
                status: 500, contentType: "text/plain",
                body: Array("plugin \(context.name)'s handler for \(request.method) \(request.path) set no response\n".utf8)))
        }
        answer.headers = response.extraHeaders
        return .answered(answer)
    }
}
