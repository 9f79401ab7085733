import MetanodeABI

// Deferred HTTP responses (ABI 1.2): http_response_defer and http_deferred_respond.
//
// A handler defers its response; the bridge opens a `DeferredHTTPResponse` in the plugin context's table of open
// deferrals and the handler returns. The deferral is then completed exactly once, by whoever removes it from that
// table first: the plugin (http_deferred_respond, from any thread), the host when the timeout passes
// (`expireDeferral`), or the bridge itself with 503 when the plugin stops. The host that sent the request hears the
// answer through `whenAnswered`. So both hosts (the kernel and MetanodePluginTesting) keep one contract: the count
// limit, the once-only answer, the NOT_FOUND after a timeout, the 503 at stop.

/// What a plugin's HTTP handler left behind when it returned.
public enum HTTPHandlerOutcome: Sendable {
    /// The handler set its response (or set none, which answers 500).
    case answered(HTTPResponseParts)
    /// The handler deferred its response: wait for it with `whenAnswered`, and give up after `timeoutMs` with
    /// `PluginHostContext.expireDeferral(_:answer:)`.
    case deferred(DeferredHTTPResponse)
}

/// One deferred HTTP response. `@unchecked Sendable`: its mutable state sits behind a lock.
public final class DeferredHTTPResponse: @unchecked Sendable {
    public let id: mn_http_deferred_id
    /// How long after the handler returned the host waits for the plugin's answer (1...MN_HTTP_DEFER_TIMEOUT_MS_MAX).
    public let timeoutMs: UInt32
    public let plugin: String
    public let method: String
    public let path: String

    private struct State {
        /// Headers the handler added with http_response_header; they go with the plugin's answer.
        var headers: [(name: String, value: String)] = []
        var answer: HTTPResponseParts?
        var answerIsThePlugins = false
        var waiter: (@Sendable (HTTPResponseParts) -> Void)?
        var delivered = false
    }

    private let state = HostLock(State())

    init(id: mn_http_deferred_id, timeoutMs: UInt32, plugin: String, method: String, path: String) {
        self.id = id
        self.timeoutMs = timeoutMs
        self.plugin = plugin
        self.method = method
        self.path = path
    }

    /// Calls `body` exactly once with the answer: at once if it has come, else on the thread that completes the
    /// deferral. Call it once, after the handler has returned (headers the handler adds are attached then).
    public func whenAnswered(_ body: @escaping @Sendable (HTTPResponseParts) -> Void) {
        let ready = state.withLock { state -> HTTPResponseParts? in
            precondition(state.waiter == nil && !state.delivered, "whenAnswered called twice for deferral \(id)")
            guard let answer = state.answer else {
                state.waiter = body
                return nil
            }
            state.delivered = true
            return Self.final(answer, state)
        }
        if let ready { body(ready) }
    }

    /// The answer, once there is one (for hosts that poll).
    public var answer: HTTPResponseParts? {
        state.withLock { state in state.answer.map { Self.final($0, state) } }
    }

    /// The answer 504 the host sends when `timeoutMs` passes without one.
    public var timeoutAnswer: HTTPResponseParts {
        Self.text(504, "plugin \(plugin) deferred its response to \(method) \(path) and did not answer within "
            + "\(timeoutMs) ms\n")
    }

    /// The answer 503 for a deferral still open when its plugin stops.
    var stoppedAnswer: HTTPResponseParts {
        Self.text(503, "plugin \(plugin) stopped before answering \(method) \(path)\n")
    }

    /// The answer 503 for a deferral still open when the node shuts down.
    public var shutdownAnswer: HTTPResponseParts {
        Self.text(503, "the node is shutting down; plugin \(plugin) had not answered \(method) \(path)\n")
    }

    func attachHeaders(_ headers: [(name: String, value: String)]) {
        state.withLock { $0.headers = headers }
    }

    /// Only the caller that removed the deferral from its context's table calls this, so it runs once.
    func complete(_ answer: HTTPResponseParts, byPlugin: Bool) {
        let delivery = state.withLock { state -> ((@Sendable (HTTPResponseParts) -> Void), HTTPResponseParts)? in
            precondition(state.answer == nil, "deferral \(id) of plugin \(plugin) completed twice")
            state.answer = answer
            state.answerIsThePlugins = byPlugin
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            state.delivered = true
            return (waiter, Self.final(answer, state))
        }
        if let delivery { delivery.0(delivery.1) }
    }

