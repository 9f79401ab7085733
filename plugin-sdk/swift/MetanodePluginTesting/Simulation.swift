import CSodium
import MetanodeHostBridge
import MetanodePluginKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// N nodes — each a `TestHost` with its own node key — on one `SimulatedNetwork`, under one virtual clock.
///
///     let sim = Simulation(nodes: 4, seed: SimulationSeed.fromEnvironment(default: 1),
///                          faults: LinkFaults(latencyMs: 20, jitterMs: 5, dropPerMille: 50))
///     for node in 0..<4 { try sim.host(node).load(Gossip.descriptor) }
///     sim.run(forMs: 1_000)
///     #expect(..., "\(sim.reproduction)")
///
/// Time moves only in `run(forMs:)`, `run(untilMs:)` and `runUntilIdle(maxMs:)`. They process everything in time
/// order across all nodes. At each instant: each host in node order (timers due then, in creation order, then its
/// queue: messages, peer events, bus deliveries, replies), then the network's arrivals due then (in send order),
/// whose handlers run in the next round of the hosts — round after round until the instant is quiet; then the clock
/// jumps to the next arrival or timer. Every host's manual clock follows the simulation's, so
/// `context.monotonicNs` and `unixTimeMs` agree across nodes and equal the arrival time in a receive handler.
///
/// Everything random is derived from `seed`: the network's faults, each node's key and each host's `random_bytes`.
/// Run it twice with the same seed and the same test code and you get the same deliveries in the same order and the
/// same `traceHash`. Not thread-safe: drive it from one thread (the test's).
public final class Simulation {
    public let seed: UInt64
    /// Faults, partitions and the trace live here. Move time with the simulation's `run` methods, never with
    /// `network.advance`, which would leave the hosts' clocks behind.
    public let network: SimulatedNetwork
    public let startUnixMs: UInt64
    /// The nodes' hosts, by node index. A restart replaces the node's host.
    public private(set) var hosts: [TestHost]
    public private(set) var nowMs: UInt64 = 0
    private var crashed: [Bool]
    private var incarnations: [Int]

    /// Rounds of work at one instant before the simulation decides plugins are looping (e.g. zero-latency
    /// ping-pong that never ends).
    public static let passesPerInstantMax = 100_000

    /// Creates `nodes` hosts (no plugins loaded) on a network where every link has `faults`; see SimulatedNetwork
    /// for `inFlightPerLinkMax` and `recordsEvents`.
    public init(nodes: Int, seed: UInt64, faults: LinkFaults = .reliable,
                inFlightPerLinkMax: Int = SimulatedNetwork.inFlightPerLinkMaxDefault, recordsEvents: Bool = false,
                startUnixMs: UInt64 = TestHost.defaultStartUnixMs) {
        precondition(nodes >= 1 && nodes <= SimulatedNetwork.nodesMax,
                     "a Simulation has 1...\(SimulatedNetwork.nodesMax) nodes, not \(nodes)")
        self.seed = seed
        self.startUnixMs = startUnixMs
        network = SimulatedNetwork(seed: seed, faults: faults, inFlightPerLinkMax: inFlightPerLinkMax,
                                   recordsEvents: recordsEvents)
        crashed = Array(repeating: false, count: nodes)
        incarnations = Array(repeating: 0, count: nodes)
        hosts = []
        for node in 0..<nodes {
            let host = TestHost(nodeKeySeed: Self.nodeKeySeed(seed: seed, node: node), startUnixMs: startUnixMs,
                                randomSeed: Self.randomSeed(seed: seed, node: node, incarnation: 0))
            let endpoint = network.addNode(key: PeerID(bytes: host.nodePublicKey)!)
            host.attach(endpoint)
            hosts.append(host)
        }
    }

    // MARK: - Nodes

    public var nodeCount: Int { hosts.count }

    /// Node `node`'s host: load its plugins here, drive them (`http`, `publish`, ...), read what they did.
    public func host(_ node: Int) -> TestHost {
        precondition(hosts.indices.contains(node), "no node \(node); the simulation has \(hosts.count)")
        return hosts[node]
    }

    /// Node `node`'s key, as plugins see it (`context.net.localKey()` on that node, the sender key elsewhere).
    public func key(_ node: Int) -> PeerID { network.key(node) }

    /// The node with `key`.
    public func node(of key: PeerID) -> Int? { network.node(of: key) }

