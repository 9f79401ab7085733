import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge

/// The operator's plugin operations on a data directory: install, enable, disable, uninstall, configure. They edit
/// `plugins.json` and `config.json` atomically; a running node picks the changes up when it restarts.
public struct PluginManager: Sendable {
    public let data: DataDirectory

    public init(_ data: DataDirectory) { self.data = data }

    /// Everything `plugin list` and `plugin info` show about one plugin.
    public struct PluginInfo: Sendable {
        public var name: String
        public var version: String?
        public var description: String?
        public var source: PluginRegistry.Source
        public var path: String
        public var enabled: Bool
        public var grants: [String]
        public var capabilities: [String]
        public var dependencies: [String: String]
        /// Used when present (`optionalDependencies` in the manifest).
        public var optionalDependencies: [String: String] = [:]
        public var exports: [String]
        public var abi: String?
        public var signer: String?
        public var quarantine: PluginRegistry.Quarantine?
        /// Why the package would not load now (bad signature, missing file, …).
        public var problem: String?
        public var allowUnsigned: Bool

        public var state: String {
            if quarantine != nil { return "quarantined" }
            if problem != nil && enabled { return "broken" }
            return enabled ? "enabled" : "disabled"
        }

        public var json: JSONValue {
            var object: [String: JSONValue] = [
                "name": .string(name), "source": .string(source.rawValue), "path": .string(path),
                "enabled": .bool(enabled), "state": .string(state), "grants": .array(grants.map(JSONValue.string)),
                "capabilities": .array(capabilities.map(JSONValue.string)),
                "dependencies": .object(dependencies.mapValues(JSONValue.string)),
                "optionalDependencies": .object(optionalDependencies.mapValues(JSONValue.string)),
                "exports": .array(exports.map(JSONValue.string)), "allowUnsigned": .bool(allowUnsigned),
            ]
            if let version { object["version"] = .string(version) }
            if let description { object["description"] = .string(description) }
            if let abi { object["abi"] = .string(abi) }
            if let signer { object["signer"] = .string(signer) }
            if let problem { object["problem"] = .string(problem) }
            if let quarantine {
                object["quarantine"] = .object(["reason": .string(quarantine.reason), "at": .string(quarantine.at)])
            }
            return .object(object)
        }
    }

    // MARK: Reading

    public func list() throws(MetanodeError) -> [PluginInfo] {
        try data.requireInitialized()
        let registry = try data.loadRegistry()
        let trusted = (try? data.trustStore.keys()) ?? []
        return registry.sortedEntries.map { info(for: $0, trusted: trusted) }
    }

    public func info(_ name: String) throws(MetanodeError) -> PluginInfo {
        let registry = try data.loadRegistry()
        let entry = try Self.entry(name, in: registry)
        return info(for: entry, trusted: (try? data.trustStore.keys()) ?? [])
    }

    private func info(for entry: PluginRegistry.Entry, trusted: [MinisignPublicKey]) -> PluginInfo {
        var info = PluginInfo(name: entry.name, source: entry.source, path: entry.path, enabled: entry.enabled,
                              grants: entry.grants, capabilities: [], dependencies: [:], exports: [],
                              quarantine: entry.quarantine, allowUnsigned: entry.allowUnsigned)
        do {
            let package = try PluginPackage.open(entry.path)
            let manifest = package.manifest
            info.version = manifest.version.description
            info.description = manifest.description
            info.capabilities = manifest.capabilities.map(\.rawValue)
            info.dependencies = manifest.dependencies.mapValues(\.description)
            info.optionalDependencies = manifest.optionalDependencies.mapValues(\.description)
            info.exports = manifest.exports.map { "\($0.name): \($0.prototype)" }
            info.abi = "\(manifest.abi.major).\(manifest.abi.minor)"
            let verification = try package.verify(trusted: trusted, allowUnsigned: entry.allowUnsigned)
            info.signer = verification.signer?.keyIDHex
            if !verification.warnings.isEmpty { info.problem = verification.warnings.joined(separator: "; ") }
        } catch {
            info.problem = error.message
        }
        return info
    }

    static func entry(_ name: String, in registry: PluginRegistry) throws(MetanodeError) -> PluginRegistry.Entry {
        guard let entry = registry.entries[name] else {
            let known = registry.entries.keys.sorted()
            throw MetanodeError(.notFound, "no plugin named '\(name)' is installed"
                + (known.isEmpty ? "" : " (installed: \(known.joined(separator: ", ")))"))
        }
        return entry
    }

    /// Checks a package directory or archive without installing it.
    public func verify(path: String, extraKeys: [MinisignPublicKey] = []) throws(MetanodeError)
        -> (PluginPackage, PluginPackage.Verification)
    {
        try withPackage(at: path) { package throws(MetanodeError) in
            let trusted = ((try? data.trustStore.keys()) ?? []) + extraKeys
            return (package, try package.verify(trusted: trusted, allowUnsigned: false))
        }
    }