    private static func final(_ answer: HTTPResponseParts, _ state: State) -> HTTPResponseParts {
        guard state.answerIsThePlugins, !state.headers.isEmpty else { return answer }
        var answer = answer
        answer.headers = state.headers + answer.headers
        return answer
    }

    private static func text(_ status: UInt16, _ body: String) -> HTTPResponseParts {
        HTTPResponseParts(status: status, contentType: "text/plain; charset=utf-8", body: Array(body.utf8))
    }
}

/// A plugin's open deferrals, by id. Behind `PluginHostContext.deferrals`.
struct DeferralTable {
    var nextID: mn_http_deferred_id = 1
    var open: [mn_http_deferred_id: DeferredHTTPResponse] = [:]
    /// Set when the plugin stops: nothing is deferred any more.
    var closed = false
}

extension PluginHostContext {
    /// http_response_defer: opens a deferral for the response `box` of a running handler.
    func openDeferral(_ box: HTTPResponseBox, timeoutMs: UInt32) throws(HostError) -> DeferredHTTPResponse {
        if let existing = box.deferral {
            throw .invalid("this response is already deferred (id \(existing.id)); answer it with "
                + "http_deferred_respond")
        }
        guard box.response == nil else {
            throw .invalid("this response was already set with http_response_set; a handler answers now or defers, "
                + "not both")
        }
        let result: Result<DeferredHTTPResponse, HostError> = deferrals.withLock { table in
            guard !table.closed else { return .failure(HostError(MN_ERR_STOPPED, "plugin \(name) is stopping")) }
            guard table.open.count < Int(MN_HTTP_DEFERRED_MAX) else {
                return .failure(HostError(MN_ERR_LIMIT, "plugin \(name) has \(table.open.count) deferred HTTP "
                    + "responses unanswered, the limit (MN_HTTP_DEFERRED_MAX); answer this request now (e.g. 503) "
                    + "or answer older ones first"))
            }
            let deferral = DeferredHTTPResponse(id: table.nextID, timeoutMs: timeoutMs, plugin: name,
                                                method: box.method, path: box.path)
            table.nextID += 1
            table.open[deferral.id] = deferral
            return .success(deferral)
        }
        let deferral = try result.get()
        box.deferral = deferral
        return deferral
    }

    /// http_deferred_respond: the plugin's answer, if the deferral is still open.
    func answerDeferral(_ id: mn_http_deferred_id, _ answer: HTTPResponseParts) throws(HostError) {
        guard let deferral = deferrals.withLock({ $0.open.removeValue(forKey: id) }) else {
            throw .notFound("no open deferred HTTP response \(id) (already answered, timed out, answered 503 by the "
                + "host, or never deferred by plugin \(name))")
        }
        deferral.complete(answer, byPlugin: true)
    }

    /// The host gives up on `deferral` (its timeout passed, or the node is shutting down) and answers `answer`
    /// instead. False if it was answered first; the plugin's later http_deferred_respond gets MN_ERR_NOT_FOUND.
    @discardableResult
    public func expireDeferral(_ deferral: DeferredHTTPResponse, answer: HTTPResponseParts) -> Bool {
        let removed = deferrals.withLock { table -> Bool in
            guard table.open[deferral.id] === deferral else { return false }
            table.open[deferral.id] = nil
            return true
        }
        if removed { deferral.complete(answer, byPlugin: false) }
        return removed
    }

    /// Expires every open deferral with the answer `answer(deferral)` gives (the kernel, at shutdown).
    public func expireAllDeferrals(_ answer: (DeferredHTTPResponse) -> HTTPResponseParts) {
        let open = deferrals.withLock { table -> [DeferredHTTPResponse] in
            defer { table.open.removeAll() }
            return table.open.values.sorted { $0.id < $1.id }
        }
        for deferral in open { deferral.complete(answer(deferral), byPlugin: false) }
    }

    /// How many deferred responses of this plugin are unanswered.
    public var openDeferralCount: Int { deferrals.withLock { $0.open.count } }

    /// At stop: every open deferral answers 503 and nothing can be deferred any more.
    func closeDeferrals() {
        let open = deferrals.withLock { table -> [DeferredHTTPResponse] in
            table.closed = true
            defer { table.open.removeAll() }
            return table.open.values.sorted { $0.id < $1.id }
        }
        for deferral in open { deferral.complete(deferral.stoppedAnswer, byPlugin: false) }
    }
}
