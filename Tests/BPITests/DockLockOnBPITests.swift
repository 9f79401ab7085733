import BPCICore
import BPCIPlugin
import BPICore
import DockLockCore
@testable import DockLockPlugin
import Foundation
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

/// DockLock's ledger side without containers: the plugin named "docklock" that issues receipts as DockLock does
/// (signed with the node key under plugin scope "docklock", chained, stored with `ReceiptStore`) when asked, and
/// anchors them with DockLock's own `ReceiptAnchor` and ledger module.
///
///   POST /issue          body: a count; issues that many receipts
///   GET  /node           the anchor's summary (ledger account, pending, problem)
///   GET  /ledger/<seq>   where the ledger holds receipt <seq>, and its hash
final class ReceiptIssuer: Plugin {
    static let name = "docklock"
    struct Config: Decodable { var stateDirectory: String }

    let context: PluginContext
    private var chain: ReceiptChain.State
    private var anchor: ReceiptAnchor?

    init(context: PluginContext) throws {
        self.context = context
        let config = try context.decodeConfig(Config.self)
        let key = try context.signer.publicKey()
        chain = .start(node: key)
        anchor = try? ReceiptAnchor.connect(context: context, node: key, stateDirectory: config.stateDirectory) {
            [unowned self] in chain.nextSequence
        }.get()
        try context.http.route("POST", "/issue") { [unowned self] request in
            let count = Int(String(decoding: request.body, as: UTF8.self)) ?? 1
            for _ in 0..<count { try issue() }
            return .json(["next": chain.nextSequence])
        }
        try context.http.route("GET", "/node") { [unowned self] _ in
            .bytes(Array(try JSONSerialization.data(withJSONObject: anchor?.summary ?? [:])))
        }
        try context.http.route("GET", "/ledger/*") { [unowned self] request in
            guard let sequence = UInt64(request.path.dropFirst("/ledger/".count)),
                  let receipt = try ReceiptStore.load(sequence, kv: context.kv), let anchor else {
                return .json(["error": "no such receipt"], status: 404)
            }
            var view = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(anchor.view(of: receipt)))
                as? [String: Any] ?? [:]
            view["receiptHash"] = Hex.encode(receipt.hash)
            return .bytes(Array(try JSONSerialization.data(withJSONObject: view)))
        }
    }

    func start() throws { anchor?.start() }

    private func issue() throws {
        let now = context.unixTimeMs
        let receipt = try chain.next(
            containerID: "c-\(chain.nextSequence)", imageDigest: "sha256:" + String(repeating: "ab", count: 32),
            command: ["/bin/true"], environmentHash: ExecutionReceipt.environmentHash([]), hostname: "docklock",
            user: "0:0", workingDirectory: "/",
            profile: ExecutionProfile(seccompProfileHash: [UInt8](repeating: 1, count: 32), memoryBytesMax: 1 << 28,
                                      cpuMillicores: 1000, pidsMax: 64, network: .none, readOnlyRoot: true,
                                      deterministic: false, timeoutMs: 0),
            stdin: .empty, stdout: .empty, stderr: .empty, outcome: .exited(code: 0), oomKilled: false,
            timedOut: false, usage: .zero, startedAtMs: now, endedAtMs: now)
        let signed = SignedReceipt(receipt: receipt, signature: try context.signer.sign(receipt.signedMessage))
        var next = chain
        try next.record(receipt)
        try ReceiptStore.store(signed, head: next, replay: nil, kv: context.kv)
        chain = next
    }
}

/// DockLock as a ledger module next to BPI (and BPCI) on simulated validators: receipt hashes in every node's
/// ledger state, refusals of replays and forgeries, and batches that wait for their fees to be funded.
@Suite("DockLock on BPI, simulated validators")
final class DockLockOnBPITests {
    let directories: [String]

    init() throws {
        directories = try (0..<4).map { node in
            let path = NSTemporaryDirectory() + "docklock-sim-\(node)-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            return path
        }
    }

    deinit { for path in directories { try? FileManager.default.removeItem(atPath: path) } }

    static let alice = BPCIOnBPITests.alice
    static var descriptor: UnsafeRawPointer? {
        PluginExport.descriptor(for: ReceiptIssuer.self, name: ReceiptIssuer.name, version: "0.1.0")
    }

