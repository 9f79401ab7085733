import Foundation
import MetanodeCore
import MetanodeHostBridge

/// Decides, before anything is loaded, which plugins this start will run and in what order: enabled, not
/// quarantined, signed by a trusted publisher (or allowed unsigned), config valid against the manifest's schema, and
/// every dependency satisfied. Each plugin left out gets the reason.
public struct PluginPlan: Sendable {
    /// In dependency order: dependencies first.
    public var load: [LoadRequest] = []
    /// Direct dependencies of each planned plugin (start waits for these).
    public var dependencies: [String: [String]] = [:]
    /// Optional dependencies of each planned plugin that are planned too: start waits for them, but starts anyway
    /// if they do not.
    public var optionalDependencies: [String: [String]] = [:]
    /// Worth a line in the log, not a failure (an optional dependency out of range).
    public var notes: [String] = []
    /// Plugins that will not run, and why.
    public var failures: [String: MetanodeError] = [:]
    /// Things the operator should know (unsigned packages let through, …).
    public var warnings: [String] = []
}

public enum PluginPlanner {
    public static func plan(dataDirectory: DataDirectory, config: NodeConfig, registry: PluginRegistry,
                            safeMode: Bool) throws(MetanodeError) -> PluginPlan {
        var plan = PluginPlan()
        let trusted = try dataDirectory.trustStore.keys()
        var candidates: [String: LoadRequest] = [:]
        for entry in registry.sortedEntries where entry.enabled {
            if let quarantine = entry.quarantine {
                plan.failures[entry.name] = MetanodeError(.quarantined, "quarantined: \(quarantine.reason)")
                continue
            }
            if safeMode && entry.source != .bundled {
                plan.failures[entry.name] = MetanodeError(.denied, "not started: safe mode runs bundled plugins only")
                continue
            }
            do throws(MetanodeError) {
                let package = try PluginPackage.open(entry.path)
                guard package.manifest.name == entry.name else {
                    throw MetanodeError(.invalidManifest, "\(entry.path) now holds plugin \(package.manifest.name), "
                        + "not \(entry.name)")
                }
                let verification = try package.verify(trusted: trusted, allowUnsigned: entry.allowUnsigned)
                plan.warnings += verification.warnings
                let configBytes = try validatedConfig(for: package.manifest, config.pluginConfigs[entry.name])
                let declared = Set(package.manifest.capabilities.map(\.rawValue))
                let grants = HostCapabilities(names: entry.grants.filter { declared.contains($0) })
                candidates[entry.name] = LoadRequest(package: package, grants: grants,
                                                     bundled: entry.source == .bundled, config: configBytes)
            } catch {
                plan.failures[entry.name] = error
            }
        }
        let nodes = candidates.values.map { request in
            DependencySolver.Node(request.package.manifest)
        }
        let solved = DependencySolver.plan(nodes)
        for (name, error) in solved.failures { plan.failures[name] = error }
        plan.notes = solved.notes
        for name in solved.startOrder {
            guard let request = candidates[name] else { continue }
            plan.load.append(request)
            plan.dependencies[name] = request.package.manifest.dependencies.keys.sorted()
            if let optional = solved.optionalStartsAfter[name] { plan.optionalDependencies[name] = optional }
        }
        return plan
    }

    /// The plugin's config with schema defaults applied, checked against the schema; `{}` when none is given.
    public static func validatedConfig(for manifest: PluginManifest, _ given: JSONValue?) throws(MetanodeError)
        -> [UInt8]
    {
        var value = given ?? .object([:])
        if let schema = manifest.configSchema {
            value = schema.applyingDefaults(to: value)
            let violations = schema.validate(value)
            if !violations.isEmpty {
                throw MetanodeError(.invalidConfig, "config for plugin \(manifest.name) is invalid: "
                    + violations.map(\.message).joined(separator: "; ")
                    + " — fix it with `metanode plugin config \(manifest.name) JSON`")
            }
        }
        let bytes = value.serializedBytes(pretty: false)
        guard bytes.count <= NodeConfig.fileBytesMax else {
            throw MetanodeError(.limitExceeded, "config for plugin \(manifest.name) is \(bytes.count) bytes; the "
                + "limit is \(NodeConfig.fileBytesMax)")
        }
        return bytes
    }
}
