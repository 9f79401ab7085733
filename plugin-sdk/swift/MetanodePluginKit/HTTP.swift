import MetanodeABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An HTTP request for one of the plugin's routes. The values are copies; `header(_:)` asks the host and works only
/// while the handler runs (afterwards it returns nil).
public struct HTTPRequest {
    public let method: String
    /// The part after /v1/plugins/<name>, starting with "/"; percent-encoding is kept.
    public let path: String
    /// The raw query string without "?"; may be empty.
    public let query: String
    public let body: [UInt8]

    let scope: RequestScope

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// A request header by case-insensitive name (repeated headers come joined with ", "), or nil.
    public func header(_ name: String) -> String? {
        guard let raw = scope.raw else { return nil }
        var value = mn_str(ptr: nil, len: 0)
        let status = name.withMNBytes { scope.host.api.pointee.http_request_header(scope.host.ctx, raw, $0, &value) }
        guard status == MN_OK else { return nil }
        return value.string
    }

    /// The query's parameters in order, percent-decoded ("+" reads as a space).
    public var queryItems: [(name: String, value: String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (PercentDecoding.decode(parts[0]), parts.count > 1 ? PercentDecoding.decode(parts[1]) : "")
        }
    }

    /// The first query parameter called `name`, percent-decoded.
    public func queryItem(_ name: String) -> String? { queryItems.first { $0.name == name }?.value }

    /// Defers the response (ABI 1.2): the handler then returns `.later(responder)` at once, which frees the plugin's
    /// executor for its other requests and events, and the request is answered later, from any thread, with
    /// `responder.respond(_:)`. The client gets 504 if no answer comes within `timeoutMs` (1...3_600_000,
    /// MN_HTTP_DEFER_TIMEOUT_MS_MAX) of the handler returning, and 503 if the plugin stops first. `headers` go with
    /// the later answer (it carries no headers of its own).
    ///
    /// Only in a handler registered with `deferrableRoute`, while it runs, once per request. Throws MN_ERR_LIMIT when
    /// MN_HTTP_DEFERRED_MAX (1024) responses of the plugin are unanswered (the route then answers 503 if the handler
    /// lets the error through), MN_ERR_INVALID_ARGUMENT for a timeout out of range, a second deferral or a plain
    /// route, MN_ERR_VERSION on a host older than ABI 1.2.
    public func deferResponse(timeoutMs: UInt32, headers: [(name: String, value: String)] = [])
        throws(PluginError) -> HTTPResponder
    {
        try HTTPRoutes.requireDeferral(scope.host, "http_response_defer")
        guard scope.deferrable else {
            throw PluginError(MN_ERR_INVALID_ARGUMENT, "deferResponse works in handlers registered with "
                + "context.http.deferrableRoute; a plain route's handler returns its HTTPResponse",
                function: "http_response_defer")
        }
        guard scope.raw != nil, let response = scope.response else {
            throw PluginError(MN_ERR_INVALID_ARGUMENT, "deferResponse is called inside the handler, before it returns",
                              function: "http_response_defer")
        }
        let host = scope.host
        var id: mn_http_deferred_id = 0
        try host.check(host.api.pointee.http_response_defer(host.ctx, response, timeoutMs, &id), "http_response_defer")
        host.addResponseHeaders(headers, to: response)
        let responder = HTTPResponder(host: host, id: id, timeoutMs: timeoutMs, method: method, path: path)
        scope.responder = responder
        return responder
    }
}

/// The raw request, valid only while its handler runs.
final class RequestScope {
    let host: Host
    var raw: UnsafePointer<mn_http_request>?
    var response: OpaquePointer?
    /// The route was registered with `deferrableRoute`.
    let deferrable: Bool
    /// Set by `deferResponse`.
    var responder: HTTPResponder?

    init(host: Host, raw: UnsafePointer<mn_http_request>, response: OpaquePointer?, deferrable: Bool) {
        self.host = host
        self.raw = raw
        self.response = response
        self.deferrable = deferrable
    }
}

