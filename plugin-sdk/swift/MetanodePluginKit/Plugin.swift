import MetanodeABI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Metanode plugin written in Swift.
///
/// The kernel calls every method on the plugin's own executor thread, one at a time (plugin.h, "Threads"), so a
/// plugin's stored properties need no locks as long as only hooks and the closures it registers touch them.
///
///     public final class Hello: Plugin {
///         public init(context: PluginContext) throws {
///             try context.http.route("GET", "/hello") { _ in .text("hello\n") }
///         }
///     }
///
///     @c(metanode_plugin_entry_v1)
///     public func metanodePluginEntry() -> UnsafeRawPointer? {
///         PluginExport.descriptor(for: Hello.self, name: "hello", version: "1.0.0")
///     }
public protocol Plugin: AnyObject {
    /// `on_init`: read the config, register routes, subscriptions, metrics and services. Throwing fails the plugin;
    /// the error is logged through the host first.
    init(context: PluginContext) throws
    /// `on_start`: every plugin this one depends on has started. Throwing fails the plugin.
    func start() throws
    /// `on_stop`: host calls fail with MN_ERR_STOPPED once this returns.
    func stop()
    /// `on_message`: a bus message for one of the plugin's subscriptions. Answer requests with
    /// `context.bus.reply(to:_:)`.
    func receive(_ message: BusMessage)
}

extension Plugin {
    public func start() throws {}
    public func stop() {}
    public func receive(_ message: BusMessage) {}
}

/// Builds the static `mn_plugin_descriptor` a Swift plugin's entry function returns.
public enum PluginExport {
    /// How many plugin types one image (a plugin library, or a test binary) can export. A plugin library has one;
    /// a test binary may define several plugins next to each other.
    public static let pluginTypesPerImageMax = 16

    /// The descriptor for plugin type `type`, created once per name and never freed. `name` and `version` must equal
    /// the manifest's. Returns the same pointer on every call with the same name.
    public static func descriptor<P: Plugin>(for type: P.Type, name: String, version: String) -> UnsafeRawPointer? {
        let pointer = registry.withLock { registrations -> UnsafeRawPointer in
            if let existing = registrations.first(where: { $0.name == name }) {
                precondition(existing.type == ObjectIdentifier(type),
                             "plugin name '\(name)' is already exported by another Swift type in this image")
                return UnsafeRawPointer(existing.descriptor)
            }
            let slot = registrations.count
            precondition(slot < pluginTypesPerImageMax,
                         "one image can export at most \(pluginTypesPerImageMax) plugin types; '\(name)' is one more")
            let descriptor = UnsafeMutablePointer<mn_plugin_descriptor>.allocate(capacity: 1)  // static: never freed
            descriptor.initialize(to: mn_plugin_descriptor(
                struct_size: UInt32(MemoryLayout<mn_plugin_descriptor>.size),
                abi_major: UInt16(MN_ABI_VERSION_MAJOR),
                abi_minor: UInt16(MN_ABI_VERSION_MINOR),
                name: UnsafePointer(strdup(name)),  // static: never freed
                version: UnsafePointer(strdup(version)),
                on_init: initHooks[slot],
                on_start: { state in PluginBox.from(state).start() },
                on_stop: { state in PluginBox.from(state).stop() },
                on_message: { state, message in
                    guard let message else { return }
                    PluginBox.from(state).receive(message)
                }))
            registrations.append(Registration(
                name: name, type: ObjectIdentifier(type), descriptor: descriptor,
                make: { context in try P(context: context) }))
            return UnsafeRawPointer(descriptor)
        }
        return pointer
    }

    struct Registration: @unchecked Sendable {  // `make` is only called from on_init, on the plugin's executor
        let name: String
        let type: ObjectIdentifier
        let descriptor: UnsafeMutablePointer<mn_plugin_descriptor>
        let make: (PluginContext) throws -> any Plugin
    }

    static let registry = Locked<[Registration]>([])

