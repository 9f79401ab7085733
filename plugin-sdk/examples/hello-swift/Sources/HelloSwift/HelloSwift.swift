// hello-swift: the SDK's example Swift plugin and the mirror image of hello-c.
//
//   GET  /hello  "<greeting> from hello-swift\n" (greeting from the config, default "hello")
//   POST /count  increments kv "count" (decimal text) and answers the new value
//   GET  /count  the current value ("0" if absent)
//   POST /ping   requests "hello.c.ping" with the body (or "ping"), answers 202 "sent\n"; the reply (or
//                "error: <status>") is stored under kv "last_pong"
//   GET  /pong   the stored reply, 404 if there is none yet
//   bus          answers requests on "hello.swift.ping" with "pong from hello-swift: " + payload
//   metric       requests_total, one per HTTP request
//   export       int64_t hello_swift_add(int64_t a, int64_t b)
import MetanodePluginKit

public final class HelloSwift: Plugin {
    public static let name = "hello-swift"
    public static let version = "1.0.0"
    public static let pingTopic = "hello.swift.ping"
    public static let peerPingTopic = "hello.c.ping"
    public static let pingTimeoutMs: UInt32 = 2000

    struct Config: Decodable {
        var greeting: String?
    }

    let context: PluginContext
    let greeting: String
    let requests: Counter

    public init(context: PluginContext) throws {
        self.context = context
        self.greeting = try context.decodeConfig(Config.self).greeting ?? "hello"
        self.requests = try context.metrics.counter("requests_total", help: "HTTP requests served by hello-swift")
        try context.bus.subscribe(Self.pingTopic)
        try route("GET", "/hello") { [unowned self] _ in .text("\(greeting) from hello-swift\n") }
        try route("POST", "/count") { [unowned self] _ in .text(String(try increment())) }
        try route("GET", "/count") { [unowned self] _ in .text(String(try count())) }
        try route("POST", "/ping") { [unowned self] request in try ping(request.body) }
        try route("GET", "/pong") { _ in
            guard let pong = try context.kv.string("last_pong") else { return .notFound("no pong yet\n") }
            return .text(pong)
        }
    }

    public func start() throws {
        context.log.info("hello-swift started")
    }

    public func receive(_ message: BusMessage) {
        guard message.topic == Self.pingTopic, message.isRequest else { return }
        do {
            try context.bus.reply(to: message, Array("pong from hello-swift: ".utf8) + message.payload)
        } catch {
            context.log.warn("could not answer \(message.sender)'s ping: \(error)")
        }
    }

    /// Registers a route whose requests count in requests_total.
    private func route(_ method: String, _ path: String, _ handler: @escaping HTTPRoutes.Handler) throws {
        try context.http.route(method, path) { [unowned self] request in
            requests.increment()
            return try handler(request)
        }
    }

    private func count() throws -> UInt64 {
        guard let text = try context.kv.string("count") else { return 0 }
        guard let value = UInt64(text) else {
            throw PluginError(PluginStatus.internal, "kv 'count' holds '\(text)', not a decimal number")
        }
        return value
    }

    private func increment() throws -> UInt64 {
        let value = try count() + 1
        try context.kv.put("count", String(value))
        return value
    }

    private func ping(_ body: [UInt8]) throws -> HTTPResponse {
        let payload = body.isEmpty ? Array("ping".utf8) : body
        try context.bus.request(Self.peerPingTopic, payload, timeoutMs: Self.pingTimeoutMs) { [unowned self] result in
            let stored: [UInt8]
            switch result {
            case .success(let reply): stored = reply
            case .failure(let error): stored = Array("error: \(error.statusName)".utf8)
            }
            do {
                try context.kv.put("last_pong", stored)
            } catch {
                context.log.error("could not store the pong: \(error)")
            }
        }
        return .text("sent\n", status: 202)
    }
}

/// The plugin's entry symbol.
@c(metanode_plugin_entry_v1)
public func metanodePluginEntry() -> UnsafeRawPointer? {
    PluginExport.descriptor(for: HelloSwift.self, name: HelloSwift.name, version: HelloSwift.version)
}

/// Exported through the manifest as "int64_t hello_swift_add(int64_t a, int64_t b)" (name "add"); wraps on overflow.
@c(hello_swift_add)
public func helloSwiftAdd(_ a: Int64, _ b: Int64) -> Int64 {
    a &+ b
}