    /// BPI (and BPCI with `economy`) on 4 validators, then the issuer on each, which registers the module.
    func network(seed: UInt64, economy: Bool) throws -> (BPINetwork, [TestPlugin]) {
        let net = try BPINetwork(validators: 4, seed: seed, genesisModules: economy ? BPCIOnBPITests.genesis : "{}")
        if economy {
            try net.loadModule(BPCI.self, name: BPCI.name, version: BPCI.version)
        }
        let issuers = try net.sim.loadOnEveryNode(Self.descriptor) { node in
            #"{"stateDirectory": "\#(self.directories[node])"}"#
        }
        return (net, issuers)
    }

    static func object(_ response: HTTPResponseParts) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
                     "\(String(decoding: response.body, as: UTF8.self))")
    }

    static func issue(_ net: BPINetwork, _ issuers: [TestPlugin], node: Int, _ count: Int) {
        let answer = net.sim.host(node).http(issuers[node], "POST", "/issue", body: "\(count)")
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
    }

    static func ledger(_ net: BPINetwork, _ issuers: [TestPlugin], node: Int, _ sequence: Int) throws
        -> [String: Any] {
        try object(net.sim.host(node).http(issuers[node], "GET", "/ledger/\(sequence)"))
    }


    /// The ledger key DockLock made in the node's state directory.
    func ledgerKey(_ node: Int) throws -> Ed25519Signer {
        let seed = try #require(FileManager.default.contents(atPath: "\(directories[node])/ledger.key"))
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(directories[node])/ledger.key")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        return Ed25519Signer(seed: Array(seed))
    }

    @Test("receipt hashes a node issues are recorded in every node's ledger state, under one state root")
    func receiptsReachTheLedger() throws {
        let (net, issuers) = try network(seed: 71, economy: false)
        net.sim.run(forMs: 200)
        Self.issue(net, issuers, node: 0, 5)
        Self.issue(net, issuers, node: 2, 300)  // more than one batch (256)
        net.sim.run(forMs: 3_000)
        for (node, count) in [(0, 5), (2, 300)] {
            for sequence in [0, count - 1] {
                let view = try Self.ledger(net, issuers, node: node, sequence)
                #expect(view["status"] as? String == "anchored", "node \(node) receipt \(sequence): \(view)")
                let height = try #require(view["height"] as? Int)
                #expect(height >= 1 && (view["txId"] as? String)?.count == 64)
                #expect(view["batchIndex"] as? Int == sequence - (view["batchFirstSequence"] as? Int ?? -1))
                let hash = try #require((view["receiptHash"] as? String).flatMap(Hex.decode))
                for reader in 0..<4 {
                    let (status, state) = try net.json(reader, "/state/\(Hex.encode(ReceiptLedgerModule.stateKey(hash)))")
                    let value = try #require((state["value"] as? String).flatMap(Hex.decode), "node \(reader): \(state)")
                    let record = try LedgerReceiptRecord.decode(value)
                    #expect(status == 200 && record.height == UInt64(height) && record.sequence == UInt64(sequence))
                    #expect(record.node == net.sim.key(node).bytes)
                }
                let (_, query) = try net.json(3, "/query/docklock/receipt/\(Hex.encode(hash))")
                #expect(query["recorded"] as? Bool == true && query["height"] as? Int == height, "\(query)")
            }
        }
        let summary = try Self.object(net.sim.host(2).http(issuers[2], "GET", "/node"))
        #expect(summary["anchoredBelow"] as? Int == 300 && summary["pending"] as? Int == 0, "\(summary)")
        #expect((summary["address"] as? String)?.hasPrefix("mn1") == true)
        let roots = try (0..<4).map { try net.json($0, "/blocks/latest").1["header"] as? [String: Any] }
        #expect(Set(roots.map { $0?["stateRoot"] as? String }).count == 1)
        #expect(Set(roots.map { $0?["height"] as? Int }).count == 1)
    }

    @Test("a replayed batch is refused as recorded already, and a batch from a key the node did not name is refused")
    func replaysAndForgeriesRefused() throws {
        let (net, issuers) = try network(seed: 73, economy: false)
        net.sim.run(forMs: 200)
        Self.issue(net, issuers, node: 1, 3)
        net.sim.run(forMs: 2_000)
        let view = try Self.ledger(net, issuers, node: 1, 0)
        let id = try #require(view["txId"] as? String)
        let height = try #require(view["height"] as? Int)
        let block = try FinalizedBlock.decode(net.sim.host(0).http(net.plugins[0], "GET", "/blocks/\(height)?format=raw").body)
        let original = try #require(try block.block.transactions.map(Transaction.decode).first { Hex.encode($0.id) == id })

        // The same transaction again: BPI refuses the used nonce.
        let again = net.submit(2, original)
        #expect(again.status == 400 && again.body.contains("nonce 0 already used"), "\(again.body)")
        // The same batch under the next nonce, signed with the node's own ledger key: DockLock refuses it.
        let key = try ledgerKey(1)
        #expect(key.publicKey == original.sender)
        let replay = try Transaction.signed(chainID: "sim", signer: key, nonce: 1, fee: 0, kind: original.kind,
                                            payload: original.payload)
        let refused = net.submit(3, replay)
        #expect(refused.status == 400 && refused.body.contains("docklock refused it: receipt ")
                && refused.body.contains("(sequence 0) is already recorded at height \(height)"), "\(refused.body)")
        // Another key submitting the node's batch: not the ledger key the node named.
        let forged = try Transaction.signed(chainID: "sim", signer: Self.alice, nonce: 0, fee: 0, kind: original.kind,
                                            payload: original.payload)
        let forgery = net.submit(0, forged)
        #expect(forgery.status == 400 && forgery.body.contains("signature naming the sender"), "\(forgery.body)")
        // A replay that reaches a block (proposed by no honest mempool here) fails there too: the module's deliver.
        var state = MemoryState()
        _ = ReceiptLedgerModule.deliver(sender: key.publicKey, kind: original.kind, payload: original.payload,
                                        height: 2, state: &state)
        guard case .failure(let error) = ReceiptLedgerModule.deliver(
            sender: key.publicKey, kind: original.kind, payload: original.payload, height: 3, state: &state)
        else { Issue.record("the replay was delivered"); return }
        #expect(error.message.contains("is already recorded at height 2"))
    }

    @Test("an unfunded ledger account's batch is refused with its address, stays pending, and goes in once funded")
    func unfundedThenFunded() throws {
        let (net, issuers) = try network(seed: 79, economy: true)
        net.sim.run(forMs: 1_000)
        Self.issue(net, issuers, node: 0, 4)
        net.sim.run(forMs: 2_000)
        let address = Address(publicKey: try ledgerKey(0).publicKey)
        let pending = try Self.ledger(net, issuers, node: 0, 3)
        #expect(pending["status"] as? String == "pending", "\(pending)")
        let problem = try #require(pending["problem"] as? String)
        #expect(problem.contains("insufficient FLX") && problem.contains("fund it") && problem.contains("\(address)"),
                "\(problem)")
        #expect(net.sim.host(0).logMessages(of: issuers[0]).contains { $0.contains("\(address)") })
        let summary = try Self.object(net.sim.host(0).http(issuers[0], "GET", "/node"))
        #expect(summary["address"] as? String == "\(address)" && summary["pending"] as? Int == 4)

        // Fund it: one FLX from alice.
        let transfer = BPCIOnBPITests.transfer(1_000_000_000, to: address, nonce: 0)
        #expect(net.submit(1, transfer).status == 202)
        net.sim.run(forMs: 8_000)
        for sequence in 0..<4 {
            let view = try Self.ledger(net, issuers, node: 0, sequence)
            #expect(view["status"] as? String == "anchored" && view["problem"] == nil, "receipt \(sequence): \(view)")
        }
        let balance = try BPCIOnBPITests.balances(net, 2, address)["FLX"] ?? 0
        #expect(balance < 1_000_000_000 && balance > 1_000_000_000 - 10_000, "the fee was paid: \(balance)")
        let roots = try (0..<4).map { try BPCIOnBPITests.stateRoot(net, $0) }
        #expect(Set(roots).count == 1)
    }

    @Test("the same seed gives the same run: ledger keys, batches, blocks and state root")
    func deterministic() throws {
        func once() throws -> (String?, String) {
            for directory in directories { try? FileManager.default.removeItem(atPath: "\(directory)/ledger.key") }
            let (net, issuers) = try network(seed: 97, economy: true)
            net.sim.run(forMs: 1_000)
            Self.issue(net, issuers, node: 3, 20)
            #expect(net.submit(0, BPCIOnBPITests.transfer(1_000_000_000, to: Address(publicKey: try ledgerKey(3).publicKey),
                                                          nonce: 0)).status == 202)
            net.sim.run(forMs: 8_000)
            #expect(try Self.ledger(net, issuers, node: 3, 19)["status"] as? String == "anchored")
            return (try BPCIOnBPITests.stateRoot(net, 0), net.sim.traceHashHex)
        }
        let first = try once()
        let second = try once()
        #expect(first.0 != nil && first == second, "\(first) vs \(second)")
    }

    @Test("BPI's bus requests submit, locate and query as its HTTP routes do, and say what was wrong")
    func busRequests() throws {
        let net = try BPINetwork(validators: 4, seed: 89)
        net.sim.run(forMs: 200)
        let host = net.sim.host(1)
        func ask(_ topic: String, _ payload: [UInt8]) -> [UInt8] {
            let request = host.request(topic, payload)
            net.sim.run(forMs: 10)
            #expect(request.status == 0, "\(topic): \(String(describing: request.status))")
            return request.reply
        }
        let probe = try Transaction.signed(chainID: "sim", signer: Self.alice, nonce: 0, fee: 0, kind: "test/op",
                                           payload: [1])
        #expect(try TxStatus.decode(ask(LedgerRequests.statusTopic, probe.id)) == .unknown)
        let accepted = try TxSubmitReply.decode(ask(LedgerRequests.submitTopic, probe.encoded))
        #expect(accepted.accepted && accepted.id == probe.id && accepted.reason.isEmpty)
        #expect(try LedgerAccount.decode(ask(LedgerRequests.nonceTopic, Self.alice.publicKey))
            == LedgerAccount(chainID: "sim", height: 0, committedNonce: 0, nextNonce: 1))
        net.sim.run(forMs: 1_000)
        guard case .final(let height, 0, 0, "") = try TxStatus.decode(ask(LedgerRequests.statusTopic, probe.id)) else {
            Issue.record("not final")
            return
        }
        #expect(height == 1)

        let replayed = try TxSubmitReply.decode(ask(LedgerRequests.submitTopic, probe.encoded))
        #expect(!replayed.accepted && replayed.id == probe.id && replayed.reason == "nonce 0 already used, next is 1")
        let garbage = try TxSubmitReply.decode(ask(LedgerRequests.submitTopic, [1, 2, 3]))
        #expect(!garbage.accepted && garbage.reason.hasPrefix("malformed transaction:"), "\(garbage.reason)")
        #expect(try TxStatus.decode(ask(LedgerRequests.statusTopic, [1]))
            == .invalid("bpi.tx.status takes a 32-byte transaction id, not 1 bytes"))
        let unknown = LedgerQuery(module: "nosuch", path: "x")
        #expect(try LedgerQueryReply.decode(ask(LedgerRequests.queryTopic, unknown.encoded))
            == .refused("no module 'nosuch' is registered"))
        guard case .refused(let reason) = try LedgerQueryReply.decode(ask(LedgerRequests.queryTopic, [0, 9])) else {
            Issue.record("an undecodable query was answered")
            return
        }
        #expect(reason.contains("bpi.query"), "\(reason)")
    }

    @Test("the ledger key is made once with mode 0600 and kept; a damaged key file is refused, naming it")
    func ledgerKeyFile() throws {
        let directory = directories[0]
        let made = try ReceiptAnchor.loadOrCreateKey(directory: directory, random: [UInt8](repeating: 7, count: 32))
        #expect(made == [UInt8](repeating: 7, count: 32))
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory)/ledger.key")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let again = try ReceiptAnchor.loadOrCreateKey(directory: directory, random: [UInt8](repeating: 9, count: 32))
        #expect(again == made, "an existing key is never replaced")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["ledger.key"], "no temporary left")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "\(directory)/ledger.key"))
        #expect(throws: DockLockError.self) {
            _ = try ReceiptAnchor.loadOrCreateKey(directory: directory, random: made)
        }
        do {
            _ = try ReceiptAnchor.loadOrCreateKey(directory: directory, random: made)
        } catch {
            #expect(error.message.hasPrefix("\(directory)/ledger.key is 3 bytes; a ledger key is a 32-byte Ed25519 seed"))
        }
    }

    @Test("without BPI on the node, DockLock runs without the ledger and says why")
    func noLedgerWithoutBPI() throws {
        let host = TestHost()
        let issuer = try host.load(Self.descriptor, config: #"{"stateDirectory": "\#(directories[0])"}"#)
        #expect(host.logMessages(of: issuer).contains {
            $0 == "receipts are not anchored in a ledger: BPI is not running on this node (no bpi.ledger service)"
        }, "\(host.logMessages(of: issuer))")
        #expect(!FileManager.default.fileExists(atPath: "\(directories[0])/ledger.key"), "no key without a ledger")
        #expect(try Self.object(host.http(issuer, "GET", "/node")).isEmpty)
    }
}

/// `ReceiptLedgerState` as a dictionary.
struct MemoryState: ReceiptLedgerState {
    var values: [[UInt8]: [UInt8]] = [:]
    func get(_ key: [UInt8]) -> [UInt8]? { values[key] }
    mutating func put(_ key: [UInt8], _ value: [UInt8]) { values[key] = value }
}
