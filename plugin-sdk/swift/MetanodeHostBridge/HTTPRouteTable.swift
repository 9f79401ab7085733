import MetanodeABI

/// One plugin's HTTP routes and the ABI's matching rule, shared by every host: an exact path beats a prefix ("/a/*"
/// matches "/a/x", not "/a"), a longer prefix beats a shorter one, a named method beats "*", and HEAD falls back to
/// GET. A path that only has routes for other methods answers 405.
public struct HTTPRouteTable: Sendable {
    public enum Match: Sendable {
        case handler(HTTPHandler)
        case methodNotAllowed
        case notFound
    }

    struct Route: Sendable {
        let method: String
        /// The exact path, or for a prefix route the path up to and including the final "/".
        let path: String
        let isPrefix: Bool
        let handler: HTTPHandler
    }

    private var routes: [Route] = []

    public init() {}

    public var count: Int { routes.count }

    /// "METHOD path" for each route, in registration order.
    public var descriptions: [String] { routes.map { "\($0.method) \($0.path)\($0.isPrefix ? "*" : "")" } }

    /// Adds a route whose method and path the bridge has validated.
    public mutating func add(method: String, path: String, handler: HTTPHandler) throws(HostError) {
        let isPrefix = path.hasSuffix("/*")
        let stored = isPrefix ? String(path.dropLast()) : path
        guard routes.count < Int(MN_HTTP_ROUTES_MAX) else {
            throw HostError(MN_ERR_LIMIT, "plugin has \(MN_HTTP_ROUTES_MAX) routes, the limit")
        }
        guard !routes.contains(where: { $0.method == method && $0.path == stored && $0.isPrefix == isPrefix }) else {
            throw HostError(MN_ERR_EXISTS, "route \(method) \(path) is already registered")
        }
        routes.append(Route(method: method, path: stored, isPrefix: isPrefix, handler: handler))
    }

    public mutating func removeAll() { routes.removeAll() }

    public func match(method: String, path: String) -> Match {
        var best: Route?
        var pathMatched = false
        func rank(_ route: Route) -> (Int, Int, Int) {
            (route.isPrefix ? 0 : 1, route.path.utf8.count, route.method == "*" ? 0 : 1)
        }
        for route in routes where route.isPrefix ? path.hasPrefix(route.path) : path == route.path {
            pathMatched = true
            guard route.method == "*" || route.method == method || (method == "HEAD" && route.method == "GET") else {
                continue
            }
            if best.map({ rank(route) > rank($0) }) ?? true { best = route }
        }
        if let best { return .handler(best.handler) }
        return pathMatched ? .methodNotAllowed : .notFound
    }
}
