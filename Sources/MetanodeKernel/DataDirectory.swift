import Foundation
import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge

/// Where a node keeps everything. One directory, so `rm -rf` resets a dev node and a backup is one copy.
///
///     config.json     node configuration (operator-edited; see NodeConfig)
///     node.key        the node's Ed25519 identity key, minisign secret-key format, mode 0600
///     node.pub        its public key
///     trust/          publishers' public keys trusted to sign plugin packages
///     plugins/NAME/   installed (non-bundled) plugin packages
///     plugins.json    which plugins are installed, enabled, granted what, quarantined why
///     db/             RocksDB: every plugin's kv namespace
///     run/            this run's crash guard record, pid, and the HTTP address once ready
public struct DataDirectory: Sendable {
    public let root: String

    public init(_ root: String) { self.root = FileIO.absolute(root) }

    /// `$METANODE_DATA_DIR`, else `~/.metanode`.
    public static func defaultRoot() -> String {
        if let configured = ProcessInfo.processInfo.environment["METANODE_DATA_DIR"], !configured.isEmpty {
            return configured
        }
        return NSHomeDirectory() + "/.metanode"
    }

    public var configPath: String { root + "/config.json" }
    public var nodeKeyPath: String { root + "/node.key" }
    public var nodePublicKeyPath: String { root + "/node.pub" }
    public var trustDirectory: String { root + "/trust" }
    public var pluginsDirectory: String { root + "/plugins" }
    public var registryPath: String { root + "/plugins.json" }
    public var databasePath: String { root + "/db" }
    public var runDirectory: String { root + "/run" }
    public var workDirectory: String { root + "/tmp" }
    public var crashGuardPath: String { runDirectory + "/crashguard" }
    public var httpAddressPath: String { runDirectory + "/http.addr" }
    public var pidPath: String { runDirectory + "/node.pid" }

    public var isInitialized: Bool { FileIO.exists(configPath) && FileIO.exists(nodeKeyPath) }

    public var trustStore: TrustStore { TrustStore(directory: trustDirectory) }

    public func requireInitialized() throws(MetanodeError) {
        guard isInitialized else {
            throw MetanodeError(.notFound, "\(root) is not an initialised data directory; run "
                + "`metanode node init --data-dir \(root)` (add --dev for a development node)")
        }
    }

    public func loadConfig() throws(MetanodeError) -> NodeConfig {
        try requireInitialized()
        return try NodeConfig.load(from: configPath)
    }

    public func saveConfig(_ config: NodeConfig) throws(MetanodeError) {
        try FileIO.writeAtomically(config.serialized(), to: configPath, mode: 0o600)
    }

    /// The node's identity key. Refuses a key file others can read.
    public func loadNodeKey() throws(MetanodeError) -> MinisignSecretKey {
        let text = try KeyFile.readSecret(at: nodeKeyPath)
        do {
            return try MinisignSecretKey.parse(text, passphrase: nil)
        } catch {
            throw MetanodeError(error.code, "node key \(nodeKeyPath): \(error.message)")
        }
    }

    public func loadRegistry() throws(MetanodeError) -> PluginRegistry {
        try PluginRegistry.load(from: registryPath)
    }

    public func saveRegistry(_ registry: PluginRegistry) throws(MetanodeError) {
        try FileIO.writeAtomically(registry.serialized(), to: registryPath, mode: 0o644)
    }

    /// The HTTP address of the running node, if it is up (written when it is ready, removed at shutdown).
    public func runningNodeAddress() -> String? {
        guard let bytes = try? FileIO.read(httpAddressPath, limit: 256, what: "address file") else { return nil }
        let address = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return address.isEmpty ? nil : address
    }
}

/// The node's configuration file.
public struct NodeConfig: Sendable, Equatable {
    public var nodeName: String
    /// A development node: bundled plugins found later are enabled automatically.
    public var dev: Bool
    /// host:port for the HTTP API. Loopback unless the operator decides otherwise.
    public var httpListen: String
    /// fsync every write (slower; survives power loss, not just a process crash).
    public var storageSyncWrites: Bool
    /// Where this node's bundled plugin packages are.
    public var bundledPluginsDirectory: String?
    /// Per-plugin configuration, validated against each manifest's configSchema before on_init.
    public var pluginConfigs: [String: JSONValue]
    /// Peer-to-peer networking; nil for a node that talks to no other node.
    public var net: NetSettings?

    public static let fileBytesMax = 1 << 20
    public static let defaultHTTPListen = "127.0.0.1:7700"

