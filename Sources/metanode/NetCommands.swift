import ArgumentParser
import Foundation
import MetanodeCore
import MetanodeHostBridge
import MetanodeKernel

struct NetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net", abstract: "Peers: which nodes this one talks to, and how the connections are.",
        discussion: """
            Peers are identified by their node key (`metanode node id` prints it). Only configured peers may \
            connect. Changes to the configuration apply when the node restarts.
            """,
        subcommands: [Peers.self, AddPeer.self, RemovePeer.self, Listen.self, Genesis.self])

    struct Peers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "peers",
            abstract: "The running node's peers: address, state, round trip, traffic, queue.")
        @OptionGroup var options: CommonOptions

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let peers = try RunningNode.get(options.dataDirectory, "/v1/net/peers").arrayValue ?? []
                let rows = peers.map { peer in
                    [String((peer["key"]?.stringValue ?? "?").prefix(16)), peer["address"]?.stringValue ?? "?",
                     peer["state"]?.stringValue ?? "?",
                     peer["rttMicros"]?.intValue.map { String(format: "%.2f ms", Double($0) / 1000) } ?? "-",
                     "\(peer["messagesSent"]?.intValue ?? 0)/\(peer["messagesReceived"]?.intValue ?? 0)",
                     "\(peer["queuedMessages"]?.intValue ?? 0)", "\(peer["droppedMessages"]?.intValue ?? 0)",
                     peer["lastError"]?.stringValue ?? ""]
                }
                Output.emit(options, json: .array(peers), text: peers.isEmpty ? "no peers configured"
                    : Output.table(["PEER", "ADDRESS", "STATE", "RTT", "SENT/RECV", "QUEUED", "DROPPED", "LAST ERROR"],
                                   rows))
            }
        }
    }

    /// Loads config.json, applies `change` to its net section (created if absent) and saves it.
    static func updateNet(_ data: DataDirectory, _ change: (inout NetSettings) throws(MetanodeError) -> Void)
        throws(MetanodeError) -> NetSettings
    {
        var config = try data.loadConfig()
        var net = config.net ?? NetSettings(listen: nil)
        try change(&net)
        config.net = net
        try data.saveConfig(config)
        return net
    }

    struct AddPeer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-peer",
                                                        abstract: "Add a peer: its address and node key.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "host:port the peer listens on.") var address: String
        @Argument(help: "The peer's node key (64 hex digits, from `metanode node id` on that node).") var key: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                guard let id = PeerID(hex: key) else {
                    throw MetanodeError(.invalidArgument, "'\(key)' is not a node key (64 hex digits)")
                }
                let hostPort = try HostPort.parse(address)
                guard id.bytes != (try data.loadNodeKey()).publicKey.key.bytes else {
                    throw MetanodeError(.invalidArgument, "that is this node's own key")
                }
                _ = try NetCommand.updateNet(data) { net throws(MetanodeError) in
                    if let existing = net.peers.first(where: { $0.key == id }) {
                        throw MetanodeError(.alreadyExists, "peer \(id.short) is already configured at "
                            + "\(existing.address)")
                    }
                    net.peers.append(NetSettings.Peer(address: hostPort, key: id))
                }
                Output.emit(options, json: .object(["address": .string(hostPort.description), "key": .string(id.hex)]),
                            text: "added peer \(id.short) at \(hostPort)" + PluginCommand.restartHint(data))
            }
        }
    }

    struct RemovePeer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-peer", abstract: "Remove a peer.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "The peer's node key (64 hex digits).") var key: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                _ = try NetCommand.updateNet(data) { net throws(MetanodeError) in
                    guard let index = net.peers.firstIndex(where: { $0.key.hex == key.lowercased() }) else {
                        throw MetanodeError(.notFound, "no peer with key \(key) is configured")
                    }
                    net.peers.remove(at: index)
                }
                Output.emit(options, json: .object(["removed": .string(key.lowercased())]),
                            text: "removed peer \(key.prefix(16))" + PluginCommand.restartHint(data))
            }
        }
    }

    struct Genesis: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "genesis",
            abstract: "Use a network's genesis file: its \"peers\" list ({address, key}) joins the configured peers.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "Path to the genesis file, or none.") var path: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                let own = PeerID(bytes: try data.loadNodeKey().publicKey.key.bytes)!
                let net = try NetCommand.updateNet(data) { net throws(MetanodeError) in
                    net.genesisFile = path == "none" ? nil : FileIO.absolute(path)
                    _ = try net.allPeers(excluding: own)  // refuse a file the node could not start with
                }
                let summary = net.genesisFile.map { "peers also come from \($0)" } ?? "no genesis file"
                Output.emit(options, json: .object(["genesisFile": net.genesisFile.map(JSONValue.string) ?? .null]),
                            text: summary + PluginCommand.restartHint(data))
            }
        }
    }

    struct Listen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "listen",
            abstract: "Set where the node accepts peer connections (host:port), or `none` to only dial out.")
        @OptionGroup var options: CommonOptions
        @Argument(help: "host:port, or none.") var address: String

        func run() async throws {
            try await Output.run(options) { () throws(MetanodeError) in
                let data = options.dataDirectory
                let listen = address == "none" ? nil : try HostPort.parse(address)
                let net = try NetCommand.updateNet(data) { $0.listen = listen }
                Output.emit(options, json: .object(["listen": net.listen.map { .string($0.description) } ?? .null]),
                            text: "peer connections: \(net.listen.map { "listening on \($0)" } ?? "dial only")"
                                + PluginCommand.restartHint(data))
            }
        }
    }
}
