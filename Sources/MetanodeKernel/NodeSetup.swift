import Foundation
import MetanodeCore
import MetanodeCrypto

/// `metanode node init`: creates a data directory with a node key, a config file, the trust store and — for a dev
/// node — the bundled plugins enabled and their dev publisher key trusted.
public enum NodeSetup {
    public struct Result: Sendable {
        public var root: String
        public var nodePublicKey: MinisignPublicKey
        public var trustedDevKey: String?
        public var bundledPlugins: [String]
        public var config: NodeConfig
    }

    /// The file in a bundled-plugins directory holding the public key the bundled plugins were signed with.
    public static let devPublisherKeyFile = "dev-publisher.pub"

    public static func initialize(_ data: DataDirectory, dev: Bool, bundledPluginsDirectory: String?,
                                  httpListen: String?, nodeName: String?, netListen: String? = nil)
        throws(MetanodeError) -> Result
    {
        guard !FileIO.exists(data.configPath), !FileIO.exists(data.nodeKeyPath) else {
            throw MetanodeError(.alreadyExists, "\(data.root) is already initialised; use it as it is, or remove it "
                + "to start a new node there")
        }
        try FileIO.createDirectory(data.root, mode: 0o700)
        for directory in [data.trustDirectory, data.pluginsDirectory, data.runDirectory] {
            try FileIO.createDirectory(directory)
        }
        let key = MinisignSecretKey.generate()
        try KeyFile.writeSecret(key.fileContents(passphrase: nil), to: data.nodeKeyPath)
        try KeyFile.writePublic(key.publicKey.fileContents(comment: "metanode node key"), to: data.nodePublicKeyPath)

        var config = NodeConfig(nodeName: nodeName ?? (dev ? "dev" : ProcessInfo.processInfo.hostName), dev: dev)
        if let httpListen {
            _ = try HostPort.parse(httpListen)
            config.httpListen = httpListen
        }
        config.bundledPluginsDirectory = bundledPluginsDirectory.map(FileIO.absolute)
        if let netListen { config.net = NetSettings(listen: try HostPort.parse(netListen)) }
        try data.saveConfig(config)
        try data.saveRegistry(PluginRegistry())

        var trustedDevKey: String?
        if dev, let directory = config.bundledPluginsDirectory {
            let keyPath = "\(directory)/\(devPublisherKeyFile)"
            if FileIO.exists(keyPath) {
                let text = try KeyFile.readPublic(at: keyPath)
                let devKey: MinisignPublicKey
                do {
                    devKey = try MinisignPublicKey.parse(text)
                } catch {
                    throw MetanodeError(error.code, "\(keyPath): \(error.message)")
                }
                try data.trustStore.add(devKey, comment: "metanode dev publisher (bundled plugins)")
                trustedDevKey = devKey.keyIDHex
            }
        }
        let bundled = try PluginManager(data).syncBundled(config: config)
        return Result(root: data.root, nodePublicKey: key.publicKey, trustedDevKey: trustedDevKey,
                      bundledPlugins: bundled, config: config)
    }

    /// Where the bundled plugins of this `metanode` binary are: `$METANODE_BUNDLED_PLUGINS`, else a
    /// `metanode-plugins` directory next to the executable.
    public static func defaultBundledPluginsDirectory() -> String? {
        if let configured = ProcessInfo.processInfo.environment["METANODE_BUNDLED_PLUGINS"], !configured.isEmpty {
            return configured
        }
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            return nil
        }
        let candidate = (executable as NSString).deletingLastPathComponent + "/metanode-plugins"
        return FileIO.isDirectory(candidate) ? candidate : nil
    }
}
