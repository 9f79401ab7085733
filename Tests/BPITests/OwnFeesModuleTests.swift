import BPIPlugin
import BPICore
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Synchronization
import Testing

/// A fee module that takes its own kinds' fees in their deliver (MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER). Balances are
/// u64 values under "bal/<sender>"; `charge_fee` takes `tx.fee` from the sender's (MN_ERR_DENIED if short). Its kinds:
/// "toll/fund" adds the u64 payload to the sender's balance; "toll/spend" takes it, and fails with "short" if the
/// balance (after the fee) is less. The handlers count their calls.
final class TollModule: Plugin {
    static let name = "toll"
    nonisolated(unsafe) static var api: UnsafePointer<mn_ledger_api>?
    static let deliverCalls = Atomic<Int>(0)
    static let chargeCalls = Atomic<Int>(0)

    static func balanceKey(_ sender: mn_bytes) -> [UInt8] { Array("bal/".utf8) + sender.array }

    static func balance(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?, _ key: [UInt8]) -> UInt64 {
        var word = [UInt8](repeating: 0, count: 8)
        var length = 0
        let status = key.withMNBytes { key in
            word.withUnsafeMutableBufferPointer { api.pointee.state_read(state, key, $0.baseAddress, 8, &length) }
        }
        return status == MN_OK && length == 8 ? word.reduce(0) { $0 << 8 | UInt64($1) } : 0
    }

    static func setBalance(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?, _ key: [UInt8],
                           _ value: UInt64) -> mn_status {
        let word = (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
        return key.withMNBytes { key in word.withMNBytes { api.pointee.state_put(state, key, $0) } }
    }

    /// Takes the fee from the sender's balance: the block part of `charge_fee`, and the start of a deliver.
    static func takeFee(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?,
                        _ tx: UnsafePointer<mn_ledger_tx>) -> mn_status {
        let key = balanceKey(tx.pointee.sender)
        let has = balance(api, state, key)
        guard has >= tx.pointee.fee else {
            "cannot pay the fee".withMNBytes { api.pointee.reject(state, $0) }
            return MN_ERR_DENIED
        }
        return setBalance(api, state, key, has - tx.pointee.fee)
    }

    nonisolated(unsafe) static let table = ledgerModuleTable(name, flags: MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER) { module in
        module.check = { _, _, _ in MN_OK }
        module.deliver = { _, state, tx in
            TollModule.deliverCalls.add(1, ordering: .relaxed)
            guard let api = TollModule.api, let tx else { return MN_ERR_INTERNAL }
            let feeStatus = TollModule.takeFee(api, state, tx)
            guard feeStatus == MN_OK else { return feeStatus }
            let amount = tx.pointee.payload.array.reduce(0) { $0 << 8 | UInt64($1) }
            let key = balanceKey(tx.pointee.sender)
            let has = balance(api, state, key)
            switch tx.pointee.kind.string {
            case "toll/fund": return setBalance(api, state, key, has + amount)
            case "toll/spend":
                guard has >= amount else {
                    "short".withMNBytes { api.pointee.reject(state, $0) }
                    return MN_ERR_DENIED
                }
                return setBalance(api, state, key, has - amount)
            default: return MN_ERR_NOT_FOUND
            }
        }
        module.charge_fee = { _, state, tx, block in
            TollModule.chargeCalls.add(1, ordering: .relaxed)
            guard let api = TollModule.api, let tx else { return MN_ERR_INTERNAL }
            guard block != nil else { return MN_OK }  // admission
            return TollModule.takeFee(api, state, tx)
        }
    }

    init(context: PluginContext) throws { Self.api = try registerLedgerModule(context, Self.table, minMinor: 4) }
}

@Suite("A fee module that takes its own kinds' fees in their deliver")
struct OwnFeesModuleTests {
    @Test("its kinds are one call when they succeed; a failed one pays its fee through charge_fee alone, and one whose fee cannot be paid stays out of every block")
    func ownKindsPayInDeliver() throws {
        let net = try BPINetwork(validators: 1, seed: SimulationSeed.fromEnvironment(default: 97))
        try net.loadModule(TollModule.self, name: TollModule.name)
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("toll", []))
        func transaction(_ nonce: UInt64, _ kind: String, fee: UInt64, amount: UInt64) throws -> Transaction {
            try Transaction.signed(chainID: "sim", signer: signer, nonce: nonce, fee: fee, kind: kind,
                                   payload: (0..<8).map { UInt8(truncatingIfNeeded: amount >> (56 - 8 * $0)) })
        }
        func submit(_ transaction: Transaction) {
            let response = net.sim.host(0).http(net.plugins[0], "POST", "/tx", body: transaction.encoded)
            #expect(response.status == 202, "\(String(decoding: response.body, as: UTF8.self))")
            net.sim.run(forMs: 1_000)
        }
        func result(_ transaction: Transaction) throws -> [String: Any]? {
            let (code, found) = try net.json(0, "/tx/\(Hex.encode(transaction.id))")
            return code == 200 ? try #require(found["result"] as? [String: Any]) : nil
        }
        func balance() throws -> UInt64 {
            let key = Array("toll/bal/".utf8) + signer.publicKey
            let (code, found) = try net.json(0, "/state/\(Hex.encode(key))")
            #expect(code == 200, "\(found)")
            return (found["value"] as? String).flatMap(Hex.decode).map { $0.reduce(0) { $0 << 8 | UInt64($1) } } ?? 0
        }
        let (deliversBefore, chargesBefore) = (TollModule.deliverCalls.load(ordering: .relaxed),
                                               TollModule.chargeCalls.load(ordering: .relaxed))
        func calls() -> (delivers: Int, charges: Int) {
            (TollModule.deliverCalls.load(ordering: .relaxed) - deliversBefore,
             TollModule.chargeCalls.load(ordering: .relaxed) - chargesBefore)
        }

        // Succeeding: the fee and the payment in one deliver each, and charge_fee only at admission.
        let fund = try transaction(0, "toll/fund", fee: 0, amount: 100)
        let spend = try transaction(1, "toll/spend", fee: 10, amount: 50)
        submit(fund)
        submit(spend)
        #expect(try result(fund)?["status"] as? Int == 0)
        #expect(try result(spend)?["status"] as? Int == 0)
        #expect(try balance() == 40)
        #expect(calls().delivers == 2)
        let chargesSoFar = calls().charges
        #expect(chargesSoFar == 0, "its check covers its kinds' fees at admission, and their delivers took them")

        // A payment that fails: its deliver is undone, then the fee is charged alone and stays paid.
        let overspend = try transaction(2, "toll/spend", fee: 10, amount: 500)
        submit(overspend)
        let failed = try #require(try result(overspend))
        #expect(failed["status"] as? Int == Int(MN_ERR_DENIED))
        #expect(failed["reason"] as? String == "short")
        #expect(try balance() == 30)
        #expect(calls() == (3, 1))

        // A fee that cannot be paid: deliver refuses, charge_fee refuses too, and no block holds the transaction.
        let unpayable = try transaction(3, "toll/spend", fee: 1_000, amount: 1)
        submit(unpayable)
        #expect(try result(unpayable) == nil)
        #expect(try balance() == 30)
        #expect(calls().charges >= 2)
    }
}
