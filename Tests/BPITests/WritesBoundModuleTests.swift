import BPIPlugin
import BPICore
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

/// A module whose transactions each write a value of the largest size a value may take: "writer/put" under
/// "big/<payload>", and "writer/fail" under "fail/<payload>" before it fails (BPI undoes that write). "writer/many"
/// writes payload[0] such values, and "writer/keys" a big-endian u16 payload's count of empty ones, under keys of
/// their own nonce; each fails with the first write refused.
final class WriterModule: Plugin {
    static let name = "writer"
    nonisolated(unsafe) static var api: UnsafePointer<mn_ledger_api>?
    static let value = [UInt8](repeating: 0x5A, count: Int(MN_LEDGER_VALUE_LEN_MAX))

    nonisolated(unsafe) static let table = ledgerModuleTable(name) { module in
        module.check = { _, _, _ in MN_OK }
        module.deliver = { _, state, tx in
            guard let api = WriterModule.api, let tx else { return MN_ERR_INTERNAL }
            let kind = tx.pointee.kind.string, payload = tx.pointee.payload.array
            if kind == "writer/many" || kind == "writer/keys" {
                let count = kind == "writer/many" ? Int(payload[0]) : Int(payload[0]) << 8 | Int(payload[1])
                let value = kind == "writer/many" ? WriterModule.value : []
                for index in 0..<count {
                    let key = Array("\(kind)/\(tx.pointee.nonce)/\(index)".utf8)
                    let status = key.withMNBytes { key in value.withMNBytes { api.pointee.state_put(state, key, $0) } }
                    guard status == MN_OK else { return status }
                }
                return MN_OK
            }
            let fails = kind == "writer/fail"
            let key = Array((fails ? "fail/" : "big/").utf8) + tx.pointee.payload.array
            let status = key.withMNBytes { key in WriterModule.value.withMNBytes { api.pointee.state_put(state, key, $0) } }
            guard status == MN_OK else { return status }
            return fails ? MN_ERR_INVALID_ARGUMENT : MN_OK
        }
    }

    init(context: PluginContext) throws { Self.api = try registerLedgerModule(context, Self.table) }
}

@Suite("A block's state writes bounded")
struct WritesBoundModuleTests {
    @Test("a proposer keeps the transactions whose writes fit 16 MiB, a failed transaction's undone write not counted; the rest go in the next block, and every validator agrees")
    func writesPastTheBoundWaitForTheNextBlock() throws {
        let net = try BPINetwork(validators: 4, seed: SimulationSeed.fromEnvironment(default: 83))
        try net.loadModule(WriterModule.self, name: WriterModule.name)
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("writer", []))
        // A failed write first, then twenty of 1 MiB. Each put stores "writer/big/<i>" (12 bytes) and its value:
        // 1,048,588 bytes, so fifteen fit in 16 MiB and a sixteenth does not. Counted, the undone write would leave
        // room for fourteen.
        var transactions = [try Transaction.signed(chainID: "sim", signer: signer, nonce: 0, fee: 0,
                                                   kind: "writer/fail", payload: [0])]
        for index in 1...20 as ClosedRange<UInt8> {
            transactions.append(try Transaction.signed(chainID: "sim", signer: signer, nonce: UInt64(index), fee: 0,
                                                       kind: "writer/put", payload: [index]))
        }
        // In one batch on every node, so that whichever proposes first has them all.
        for node in 0..<4 {
            let response = net.sim.host(node).http(net.plugins[node], "POST", "/txs",
                                                   body: TransactionBatch.encode(transactions.map(\.encoded)))
            let body = String(decoding: response.body, as: UTF8.self)
            #expect(response.status == 200 && body.contains(#""accepted":21"#), "node \(node): \(body)")
        }
        net.sim.run(forMs: 4_000)
        func inclusion(_ node: Int, _ transaction: Transaction) throws -> (height: Int, status: Int) {
            let (code, found) = try net.json(node, "/tx/\(Hex.encode(transaction.id))")
            #expect(code == 200, "transaction \(transaction.nonce) on node \(node): \(found)")
            let result = try #require(found["result"] as? [String: Any])
            return (try #require(found["height"] as? Int), try #require(result["status"] as? Int))
        }
        for node in 0..<4 {
            let heights = try transactions.map { try inclusion(node, $0).height }
            #expect(Set(heights[0...15]).count == 1, "node \(node): the failed write and fifteen puts share a block: \(heights)")
            #expect(heights[16...].allSatisfy { $0 > heights[0] }, "node \(node): the sixteenth and later wait: \(heights)")
            #expect(try inclusion(node, transactions[0]).status == Int(MN_ERR_INVALID_ARGUMENT))
            #expect(try inclusion(node, transactions[20]).status == 0)
        }
        let roots = try (0..<4).map { node in
            try #require((try net.json(node, "/blocks/latest").1["header"] as? [String: Any])?["stateRoot"] as? String)
        }
        #expect(Set(roots).count == 1, "\(roots)")
    }

    @Test("a transaction's call may write 4,096 keys and 4 MiB; past either its write is refused with MN_ERR_LIMIT, the transaction fails and its writes are undone")
    func aCallsWritesAreBounded() throws {
        let net = try BPINetwork(validators: 1, seed: SimulationSeed.fromEnvironment(default: 89))
        try net.loadModule(WriterModule.self, name: WriterModule.name)
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("writer", []))
        // Three values of 1 MiB (and their keys) fit in 4 MiB, four do not; 4,096 keys fit, 4,097 do not.
        let cases: [(kind: String, payload: [UInt8], status: Int32)] = [
            ("writer/many", [3], MN_OK), ("writer/many", [4], MN_ERR_LIMIT),
            ("writer/keys", [0x10, 0x00], MN_OK), ("writer/keys", [0x10, 0x01], MN_ERR_LIMIT),
        ]
        let transactions = try cases.enumerated().map { nonce, item in
            try Transaction.signed(chainID: "sim", signer: signer, nonce: UInt64(nonce), fee: 0, kind: item.kind,
                                   payload: item.payload)
        }
        let response = net.sim.host(0).http(net.plugins[0], "POST", "/txs",
                                            body: TransactionBatch.encode(transactions.map(\.encoded)))
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        net.sim.run(forMs: 3_000)
        for (transaction, item) in zip(transactions, cases) {
            let (code, found) = try net.json(0, "/tx/\(Hex.encode(transaction.id))")
            let result = try #require(found["result"] as? [String: Any], "transaction \(transaction.nonce): \(code) \(found)")
            #expect(result["status"] as? Int == Int(item.status), "transaction \(transaction.nonce): \(result)")
        }
        // The failed calls' first writes are gone; the others' last ones are there.
        func stored(_ key: String) throws -> Bool {
            let (code, found) = try net.json(0, "/state/\(Hex.encode(Array("writer/\(key)".utf8)))")
            #expect(code == 200, "\(key): \(found)")
            return found["value"] is String
        }
        #expect(try stored("writer/many/0/2"))
        #expect(try !stored("writer/many/1/0"))
        #expect(try stored("writer/keys/2/4095"))
        #expect(try !stored("writer/keys/3/0"))
    }
}
