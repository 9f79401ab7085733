import BPIPlugin
import BPICore
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

/// A test module's name as the static bytes ledger.h asks for: written once, never freed (BPI keeps the pointer
/// for the life of the process).
func staticModuleName(_ name: String) -> mn_str {
    let bytes = Array(name.utf8)
    let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
    pointer.initialize(from: bytes, count: bytes.count)
    return mn_str(ptr: pointer, len: bytes.count)
}

/// A test module's table, made once and never freed (BPI keeps the pointer for the life of the process): ledger.h's
/// size unless `structSize` says the module was built against an older ledger, the name as static bytes, and the
/// handlers `handlers` sets (the rest nil).
func ledgerModuleTable(_ name: String, structSize: Int = MemoryLayout<mn_ledger_module>.size, flags: UInt32 = 0,
                       _ handlers: (inout mn_ledger_module) -> Void) -> UnsafeMutablePointer<mn_ledger_module> {
    var module = mn_ledger_module()
    module.struct_size = UInt32(structSize)
    module.name = staticModuleName(name)
    module.flags = flags
    handlers(&module)
    let table = UnsafeMutablePointer<mn_ledger_module>.allocate(capacity: 1)
    table.initialize(to: module)
    return table
}

/// Looks up `bpi.ledger` (at least `minMinor`) and registers a test module's `table` with it: each test module's
/// start. Returns the ledger's table, for the module's handlers.
func registerLedgerModule(_ context: PluginContext, _ table: UnsafePointer<mn_ledger_module>, minMinor: UInt32 = 0)
    throws -> UnsafePointer<mn_ledger_api> {
    let service = try context.services.lookup(MN_LEDGER_SERVICE, major: MN_LEDGER_VERSION_MAJOR, minMinor: minMinor)
    guard let api = service.bound(to: mn_ledger_api.self) else {
        throw PluginError(MN_ERR_VERSION, "bpi.ledger's table is \(service.size) bytes", function: "service_lookup")
    }
    let status = api.pointee.register_module(api, table)
    guard status == MN_OK else { throw PluginError(status, "register_module", function: "register_module") }
    return api
}

/// A module built against ledger 1.0 (its table ends before `init_chain`) that tries to emit another module's
/// namespaced event: it registers and runs, and the forged event is refused. Before emitting, it writes the payload
/// under "last" and marks "seen/<payload>": a refused call's writes must not stay.
final class ForgerModule: Plugin {
    static let name = "forger"
    nonisolated(unsafe) static var api: UnsafePointer<mn_ledger_api>?
    nonisolated(unsafe) static let table = ledgerModuleTable(
        name, structSize: MemoryLayout<mn_ledger_module>.offset(of: \mn_ledger_module.init_chain)!,
        flags: MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER
    ) { module in
        module.deliver = { _, state, tx in
            guard let api = ForgerModule.api, let tx else { return MN_ERR_INTERNAL }
            // The payload names the event type to emit.
            let type = tx.pointee.payload.string
            for (key, value) in [("last", Array(type.utf8)), ("seen/" + type, [1])] {
                let status = key.withMNBytes { key in value.withMNBytes { api.pointee.state_put(state, key, $0) } }
                guard status == MN_OK else { return status }
            }
            return type.withMNBytes { type in [UInt8]([1]).withMNBytes { api.pointee.emit_event(state, type, $0) } }
        }
        // Past its struct_size: BPI must never read these.
        module.init_chain = { _, _, _ in MN_ERR_INTERNAL }
        module.charge_fee = { _, _, _, _ in MN_ERR_INTERNAL }
    }

    init(context: PluginContext) throws { Self.api = try registerLedgerModule(context, Self.table) }
}

@Suite("Ledger modules built against 1.0, and event namespaces")
struct ForgerModuleTests {
    @Test("a 1.0 module registers and runs with nothing read past its table; a dotted event type of another module is refused")
    func oldModuleCannotForgeEvents() throws {
        let net = try BPINetwork(validators: 1, seed: 67)
        _ = try net.sim.host(0).load(try #require(PluginExport.descriptor(for: ForgerModule.self, name: ForgerModule.name,
                                                                          version: "1.0.0")))
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("forger", []))
        let own = try Transaction.signed(chainID: "sim", signer: signer, nonce: 0, fee: 0, kind: "forger/emit",
                                         payload: Array("forger.thing".utf8))
        let plain = try Transaction.signed(chainID: "sim", signer: signer, nonce: 1, fee: 0, kind: "forger/emit",
                                           payload: Array("thing".utf8))
        let forged = try Transaction.signed(chainID: "sim", signer: signer, nonce: 2, fee: 0, kind: "forger/emit",
                                            payload: Array("bpci.transfer".utf8))
        // In one request, so that one block holds all three.
        let answer = net.sim.host(0).http(net.plugins[0], "POST", "/txs",
                                          body: TransactionBatch.encode([own, plain, forged].map(\.encoded)))
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        net.sim.run(forMs: 1_000)
        func result(_ transaction: Transaction) throws -> [String: Any] {
            try #require(try net.json(0, "/tx/\(Hex.encode(transaction.id))").1["result"] as? [String: Any])
        }
        #expect(try result(own)["status"] as? Int == 0)
        #expect(try result(plain)["status"] as? Int == 0)
        let refused = try result(forged)
        #expect(refused["status"] as? Int == Int(MN_ERR_DENIED), "\(refused)")
        #expect((refused["events"] as? [Any])?.isEmpty == true)
        // The refused call's writes are undone within the block: "last" holds the plain call's payload again, and
        // the key only the refused call wrote is absent.
        func stored(_ key: String) throws -> String? {
            let value = try net.json(0, "/state/\(Hex.encode(Array("forger/\(key)".utf8)))").1["value"] as? String
            return value.flatMap(Hex.decode).map { String(decoding: $0, as: UTF8.self) }
        }
        let heights = try [own, plain, forged].map { try #require(try net.json(0, "/tx/\(Hex.encode($0.id))").1["height"] as? Int) }
        #expect(Set(heights).count == 1, "one block, so the undo restores a value written earlier in it")
        #expect(try stored("last") == "thing")
        #expect(try stored("seen/thing") == "\u{1}" && stored("seen/bpci.transfer") == nil)
    }
}
