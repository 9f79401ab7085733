import BPIPlugin
import BPICore
import Foundation
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

@Suite("Gossiped transactions, admitted in batches")
struct GossipAdmissionTests {
    @Test("the proposer's gossip and then its proposal arrive together: each node admits the gossip before it checks the proposal, so no block transaction goes unadmitted")
    func gossipIsAdmittedBeforeTheProposalItPrecedes() throws {
        // No jitter, so that a link delivers in order and the gossip and the proposal sent right after it land at
        // the same moment.
        let net = try BPINetwork(validators: 4, seed: SimulationSeed.fromEnvironment(default: 101),
                                 faults: LinkFaults(latencyMs: 5, jitterMs: 0))
        let keys = (0..<4).map { net.sim.key($0).hex }
        let set = try ValidatorSet(keys: keys.map { Hex.decode($0)! })
        let proposer = try #require(keys.firstIndex(of: Hex.encode(set.keys[set.proposer(height: 1, round: 0)])))
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("gossip", []))
        let transactions = try (0..<40).map { nonce in
            try Transaction.signed(chainID: "sim", signer: signer, nonce: UInt64(nonce), fee: 1, kind: "test/op",
                                   payload: Array("g\(nonce)".utf8))
        }
        // To the proposer only: it admits them, gossips them and proposes them at once.
        let response = net.sim.host(proposer).http(net.plugins[proposer], "POST", "/txs",
                                                   body: TransactionBatch.encode(transactions.map(\.encoded)))
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        net.sim.run(forMs: 2_000)
        for node in 0..<4 {
            let (code, found) = try net.json(node, "/tx/\(Hex.encode(transactions[39].id))")
            #expect(code == 200, "node \(node): \(found)")
            let unadmitted = net.sim.host(node).metric(net.plugins[node], "block_transactions_unadmitted_total")
            #expect(unadmitted?.count == 0, "node \(node): \(String(describing: unadmitted))")
        }
    }

    /// Four validators on links of exactly 5 ms; `count` transactions posted to a node that does not propose height
    /// 1, and the mempool of another that does not either, as BPI's status shows it, after `msAfterPost` more.
    static func mempoolOfBystander(windowMs: UInt64?, msAfterPost: [UInt64], count: Int = 12) throws -> [Int] {
        let net = try BPINetwork(validators: 4, seed: SimulationSeed.fromEnvironment(default: 103),
                                 faults: LinkFaults(latencyMs: 5, jitterMs: 0), gossipAdmissionWindowMs: windowMs)
        let keys = (0..<4).map { net.sim.key($0).hex }
        let set = try ValidatorSet(keys: keys.map { Hex.decode($0)! })
        let proposer = try #require(keys.firstIndex(of: Hex.encode(set.keys[set.proposer(height: 1, round: 0)])))
        let (sender, bystander) = ((proposer + 1) % 4, (proposer + 2) % 4)
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("window", []))
        let transactions = try (0..<count).map { nonce in
            try Transaction.signed(chainID: "sim", signer: signer, nonce: UInt64(nonce), fee: 1, kind: "test/op",
                                   payload: Array("w\(nonce)".utf8))
        }
        let response = net.sim.host(sender).http(net.plugins[sender], "POST", "/txs",
                                                  body: TransactionBatch.encode(transactions.map(\.encoded)))
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        var elapsed: UInt64 = 0
        return try msAfterPost.map { at in
            _ = net.sim.run(forMs: at - elapsed)
            elapsed = at
            let (code, status) = try net.json(bystander, "/status")
            #expect(code == 200)
            return try #require((status["mempool"] as? [String: Any])?["transactions"] as? Int)
        }
    }

    @Test("gossip that arrives at 5 ms waits out the 5 ms window: none admitted at 9 ms, all at 11 ms")
    func gossipWaitsItsWindow() throws {
        #expect(try Self.mempoolOfBystander(windowMs: nil, msAfterPost: [9, 11]) == [0, 12])
    }

    @Test("with a window of 0, gossip is admitted as soon as it arrives")
    func zeroWindowAdmitsAtOnce() throws {
        #expect(try Self.mempoolOfBystander(windowMs: 0, msAfterPost: [4, 6]) == [0, 12])
    }

    @Test("a window over 1,000 ms is refused at load, with the setting and its range named")
    func windowTooLongIsRefused() throws {
        let net = try BPINetwork(validators: 1, seed: 1)
        let host = net.sim.host(0)
        let config = #"{"genesisFile": "\#(net.genesisPath)", "gossipAdmissionWindowMs": 1001}"#
        #expect(throws: HostError.self) { try host.load(net.descriptor, name: "bpi-slow", config: config) }
        #expect(host.logs.contains { $0.plugin == "bpi-slow" && $0.level == .error
            && $0.message.contains("gossipAdmissionWindowMs is 1001; it must be 0 to 1000") }, "\(host.logs)")
    }
}
