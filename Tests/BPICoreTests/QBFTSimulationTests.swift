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
    /// `make test` tries 30 seeds per scenario; `make sim SEEDS=N` tries N (METANODE_SIM_SEEDS); METANODE_SIM_SEED
    /// replays one.
    static let seeds = SimulationSeed.sweep(1...seedCount)
    static let seedCount: UInt64 = getenv("METANODE_SIM_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 30

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

    @Test("a twin (a second node signing with validator 1's key) among 4 validators: honest nodes never fork",
          arguments: [4, 7])
    func twinValidator(validators: Int) {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: validators, seed: seed,
                                  faults: LinkFaults(latencyMs: 5, jitterMs: 15, dropPerMille: 20), twins: [1])
            sim.run(forMs: 5_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.lowestHeight >= 5, "\(sim.reproduction)")
        }
    }

    @Test("a proposer of invalid blocks is voted past by round changes; the chain keeps its honest blocks")
    func invalidProposals() {
        for seed in Self.seeds {
            let sim = QBFTHarness(validators: 4, seed: seed)
            sim.nodes[2].behaviour = .invalidProposer
            sim.run(forMs: 5_000)
            #expect(sim.forks().isEmpty, "\(sim.reproduction)")
            #expect(sim.lowestHeight >= 5, "\(sim.reproduction)")
            // Heights whose round-0 proposer is validator 2 are decided in a later round, by someone else's block.
            for node in sim.honest {
                for finalized in node.chain where finalized.block.header.height % 4 == 2 {
                    #expect(finalized.certificate.round >= 1)
                    #expect(finalized.block.header.proposer != sim.nodes[2].signer.publicKey)
                }
            }
        }
    }

    @Test("a validator restarted from its WAL signs no second prepare in a round, and its round change carries the block it prepared")
    func walPreventsConflictingSignatures() throws {
        let signers = (0..<4).map { Ed25519Signer(seed: WireCrypto.domainHash("wal", [UInt8($0)])) }
        let validators = try ValidatorSet(keys: signers.map(\.publicKey))
        let parent = QBFTHarness.genesisHash
        let config = QBFTConfig(roundTimeoutBaseMs: 200)
        func block(_ salt: UInt8) -> Block {
            QBFTHarness.block(height: 1, parent: parent, salt: salt, validators: validators,
                              proposer: signers[1].publicKey, timestampMs: 0)
        }
        func signed(_ payload: ConsensusPayload, by index: Int) -> SignedMessage {
            SignedMessage(payload: payload, signer: UInt16(index),
                          signature: SimEnvironment(signer: signers[index]).sign(payload.signingBytes))
        }
        func proposal(_ block: Block) -> ConsensusEnvelope {  // height 1, round 0: validator 1 proposes
            .proposal(signed(ConsensusPayload(kind: .proposal, height: 1, round: 0, digest: block.hash), by: 1),
                      block: block, roundChanges: [], prepares: [])
        }
        var wal: [QBFTRecord] = []
        func persisted(_ actions: [QBFTAction]) -> [QBFTAction] {
            for case .persist(let record) in actions { wal.append(record) }
            return actions
        }
        var core = QBFTCore(config: config, environment: SimEnvironment(signer: signers[0]), me: 0, height: 1,
                            parentHash: parent, validators: validators)
        let first = persisted(core.handle(.received(proposal(block(1)))))
        #expect(first.contains { if case .broadcast(.prepare) = $0 { true } else { false } })

        // Restarted from the WAL: a different block for the same round gets no prepare.
        var restored = QBFTCore(config: config, environment: SimEnvironment(signer: signers[0]), me: 0, height: 1,
                                parentHash: parent, validators: validators, replaying: wal)
        let second = restored.handle(.received(proposal(block(2))))
        #expect(!second.contains { if case .broadcast(.prepare) = $0 { true } else { false } })

        // Prepares from two others complete a quorum for block 1: validator 0 prepares it (its lock) and commits.
        for index in [2, 3] {
            let prepare = signed(ConsensusPayload(kind: .prepare, height: 1, round: 0, digest: block(1).hash), by: index)
            _ = persisted(core.handle(.received(.prepare(prepare))))
        }
        #expect(wal.contains { if case .prepared(0, let locked, _) = $0 { locked == block(1) } else { false } })
        // After a restart and a timeout, its round change names the locked block with its prepares.
        var relocked = QBFTCore(config: config, environment: SimEnvironment(signer: signers[0]), me: 0, height: 1,
                                parentHash: parent, validators: validators, replaying: wal)
        _ = relocked.handle(.activate)
        let timeout = relocked.handle(.timerExpired(height: 1, round: 0))
        let change = timeout.compactMap { action -> (Block?, [SignedMessage])? in
            if case .broadcast(.roundChange(_, let prepared, let prepares)) = action { return (prepared, prepares) }
            return nil
        }.first
        #expect(change?.0 == block(1) && (change?.1.count ?? 0) >= validators.quorum)
    }
}