    public func isCrashed(_ node: Int) -> Bool {
        precondition(crashed.indices.contains(node), "no node \(node); the simulation has \(crashed.count)")
        return crashed[node]
    }

    /// The 32-byte node key seed of `node` under `seed` (the key is its Ed25519 key pair from this seed).
    public static func nodeKeySeed(seed: UInt64, node: Int) -> [UInt8] {
        derive("metanode/sim-node-key/v1", seed, UInt64(node))
    }

    static func randomSeed(seed: UInt64, node: Int, incarnation: Int) -> [UInt8] {
        derive("metanode/sim-node-random/v1", seed, UInt64(node), UInt64(incarnation))
    }

    private static func derive(_ domain: String, _ values: UInt64...) -> [UInt8] {
        var input = Array(domain.utf8)
        input.append(0)
        for value in values { withUnsafeBytes(of: value.littleEndian) { input.append(contentsOf: $0) } }
        return Blake2b.hash(input)
    }

    /// Loads a plugin on every node, in node order; `config` gives each node's config JSON (e.g. its validator
    /// index). Throws what the first failing load throws.
    @discardableResult
    public func loadOnEveryNode(_ descriptor: UnsafeRawPointer?, name: String? = nil,
                                config: (_ node: Int) -> String = { _ in "{}" },
                                grants: HostCapabilities = .all) throws(HostError) -> [TestPlugin] {
        var plugins: [TestPlugin] = []
        for node in hosts.indices {
            plugins.append(try hosts[node].load(descriptor, name: name, config: config(node), grants: grants))
        }
        return plugins
    }

    // MARK: - Faults

    /// See `SimulatedNetwork.partition(_:)`: nodes in different groups cannot reach each other; unnamed nodes form
    /// one more group.
    public func partition(_ groups: [[Int]]) { network.partition(groups) }

    public func isolate(_ node: Int) { network.isolate(node) }

    public func heal() { network.heal() }

    /// Kills node `node` like SIGKILL: its host is frozen where it is — no on_stop, no more timers or messages — and
    /// its peers see it go down. `host(node)` still shows what it did before the crash.
    public func crash(_ node: Int) {
        precondition(!isCrashed(node), "node \(node) has already crashed")
        network.crash(node)
        crashed[node] = true
    }

    /// Starts node `node` again as a new process: a fresh `TestHost` (same node key, no plugins, new `random_bytes`
    /// stream) whose clock is the simulation's, on a new endpoint that connects to every reachable node. Its storage
    /// is empty, or with `keepingStorage` what each plugin had stored when the node crashed, as a data directory
    /// survives kill -9. Load the node's plugins into the returned host; they see its peers come up when they watch.
    @discardableResult
    public func restart(_ node: Int, keepingStorage: Bool = false) -> TestHost {
        restart(node, storage: keepingStorage ? host(node).storedData : [:])
    }

    /// `restart(_:)` with the given storage (plugin name → its keys): a data directory edited while the node was
    /// down, to test what a node makes of a damaged or rolled-back one.
    @discardableResult
    public func restart(_ node: Int, storage: [String: [[UInt8]: [UInt8]]]) -> TestHost {
        precondition(isCrashed(node), "node \(node) is running; crash it before restarting it")
        incarnations[node] += 1
        let host = TestHost(nodeKeySeed: Self.nodeKeySeed(seed: seed, node: node), startUnixMs: startUnixMs,
                            randomSeed: Self.randomSeed(seed: seed, node: node, incarnation: incarnations[node]),
                            storage: storage)
        host.advance(toMs: nowMs)
        host.attach(network.restart(node))
        hosts[node] = host
        crashed[node] = false
        return host
    }

    // MARK: - Time

    /// Runs everything due up to and including `targetMs`, in time order, and leaves every clock at `targetMs`.
    /// Returns how many messages were delivered plus how many host events ran.
    @discardableResult
    public func run(untilMs targetMs: UInt64) -> Int {
        precondition(targetMs >= nowMs, "Simulation.run(untilMs: \(targetMs)) would move the clock back from \(nowMs)")
        var ran = settle()
        while let next = nextEventMs(), next <= targetMs {
            ran += step(to: next)
        }
        if targetMs > nowMs { ran += step(to: targetMs) }
        return ran
    }

    /// `run(untilMs: nowMs + deltaMs)`.
    @discardableResult
    public func run(forMs deltaMs: UInt64) -> Int { run(untilMs: nowMs + deltaMs) }