    typealias InitHook = @convention(c) (
        UnsafePointer<mn_host_api>?, OpaquePointer?, mn_bytes, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> mn_status

    /// on_init receives no pointer of ours, so each registered type gets its own on_init, which knows its slot.
    static let initHooks: [InitHook] = [
        { initialize(slot: 0, $0, $1, $2, $3) }, { initialize(slot: 1, $0, $1, $2, $3) },
        { initialize(slot: 2, $0, $1, $2, $3) }, { initialize(slot: 3, $0, $1, $2, $3) },
        { initialize(slot: 4, $0, $1, $2, $3) }, { initialize(slot: 5, $0, $1, $2, $3) },
        { initialize(slot: 6, $0, $1, $2, $3) }, { initialize(slot: 7, $0, $1, $2, $3) },
        { initialize(slot: 8, $0, $1, $2, $3) }, { initialize(slot: 9, $0, $1, $2, $3) },
        { initialize(slot: 10, $0, $1, $2, $3) }, { initialize(slot: 11, $0, $1, $2, $3) },
        { initialize(slot: 12, $0, $1, $2, $3) }, { initialize(slot: 13, $0, $1, $2, $3) },
        { initialize(slot: 14, $0, $1, $2, $3) }, { initialize(slot: 15, $0, $1, $2, $3) },
    ]

    static func initialize(slot: Int, _ api: UnsafePointer<mn_host_api>?, _ ctx: OpaquePointer?, _ config: mn_bytes,
                           _ outState: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> mn_status {
        guard let api, let ctx, let outState else { return MN_ERR_INVALID_ARGUMENT }
        let host = Host(api: api, ctx: ctx)
        guard let registration = registry.withLock({ $0.indices.contains(slot) ? $0[slot] : nil }) else {
            host.log(.error, "MetanodePluginKit: on_init of unregistered plugin slot \(slot)")
            return MN_ERR_INTERNAL
        }
        let context = PluginContext(host: host, name: registration.name, config: config.array)
        do {
            let plugin = try registration.make(context)
            // The state lives as long as the process: the host keeps calling hooks with it, and closures the plugin
            // registered (routes, timers) point into its context.
            outState.pointee = Unmanaged.passRetained(PluginBox(context: context, plugin: plugin)).toOpaque()
            return MN_OK
        } catch {
            // Kept alive anyway: routes or timers registered before the error point into the context, and a host
            // may still hold those pointers (it stops serving the plugin, but need not forget them).
            _ = Unmanaged.passRetained(context)
            host.log(.error, "plugin \(registration.name) failed to initialise: \(error)")
            return PluginBox.status(of: error)
        }
    }
}

/// The state pointer the host passes back to every hook: the context and the plugin instance.
///
/// `@unchecked Sendable`: the ABI calls every hook of one plugin on that plugin's executor thread, one at a time, so
/// the plugin object (which is not Sendable) is never touched concurrently through this box.
final class PluginBox: @unchecked Sendable {
    let context: PluginContext
    let plugin: any Plugin

    init(context: PluginContext, plugin: any Plugin) {
        self.context = context
        self.plugin = plugin
    }

    static func from(_ state: UnsafeMutableRawPointer?) -> PluginBox {
        guard let state else { preconditionFailure("MetanodePluginKit: a hook was called with a NULL state") }
        return Unmanaged<PluginBox>.fromOpaque(state).takeUnretainedValue()
    }

    func start() -> mn_status {
        do {
            try plugin.start()
            return MN_OK
        } catch {
            context.log.error("plugin \(context.pluginName) failed to start: \(error)")
            return Self.status(of: error)
        }
    }

    func stop() {
        plugin.stop()
    }

    func receive(_ raw: UnsafePointer<mn_message>) {
        let message = BusMessage(
            topic: raw.pointee.topic.string, payload: raw.pointee.payload.array, sender: raw.pointee.sender.string,
            replyToken: raw.pointee.reply_token)
        plugin.receive(message)
    }

    /// The status a hook answers for an error thrown by plugin code.
    static func status(of error: any Error) -> mn_status {
        switch error {
        case let error as PluginError: error.status == MN_OK ? MN_ERR_INTERNAL : error.status
        case is ConfigError: MN_ERR_INVALID_ARGUMENT
        default: MN_ERR_INTERNAL
        }
    }
}
