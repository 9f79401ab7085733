import BPICore
import MetanodePluginTesting
import MetanodeWire
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// QBFT on a seeded simulated network. Every run checks agreement (no two nodes finalize different blocks at a height)
/// and progress; a failing seed is printed with the command that replays it.
@Suite("QBFT consensus in a seeded simulation")
struct QBFTSimulationTests {
    /// `make test` tries 12 seeds per scenario; `make sim SEEDS=N` tries N (METANODE_SIM_SEEDS); METANODE_SIM_SEED
    /// replays one.
    static let seeds = SimulationSeed.sweep(1...seedCount)
    static let seedCount: UInt64 = getenv("METANODE_SIM_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 12

    @Test("4 validators on a clean network finalize a block per round-0 proposal, without round changes")
    func cleanNetworkFinalizesSteadily() {
        let sim = QBFTHarness(validators: 4, seed: SimulationSeed.fromEnvironment(default: 1))
        sim.run(forMs: 1_000)
        #expect(sim.forks().isEmpty, "\(sim.reproduction)")
        // 5-10 ms links, three message delays a block: far more than 20 blocks a second.
        #expect(sim.lowestHeight >= 20, "\(sim.reproduction)")
        for node in sim.nodes { #expect(node.chain.allSatisfy { $0.certificate.round == 0 }) }
    }

    @Test("the same seed gives the same deliveries and the same chains", arguments: [4, 7])
    func oneSeedOneTrace(validators: Int) {
        func run() -> [UInt8] {
            let sim = QBFTHarness(validators: validators, seed: 99,
                                  faults: LinkFaults(latencyMs: 5, jitterMs: 20, dropPerMille: 100))
            sim.run(forMs: 2_000)
            return sim.traceHash
        }
        #expect(run() == run())
    }

    @Test("drops, duplicates, reordering and jitter: no fork and the chain keeps growing", arguments: [4, 7])
    func lossyNetwork(validators: Int) {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: validators, seed: seed,
                                  faults: LinkFaults(latencyMs: 5, jitterMs: 30, dropPerMille: 50,
                                                     duplicatePerMille: 50, reorderPerMille: 100,
                                                     reorderDelayMaxMs: 40))
            sim.run(forMs: 5_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.lowestHeight >= 5, "\(sim.reproduction)")
        }
    }

    @Test("a partition without a quorum stalls the chain; after healing it moves again, with no fork",
          arguments: [4, 7])
    func partitionHeals(validators: Int) {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: validators, seed: seed)
            sim.run(forMs: 500)
            let half = validators / 2
            sim.network.partition([Array(0..<half), Array(half..<validators)])
            sim.run(forMs: 200)  // let in-flight decisions land
            let stalledAt = sim.highestHeight
            sim.run(forMs: 3_000)
            #expect(sim.highestHeight <= stalledAt + 1, "no side has a quorum; \(sim.reproduction)")
            sim.network.heal()
            sim.run(forMs: 8_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.lowestHeight > stalledAt + 3, "\(sim.reproduction)")
        }
    }

    @Test("a minority partitioned away: the majority keeps finalizing, the minority catches up after healing")
    func minorityPartition() {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: 7, seed: seed)
            sim.run(forMs: 300)
            sim.network.partition([[0, 1], [2, 3, 4, 5, 6]])
            let before = sim.nodes[2].chain.count
            sim.run(forMs: 2_000)
            #expect(sim.nodes[2].chain.count > before + 5, "\(sim.reproduction)")
            sim.network.heal()
            sim.run(forMs: 3_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.highestHeight - sim.lowestHeight <= 2, "the minority caught up; \(sim.reproduction)")
        }
    }

    @Test("crashing the proposer and another validator in turn: the chain keeps finalizing and restarted nodes catch up")
    func crashRestart() {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: 4, seed: seed)
            sim.run(forMs: 300)
            for victim in [0, 1, 2, 3] {
                sim.crash(victim)
                let before = sim.highestHeight
                sim.run(forMs: 2_000)
                #expect(sim.highestHeight > before + 2, "with node \(victim) down; \(sim.reproduction)")
                sim.restart(victim)
                sim.run(forMs: 1_000)
            }
            sim.run(forMs: 2_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.highestHeight - sim.lowestHeight <= 2, "\(sim.reproduction)")
        }
    }

    @Test("an equivocating proposer sending each peer its own block: honest nodes never fork and the chain goes on")
    func equivocatingProposer() {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: 4, seed: seed,
                                  faults: LinkFaults(latencyMs: 5, jitterMs: 10, dropPerMille: 20))
            sim.nodes[1].behaviour = .equivocatingProposer
            sim.run(forMs: 8_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.lowestHeight >= 8, "\(sim.reproduction)")
        }
    }
}
