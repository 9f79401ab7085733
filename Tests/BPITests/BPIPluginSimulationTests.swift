import BPIPlugin
import BPICore
import CounterModule
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

/// The BPI plugin itself (not only its core) on N simulated nodes: real host vtables, kv, timers, HTTP and the
/// simulated network, under one seeded clock.
final class BPINetwork {
    let sim: Simulation
    let genesisPath: String
    private(set) var plugins: [TestPlugin] = []
    let descriptor = PluginExport.descriptor(for: BPI.self, name: BPI.name, version: BPI.version)

    /// BPI's config `stateCheckpointBlocks` (nil: its default).
    let stateCheckpointBlocks: Int?
    /// BPI's config `gossipAdmissionWindowMs` (nil: its default).
    let gossipAdmissionWindowMs: UInt64?

    init(validators: Int, seed: UInt64, faults: LinkFaults = LinkFaults(latencyMs: 5, jitterMs: 5),
         heartbeatMs: UInt64 = 0, genesisModules: String = "{}", testTransactions: Bool = true,
         stateCheckpointBlocks: Int? = nil, gossipAdmissionWindowMs: UInt64? = nil) throws {
        let sim = Simulation(nodes: validators, seed: seed, faults: faults)
        self.sim = sim
        self.stateCheckpointBlocks = stateCheckpointBlocks
        self.gossipAdmissionWindowMs = gossipAdmissionWindowMs
        let keys = (0..<validators).map { #"{"key": "\#(sim.key($0).hex)"}"# }
        genesisPath = NSTemporaryDirectory() + "bpi-genesis-\(seed)-\(validators)-\(UUID().uuidString).json"
        let parameters = #"{"blockTransactionsMax": 5000, "blockBytesMax": 2097152, "pohTicksPerEntry": 4, "#
            + #""testTransactions": \#(testTransactions)}"#
        let genesis = #"{"chainId": "sim", "validators": [\#(keys.joined(separator: ", "))], "#
            + #""parameters": \#(parameters), "modules": \#(genesisModules)}"#
        try genesis.write(toFile: genesisPath, atomically: true, encoding: .utf8)
        let config = config(heartbeatMs: heartbeatMs)
        plugins = try sim.loadOnEveryNode(descriptor, config: { _ in config })
    }

    deinit { try? FileManager.default.removeItem(atPath: genesisPath) }

    func config(heartbeatMs: UInt64) -> String {
        #"{"genesisFile": "\#(genesisPath)", "roundTimeoutBaseMs": 200, "heartbeatMs": \#(heartbeatMs)"#
            + (stateCheckpointBlocks.map { #", "stateCheckpointBlocks": \#($0)"# } ?? "")
            + (gossipAdmissionWindowMs.map { #", "gossipAdmissionWindowMs": \#($0)"# } ?? "") + "}"
    }

    /// Restarts a crashed node, with empty storage or the storage it had, and BPI (and the modules loaded next to
    /// it) again.
    func restart(_ node: Int, keepingStorage: Bool = false) throws {
        try restart(node, storage: keepingStorage ? sim.host(node).storedData : [:])
    }

    /// Restarts a crashed node with `storage` (plugin name → its keys).
    func restart(_ node: Int, storage: [String: [[UInt8]: [UInt8]]]) throws {
        let host = sim.restart(node, storage: storage)
        plugins[node] = try host.load(descriptor, config: config(heartbeatMs: 0))
        for (position, module) in modules.enumerated() {
            modulePlugins[position][node] = try host.load(module.descriptor, config: module.config)
        }
    }

    /// Module plugins loaded next to BPI on every node.
    private(set) var modules: [(descriptor: UnsafeRawPointer, config: String)] = []

    /// Each module plugin's instance on every node, by the module's position in `modules`.
    private(set) var modulePlugins: [[TestPlugin]] = []

    /// Loads a module plugin next to BPI on every node; returns its instance on each.
    @discardableResult
    func loadModule(_ descriptor: UnsafeRawPointer, config: String = "{}") throws -> [TestPlugin] {
        let loaded = try sim.loadOnEveryNode(descriptor, config: { _ in config })
        modules.append((descriptor, config))
        modulePlugins.append(loaded)
        return loaded
    }

    /// Loads the Swift plugin `type` (a module such as BPCI, or a test module in this target) next to BPI on every
    /// node; returns its instance on each.
    @discardableResult
    func loadModule<P: Plugin>(_ type: P.Type, name: String, version: String = "1.0.0", config: String = "{}")
        throws -> [TestPlugin] {
        try loadModule(try #require(PluginExport.descriptor(for: type, name: name, version: version)), config: config)
    }

    /// Loads the SDK's example C module (plugin-sdk/examples/counter-module) next to BPI on every node.
    func loadCounterModule() throws { try loadModule(UnsafeRawPointer(counter_module_descriptor())) }

    func status(_ node: Int) throws -> [String: Any] {
        let response = sim.host(node).http(plugins[node], "GET", "/status")
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    func height(_ node: Int) throws -> Int { try #require(try status(node)["height"] as? Int) }

    func submit(_ node: Int, _ transaction: Transaction) -> (status: UInt16, body: String) {
        let response = sim.host(node).http(plugins[node], "POST", "/tx", body: transaction.encoded)
        return (response.status, String(decoding: response.body, as: UTF8.self))
    }

    func json(_ node: Int, _ path: String) throws -> (UInt16, [String: Any]) {
        let response = sim.host(node).http(plugins[node], "GET", path)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        return (response.status, object)
    }
}

@Suite("BPI plugin on a simulated network")
struct BPIPluginSimulationTests {
    static let alice = Ed25519Signer(seed: WireCrypto.domainHash("alice", []))

    static func transfer(nonce: UInt64, fee: UInt64 = 10) -> Transaction {
        try! Transaction.signed(chainID: "sim", signer: alice, nonce: nonce, fee: fee, kind: "test/op",
                                payload: Array("n\(nonce)".utf8))
    }

    @Test("an idle chain makes no blocks; a submitted transaction is finalized on every node within a second")
    func submitFinalizes() throws {
        let net = try BPINetwork(validators: 4, seed: SimulationSeed.fromEnvironment(default: 1))
        net.sim.run(forMs: 3_000)
        for node in 0..<4 { #expect(try net.height(node) == 0) }
        let transaction = Self.transfer(nonce: 0)
        let submitted = net.submit(2, transaction)
        #expect(submitted.status == 202, "\(submitted.body)")
        net.sim.run(forMs: 1_000)
        let id = Hex.encode(transaction.id)
        var blockHashes = Set<String>()
        for node in 0..<4 {
            #expect(try net.height(node) == 1)
            let (status, inclusion) = try net.json(node, "/tx/\(id)")
            #expect(status == 200)
            blockHashes.insert(try #require(inclusion["blockHash"] as? String))
            // The inclusion proof checks against the header's transactions root.
            let proof = try #require(inclusion["proof"] as? [String]).compactMap(Hex.decode)
            let rootText = try #require(inclusion["transactionsRoot"] as? String)
            let root = try #require(Hex.decode(rootText))
            #expect(MerkleTree.verify(leafHash: MerkleTree.leafHash(transaction.id), index: 0, count: 1, path: proof,
                                      root: root))
        }
        #expect(blockHashes.count == 1)
        net.sim.run(forMs: 3_000)
        #expect(try net.height(0) == 1, "no empty blocks after the transaction")
    }

    @Test("a prepared block and the commit it sends go to the WAL in one write; when that write fails the node sends no commit, and the others finalize without it")
    func walRecordsInARowAreOneWrite() throws {
        let net = try BPINetwork(validators: 4, seed: 131)
        // A node's first kv batch at a height is the prepared block with its commit (the prepare before them is a
        // single put, the block's own batch comes after): make it fail on node 3.
        net.sim.host(3).failNextBatchCommit(net.plugins[3], message: "disk full")
        #expect(net.submit(0, Self.transfer(nonce: 0)).status == 202)
        net.sim.run(forMs: 1_000)
        let logs = net.sim.host(3).logs.filter { $0.plugin == BPI.name }
        #expect(logs.contains { $0.message.contains("consensus WAL write failed, not sending") && $0.message.contains("disk full") },
                "\(logs)")
        #expect(!logs.contains { $0.message.contains("could not store block") }, "\(logs)")
        for node in 0..<4 { #expect(try net.height(node) == 1, "node \(node)") }
        // Node 3 goes on: the next block has its WAL records and commit again.
        #expect(net.submit(3, Self.transfer(nonce: 1)).status == 202)
        net.sim.run(forMs: 1_000)
        for node in 0..<4 { #expect(try net.height(node) == 2, "node \(node)") }
    }

    @Test("the mempool's refusals reach the submitter: used nonce, bad signature, duplicate")
    func rejections() throws {
        let net = try BPINetwork(validators: 4, seed: 3)
        #expect(net.submit(0, Self.transfer(nonce: 0)).status == 202)
        net.sim.run(forMs: 1_000)
        let used = net.submit(1, Self.transfer(nonce: 0, fee: 11))
        #expect(used.status == 400 && used.body.contains("nonce 0 already used, next is 1"), "\(used.body)")
        var forged = Self.transfer(nonce: 1)
        forged.signature[0] ^= 1
        let bad = net.submit(1, forged)
        #expect(bad.status == 400 && bad.body.contains("bad signature"), "\(bad.body)")
        #expect(net.submit(1, Self.transfer(nonce: 1)).status == 202)
        let again = net.submit(1, Self.transfer(nonce: 1))
        #expect(again.status == 400 && again.body.contains("already in the mempool"), "\(again.body)")
    }

    @Test("a stream of transactions from one sender is finalized in nonce order across many blocks")
    func streamOfTransactions() throws {
        let net = try BPINetwork(validators: 4, seed: 5)
        for nonce in 0..<40 as Range<UInt64> {
            #expect(net.submit(Int(nonce % 4), Self.transfer(nonce: nonce)).status == 202)
            net.sim.run(forMs: 20)
        }
        net.sim.run(forMs: 2_000)
        for nonce in 0..<40 as Range<UInt64> {
            let (status, _) = try net.json(3, "/tx/\(Hex.encode(Self.transfer(nonce: nonce).id))")
            #expect(status == 200, "nonce \(nonce)")
        }
        let heights = try (0..<4).map(net.height)
        #expect(Set(heights).count == 1 && heights[0] >= 2)
        for height in 1...heights[0] {
            let hashes = try Set((0..<4).map { try net.json($0, "/blocks/\(height)").1["header"]
                    .flatMap { ($0 as? [String: Any])?["hash"] as? String } })
            #expect(hashes.count == 1, "height \(height)")
        }
    }

    @Test("a node restarted with an empty data directory syncs every block and verifies their seals")
    func emptyNodeSyncs() throws {
        let net = try BPINetwork(validators: 4, seed: 7)
        net.sim.crash(3)
        for nonce in 0..<10 as Range<UInt64> {
            #expect(net.submit(0, Self.transfer(nonce: nonce)).status == 202)
            net.sim.run(forMs: 100)
        }
        net.sim.run(forMs: 1_000)
        let height = try net.height(0)
        #expect(height >= 1)
        try net.restart(3)
        net.sim.run(forMs: 2_000)
        #expect(try net.height(3) == height)
        let (_, latest) = try net.json(3, "/blocks/latest")
        let (_, reference) = try net.json(0, "/blocks/latest")
        #expect((latest["header"] as? [String: Any])?["hash"] as? String
            == (reference["header"] as? [String: Any])?["hash"] as? String)
    }

    @Test("with the proposer of the next height crashed, the others change round and finalize without it")
    func proposerCrash() throws {
        let net = try BPINetwork(validators: 4, seed: 11)
        // Height 1's proposer is validator 1 % 4 = 1.
        net.sim.crash(1)
        #expect(net.submit(0, Self.transfer(nonce: 0)).status == 202)
        net.sim.run(forMs: 2_000)
        for node in [0, 2, 3] { #expect(try net.height(node) == 1) }
        let (_, block) = try net.json(0, "/blocks/1")
        #expect((block["round"] as? Int ?? 0) >= 1)
    }

    @Test("a sender's nonce is in the state tree: its value proves against the header's state root, and an unknown sender's nonce proves absent")
    func stateProofs() throws {
        let net = try BPINetwork(validators: 4, seed: 13)
        for nonce in 0..<3 as Range<UInt64> { #expect(net.submit(0, Self.transfer(nonce: nonce)).status == 202) }
        net.sim.run(forMs: 1_000)
        let (_, latest) = try net.json(2, "/blocks/latest")
        let rootText = try #require((latest["header"] as? [String: Any])?["stateRoot"] as? String)
        let root = try #require(Hex.decode(rootText))
        #expect(root != [UInt8](repeating: 0, count: 32))

        let key = BlockRules.nonceKey(Self.alice.publicKey)
        let (status, body) = try net.json(2, "/state/\(Hex.encode(key))")
        #expect(status == 200)
        #expect(body["value"] as? String == Hex.encode(BlockRules.nonceValue(3)))
        let proofText = try #require(body["stateProof"] as? String)
        let proof = try StateProof.decode(try #require(Hex.decode(proofText)))
        #expect(proof.verify(key: key, value: BlockRules.nonceValue(3), root: root))
        #expect(!proof.verify(key: key, value: BlockRules.nonceValue(2), root: root))

        let stranger = BlockRules.nonceKey([UInt8](repeating: 7, count: 32))
        let (_, absent) = try net.json(2, "/state/\(Hex.encode(stranger))")
        #expect(absent["value"] is NSNull || absent["value"] == nil)
        let absentText = try #require(absent["stateProof"] as? String)
        let absence = try StateProof.decode(try #require(Hex.decode(absentText)))
        #expect(absence.verify(key: stranger, value: nil, root: root))
    }

    /// The "error" of a JSON error answer.
    static func error(_ body: String) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return object?["error"] as? String
    }

    static func add(_ amount: UInt64, nonce: UInt64, signer: Ed25519Signer = alice) -> Transaction {
        var payload = WireWriter()
        payload.u64(amount)
        return try! Transaction.signed(chainID: "sim", signer: signer, nonce: nonce, fee: 10, kind: "counter/add",
                                       payload: payload.bytes)
    }

    @Test("a C module through the ledger service: state every node agrees on, events, refusals with reasons, queries and proofs")
    func counterModule() throws {
        let net = try BPINetwork(validators: 4, seed: 17)
        try net.loadCounterModule()
        let unknown = net.submit(0, try Transaction.signed(chainID: "sim", signer: Self.alice, nonce: 0, fee: 1,
                                                           kind: "nobody/op", payload: []))
        #expect(unknown.status == 400 && Self.error(unknown.body) == "no module handles kind 'nobody/op'")
        let short = net.submit(0, try Transaction.signed(chainID: "sim", signer: Self.alice, nonce: 0, fee: 1,
                                                         kind: "counter/add", payload: [1, 2]))
        #expect(short.status == 400
            && Self.error(short.body) == "counter refused it: counter/add takes an 8-byte big-endian amount")

        #expect(net.submit(0, Self.add(5, nonce: 0)).status == 202)
        #expect(net.submit(1, Self.add(.max, nonce: 1)).status == 202)  // admitted; overflows when delivered
        #expect(net.submit(2, Self.add(7, nonce: 2)).status == 202)
        net.sim.run(forMs: 1_000)

        let overflow = try net.json(3, "/tx/\(Hex.encode(Self.add(.max, nonce: 1).id))").1
        let failed = try #require(overflow["result"] as? [String: Any])
        #expect(failed["status"] as? Int == Int(MN_ERR_INVALID_ARGUMENT)
            && failed["reason"] as? String == "the total would overflow a u64")
        let last = try net.json(3, "/tx/\(Hex.encode(Self.add(7, nonce: 2).id))").1
        let events = try #require((last["result"] as? [String: Any])?["events"] as? [[String: Any]])
        var twelve = WireWriter()
        twelve.u64(12)
        #expect(events.count == 1 && events[0]["type"] as? String == "added"
            && events[0]["data"] as? String == Hex.encode(twelve.bytes))

        for node in 0..<4 {
            let answer = net.sim.host(node).http(net.plugins[node], "GET",
                                                 "/query/counter/total?data=\(Hex.encode(Self.alice.publicKey))")
            #expect(answer.status == 200 && answer.body == twelve.bytes, "node \(node)")
        }
        func stateRoot(_ node: Int) throws -> String? {
            (try net.json(node, "/blocks/latest").1["header"] as? [String: Any])?["stateRoot"] as? String
        }
        let roots = Set(try (0..<4).map(stateRoot))
        #expect(roots.count == 1)
        let key = Array("counter/total/".utf8) + Self.alice.publicKey
        let state = try net.json(1, "/state/\(Hex.encode(key))").1
        #expect(state["value"] as? String == Hex.encode(twelve.bytes))
        let proofText = try #require(state["stateProof"] as? String)
        let proof = try StateProof.decode(try #require(Hex.decode(proofText)))
        let rootText = try #require(roots.first ?? nil)
        let root = try #require(Hex.decode(rootText))
        #expect(proof.verify(key: key, value: twelve.bytes, root: root))

        // A node that joins later replays the module's effects from synced blocks and reaches the same root.
        net.sim.crash(3)
        try net.restart(3)
        net.sim.run(forMs: 2_000)
        #expect(try stateRoot(3) == rootText)
    }

    static func stateRoot(_ net: BPINetwork, _ node: Int) throws -> String? {
        (try net.json(node, "/blocks/latest").1["header"] as? [String: Any])?["stateRoot"] as? String
    }

    static let bob = Ed25519Signer(seed: WireCrypto.domainHash("bob", []))

    /// Alice and bob adding to their counters in turn, one block each (block n adds n), with a state checkpoint
    /// every three blocks: the checkpoint at block 3 holds bob's block 2 and alice's blocks 1 and 3, and node 3 has
    /// blocks 4 (bob) and 5 (alice) only as d values when it crashes.
    static func counterBetweenCheckpoints(seed: UInt64) throws -> BPINetwork {
        let net = try BPINetwork(validators: 4, seed: seed, stateCheckpointBlocks: 3)
        try net.loadCounterModule()
        for block in 1...5 as ClosedRange<UInt64> {
            let signer = block % 2 == 1 ? alice : bob
            #expect(net.submit(Int(block % 3), Self.add(block, nonce: (block - 1) / 2, signer: signer)).status == 202)
            net.sim.run(forMs: 300)
        }
        net.sim.crash(3)
        let diffs = net.sim.host(3).storedKeys(net.plugins[3]).filter { $0.first == 0x64 && $0.count == 9 }
        #expect(diffs.count == 2, "blocks 4 and 5 since the checkpoint at block 3")
        return net
    }

    @Test("a node killed between state checkpoints loads the last one with the blocks' changes since, at the root its peers have, and goes on")
    func restartBetweenCheckpoints() throws {
        let net = try Self.counterBetweenCheckpoints(seed: 83)
        let root = try Self.stateRoot(net, 0)
        try net.restart(3, keepingStorage: true)
        net.sim.run(forMs: 500)
        #expect(try Self.stateRoot(net, 3) == root)
        // Committed state is read through the changes since the checkpoint: the counters and the next nonces.
        for (signer, total, nextNonce) in [(Self.alice, 1 + 3 + 5, 3), (Self.bob, 2 + 4, 2)] as [(Ed25519Signer, UInt64, UInt64)] {
            let counterKey = Hex.encode(Array("counter/total/".utf8) + signer.publicKey)
            var expected = WireWriter()
            expected.u64(total)
            #expect(try net.json(3, "/state/\(counterKey)").1["value"] as? String == Hex.encode(expected.bytes))
            let nonceKey = Hex.encode(BlockRules.nonceKey(signer.publicKey))
            #expect(try net.json(3, "/state/\(nonceKey)").1["value"] as? String
                == Hex.encode(BlockRules.nonceValue(nextNonce)))
        }
        #expect(net.submit(3, Self.add(10, nonce: 2, signer: Self.bob)).status == 202, "its mempool knows bob's nonce")
        net.sim.run(forMs: 1_000)
        let roots = try (0..<4).map { try Self.stateRoot(net, $0) }
        #expect(Set(roots).count == 1 && roots[0] != root, "the chain went on with node 3 agreeing")
        #expect(try net.height(3) == net.height(0))
        #expect(!net.sim.host(3).storedKeys(net.plugins[3]).contains { $0.first == 0x64 && $0.count == 9 },
                "block 6 was a checkpoint: the changes of blocks 4 and 5, loaded at start, went into it")
        // The checkpoint at block 6 wrote alice's block 5, which block 6 left alone: a restart from it agrees.
        net.sim.crash(3)
        try net.restart(3, keepingStorage: true)
        net.sim.run(forMs: 500)
        #expect(try Self.stateRoot(net, 3) == Self.stateRoot(net, 0))
    }

    @Test("a node whose stored state changes are damaged or lost refuses to start, saying so")
    func damagedStateChangesRefuseToStart() throws {
        let net = try Self.counterBetweenCheckpoints(seed: 89)
        let stored = net.sim.host(3).storedData
        let diffKeys = stored[BPI.name, default: [:]].keys.filter { $0.first == 0x64 && $0.count == 9 }
            .sorted { $0.lexicographicallyPrecedes($1) }
        var truncated = stored
        truncated[BPI.name]?[diffKeys[0]]?.removeLast()
        var lost = stored
        lost[BPI.name]?[diffKeys[1]] = nil
        for (storage, expected) in [(truncated, "the state changes of block 4"),
                                    (lost, "does not match block 5's state root")] {
            #expect(throws: HostError.self) { try net.restart(3, storage: storage) }
            let logs = net.sim.host(3).logs
            #expect(logs.contains { $0.plugin == BPI.name && $0.message.contains(expected) }, "\(logs)")
            net.sim.crash(3)
        }
        try net.restart(3, keepingStorage: false)
    }

    /// The counter transaction of block `n` in `counterBetweenCheckpoints`, and the total its "added" event gives.
    static func counterTransaction(block: UInt64) -> (id: [UInt8], total: UInt64) {
        let odd = block % 2 == 1
        let total = stride(from: odd ? 1 : 2, through: block, by: 2).reduce(0, +)
        return (Self.add(block, nonce: (block - 1) / 2, signer: odd ? alice : bob).id, total)
    }

    /// `/tx/<id>` on `node` finds the counter transaction of `block` there, with its result.
    static func expectFinal(_ net: BPINetwork, node: Int, block: UInt64,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (id, total) = counterTransaction(block: block)
        let (status, body) = try net.json(node, "/tx/\(Hex.encode(id))")
        var added = WireWriter()
        added.u64(total)
        let events = ((body["result"] as? [String: Any])?["events"] as? [[String: Any]]) ?? []
        #expect(status == 200 && body["height"] as? Int == Int(block) && body["index"] as? Int == 0
            && events.count == 1 && events.first?["data"] as? String == Hex.encode(added.bytes),
            "node \(node), block \(block): \(status) \(body)", sourceLocation: sourceLocation)
    }

    static func indexKeys(_ net: BPINetwork, _ node: Int) -> Set<[UInt8]> {
        Set(net.sim.host(node).storedKeys(net.plugins[node]).filter { $0.first == 0x74 && $0.count == 33 })
    }

    @Test("transactions are found by id before their t keys are written at the next checkpoint, after a restart between checkpoints, and after it")
    func transactionIndexBetweenCheckpoints() throws {
        let net = try Self.counterBetweenCheckpoints(seed: 97)
        let keys = Self.indexKeys(net, 3)
        for block in 1...3 as ClosedRange<UInt64> {
            #expect(keys.contains([0x74] + Self.counterTransaction(block: block).id), "block \(block): checkpoint 3")
        }
        for block in 4...5 as ClosedRange<UInt64> {
            #expect(!keys.contains([0x74] + Self.counterTransaction(block: block).id), "block \(block) waits")
        }
        for block in 1...5 as ClosedRange<UInt64> { try Self.expectFinal(net, node: 0, block: block) }
        try net.restart(3, keepingStorage: true)
        net.sim.run(forMs: 500)
        for block in 1...5 as ClosedRange<UInt64> { try Self.expectFinal(net, node: 3, block: block) }
        #expect(net.submit(3, Self.add(6, nonce: 2, signer: Self.bob)).status == 202)
        net.sim.run(forMs: 1_000)
        let written = Self.indexKeys(net, 3)
        for block in 1...6 as ClosedRange<UInt64> {
            #expect(written.contains([0x74] + Self.counterTransaction(block: block).id), "block \(block)")
            try Self.expectFinal(net, node: 3, block: block)
        }
    }

    /// The key of part `part` of the results of block `height`.
    static func resultsKey(_ height: UInt64, part: UInt32 = 0) -> [UInt8] {
        var key = WireWriter()
        key.u8(0x78)
        key.u64(height)
        key.u32(part)
        return key.bytes
    }

    @Test("a block whose results are lost: the node still starts, says which, and finds its transaction without a result")
    func lostResultsStillIndexed() throws {
        let net = try Self.counterBetweenCheckpoints(seed: 103)
        var storage = net.sim.host(3).storedData
        #expect(storage[BPI.name]?.removeValue(forKey: Self.resultsKey(4)) != nil)
        try net.restart(3, storage: storage)
        net.sim.run(forMs: 500)
        let logs = net.sim.host(3).logs.filter { $0.plugin == BPI.name }
        #expect(logs.contains { $0.message.contains("1 block(s) from height 4 on have no stored transaction results") },
                "\(logs)")
        let (status, body) = try net.json(3, "/tx/\(Hex.encode(Self.counterTransaction(block: 4).id))")
        #expect(status == 200 && body["height"] as? Int == 4 && body["result"] == nil, "\(status) \(body)")
        try Self.expectFinal(net, node: 3, block: 5)
    }

    @Test("with no transactions, blocks on a heartbeat still bring waiting t keys to a checkpoint, and the index height follows the tip")
    func heartbeatBlocksCheckpointTheIndex() throws {
        // test/op writes no state, and without modules an empty block changes none: no d values after block 1.
        let net = try BPINetwork(validators: 4, seed: 107, heartbeatMs: 100, stateCheckpointBlocks: 3)
        #expect(net.submit(0, Self.transfer(nonce: 0)).status == 202)
        net.sim.run(forMs: 150)
        let id = Self.transfer(nonce: 0).id
        #expect(try net.json(1, "/tx/\(Hex.encode(id))").0 == 200)
        let waiting = net.sim.host(1).storedData[BPI.name, default: [:]]
        #expect(waiting[[0x74] + id] == nil, "waits for a checkpoint")
        net.sim.run(forMs: 1_500)
        let height = try net.height(1)
        #expect(height >= 8, "empty blocks on the heartbeat: \(height)")
        let stored = net.sim.host(1).storedData[BPI.name, default: [:]]
        #expect(stored[[0x74] + id] != nil, "written within three blocks, though the blocks after it change nothing")
        var indexed = WireWriter()
        indexed.u64(UInt64(height))
        #expect(stored[Array("indexed".utf8)] == indexed.bytes, "nothing waits, so the index is complete to the tip")
        #expect(stored[Self.resultsKey(UInt64(height))] == [0, 0, 0, 0], "an empty block's results: one empty part")
    }

    @Test("a store from before blocks kept their results in one value still answers: t keys with the result inline, no x values")
    func transactionIndexOfEarlierStores() throws {
        let net = try Self.counterBetweenCheckpoints(seed: 101)
        net.sim.crash(0)
        // Node 0's store as the earlier layout had it: every transaction's t key holds its location and result.
        var keys = net.sim.host(0).storedData[BPI.name, default: [:]]
        #expect(keys.removeValue(forKey: Array("indexed".utf8)) != nil)
        for (key, value) in keys where key.first == 0x78 && key.count == 13 {
            var heightReader = WireReader(Array(key.dropFirst()), context: "x key")
            let height = try heightReader.u64("height")
            #expect(try heightReader.u32("part") == 0, "one part per block here")
            var reader = WireReader(value, context: "x value")
            let count = Int(try reader.u32("count"))
            for index in 0..<count {
                let id = try reader.fixed(32, "id")
                var location = WireWriter()
                location.u64(height)
                location.u32(UInt32(index))
                keys[[0x74] + id] = location.bytes + (try reader.bytes32("result", max: 1 << 20))
            }
            keys[key] = nil
        }
        // As the earlier version left it, and as this version finds it after running the earlier one from a store it
        // had written through block 3 (so `indexed` says 3, and blocks 4 and 5 have no x values).
        var indexedAtThree = WireWriter()
        indexedAtThree.u64(3)
        var downgraded = keys
        downgraded[Array("indexed".utf8)] = indexedAtThree.bytes
        for (variant, storage) in [("earlier", keys), ("downgraded", downgraded)] {
            try net.restart(0, storage: [BPI.name: storage])
            net.sim.run(forMs: 500)
            for block in 1...5 as ClosedRange<UInt64> { try Self.expectFinal(net, node: 0, block: block) }
            let warned = net.sim.host(0).logs.contains { $0.message.contains("2 block(s) from height 4 on have no stored") }
            #expect(warned == (variant == "downgraded"), "\(variant)")
            net.sim.crash(0)
        }
    }

    @Test("a validator that signs two different prepares for one round is caught: the evidence goes into a block and the ledger state")
    func equivocationBecomesEvidence() throws {
        let net = try BPINetwork(validators: 4, seed: 19)
        // Validator 3 is replaced by a plugin that is also called "bpi" (so it signs exactly as BPI would) and, once
        // started, sends two conflicting prepares for height 1, round 0.
        net.sim.crash(3)
        let impostor = net.sim.restart(3)
        try impostor.load(PluginExport.descriptor(for: Equivocator.self, name: "equivocator", version: "0.1.0"),
                          name: "bpi")
        net.sim.run(forMs: 100)
        #expect(net.submit(0, Self.transfer(nonce: 0)).status == 202)
        net.sim.run(forMs: 2_000)
        let (_, block) = try net.json(0, "/blocks/latest")
        let evidenceRoot = try #require((block["header"] as? [String: Any])?["evidenceRoot"] as? String)
        #expect(evidenceRoot != Hex.encode(MerkleTree.emptyRoot))
        var key = WireWriter()
        key.raw(Array("bpi/evidence/".utf8))
        key.u16(3)
        key.u64(1)
        key.u32(0)
        key.u8(MessageKind.prepare.rawValue)
        let recorded = try net.json(1, "/state/\(Hex.encode(key.bytes))").1
        #expect(recorded["value"] as? String != nil, "\(recorded)")
    }

    /// A "bpi/validators" transaction from alice naming `keys`, approved by validators `approvers` of `current`.
    static func validatorChange(_ net: BPINetwork, keys: [[UInt8]], approvers: [Int], current: ValidatorSet,
                                nonce: UInt64) throws -> Transaction {
        let newSet = try ValidatorSet(keys: keys)
        let message = ValidatorSetChange.approvalMessage(chainID: "sim", current: current, new: newSet)
        let approvals = approvers.map { index in
            let signer = Ed25519Signer(seed: Simulation.nodeKeySeed(seed: net.sim.seed, node: index))
            return ValidatorSetChange.Approval(
                validator: UInt16(current.index(of: signer.publicKey)!),
                signature: signer.sign(NodeSignature.signingBytes(plugin: "bpi", message: message)))
        }
        return try Transaction.signed(chainID: "sim", signer: alice, nonce: nonce, fee: 1, kind: ValidatorSetChange.kind,
                                      payload: ValidatorSetChange(newSet: newSet, approvals: approvals).encoded)
    }

    @Test("a quorum of validators removes one: the change takes effect at the next height and the chain goes on without it; too few approvals are refused")
    func validatorSetChange() throws {
        let net = try BPINetwork(validators: 4, seed: 23)
        let keys = (0..<4).map { net.sim.key($0).bytes }
        let current = try ValidatorSet(keys: keys)
        let tooFew = net.submit(0, try Self.validatorChange(net, keys: Array(keys[0..<3]), approvers: [0, 1],
                                                            current: current, nonce: 0))
        #expect(tooFew.status == 400
            && Self.error(tooFew.body) == "bpi refused it: 2 approval(s); a quorum of the 4 current validators is 3")
        let change = try Self.validatorChange(net, keys: Array(keys[0..<3]), approvers: [0, 1, 2], current: current,
                                              nonce: 0)
        #expect(net.submit(0, change).status == 202)
        net.sim.run(forMs: 1_000)
        let changedAt = try net.height(0)
        for node in 0..<4 {
            #expect((try net.status(node)["validators"] as? [String])?.count == 3, "node \(node)")
        }
        // With validators 2 and 3 down, the old set (quorum 3 of 4) would stall; the new one (quorum 2 of 3) goes on.
        net.sim.crash(3)
        net.sim.crash(2)
        for nonce in 1..<6 as Range<UInt64> {
            #expect(net.submit(Int(nonce % 2), Self.transfer(nonce: nonce)).status == 202)
            net.sim.run(forMs: 1_000)
        }
        #expect(try net.height(0) >= changedAt + 3)
        let (_, block) = try net.json(1, "/blocks/latest")
        #expect((block["seals"] as? [Int])?.allSatisfy { $0 < 3 } == true)
        #expect((block["header"] as? [String: Any])?["validatorSetHash"] as? String
            == Hex.encode(try ValidatorSet(keys: Array(keys[0..<3])).hash))
    }

    @Test("bad requests get clear answers: unknown block, malformed id, undecodable body")
    func badRequests() throws {
        let net = try BPINetwork(validators: 1, seed: 1)
        let (missing, body) = try net.json(0, "/blocks/5")
        #expect(missing == 404 && (body["error"] as? String) == "no block at height 5; the chain is at 0")
        let (badID, idBody) = try net.json(0, "/tx/zz")
        #expect(badID == 400 && (idBody["error"] as? String) == "'zz' is not a transaction id (64 hex digits)")
        let garbage = net.sim.host(0).http(net.plugins[0], "POST", "/tx", body: [1, 2, 3])
        #expect(garbage.status == 400)
        #expect(String(decoding: garbage.body, as: UTF8.self).contains("malformed transaction"))
    }
}

/// Stands in for validator 3's BPI: signs two prepares for height 1, round 0 with different digests and sends both.
final class Equivocator: Plugin {
    let context: PluginContext

    init(context: PluginContext) throws { self.context = context }

    func start() throws {
        for salt in [UInt8(1), 2] {
            let payload = ConsensusPayload(kind: .prepare, height: 1, round: 0,
                                           digest: WireCrypto.blake2b256([salt]))
            let message = SignedMessage(payload: payload, signer: 3, signature: try context.signer.sign(payload.signingBytes))
            _ = try context.net.broadcast(ConsensusEnvelope.prepare(message).encoded, on: "consensus")
        }
    }
}
