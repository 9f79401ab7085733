import MetanodeABI
import MetanodeHostBridge

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// HTTP for tests, with the kernel's routing (HTTPRouteTable) and its handling of deferred responses (ABI 1.2):
//
//   http(...)  sends and waits, like a client of a node: a deferred response is waited for in real time, up to the
//              timeout the handler gave, while the host's queue runs (so answers from bus replies or messages come
//              through); then 504, and the plugin's late answer gets MN_ERR_NOT_FOUND.
//   send(...)  returns at once with a TestHTTPExchange. A deferred response arrives when the plugin answers (from any
//              thread), answers 504 when the host's manual clock passes its timeout (`advance(byMs:)`), and 503 when
//              the plugin stops — deterministic, like bus requests sent with `request(...)`.

extension TestHost {
    /// A deferred response waiting for its answer, with its deadline on the host's clock.
    struct PendingHTTP {
        let exchange: TestHTTPExchange
        let deferral: DeferredHTTPResponse
        let context: PluginHostContext
        let deadlineMs: UInt64

        /// The timeout passed: 504, unless the plugin answered first.
        func expire() { context.expireDeferral(deferral, answer: deferral.timeoutAnswer) }
    }

    /// Sends an HTTP request to `plugin`'s routes and returns at once: answered already, unless the handler deferred
    /// its response. 404 without a matching route, 405 when only other methods match. `path` may carry "?query".
    @discardableResult
    public func send(_ plugin: TestPlugin, _ method: String = "GET", _ path: String, body: [UInt8] = [],
                     headers: [(name: String, value: String)] = []) -> TestHTTPExchange {
        var path = path
        var query = ""
        if let mark = path.firstIndex(of: "?") {
            query = String(path[path.index(after: mark)...])
            path = String(path[..<mark])
        }
        let method = method.uppercased()
        let handler: HTTPHandler
        switch state.withLock({ $0.plugins[$0.owned(plugin)].routes.match(method: method, path: path) }) {
        case .handler(let found): handler = found
        case .methodNotAllowed:
            return TestHTTPExchange(method: method, path: path, answer: HTTPResponseParts(
                status: 405, contentType: "text/plain; charset=utf-8",
                body: Array("no \(method) handler for \(path) in plugin \(plugin.name)\n".utf8)))
        case .notFound:
            return TestHTTPExchange(method: method, path: path, answer: HTTPResponseParts(
                status: 404, contentType: "text/plain; charset=utf-8",
                body: Array("no route for \(method) \(path) in plugin \(plugin.name)\n".utf8)))
        }
        let request = HTTPRequestParts(method: method, path: path, query: query, headers: headers, body: body)
        switch plugin.instance.handleHTTP(handler, request: request) {
        case .answered(let answer):
            return TestHTTPExchange(method: method, path: path, answer: answer)
        case .deferred(let deferral):
            let exchange = TestHTTPExchange(method: method, path: path, deferral: deferral, context: plugin.context)
            state.withLock { state in
                state.deferredHTTP.append(PendingHTTP(
                    exchange: exchange, deferral: deferral, context: plugin.context,
                    deadlineMs: state.nowMs + UInt64(deferral.timeoutMs)))
            }
            deferral.whenAnswered { exchange.settle($0) }
            return exchange
        }
    }

    /// `send` with a text body.
    @discardableResult
    public func send(_ plugin: TestPlugin, _ method: String = "GET", _ path: String, body: String,
                     headers: [(name: String, value: String)] = []) -> TestHTTPExchange {
        send(plugin, method, path, body: Array(body.utf8), headers: headers)
    }

    /// Sends an HTTP request to `plugin`'s routes and returns the answer. If the handler deferred its response, waits
    /// for it in real time — running the host's queue meanwhile — for up to the handler's `timeout_ms`; then the
    /// deferral times out as on a node (504, and the plugin's later answer gets MN_ERR_NOT_FOUND).
    @discardableResult
    public func http(_ plugin: TestPlugin, _ method: String = "GET", _ path: String, body: [UInt8] = [],
                     headers: [(name: String, value: String)] = []) -> HTTPResponseParts {
        wait(for: send(plugin, method, path, body: body, headers: headers))
    }

