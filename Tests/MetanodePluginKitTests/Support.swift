import HelloSwift
import MetanodePluginKit
import MetanodePluginTesting
import Synchronization
import Testing

/// A plugin for tests, written with MetanodePluginKit: it records what reaches it and optionally subscribes to topics
/// and answers requests. Tests reach its context (to call the host directly) through `Probe.load`.
final class Probe: Plugin {
    struct Config: Decodable {
        var id: Int
        var subscribe: [String]?
        var replyPrefix: String?
    }

    let context: PluginContext
    let replyPrefix: String?
    private(set) var received: [BusMessage] = []

    init(context: PluginContext) throws {
        let config = try context.decodeConfig(Config.self)
        self.context = context
        self.replyPrefix = config.replyPrefix
        for topic in config.subscribe ?? [] { try context.bus.subscribe(topic) }
        Self.registry.withLock { $0[config.id] = ProbeReference(probe: self) }
    }

    func receive(_ message: BusMessage) {
        received.append(message)
        if let replyPrefix, message.isRequest {
            try? context.bus.reply(to: message, replyPrefix + message.text)
        }
    }

    static var descriptor: UnsafeRawPointer? {
        PluginExport.descriptor(for: Probe.self, name: "probe", version: "1.0.0")
    }

    /// Loads a probe named `name` and returns it with the object the plugin created (tests run in parallel, so each
    /// probe is found by a unique id passed in its config).
    @discardableResult
    static func load(into host: TestHost, name: String = "probe", grants: HostCapabilities = .all,
                     subscribe: [String] = [], replyPrefix: String? = nil) throws -> (TestPlugin, Probe) {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let topics = subscribe.map { "\"\($0)\"" }.joined(separator: ",")
        let reply = replyPrefix.map { #","replyPrefix":"\#($0)""# } ?? ""
        let config = #"{"id":\#(id),"subscribe":[\#(topics)]\#(reply)}"#
        let plugin = try host.load(descriptor, name: name, config: config, grants: grants)
        let probe = registry.withLock { $0.removeValue(forKey: id) }
        return (plugin, try #require(probe?.probe))
    }

    private static let nextID = Atomic<Int>(0)
    private static let registry = Mutex<[Int: ProbeReference]>([:])
}

/// `@unchecked Sendable`: a probe is handed from its on_init to the test that loaded it, on the same thread.
struct ProbeReference: @unchecked Sendable {
    let probe: Probe
}

/// A mutable value that closures given to the host (timer bodies, reply handlers) can write and tests can read.
final class Recorded<Value> {
    var value: Value
    init(_ value: Value) { self.value = value }
}

extension TestHost {
    /// Loads hello-swift through its real entry symbol.
    func loadHelloSwift(config: String = "{}", grants: HostCapabilities = .all) throws -> TestPlugin {
        try load(metanodePluginEntry(), config: config, grants: grants)
    }
}