/// What a handler of a `deferrableRoute` returns (ABI 1.2).
public enum HTTPAnswer {
    /// Answers now. Also after `deferResponse`: the request is answered with this response and the responder's
    /// later `respond` returns false.
    case now(HTTPResponse)
    /// The response was deferred with `request.deferResponse(timeoutMs:)`; `responder` answers it later.
    case later(HTTPResponder)
}

/// Answers one deferred HTTP response (ABI 1.2), from any thread, once: the first `respond` sends the answer, later
/// calls return false and send nothing.
public final class HTTPResponder: Sendable {
    /// The deferral's id (`mn_http_deferred_id`).
    public let id: UInt64
    /// How long after the handler returned the node waits for the answer before answering 504.
    public let timeoutMs: UInt32
    let host: Host
    let method: String
    let path: String
    private let used = Locked(false)

    init(host: Host, id: UInt64, timeoutMs: UInt32, method: String, path: String) {
        self.host = host
        self.id = id
        self.timeoutMs = timeoutMs
        self.method = method
        self.path = path
    }

    /// Sends `response`'s status, content type and body (copied) as the answer. Returns true if this call answered the
    /// request; false if it was answered before (by an earlier `respond`, or by the node: 504 after the timeout, 503
    /// when the plugin stopped). `response.headers` are not sent: a deferred answer has the headers given to
    /// `deferResponse`. An answer the host refuses (a status outside 100...599, a body over 8 MiB) is logged and
    /// replaced by a 500, so the client is not left waiting; that also returns false.
    @discardableResult
    public func respond(_ response: HTTPResponse) -> Bool {
        let first = used.withLock { used -> Bool in
            defer { used = true }
            return !used
        }
        guard first else { return false }
        if !response.headers.isEmpty {
            host.log(.warn, "deferred \(method) \(path): \(response.headers.count) header(s) of the answer dropped; a "
                + "deferred answer carries the headers given to deferResponse(timeoutMs:headers:)")
        }
        let status = send(response.status, response.contentType, response.body)
        switch status {
        case MN_OK:
            return true
        case MN_ERR_NOT_FOUND, MN_ERR_STOPPED:
            return false  // timed out, or the plugin stopped: the node has answered
        default:
            let error = host.error(status, "http_deferred_respond")
            host.log(.error, "deferred \(method) \(path): \(error); answering 500 instead")
            _ = send(500, "text/plain; charset=utf-8", Array("internal error: \(error.message)\n".utf8))
            return false
        }
    }

    /// True once `respond` has been called.
    public var isUsed: Bool { used.withLock { $0 } }

    private func send(_ status: UInt16, _ contentType: String, _ body: [UInt8]) -> mn_status {
        contentType.withMNBytes { contentType in
            body.withMNBytes { body in host.api.pointee.http_deferred_respond(host.ctx, id, status, contentType, body) }
        }
    }
}

/// What a handler answers.
public struct HTTPResponse: Sendable {
    public var status: UInt16
    public var contentType: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: UInt16 = 200, contentType: String = "application/octet-stream",
                headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }

    /// `text/plain; charset=utf-8`.
    public static func text(_ text: String, status: UInt16 = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }

    /// `application/json`, encoded with JSONEncoder (sorted keys); a value that does not encode answers 500.
    public static func json(_ value: some Encodable, status: UInt16 = 200) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return HTTPResponse(status: status, contentType: "application/json",
                                body: Array(try encoder.encode(value)))
        } catch {
            return .text("response does not encode as JSON: \(error)\n", status: 500)
        }
    }

    /// Raw bytes with a content type.
    public static func bytes(_ body: [UInt8], contentType: String = "application/octet-stream",
                             status: UInt16 = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: contentType, body: body)
    }

    /// 404 with a short text body.
    public static func notFound(_ message: String = "not found\n") -> HTTPResponse { .text(message, status: 404) }

    /// A copy with one more header.
    public func header(_ name: String, _ value: String) -> HTTPResponse {
        var copy = self
        copy.headers.append((name, value))
        return copy
    }
}

