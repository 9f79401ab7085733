import Foundation
import MetanodeCore

/// What the node knows about its plugins between runs: `plugins.json`. Machine-managed by `metanode plugin …`.
public struct PluginRegistry: Sendable, Equatable {
    public enum Source: String, Sendable {
        /// Shipped with the node binary; read in place from the bundled-plugins directory.
        case bundled
        /// Installed by the operator; copied into `<data>/plugins/NAME`.
        case installed
    }

    public struct Quarantine: Sendable, Equatable {
        public var reason: String
        public var at: String
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var source: Source
        public var path: String
        public var enabled: Bool
        public var grants: [String]
        public var allowUnsigned: Bool
        public var quarantine: Quarantine?

        public init(name: String, source: Source, path: String, enabled: Bool = false, grants: [String] = [],
                    allowUnsigned: Bool = false, quarantine: Quarantine? = nil) {
            self.name = name
            self.source = source
            self.path = path
            self.enabled = enabled
            self.grants = grants
            self.allowUnsigned = allowUnsigned
            self.quarantine = quarantine
        }
    }

    public var entries: [String: Entry] = [:]

    public init(entries: [String: Entry] = [:]) { self.entries = entries }

    public var sortedEntries: [Entry] { entries.values.sorted { $0.name < $1.name } }

    public static func load(from path: String) throws(MetanodeError) -> PluginRegistry {
        guard FileIO.exists(path) else { return PluginRegistry() }
        let bytes = try FileIO.read(path, limit: 4 << 20, what: "plugin registry")
        do {
            return try parse(bytes)
        } catch {
            throw MetanodeError(.invalidConfig, "\(path): \(error.message) — fix or remove the file; "
                + "`metanode node init` does not overwrite it")
        }
    }

    static func parse(_ bytes: [UInt8]) throws(MetanodeError) -> PluginRegistry {
        let json = try JSONValue.parse(bytes)
        guard let plugins = json["plugins"]?.objectValue else {
            throw MetanodeError(.invalidConfig, "expected {\"plugins\": {...}}")
        }
        var registry = PluginRegistry()
        for (name, value) in plugins {
            guard let source = value["source"]?.stringValue.flatMap(Source.init(rawValue:)),
                  let path = value["path"]?.stringValue
            else {
                throw MetanodeError(.invalidConfig, "plugin '\(name)' needs a source (bundled|installed) and a path")
            }
            var entry = Entry(name: name, source: source, path: path)
            entry.enabled = value["enabled"]?.boolValue ?? false
            entry.grants = (value["grants"]?.arrayValue ?? []).compactMap(\.stringValue)
            entry.allowUnsigned = value["allowUnsigned"]?.boolValue ?? false
            if let q = value["quarantine"], let reason = q["reason"]?.stringValue {
                entry.quarantine = Quarantine(reason: reason, at: q["at"]?.stringValue ?? "")
            }
            registry.entries[name] = entry
        }
        return registry
    }

    public func serialized() -> [UInt8] {
        var plugins: [String: JSONValue] = [:]
        for entry in entries.values {
            var object: [String: JSONValue] = [
                "source": .string(entry.source.rawValue), "path": .string(entry.path), "enabled": .bool(entry.enabled),
                "grants": .array(entry.grants.map(JSONValue.string)), "allowUnsigned": .bool(entry.allowUnsigned),
            ]
            if let q = entry.quarantine {
                object["quarantine"] = .object(["reason": .string(q.reason), "at": .string(q.at)])
            }
            plugins[entry.name] = .object(object)
        }
        return JSONValue.object(["version": .int(1), "plugins": .object(plugins)]).serializedBytes(pretty: true) + [0x0a]
    }
}
