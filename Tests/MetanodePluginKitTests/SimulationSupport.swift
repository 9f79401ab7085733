import MetanodePluginKit
import MetanodePluginTesting
import Synchronization
import Testing

/// A plugin for network tests, written with MetanodePluginKit: it records every message on its protocols and every
/// peer event with the time it saw them, and can answer "ping" with "pong" or bounce "ball" back forever.
final class NetProbe: Plugin {
    struct Config: Decodable {
        var id: Int
        var protocols: [String]?
        var watch: Bool?
        /// Answer each "ping" message with the same bytes on "pong".
        var pong: Bool?
        /// Send each "ball" message straight back on "ball".
        var bounce: Bool?
    }

    struct Received: Equatable {
        var peer: PeerID
        var protocolName: String
        var message: [UInt8]
        var atMs: UInt64
        var text: String { String(decoding: message, as: UTF8.self) }
    }

    struct PeerEvent: Equatable {
        var peer: PeerID
        var up: Bool
    }

    let context: PluginContext
    private(set) var received: [Received] = []
    var peerEvents: [PeerEvent] = []

    init(context: PluginContext) throws {
        let config = try context.decodeConfig(Config.self)
        self.context = context
        for name in config.protocols ?? [] {
            try context.net.register(name) { [unowned self] peer, message in
                received.append(Received(peer: peer, protocolName: name, message: message, atMs: nowMs))
                if name == "ping", config.pong == true { try? context.net.send(message, to: peer, on: "pong") }
                if name == "ball", config.bounce == true { try? context.net.send(message, to: peer, on: "ball") }
            }
        }
        if config.watch == true {
            try context.net.watchPeers { [unowned self] peer, up in peerEvents.append(PeerEvent(peer: peer, up: up)) }
        }
        Self.registry.withLock { $0[config.id] = NetProbeReference(probe: self) }
    }

    var nowMs: UInt64 { context.monotonicNs / 1_000_000 }

    func texts(on protocolName: String) -> [String] {
        received.filter { $0.protocolName == protocolName }.map(\.text)
    }

    func senders(on protocolName: String) -> [PeerID] {
        received.filter { $0.protocolName == protocolName }.map(\.peer)
    }

    static var descriptor: UnsafeRawPointer? {
        PluginExport.descriptor(for: NetProbe.self, name: "netprobe", version: "1.0.0")
    }

    /// Loads a probe into `host` and returns it with the object the plugin created.
    @discardableResult
    static func load(into host: TestHost, name: String = "netprobe", grants: HostCapabilities = .all,
                     protocols: [String] = ["ping", "pong"], watch: Bool = false, pong: Bool = false,
                     bounce: Bool = false) throws -> (TestPlugin, NetProbe) {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let names = protocols.map { "\"\($0)\"" }.joined(separator: ",")
        let config = #"{"id":\#(id),"protocols":[\#(names)],"watch":\#(watch),"pong":\#(pong),"bounce":\#(bounce)}"#
        let plugin = try host.load(descriptor, name: name, config: config, grants: grants)
        let probe = registry.withLock { $0.removeValue(forKey: id) }
        return (plugin, try #require(probe?.probe))
    }

    private static let nextID = Atomic<Int>(0)
    private static let registry = Mutex<[Int: NetProbeReference]>([:])
}

/// `@unchecked Sendable`: handed from on_init to the test that loaded it, on the same thread.
struct NetProbeReference: @unchecked Sendable {
    let probe: NetProbe
}

/// A gossip plugin for whole-network scenarios: every `periodMs` it starts a rumor (up to `rumorsMax`), spreads
/// each rumor it hears for the first time to all peers, and sends everything it knows to a peer that comes up.
/// Rumors carry random bytes from the host, so the hosts' seeded randomness is part of the trace.
final class Gossip: Plugin {
    struct Config: Decodable {
        var id: Int
        var periodMs: UInt64
        var rumorsMax: Int
    }

    let context: PluginContext
    private(set) var seen: [String] = []
    private var known: Set<String> = []
    private var started = 0

    init(context: PluginContext) throws {
        let config = try context.decodeConfig(Config.self)
        self.context = context
        try context.net.register("rumor") { [unowned self] _, message in
            spread(String(decoding: message, as: UTF8.self))
        }
        try context.net.watchPeers { [unowned self] peer, up in
            guard up else { return }
            for rumor in seen { try? context.net.send(rumor, to: peer, on: "rumor") }
        }
        let me = try context.net.localKey().short.prefix(6)
        try context.timers.schedule(afterMs: config.periodMs, everyMs: config.periodMs) { [unowned self] in
            guard started < config.rumorsMax else { return }
            started += 1
            let nonce = (try? context.crypto.randomBytes(4)) ?? []
            spread("\(me)-\(started)-\(nonce.map { String($0, radix: 16) }.joined())")
        }
        Self.registry.withLock { $0[config.id] = GossipReference(gossip: self) }
    }

    private func spread(_ rumor: String) {
        guard known.insert(rumor).inserted else { return }
        seen.append(rumor)
        _ = try? context.net.broadcast(rumor, on: "rumor")
    }

    static var descriptor: UnsafeRawPointer? {
        PluginExport.descriptor(for: Gossip.self, name: "gossip", version: "1.0.0")
    }

    @discardableResult
    static func load(into host: TestHost, periodMs: UInt64 = 40, rumorsMax: Int = 5) throws -> Gossip {
        let id = nextID.add(1, ordering: .relaxed).newValue
        try host.load(descriptor, config: #"{"id":\#(id),"periodMs":\#(periodMs),"rumorsMax":\#(rumorsMax)}"#)
        return try #require(registry.withLock { $0.removeValue(forKey: id) }?.gossip)
    }

    private static let nextID = Atomic<Int>(0)
    private static let registry = Mutex<[Int: GossipReference]>([:])
}

struct GossipReference: @unchecked Sendable {
    let gossip: Gossip
}

extension Simulation {
    /// Loads a NetProbe on every node, in node order.
    func loadProbes(protocols: [String] = ["ping", "pong"], watch: Bool = false, pong: Bool = false,
                    bounce: Bool = false) throws -> [NetProbe] {
        try (0..<nodeCount).map { node in
            try NetProbe.load(into: host(node), protocols: protocols, watch: watch, pong: pong, bounce: bounce).1
        }
    }
}

/// Message payloads that carry their number, to check order and duplicates.
enum Numbered {
    static func message(_ number: Int) -> String { "m\(number)" }
    static func numbers(_ texts: [String]) -> [Int] { texts.compactMap { Int($0.dropFirst()) } }
}