/// Routes under /v1/plugins/<name>/ on the node's API (capability "http").
public struct HTTPRoutes: Sendable {
    let host: Host
    let table: RouteTable

    init(host: Host) {
        self.host = host
        self.table = RouteTable()
    }

    public typealias Handler = (HTTPRequest) throws -> HTTPResponse
    public typealias DeferrableHandler = (HTTPRequest) throws -> HTTPAnswer

    /// Registers `handler` for `method` ("GET", "POST", ... or "*") and `path`: exact ("/count"), or a prefix when the
    /// last segment is "*" ("/items/*"). A handler that throws answers 500 and logs the error. Handlers are kept for
    /// the life of the process.
    public func route(_ method: String, _ path: String, _ handler: @escaping Handler) throws(PluginError) {
        try register(Route(host: host, method: method, path: path, handler: .immediate(handler)))
    }

    /// Registers a route whose handler may answer later (ABI 1.2): it returns `.now(response)`, or defers with
    /// `request.deferResponse(timeoutMs:)` and returns `.later(responder)` at once; the responder answers from any
    /// thread. Routing as for `route`. A handler that throws answers 500 (503 when deferResponse hit the limit),
    /// also after deferring. Throws MN_ERR_VERSION on a host older than ABI 1.2 (see `supportsDeferredResponses`).
    ///
    ///     try context.http.deferrableRoute("POST", "/run") { request in
    ///         let job = try Job(request.body)
    ///         let responder = try request.deferResponse(timeoutMs: 600_000)
    ///         runner.start(job) { exit in responder.respond(.json(exit)) }  // any thread, later
    ///         return .later(responder)
    ///     }
    public func deferrableRoute(_ method: String, _ path: String, _ handler: @escaping DeferrableHandler)
        throws(PluginError)
    {
        try Self.requireDeferral(host, "http_route")
        try register(Route(host: host, method: method, path: path, handler: .deferrable(handler)))
    }

    /// Whether the host offers deferred responses (ABI 1.2): `deferrableRoute` works.
    public var supportsDeferredResponses: Bool { Self.hostDefers(host) }

    /// The smallest `mn_host_api` that has the ABI 1.2 functions.
    static let vtableSizeForDeferral =
        MemoryLayout<mn_host_api>.offset(of: \mn_host_api.http_deferred_respond)! + MemoryLayout<UnsafeRawPointer>.size

    static func hostDefers(_ host: Host) -> Bool {
        host.api.pointee.abi_minor >= 2 && Int(host.api.pointee.struct_size) >= vtableSizeForDeferral
    }

    static func requireDeferral(_ host: Host, _ function: StaticString) throws(PluginError) {
        guard hostDefers(host) else {
            let api = host.api.pointee
            throw PluginError(
                MN_ERR_VERSION,
                "deferred HTTP responses need plugin ABI 1.2; this host offers ABI \(api.abi_major).\(api.abi_minor) "
                    + "— run the plugin on a newer node, or register a plain route",
                function: "\(function)")
        }
    }

    private func register(_ route: Route) throws(PluginError) {
        let method = route.method, path = route.path
        table.routes.withLock { $0.append(route) }  // keeps `route` alive: the host holds only its address
        let userData = Unmanaged.passUnretained(route).toOpaque()
        let status = method.withMNBytes { method in
            path.withMNBytes { path in
                host.api.pointee.http_route(host.ctx, method, path, { userData, request, response in
                    guard let userData, let request else { return }
                    Unmanaged<Route>.fromOpaque(userData).takeUnretainedValue().handle(request, response)
                }, userData)
            }
        }
        if status != MN_OK {
            table.routes.withLock { $0.removeAll { $0 === route } }
            throw host.error(status, "http_route")
        }
    }
}

