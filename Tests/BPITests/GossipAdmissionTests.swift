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
}
