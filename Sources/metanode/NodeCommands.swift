import ArgumentParser
import Foundation
import Logging
import MetanodeCore
import MetanodeKernel
import MetanodeNode

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Create, run and inspect a node.",
        subcommands: [Init.self, Start.self, Status.self, Id.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create a data directory: node key (mode 0600), config, trust store.",
            discussion: """
                With --dev the node trusts the key its bundled plugins were signed with and enables them all.
                """)

        @OptionGroup var options: CommonOptions
        @Flag(help: "A development node: bundled plugins enabled, their dev publisher key trusted.")
        var dev = false
        @Option(name: .customLong("bundled-plugins"),
                help: "Directory of bundled plugin packages (default: metanode-plugins next to this binary).")
        var bundledPlugins: String?
        @Option(name: .customLong("http-listen"), help: "host:port for the HTTP API (default 127.0.0.1:7700).")
        var httpListen: String?
        @Option(help: "A name for this node.") var name: String?
        @Option(name: .customLong("net-listen"), help: "host:port to accept peer connections on (default: none).")
        var netListen: String?

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let bundled = bundledPlugins ?? NodeSetup.defaultBundledPluginsDirectory()
                let result = try NodeSetup.initialize(options.dataDirectory, dev: dev, bundledPluginsDirectory: bundled,
                                                      httpListen: httpListen, nodeName: name, netListen: netListen)
                var lines = [
                    "initialised \(result.root)",
                    "  node key   \(result.nodePublicKey.keyIDHex) (\(options.dataDirectory.nodeKeyPath), mode 0600)",
                    "  http       \(result.config.httpListen)",
                ]
                if let key = result.trustedDevKey { lines.append("  trusted    dev publisher key \(key)") }
                if !result.bundledPlugins.isEmpty {
                    lines.append("  plugins    \(result.bundledPlugins.joined(separator: ", "))"
                        + (dev ? " (bundled, enabled)" : " (bundled, disabled)"))
                } else if bundled == nil {
                    lines.append("  plugins    none bundled (no metanode-plugins directory next to this binary)")
                }
                lines.append("start it with: metanode node start --data-dir \(result.root)")
                Output.emit(options, json: .object([
                    "dataDir": .string(result.root), "nodeKeyId": .string(result.nodePublicKey.keyIDHex),
                    "nodePublicKey": .string(result.nodePublicKey.base64), "dev": .bool(dev),
                    "httpListen": .string(result.config.httpListen),
                    "trustedDevKey": result.trustedDevKey.map(JSONValue.string) ?? .null,
                    "bundledPlugins": .array(result.bundledPlugins.map(JSONValue.string)),
                ]), text: lines.joined(separator: "\n"))
            }
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start",
            abstract: "Run the node until SIGTERM or SIGINT.",
            discussion: """
                Starts storage, the bus, the HTTP API and every enabled plugin in dependency order. SIGTERM stops \
                the plugins in reverse order and flushes storage. A plugin that crashed the previous run is \
                quarantined (see `metanode plugin list`).
                """)

        @OptionGroup var options: CommonOptions
        @Flag(name: .customLong("safe-mode"), help: "Start with bundled plugins only.")
        var safeMode = false
        @Option(name: .customLong("http-listen"), help: "Override the configured host:port (port 0 picks a free one).")
        var httpListen: String?
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        func run() async throws {
            let level = Logger.Level(rawValue: logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "metanode")
            try await Output.run(options) { () throws(MetanodeError) in
                try await Node.run(Node.Options(dataDirectory: options.dataDirectory, safeMode: safeMode,
                                                httpListen: httpListen), logger: logger)
            }
        }
    }

    struct Id: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "id",
            abstract: "This node's key: give it to peers (`metanode net add-peer ADDRESS KEY`).")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let key = try options.dataDirectory.loadNodeKey().publicKey
                let listen = try options.dataDirectory.loadConfig().net?.listen
                Output.emit(options, json: .object([
                    "key": .string(key.key.hex), "keyId": .string(key.keyIDHex),
                    "netListen": listen.map { .string($0.description) } ?? .null,
                ]), text: key.key.hex)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Ask the running node how it is.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                let node = try RunningNode.get(data, "/v1/node")
                let plugins = try RunningNode.get(data, "/v1/plugins")
                let rows = (plugins.arrayValue ?? []).map { plugin in
                    [plugin["name"]?.stringValue ?? "?", plugin["version"]?.stringValue ?? "-",
                     plugin["status"]?.stringValue ?? "?", plugin["reason"]?.stringValue ?? ""]
                }
                let text = """
                    node \(node["name"]?.stringValue ?? "?") (key \(node["nodeKeyId"]?.stringValue ?? "?")), \
                    ABI \(node["abi"]?.stringValue ?? "?"), \(node["ready"]?.boolValue == true ? "ready" : "starting"), \
                    up \((node["uptimeMs"]?.intValue ?? 0) / 1000) s\(node["safeMode"]?.boolValue == true ? ", SAFE MODE" : "")
                    \(Output.table(["PLUGIN", "VERSION", "STATUS", "REASON"], rows))
                    """
                Output.emit(options, json: .object(["node": node, "plugins": plugins]), text: text)
            }
        }
    }
}