    /// Opens a package directory, or unpacks an archive into the work directory for the duration of `body`.
    func withPackage<T>(at path: String, _ body: (PluginPackage) throws(MetanodeError) -> T) throws(MetanodeError)
        -> T
    {
        guard PackageArchive.isArchive(path) else { return try body(PluginPackage.open(path)) }
        let unpacked = try PackageArchive.unpack(path, into: data.workDirectory)
        defer { try? FileIO.remove(unpacked) }
        return try body(PluginPackage.open(unpacked))
    }

    // MARK: Changing

    /// Verifies and copies a package into `<data>/plugins/NAME`. Installed plugins start disabled.
    public func install(path: String, allowUnsigned: Bool) throws(MetanodeError) -> (PluginInfo, [String]) {
        try data.requireInitialized()
        var registry = try data.loadRegistry()
        return try withPackage(at: path) { package throws(MetanodeError) in
            try install(package, registry: &registry, allowUnsigned: allowUnsigned)
        }
    }

    private func install(_ package: PluginPackage, registry: inout PluginRegistry, allowUnsigned: Bool)
        throws(MetanodeError) -> (PluginInfo, [String])
    {
        let name = package.manifest.name
        if let existing = registry.entries[name] {
            throw MetanodeError(.alreadyExists, "plugin \(name) is already installed (\(existing.source.rawValue), "
                + "\(existing.path)); uninstall it first to replace it")
        }
        let verification = try package.verify(trusted: data.trustStore.keys(), allowUnsigned: allowUnsigned)
        let destination = "\(data.pluginsDirectory)/\(name)"
        let staging = "\(data.pluginsDirectory)/.\(name).installing"
        try FileIO.remove(staging)
        try FileIO.createDirectory(staging)
        var files = [PluginManifest.fileName, package.manifest.library.file]
        if package.signature != nil { files.append(PluginManifest.signatureFileName) }
        for file in files { try FileIO.copyFile("\(package.directory)/\(file)", to: "\(staging)/\(file)") }
        try FileIO.remove(destination)
        guard rename(staging, destination) == 0 else {
            throw MetanodeError(.io, "cannot move \(staging) to \(destination): \(FileIO.errnoText())")
        }
        let entry = PluginRegistry.Entry(name: name, source: .installed, path: destination,
                                         allowUnsigned: allowUnsigned && !verification.warnings.isEmpty)
        registry.entries[name] = entry
        try data.saveRegistry(registry)
        return (info(for: entry, trusted: (try? data.trustStore.keys()) ?? []), verification.warnings)
    }

    /// Enables a plugin with the given capabilities (all it declares when `grants` is nil). Clears a quarantine.
    public func enable(_ name: String, grants requested: [String]?) throws(MetanodeError) -> PluginInfo {
        try data.requireInitialized()
        var registry = try data.loadRegistry()
        var entry = try Self.entry(name, in: registry)
        if entry.enabled && entry.quarantine == nil {
            throw MetanodeError(.alreadyExists, "plugin \(name) is already enabled (grants: "
                + "\(entry.grants.isEmpty ? "none" : entry.grants.joined(separator: ", "))); to change its grants, "
                + "disable it and enable it again with --grant")
        }
        let package = try PluginPackage.open(entry.path)
        _ = try package.verify(trusted: data.trustStore.keys(), allowUnsigned: entry.allowUnsigned)
        let declared = package.manifest.capabilities.map(\.rawValue)
        let grants: [String]
        if let requested {
            let known = Set(Capability.allCases.map(\.rawValue))
            for capability in requested {
                guard known.contains(capability) else {
                    throw MetanodeError(.invalidArgument, "unknown capability '\(capability)' — capabilities are "
                        + Capability.allCases.map(\.rawValue).joined(separator: ", "))
                }
                guard declared.contains(capability) else {
                    throw MetanodeError(.invalidArgument, "plugin \(name) does not declare capability '\(capability)' "
                        + "in its manifest; it declares: \(declared.isEmpty ? "none" : declared.joined(separator: ", "))")
                }
            }
            grants = Array(Set(requested)).sorted()
        } else {
            grants = declared
        }
        // Dependencies must be satisfied by plugins that are (or will be) enabled.
        var nodes = [DependencySolver.Node(package.manifest)]
        for other in registry.sortedEntries where other.enabled && other.name != name && other.quarantine == nil {
            if let manifest = try? PluginPackage.open(other.path).manifest {
                nodes.append(DependencySolver.Node(manifest))
            }
        }
        if let failure = DependencySolver.plan(nodes).failures[name] { throw failure }
        _ = try PluginPlanner.validatedConfig(for: package.manifest, data.loadConfig().pluginConfigs[name])
        entry.enabled = true
        entry.grants = grants
        entry.quarantine = nil
        registry.entries[name] = entry
        try data.saveRegistry(registry)
        return try info(name)
    }

