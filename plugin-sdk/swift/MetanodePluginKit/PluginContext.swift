import MetanodeABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Everything the kernel offers one plugin: a safe view of its `mn_host_api`.
///
/// Host functions are thread-safe, so the context may be used from any thread. Closures it is given (HTTP handlers,
/// timer bodies, bus reply handlers) always run on the plugin's executor thread, one at a time, which is why they need
/// not be `@Sendable`. `@unchecked Sendable`: the only mutable state, the closure tables, sits behind locks.
public final class PluginContext: @unchecked Sendable {
    /// The plugin's name, as in its descriptor and manifest.
    public let pluginName: String
    /// The plugin's JSON config (already validated against the manifest's schema by the kernel).
    public let config: [UInt8]

    public let log: Log
    public let kv: KeyValueStore
    public let crypto: Crypto
    public let signer: Signer
    public let bus: Bus
    public let timers: Timers
    public let http: HTTPRoutes
    public let services: Services
    public let metrics: Metrics
    /// Messages to other nodes (ABI 1.1).
    public let net: NetChannel

    let host: Host

    init(host: Host, name: String, config: [UInt8]) {
        self.host = host
        self.pluginName = name
        self.config = config
        self.log = Log(host: host)
        self.kv = KeyValueStore(host: host)
        self.crypto = Crypto(host: host)
        self.signer = Signer(host: host)
        self.bus = Bus(host: host)
        self.timers = Timers(host: host)
        self.http = HTTPRoutes(host: host)
        self.services = Services(host: host)
        self.metrics = Metrics(host: host)
        self.net = NetChannel(host: host)
    }

    /// The config as text.
    public var configText: String { String(decoding: config, as: UTF8.self) }

    /// Decodes the config JSON (an empty config reads as `{}`). Throws `ConfigError`, which fails on_init with
    /// MN_ERR_INVALID_ARGUMENT.
    public func decodeConfig<T: Decodable>(_ type: T.Type = T.self) throws(ConfigError) -> T {
        let json = config.isEmpty ? Array("{}".utf8) : config
        do {
            return try JSONDecoder().decode(T.self, from: Data(json))
        } catch {
            throw ConfigError(message: "plugin \(pluginName): config does not decode as \(T.self): \(error)")
        }
    }

    /// Milliseconds since the Unix epoch (wall clock) — not for consensus state.
    public var unixTimeMs: UInt64 { host.api.pointee.clock_unix_ms(host.ctx) }

    /// Nanoseconds from a monotonic clock with an arbitrary origin.
    public var monotonicNs: UInt64 { host.api.pointee.clock_monotonic_ns(host.ctx) }
}

/// The plugin's config did not decode.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

// MARK: - Log

/// A log level (MN_LOG_*).
public enum LogLevel: Int32, Sendable, Comparable {
    case trace = 0, debug, info, warn, error

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Writes log lines tagged with the plugin's name. Longer than 8192 bytes is cut by the host.
public struct Log: Sendable {
    let host: Host

    public func callAsFunction(_ level: LogLevel, _ message: String) { host.log(level, message) }
    public func trace(_ message: String) { host.log(.trace, message) }
    public func debug(_ message: String) { host.log(.debug, message) }
    public func info(_ message: String) { host.log(.info, message) }
    public func warn(_ message: String) { host.log(.warn, message) }
    public func error(_ message: String) { host.log(.error, message) }
}
