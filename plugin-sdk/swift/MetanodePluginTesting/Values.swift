import MetanodeABI
import MetanodeHostBridge
import MetanodePluginKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plugin loaded into a `TestHost`.
public final class TestPlugin: @unchecked Sendable {  // immutable; the instance is driven only by its TestHost
    /// The name the host knows it by (the descriptor's, unless `load` was given another).
    public let name: String
    /// Its index in the host, in load order.
    public let slot: Int
    public let context: PluginHostContext
    public let instance: PluginInstance
    /// What the descriptor says.
    public let descriptor: PluginDescriptorInfo

    init(name: String, slot: Int, context: PluginHostContext, instance: PluginInstance,
         descriptor: PluginDescriptorInfo) {
        self.name = name
        self.slot = slot
        self.context = context
        self.instance = instance
        self.descriptor = descriptor
    }

    /// True once on_stop has returned (or on_init failed).
    public var isStopped: Bool { context.isStopped }
}

/// One line a plugin logged.
public struct LogLine: Sendable, Equatable, CustomStringConvertible {
    public var plugin: String
    public var level: LogLevel
    public var message: String

    public init(plugin: String, level: LogLevel, message: String) {
        self.plugin = plugin
        self.level = level
        self.message = message
    }

    public var description: String { "[\(plugin)] \(level): \(message)" }
}

/// A call a plugin made to a capability it was not granted.
public struct Denial: Sendable, Equatable {
    public var plugin: String
    public var function: String
    public var capability: String
    /// How many times this plugin has called `function` without the grant so far (every call is reported).
    public var count: Int

    public init(plugin: String, function: String, capability: String, count: Int) {
        self.plugin = plugin
        self.function = function
        self.capability = capability
        self.count = count
    }
}

/// A metric's current value, as a test reads it.
public struct TestMetric: Sendable, Equatable {
    public var name: String
    public var kind: MetricKind
    public var help: String
    /// Counters: the total.
    public var count: UInt64
    /// Gauges: the last value set.
    public var value: Double
    /// Histograms: the bucket bounds and every observed value, in order.
    public var buckets: [Double]
    public var observations: [Double]
}

/// A bus request a test sent (see `TestHost.request`). Its outcome arrives while the host runs its queue.
public final class TestRequest: @unchecked Sendable {  // written only by the host's queue, on the test's thread
    public let topic: String
    /// MN_OK with the reply, or MN_ERR_TIMEOUT / MN_ERR_NO_RESPONDER; nil until answered.
    public internal(set) var status: mn_status?
    public internal(set) var reply: [UInt8] = []

    init(topic: String) { self.topic = topic }

    public var replyText: String { String(decoding: reply, as: UTF8.self) }
    public var isAnswered: Bool { status != nil }
}

/// An HTTP response as a test reads it.
extension HTTPResponseParts {
    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// A response header by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}


extension Array where Element == UInt8 {
    /// Byte-wise order, as the kv store sorts keys.
    static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }
}