/// `@unchecked Sendable`: the list sits behind a lock; handlers run only on the plugin's executor.
final class RouteTable: @unchecked Sendable {
    let routes = Locked<[Route]>([])
}

final class Route {
    enum Handler {
        case immediate(HTTPRoutes.Handler)
        case deferrable(HTTPRoutes.DeferrableHandler)

        var isDeferrable: Bool {
            switch self {
            case .immediate: false
            case .deferrable: true
            }
        }
    }

    let host: Host
    let method: String
    let path: String
    let handler: Handler

    init(host: Host, method: String, path: String, handler: Handler) {
        self.host = host
        self.method = method
        self.path = path
        self.handler = handler
    }

    func handle(_ raw: UnsafePointer<mn_http_request>, _ response: OpaquePointer?) {
        let scope = RequestScope(host: host, raw: raw, response: response, deferrable: handler.isDeferrable)
        defer {
            scope.raw = nil
            scope.response = nil
        }
        let request = HTTPRequest(
            method: raw.pointee.method.string, path: raw.pointee.path.string, query: raw.pointee.query.string,
            body: raw.pointee.body.array, scope: scope)
        let answer: HTTPAnswer
        do {
            switch handler {
            case .immediate(let handler): answer = .now(try handler(request))
            case .deferrable(let handler): answer = try handler(request)
            }
        } catch {
            host.log(.error, "\(request.method) \(request.path) failed: \(error)")
            if let error = error as? PluginError, error.status == MN_ERR_LIMIT,
               error.function == "http_response_defer" {
                answer = .now(.text("plugin busy: \(error.message)\n", status: 503))
            } else {
                answer = .now(.text("internal error: \(error)\n", status: 500))
            }
        }
        switch (answer, scope.responder) {
        case (.now(let answer), nil):
            send(answer, response)
        case (.now(let answer), let deferred?):
            // Deferred, then answered now after all: the answer goes through the deferral, headers included (the
            // response handle is still live). If the responder already answered, this answer is ignored.
            guard !deferred.isUsed else { break }
            host.addResponseHeaders(answer.headers, to: response)
            var bare = answer
            bare.headers = []
            deferred.respond(bare)
        case (.later(let responder), let deferred?) where responder === deferred:
            break  // answered later, from wherever the plugin keeps the responder
        case (.later, let deferred):
            let message = "\(request.method) \(request.path): the handler returned .later with a responder that is "
                + "not this request's; call request.deferResponse(timeoutMs:) and return its responder"
            host.log(.error, message)
            let answer = HTTPResponse.text("internal error: \(message)\n", status: 500)
            if let deferred { deferred.respond(answer) } else { send(answer, response) }
        }
    }

    private func send(_ answer: HTTPResponse, _ response: OpaquePointer?) {
        let status = answer.contentType.withMNBytes { contentType in
            answer.body.withMNBytes { body in
                host.api.pointee.http_response_set(host.ctx, response, answer.status, contentType, body)
            }
        }
        guard status == MN_OK else {
            host.log(.error, "\(host.error(status, "http_response_set"))")
            return
        }
        host.addResponseHeaders(answer.headers, to: response)
    }
}

extension Host {
    /// Adds headers to a live response (also a deferred one: they go with its later answer); failures are logged.
    fileprivate func addResponseHeaders(_ headers: [(name: String, value: String)], to response: OpaquePointer?) {
        for (name, value) in headers {
            let status = name.withMNBytes { name in
                value.withMNBytes { value in api.pointee.http_response_header(ctx, response, name, value) }
            }
            if status != MN_OK { log(.error, "\(error(status, "http_response_header"))") }
        }
    }
}

enum PercentDecoding {
    static func decode(_ text: Substring) -> String {
        let input = Array(text.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count)
        var index = 0
        while index < input.count {
            let byte = input[index]
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), index + 2 < input.count, let h = hex(input[index + 1]),
                      let l = hex(input[index + 2]) {
                bytes.append(h << 4 | l)
                index += 2
            } else {
                bytes.append(byte)
            }
            index += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
