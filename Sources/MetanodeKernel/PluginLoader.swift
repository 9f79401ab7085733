import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeHostBridge
import MetanodeStorage

/// What the kernel needs to load one plugin; produced by PluginPlanner.
public struct LoadRequest: Sendable {
    public var package: PluginPackage
    public var grants: HostCapabilities
    public var bundled: Bool
    /// Validated JSON config (schema defaults applied).
    public var config: [UInt8]

    public init(package: PluginPackage, grants: HostCapabilities, bundled: Bool, config: [UInt8]) {
        self.package = package
        self.grants = grants
        self.bundled = bundled
        self.config = config
    }
}

extension Kernel {
    /// Opens the library, checks its descriptor against its manifest, resolves its exported functions and gives it a
    /// slot, an executor and a vtable. Libraries are opened RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE and never closed:
    /// unloading a Swift library crashes the host.
    @discardableResult
    public func load(_ request: LoadRequest) throws(MetanodeError) -> PluginRuntime {
        let manifest = request.package.manifest
        let path = request.package.libraryPath
        let slot = runtimes.count
        guard slot < 256 else { throw MetanodeError(.limitExceeded, "a node loads at most 256 plugins") }
        crashGuard?.name(slot: slot, plugin: manifest.name)
        let token = crashGuard?.willCall(slot: slot, hook: .entry)
        defer { if let token { crashGuard?.didCall(token) } }

        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw MetanodeError(.io, "cannot load plugin \(manifest.name) from \(path): \(reason)")
        }
        guard let symbol = dlsym(handle, MN_PLUGIN_ENTRY_SYMBOL) else {
            throw MetanodeError(.abi, "\(path) does not export \(MN_PLUGIN_ENTRY_SYMBOL) — is it a Metanode plugin? "
                + "(C: give the entry function default visibility; Swift: @_cdecl(\"\(MN_PLUGIN_ENTRY_SYMBOL)\"))")
        }
        let entry = unsafeBitCast(symbol, to: mn_plugin_entry_v1_fn.self)
        let info: PluginDescriptorInfo
        let descriptor = entry()
        do {
            info = try PluginInstance.inspect(descriptor, source: path)
        } catch {
            throw MetanodeError(error.status == MN_ERR_VERSION ? .abi : .invalidManifest, error.message)
        }
        guard info.name == manifest.name, info.version == manifest.version.description else {
            throw MetanodeError(.invalidManifest, "\(path) says it is plugin \(info.name) \(info.version), but its "
                + "manifest says \(manifest.name) \(manifest.version)")
        }
        // The descriptor's minor is the header the library was compiled against, which may be newer than the
        // minor its manifest needs (a plugin built with the 1.1 SDK that uses only 1.0 functions); `inspect` has
        // already refused a minor newer than this kernel's. The major must agree.
        guard info.abiMajor == manifest.abi.major else {
            throw MetanodeError(.abi, "plugin \(manifest.name) was compiled against ABI \(info.abiMajor)."
                + "\(info.abiMinor) but its manifest declares \(manifest.abi.major).\(manifest.abi.minor)")
        }

        var exports: [String: (UnsafeMutableRawPointer, CPrototype)] = [:]
        for export in manifest.exports {
            guard let address = dlsym(handle, export.prototype.symbol) else {
                throw MetanodeError(.invalidManifest, "plugin \(manifest.name)'s manifest exports \(export.name) as "
                    + "\(export.prototype.symbol), but \(manifest.library.file) has no such symbol")
            }
            exports[export.name] = (address, export.prototype)
        }

        let runtime = PluginRuntime(slot: slot, package: request.package, grants: request.grants,
                                    bundled: request.bundled, config: request.config,
                                    namespace: try namespacePrefix(for: manifest.name))
        runtime.exports = exports.mapValues { (address: $0.0, prototype: $0.1) }
        let context = PluginHostContext(name: manifest.name, slot: slot, grants: request.grants, backend: self,
                                        hostObject: runtime)
        runtime.instance = PluginInstance(context: context, descriptor: descriptor!, observer: crashGuard)
        register(runtime)
        return runtime
    }
}

extension Kernel {
    /// The first byte of every key the kernel keeps for itself; plugin namespaces start with `pluginKeyPrefix`.
    static let kernelKeyPrefix: UInt8 = 0x00
    static let pluginKeyPrefix: UInt8 = 0x01
    static let namespaceIDsMax = 1 << 24

    /// The key prefix of `plugin`'s namespace: 0x01 and a 3-byte id assigned at its first load and kept in the
    /// kernel's keyspace, so the namespace survives restarts and upgrades. A short binary prefix instead of the name
    /// keeps keys small, which RocksDB compares on every lookup.
    public func namespacePrefix(for plugin: String) throws(MetanodeError) -> [UInt8] {
        let mappingKey = [Self.kernelKeyPrefix] + Array("namespace/\(plugin)".utf8)
        if let id = try store.get(mappingKey) {
            guard id.count == 3 else {
                throw MetanodeError(.storage, "namespace id of plugin \(plugin) is \(id.count) bytes, not 3: the kernel "
                    + "keyspace is corrupt")
            }
            return [Self.pluginKeyPrefix] + id
        }
        let counterKey = [Self.kernelKeyPrefix] + Array("namespace-next".utf8)
        let next = try store.get(counterKey).map { $0.reduce(0) { $0 << 8 | Int($1) } } ?? 1
        guard next < Self.namespaceIDsMax else {
            throw MetanodeError(.limitExceeded, "all \(Self.namespaceIDsMax) plugin namespace ids are used")
        }
        let id = [UInt8(next >> 16 & 0xff), UInt8(next >> 8 & 0xff), UInt8(next & 0xff)]
        let batch = WriteBatch()
        batch.put(mappingKey, id)
        batch.put(counterKey, [UInt8(truncatingIfNeeded: (next + 1) >> 16), UInt8(truncatingIfNeeded: (next + 1) >> 8),
                               UInt8(truncatingIfNeeded: next + 1)])
        try store.write(batch)
        return [Self.pluginKeyPrefix] + id
    }
}
