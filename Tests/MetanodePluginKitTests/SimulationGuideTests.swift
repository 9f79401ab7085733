import MetanodePluginKit
import MetanodePluginTesting
import Testing

// The example of plugin-sdk/docs/simulation.md, run as it is printed there (except that a test binary cannot export
// `metanode_plugin_entry_v1` next to hello-swift, so the tests take the descriptor from `welcomeEntry()`).
// Keep the two in sync.

/// Says hello to every peer that comes up, welcomes every hello, and counts the welcomes it got.
public final class Welcome: Plugin {
    let context: PluginContext
    var welcomes = 0

    public init(context: PluginContext) throws {
        self.context = context
        try context.net.register("hello") { [unowned self] peer, _ in
            try? self.context.net.send("welcome", to: peer, on: "welcome")
        }
        try context.net.register("welcome") { [unowned self] _, _ in welcomes += 1 }
        try context.net.watchPeers { [unowned self] peer, up in
            if up { try? self.context.net.send("hello", to: peer, on: "hello") }
        }
        try context.http.route("GET", "/welcomes") { [unowned self] _ in .text("\(welcomes)") }
    }
}

func welcomeEntry() -> UnsafeRawPointer? {
    PluginExport.descriptor(for: Welcome.self, name: "welcome", version: "1.0.0")
}

@Suite struct WelcomeNetworkTests {
    let seed = SimulationSeed.fromEnvironment(default: 1)

    /// Three nodes, each running the plugin.
    func start(faults: LinkFaults = LinkFaults(latencyMs: 20, jitterMs: 5)) throws -> (Simulation, [TestPlugin]) {
        let sim = Simulation(nodes: 3, seed: seed, faults: faults)
        let plugins = try sim.loadOnEveryNode(welcomeEntry())
        return (sim, plugins)
    }

    func welcomes(_ sim: Simulation, _ plugin: TestPlugin, node: Int) -> String {
        sim.host(node).http(plugin, "GET", "/welcomes").text
    }

    @Test func everyNodeIsWelcomedByEveryOther() throws {
        let (sim, plugins) = try start()
        #expect(sim.runUntilIdle(), "\(sim.reproduction)")
        for node in 0..<3 {
            #expect(welcomes(sim, plugins[node], node: node) == "2", "\(sim.reproduction)")
        }
    }

    @Test func aHealedPartitionGreetsAgain() throws {
        let (sim, plugins) = try start()
        sim.runUntilIdle()
        sim.partition([[0], [1, 2]])
        sim.run(forMs: 100)
        sim.heal()
        sim.runUntilIdle()
        #expect(welcomes(sim, plugins[0], node: 0) == "4", "\(sim.reproduction)")
        #expect(welcomes(sim, plugins[1], node: 1) == "3", "\(sim.reproduction)")
    }

    @Test func aRestartedNodeIsWelcomedBack() throws {
        let (sim, plugins) = try start()
        sim.runUntilIdle()
        sim.crash(2)
        sim.run(forMs: 500)
        let reborn = try sim.restart(2).load(welcomeEntry())
        sim.runUntilIdle()
        #expect(welcomes(sim, reborn, node: 2) == "2", "\(sim.reproduction)")
        #expect(welcomes(sim, plugins[0], node: 0) == "3", "\(sim.reproduction)")
    }

    @Test func aLossyNetworkRunsTheSameWayTwiceWithOneSeed() throws {
        func run() throws -> [UInt8] {
            let (sim, _) = try start(faults: LinkFaults(latencyMs: 20, jitterMs: 30, dropPerMille: 200,
                                                        duplicatePerMille: 100, reorderPerMille: 100))
            sim.run(forMs: 200)
            sim.isolate(1)
            sim.run(forMs: 200)
            sim.heal()
            sim.run(forMs: 1_000)
            return sim.traceHash
        }
        #expect(try run() == run(), "seed \(seed)")
    }
}
