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
}

/// The raw request, valid only while its handler runs.
final class RequestScope {
    let host: Host
    var raw: UnsafePointer<mn_http_request>?

    init(host: Host, raw: UnsafePointer<mn_http_request>) {
        self.host = host
        self.raw = raw
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

    /// Registers `handler` for `method` ("GET", "POST", ... or "*") and `path`: exact ("/count"), or a prefix when the
    /// last segment is "*" ("/items/*"). A handler that throws answers 500 and logs the error. Handlers are kept for
    /// the life of the process.
    public func route(_ method: String, _ path: String, _ handler: @escaping Handler) throws(PluginError) {
        let route = Route(host: host, method: method, path: path, handler: handler)
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
    let host: Host
    let method: String
    let path: String
    let handler: HTTPRoutes.Handler

    init(host: Host, method: String, path: String, handler: @escaping HTTPRoutes.Handler) {
        self.host = host
        self.method = method
        self.path = path
        self.handler = handler
    }

    func handle(_ raw: UnsafePointer<mn_http_request>, _ response: OpaquePointer?) {
        let scope = RequestScope(host: host, raw: raw)
        defer { scope.raw = nil }
        let request = HTTPRequest(
            method: raw.pointee.method.string, path: raw.pointee.path.string, query: raw.pointee.query.string,
            body: raw.pointee.body.array, scope: scope)
        let answer: HTTPResponse
        do {
            answer = try handler(request)
        } catch {
            host.log(.error, "\(request.method) \(request.path) failed: \(error)")
            answer = .text("internal error: \(error)\n", status: 500)
        }
        send(answer, response)
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
        for (name, value) in answer.headers {
            let status = name.withMNBytes { name in
                value.withMNBytes { value in host.api.pointee.http_response_header(host.ctx, response, name, value) }
            }
            if status != MN_OK { host.log(.error, "\(host.error(status, "http_response_header"))") }
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