    public init(nodeName: String, dev: Bool, httpListen: String = NodeConfig.defaultHTTPListen,
                storageSyncWrites: Bool = false, bundledPluginsDirectory: String? = nil,
                pluginConfigs: [String: JSONValue] = [:]) {
        self.nodeName = nodeName
        self.dev = dev
        self.httpListen = httpListen
        self.storageSyncWrites = storageSyncWrites
        self.bundledPluginsDirectory = bundledPluginsDirectory
        self.pluginConfigs = pluginConfigs
    }

    public static func load(from path: String) throws(MetanodeError) -> NodeConfig {
        let bytes = try FileIO.read(path, limit: fileBytesMax, what: "config file")
        do {
            return try parse(bytes)
        } catch {
            throw MetanodeError(.invalidConfig, "\(path): \(error.message)")
        }
    }

    static let knownKeys: Set<String> = ["node", "http", "storage", "bundledPluginsDir", "plugins", "net"]

    public static func parse(_ bytes: [UInt8]) throws(MetanodeError) -> NodeConfig {
        let json = try JSONValue.parse(bytes)
        guard let object = json.objectValue else { throw MetanodeError(.invalidConfig, "the config must be an object") }
        for key in object.keys where !knownKeys.contains(key) {
            throw MetanodeError(.invalidConfig, "unknown config field '\(key)' — known fields are "
                + knownKeys.sorted().joined(separator: ", "))
        }
        func field<T>(_ section: String, _ key: String, _ extract: (JSONValue) -> T?, _ type: String) throws(MetanodeError)
            -> T?
        {
            guard let value = object[section]?[key] else { return nil }
            guard let typed = extract(value) else {
                throw MetanodeError(.invalidConfig, "config field '\(section).\(key)' must be \(type)")
            }
            return typed
        }
        var config = NodeConfig(nodeName: "metanode", dev: false)
        config.nodeName = try field("node", "name", { $0.stringValue }, "a string") ?? config.nodeName
        config.dev = try field("node", "dev", { $0.boolValue }, "true or false") ?? false
        config.httpListen = try field("http", "listen", { $0.stringValue }, "\"host:port\"") ?? defaultHTTPListen
        _ = try HostPort.parse(config.httpListen)
        config.storageSyncWrites = try field("storage", "syncWrites", { $0.boolValue }, "true or false") ?? false
        if let dir = object["bundledPluginsDir"] {
            guard let text = dir.stringValue else {
                throw MetanodeError(.invalidConfig, "config field 'bundledPluginsDir' must be a path")
            }
            config.bundledPluginsDirectory = text
        }
        if let plugins = object["plugins"] {
            guard let map = plugins.objectValue else {
                throw MetanodeError(.invalidConfig, "config field 'plugins' must map plugin names to their config")
            }
            config.pluginConfigs = map
        }
        if let net = object["net"] { config.net = try NetSettings.parse(net) }
        return config
    }

    public func serialized() -> [UInt8] {
        var object: [String: JSONValue] = [
            "node": .object(["name": .string(nodeName), "dev": .bool(dev)]),
            "http": .object(["listen": .string(httpListen)]),
            "storage": .object(["syncWrites": .bool(storageSyncWrites)]),
            "plugins": .object(pluginConfigs),
        ]
        if let net { object["net"] = net.json }
        if let bundledPluginsDirectory { object["bundledPluginsDir"] = .string(bundledPluginsDirectory) }
        return JSONValue.object(object).serializedBytes(pretty: true) + [0x0a]
    }
}