    /// Runs in time order until no message is on its way and no host has a queued event, or until `maxMs` have
    /// passed. Timers fire on the way, but a timer still pending when the network goes quiet does not keep the run
    /// going (repeating timers would never let it end): move on with `run(forMs:)`. Returns true if it went quiet,
    /// false if it stopped at the limit (with the clock at `nowMs + maxMs`).
    @discardableResult
    public func runUntilIdle(maxMs: UInt64 = 60_000) -> Bool {
        let deadlineMs = nowMs + maxMs
        settle()
        while network.inFlightCount > 0 {
            guard let next = nextEventMs(), next <= deadlineMs else {
                run(untilMs: deadlineMs)
                return network.inFlightCount == 0
            }
            step(to: next)
        }
        return true
    }

    /// The next instant anything is due: an arrival, or a timer or request timeout on a running host.
    public func nextEventMs() -> UInt64? {
        var next = network.nextEventMs
        for (node, host) in hosts.enumerated() where !crashed[node] {
            if let due = host.nextDueMs, next.map({ due < $0 }) ?? true { next = due }
        }
        return next
    }

    @discardableResult
    private func step(to timeMs: UInt64) -> Int {
        precondition(timeMs >= nowMs, "internal: the simulation stepped back from \(nowMs) to \(timeMs)")
        nowMs = timeMs
        network.moveClock(toMs: timeMs)  // so what the hosts send now leaves now
        return settle()
    }

    /// Runs the current instant until it is quiet: each running host in node order (its clock moves to the instant
    /// first, then its timers due now and its queue run), then the network's arrivals due now (which queue events on
    /// the hosts), repeated while either did something — arrivals need another round of the hosts, and a
    /// zero-latency message or a zero-delay timer makes more work at the same instant.
    @discardableResult
    private func settle() -> Int {
        var ran = 0
        for pass in 0... {
            precondition(pass < Self.passesPerInstantMax,
                         "the simulation did \(Self.passesPerInstantMax) rounds of work at \(nowMs) ms without going "
                            + "quiet: plugins are looping (e.g. messages with zero latency answered forever)")
            var worked = 0
            for (node, host) in hosts.enumerated() where !crashed[node] { worked += host.advance(toMs: nowMs) }
            worked += network.advance(toMs: nowMs)
            ran += worked
            if worked == 0 { break }
        }
        return ran
    }

    // MARK: - Determinism

    /// The network's running hash of every delivery (see `SimulatedNetwork.traceHash`).
    public var traceHash: [UInt8] { network.traceHash }

    public var traceHashHex: String { network.traceHashHex }

    /// How to run this simulation again: put it in a failing expectation's comment,
    /// `#expect(ok, "\(sim.reproduction)")`.
    public var reproduction: String {
        "seed \(seed); reproduce with \(SimulationSeed.environmentVariable)=\(seed) swift test --filter <this test>"
    }
}

/// Seeds for simulation tests: a fixed default, overridden by the environment to replay a failure.
///
///     let seed = SimulationSeed.fromEnvironment(default: 42)
///     METANODE_SIM_SEED=1234 swift test --filter ConsensusSimulationTests
public enum SimulationSeed {
    public static let environmentVariable = "METANODE_SIM_SEED"

    /// The seed in METANODE_SIM_SEED (decimal, or hex with 0x), or `fallback` when it is unset.
    public static func fromEnvironment(default fallback: UInt64) -> UInt64 {
        guard let raw = getenv(environmentVariable) else { return fallback }
        let text = String(cString: raw)
        guard let seed = parse(text) else {
            preconditionFailure("\(environmentVariable)='\(text)' is not a seed: use a decimal or 0x-hex UInt64")
        }
        return seed
    }

    /// The seeds to try: `seeds`, or only the one in METANODE_SIM_SEED when it is set (to replay one failure of a
    /// sweep).
    public static func sweep(_ seeds: some Sequence<UInt64>) -> [UInt64] {
        guard getenv(environmentVariable) != nil else { return Array(seeds) }
        return [fromEnvironment(default: 0)]
    }

    static func parse(_ text: String) -> UInt64? {
        let trimmed = text.trimmingWhitespace()
        if trimmed.hasPrefix("0x") || trimmed.hasPrefix("0X") { return UInt64(trimmed.dropFirst(2), radix: 16) }
        return UInt64(trimmed)
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }
}