    public func disable(_ name: String) throws(MetanodeError) -> PluginInfo {
        try data.requireInitialized()
        var registry = try data.loadRegistry()
        var entry = try Self.entry(name, in: registry)
        guard entry.enabled else { throw MetanodeError(.alreadyExists, "plugin \(name) is already disabled") }
        var dependents: [String] = []
        for other in registry.sortedEntries where other.enabled && other.name != name {
            if let manifest = try? PluginPackage.open(other.path).manifest, manifest.dependencies[name] != nil {
                dependents.append(other.name)
            }
        }
        guard dependents.isEmpty else {
            throw MetanodeError(.dependency, "plugin \(name) is needed by \(dependents.joined(separator: ", ")); "
                + "disable \(dependents.count == 1 ? "it" : "them") first")
        }
        entry.enabled = false
        registry.entries[name] = entry
        try data.saveRegistry(registry)
        return try info(name)
    }

    public func uninstall(_ name: String) throws(MetanodeError) {
        try data.requireInitialized()
        var registry = try data.loadRegistry()
        let entry = try Self.entry(name, in: registry)
        guard entry.source == .installed else {
            throw MetanodeError(.denied, "plugin \(name) is bundled with the node and cannot be uninstalled; "
                + "`metanode plugin disable \(name)` turns it off")
        }
        guard !entry.enabled else {
            throw MetanodeError(.denied, "plugin \(name) is enabled; run `metanode plugin disable \(name)` first")
        }
        registry.entries[name] = nil
        try data.saveRegistry(registry)
        try FileIO.remove(entry.path)
    }

    /// Sets a plugin's config after validating it against the manifest's schema.
    public func configure(_ name: String, config: JSONValue) throws(MetanodeError) -> [UInt8] {
        try data.requireInitialized()
        let registry = try data.loadRegistry()
        let entry = try Self.entry(name, in: registry)
        let manifest = try PluginPackage.open(entry.path).manifest
        let effective = try PluginPlanner.validatedConfig(for: manifest, config)
        var nodeConfig = try data.loadConfig()
        nodeConfig.pluginConfigs[name] = config
        try data.saveConfig(nodeConfig)
        return effective
    }

    /// Registers bundled packages the registry does not know yet. On a dev node they are enabled with every
    /// capability they declare. A plugin whose config schema requires `stateDirectory` (files it keeps outside kv,
    /// such as DockLock's images) gets `<data dir>/<plugin name>` unless it is configured already. Returns the names
    /// added.
    @discardableResult
    public func syncBundled(config: NodeConfig) throws(MetanodeError) -> [String] {
        guard let directory = config.bundledPluginsDirectory, FileIO.isDirectory(directory) else { return [] }
        var registry = try data.loadRegistry()
        var added: [String] = []
        for child in FileIO.listDirectory(directory) {
            let path = "\(directory)/\(child)"
            guard FileIO.exists("\(path)/\(PluginManifest.fileName)") else { continue }
            guard let manifest = try? PluginPackage.open(path).manifest, registry.entries[manifest.name] == nil else {
                continue
            }
            registry.entries[manifest.name] = PluginRegistry.Entry(
                name: manifest.name, source: .bundled, path: FileIO.absolute(path), enabled: config.dev,
                grants: config.dev ? manifest.capabilities.map(\.rawValue) : [])
            added.append(manifest.name)
        }
        if !added.isEmpty { try data.saveRegistry(registry) }
        var nodeConfig = try data.loadConfig()
        var configured = false
        for name in added where nodeConfig.pluginConfigs[name] == nil {
            guard let entry = registry.entries[name], let manifest = try? PluginPackage.open(entry.path).manifest,
                  manifest.configSchema?.source["required"]?.arrayValue?.contains(JSONValue.string("stateDirectory")) == true
            else { continue }
            nodeConfig.pluginConfigs[name] = .object(["stateDirectory": .string("\(data.root)/\(name)")])
            configured = true
        }
        if configured { try data.saveConfig(nodeConfig) }
        return added
    }

    /// Records a crash inside a plugin: the plugin stays disabled until the operator enables it again.
    public func quarantine(_ name: String, reason: String) throws(MetanodeError) {
        var registry = try data.loadRegistry()
        guard var entry = registry.entries[name] else { return }
        entry.quarantine = PluginRegistry.Quarantine(reason: reason, at: ISO8601DateFormatter().string(from: Date()))
        registry.entries[name] = entry
        try data.saveRegistry(registry)
    }
}