    /// `http` with a text body.
    @discardableResult
    public func http(_ plugin: TestPlugin, _ method: String = "GET", _ path: String, body: String,
                     headers: [(name: String, value: String)] = []) -> HTTPResponseParts {
        http(plugin, method, path, body: Array(body.utf8), headers: headers)
    }

    /// Waits in real time for the answer to `exchange`, running the host's queue meanwhile, for at most `timeoutMs`
    /// (default: the deferral's own timeout). Past that the deferral times out: 504.
    public func wait(for exchange: TestHTTPExchange, timeoutMs: UInt32? = nil) -> HTTPResponseParts {
        if let answer = exchange.response { return answer }
        guard let deferral = exchange.deferral, let context = exchange.context else {
            preconditionFailure("an unanswered exchange always has a deferral")
        }
        let deadlineNs = Self.realNowNs() + UInt64(timeoutMs ?? deferral.timeoutMs) * 1_000_000
        while true {
            runUntilIdle()
            if let answer = exchange.response { return answer }
            let nowNs = Self.realNowNs()
            guard nowNs < deadlineNs else { break }
            // Wake for the answer at once, and every few milliseconds for events other threads queued.
            exchange.waitForAnswer(upToNs: min(deadlineNs - nowNs, Self.queuePollNs))
        }
        context.expireDeferral(deferral, answer: deferral.timeoutAnswer)
        // Expired now, or answered by a thread that is completing it this instant: either way it settles.
        return exchange.waitForAnswer(upToNs: .max)!
    }

    /// How often a waiting `http` runs the queue.
    static let queuePollNs: UInt64 = 2_000_000

    static func realNowNs() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Deferred HTTP responses the host is waiting for (`send` ones; a waiting `http` counts too).
    public var pendingHTTPCount: Int {
        state.withLock { state in state.deferredHTTP.reduce(0) { $0 + ($1.exchange.isAnswered ? 0 : 1) } }
    }
}

/// An HTTP request a test sent with `TestHost.send`: answered at once, or later if its handler deferred the response
/// (ABI 1.2). `@unchecked Sendable`: the answer sits behind a mutex; the rest is immutable.
public final class TestHTTPExchange: @unchecked Sendable {
    public let method: String
    public let path: String
    /// The deferral's id (what the plugin answers with http_deferred_respond) if the handler deferred, else nil.
    public var deferredID: mn_http_deferred_id? { deferral?.id }
    /// The timeout the handler gave when it deferred, else nil.
    public var deferredTimeoutMs: UInt32? { deferral?.timeoutMs }

    let deferral: DeferredHTTPResponse?
    let context: PluginHostContext?
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var answer: HTTPResponseParts?

    init(method: String, path: String, answer: HTTPResponseParts) {
        self.method = method
        self.path = path
        self.deferral = nil
        self.context = nil
        self.answer = answer
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    init(method: String, path: String, deferral: DeferredHTTPResponse, context: PluginHostContext) {
        self.method = method
        self.path = path
        self.deferral = deferral
        self.context = context
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    /// The answer; nil while a deferred response is outstanding.
    public var response: HTTPResponseParts? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return answer
    }

    public var isAnswered: Bool { response != nil }

    /// Whether the handler deferred its response (answered since, or not).
    public var wasDeferred: Bool { deferral != nil }

    func settle(_ parts: HTTPResponseParts) {
        pthread_mutex_lock(&mutex)
        precondition(answer == nil, "HTTP exchange \(method) \(path) answered twice")
        answer = parts
        pthread_mutex_unlock(&mutex)
        pthread_cond_broadcast(&condition)
    }

    /// Waits until answered or `upToNs` passed; returns the answer if there is one.
    @discardableResult
    func waitForAnswer(upToNs: UInt64) -> HTTPResponseParts? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if upToNs == .max {
            while answer == nil { pthread_cond_wait(&condition, &mutex) }
            return answer
        }
        if answer == nil {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let total = UInt64(now.tv_nsec) + upToNs
            var until = timespec()
            until.tv_sec = now.tv_sec + Int(total / 1_000_000_000)
            until.tv_nsec = Int(total % 1_000_000_000)
            _ = pthread_cond_timedwait(&condition, &mutex, &until)
        }
        return answer
    }
}