/// The `net` section of config.json: where this node listens and which peers it talks to.
///
///     "net": {"listen": "127.0.0.1:7800",
///             "peers": [{"address": "127.0.0.1:7801", "key": "<64 hex digits>"}],
///             "allowUnlisted": false, "keepaliveMs": 1000, "deadPeerMs": 5000}
public struct NetSettings: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        public var address: HostPort
        public var key: PeerID

        public init(address: HostPort, key: PeerID) {
            self.address = address
            self.key = key
        }
    }

    public var listen: HostPort?
    public var peers: [Peer] = []
    /// A network's genesis file whose "peers" list ({"address", "key"} objects, the same form as here) is added
    /// to `peers` at start, so every node of a network can share one file.
    public var genesisFile: String?
    public var allowUnlisted = false
    public var keepaliveMs: Int64?
    public var deadPeerMs: Int64?
    public var sendQueueMessagesMax: Int?

    public static let peersMax = 1024

    public init(listen: HostPort?) { self.listen = listen }

    static let knownKeys: Set<String> = ["listen", "peers", "genesisFile", "allowUnlisted", "keepaliveMs", "deadPeerMs",
                                         "sendQueueMessagesMax"]

    static func parse(_ value: JSONValue) throws(MetanodeError) -> NetSettings {
        guard let object = value.objectValue else {
            throw MetanodeError(.invalidConfig, "config field 'net' must be an object")
        }
        for key in object.keys where !knownKeys.contains(key) {
            throw MetanodeError(.invalidConfig, "unknown config field 'net.\(key)' — known fields are "
                + knownKeys.sorted().joined(separator: ", "))
        }
        var settings = NetSettings(listen: nil)
        if let listen = object["listen"] {
            guard let text = listen.stringValue else {
                throw MetanodeError(.invalidConfig, "config field 'net.listen' must be \"host:port\"")
            }
            settings.listen = try HostPort.parse(text)
        }
        if let peers = object["peers"] { settings.peers = try parsePeers(peers, field: "net.peers") }
        if let genesis = object["genesisFile"] {
            guard let path = genesis.stringValue, !path.isEmpty else {
                throw MetanodeError(.invalidConfig, "config field 'net.genesisFile' must be a path")
            }
            settings.genesisFile = path
        }
        settings.allowUnlisted = object["allowUnlisted"]?.boolValue ?? false
        func positive(_ name: String) throws(MetanodeError) -> Int64? {
            guard let value = object[name] else { return nil }
            guard let number = value.intValue, number > 0 else {
                throw MetanodeError(.invalidConfig, "config field 'net.\(name)' must be a positive integer")
            }
            return number
        }
        settings.keepaliveMs = try positive("keepaliveMs")
        settings.deadPeerMs = try positive("deadPeerMs")
        settings.sendQueueMessagesMax = try positive("sendQueueMessagesMax").map(Int.init)
        return settings
    }

    /// A list of {"address": "host:port", "key": "<64 hex digits>"} objects.
    static func parsePeers(_ value: JSONValue, field: String) throws(MetanodeError) -> [Peer] {
        guard let list = value.arrayValue, list.count <= peersMax else {
            throw MetanodeError(.invalidConfig, "'\(field)' must be a list of at most \(peersMax) "
                + "{\"address\", \"key\"} objects")
        }
        var peers: [Peer] = []
        for (index, peer) in list.enumerated() {
            guard let address = peer["address"]?.stringValue, let keyText = peer["key"]?.stringValue else {
                throw MetanodeError(.invalidConfig, "\(field)[\(index)] needs \"address\" (host:port) and "
                    + "\"key\" (64 hex digits)")
            }
            guard let key = PeerID(hex: keyText) else {
                throw MetanodeError(.invalidConfig, "\(field)[\(index)].key '\(keyText)' is not 64 hex digits "
                    + "(an Ed25519 node key, as `metanode node id` prints it)")
            }
            peers.append(Peer(address: try HostPort.parse(address), key: key))
        }
        return peers
    }

    /// The configured peers plus the genesis file's, without this node and without repeating a key (the config's
    /// entry wins).
    public func allPeers(excluding own: PeerID) throws(MetanodeError) -> [Peer] {
        var peers = self.peers
        if let genesisFile {
            let bytes = try FileIO.read(genesisFile, limit: NodeConfig.fileBytesMax, what: "genesis file")
            let genesis: JSONValue
            do {
                genesis = try JSONValue.parse(bytes)
            } catch {
                throw MetanodeError(.invalidConfig, "genesis file \(genesisFile): \(error.message)")
            }
            guard let listed = genesis["peers"] else {
                throw MetanodeError(.invalidConfig, "genesis file \(genesisFile) has no \"peers\" list")
            }
            for peer in try Self.parsePeers(listed, field: "\(genesisFile): peers")
            where !peers.contains(where: { $0.key == peer.key }) {
                peers.append(peer)
            }
        }
        return peers.filter { $0.key != own }
    }

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "peers": .array(peers.map { .object(["address": .string($0.address.description), "key": .string($0.key.hex)]) }),
            "allowUnlisted": .bool(allowUnlisted),
        ]
        if let listen { object["listen"] = .string(listen.description) }
        if let genesisFile { object["genesisFile"] = .string(genesisFile) }
        if let keepaliveMs { object["keepaliveMs"] = .int(keepaliveMs) }
        if let deadPeerMs { object["deadPeerMs"] = .int(deadPeerMs) }
        if let sendQueueMessagesMax { object["sendQueueMessagesMax"] = .int(Int64(sendQueueMessagesMax)) }
        return .object(object)
    }
}
