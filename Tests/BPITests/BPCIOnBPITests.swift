import BPCICore
import BPCIPlugin
import BPICore
import Foundation
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

/// BPCI as a ledger module next to BPI on simulated validators: the C table, genesis through init_chain, fees on
/// every module's transactions, and all nodes agreeing on the state.
@Suite("BPCI on BPI, simulated validators")
struct BPCIOnBPITests {
    static let alice = Ed25519Signer(seed: WireCrypto.domainHash("bpci-alice", []))
    static let bob = Ed25519Signer(seed: WireCrypto.domainHash("bpci-bob", []))
    static var aliceAddress: Address { Address(publicKey: alice.publicKey) }
    static var bobAddress: Address { Address(publicKey: bob.publicKey) }

    static var genesis: String {
        #"{"bpci": {"accounts": [{"address": "\#(aliceAddress)", "balances": {"GEN": "100000", "FLX": "50"}}], "#
            + #""fees": {"initialBaseFee": "0.000001", "targetTransactions": 2}}}"#
    }

    /// `historyFlushBlocks` and `historyBatchOperations`: BPCI's config (nil: its defaults).
    static func network(seed: UInt64, historyFlushBlocks: Int? = nil, historyBatchOperations: Int? = nil) throws
        -> BPINetwork {
        let net = try BPINetwork(validators: 4, seed: seed, genesisModules: genesis)
        let config = [historyFlushBlocks.map { #""historyFlushBlocks": \#($0)"# },
                      historyBatchOperations.map { #""historyBatchOperations": \#($0)"# }]
        try net.loadModule(BPCI.self, name: BPCI.name, version: BPCI.version,
                           config: "{" + config.compactMap { $0 }.joined(separator: ", ") + "}")
        return net
    }

    static func transfer(_ amount: UInt64, _ denomination: Denomination = .flx, to: Address = bobAddress,
                         from: Ed25519Signer = alice, nonce: UInt64, fee: UInt64 = 5_000) -> Transaction {
        let message = BankMessage.transfer(Payment(to: to, denomination: denomination, amount: amount))
        return try! Transaction.signed(chainID: "sim", signer: from, nonce: nonce, fee: fee, kind: message.kind,
                                       payload: message.payload)
    }

    static func balances(_ net: BPINetwork, _ node: Int, _ address: Address) throws -> [String: UInt64] {
        let (status, answer) = try net.json(node, "/query/bpci/balance/\(address)")
        #expect(status == 200, "node \(node): \(answer)")
        var result: [String: UInt64] = [:]
        for entry in answer["balances"] as? [[String: Any]] ?? [] {
            result[entry["denom"] as? String ?? "?"] = (entry["units"] as? NSNumber)?.uint64Value
        }
        return result
    }

    /// The node's history page for `address`, from BPCI's own route.
    static func history(_ net: BPINetwork, _ node: Int, _ address: Address) throws -> [String: Any] {
        let plugin = net.modulePlugins[0][node]
        let response = net.sim.host(node).http(plugin, "GET", "/history/\(address)")
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        return try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
    }

    static func stateRoot(_ net: BPINetwork, _ node: Int) throws -> String? {
        (try net.json(node, "/blocks/latest").1["header"] as? [String: Any])?["stateRoot"] as? String
    }

    @Test("genesis balances exist from block 1, which is made at once; transfers settle alike on every node")
    func transfersSettle() throws {
        let net = try Self.network(seed: 41)
        net.sim.run(forMs: 1_000)
        #expect(try net.height(0) == 1, "block 1 sets up the genesis modules without waiting for a transaction")
        #expect(try Self.balances(net, 2, Self.aliceAddress)["GEN"] == Denomination.genSupply)

        #expect(net.submit(0, Self.transfer(10_000_000_000, nonce: 0)).status == 202)
        #expect(net.submit(1, Self.transfer(1_000_000, .gen, nonce: 1)).status == 202)
        net.sim.run(forMs: 1_000)
        for node in 0..<4 {
            let bob = try Self.balances(net, node, Self.bobAddress)
            #expect(bob["FLX"] == 10_000_000_000 && bob["GEN"] == 1_000_000, "node \(node)")
        }
        #expect(Set(try (0..<4).map { try Self.stateRoot(net, $0) }).count == 1)
        let replay = net.submit(2, Self.transfer(10_000_000_000, nonce: 0))
        #expect(replay.status == 400 && replay.body.contains("nonce 0 already used, next is 2"), "\(replay.body)")
        // Fees: the FLX supply fell by the burned base fees; the tips went to the proposers' addresses.
        let supply = try net.json(3, "/query/bpci/supply").1["supply"] as? [[String: Any]] ?? []
        let flx = (supply.first { $0["denom"] as? String == "FLX" }?["units"] as? NSNumber)?.uint64Value ?? 0
        #expect(flx < 50_000_000_000 && flx > 50_000_000_000 - 10_000)
        // The two fees (5,000 each) less what was burned were paid as tips, at the ends of their blocks.
        let burned = 50_000_000_000 - flx
        let tips = try (0..<4).reduce(UInt64(0)) { sum, node in
            try sum + (Self.balances(net, 3, Address(publicKey: net.sim.key(node).bytes))["FLX"] ?? 0)
        }
        #expect(tips == 10_000 - burned && tips > 0, "tips \(tips), burned \(burned)")
        // Each to the proposer of the block that held the transaction: only those hold FLX.
        var proposers: Set<String> = []
        for height in 1...(try net.height(3)) {  // the latest final height
            let block = try net.json(3, "/blocks/\(height)").1
            if (block["transactions"] as? [Any])?.isEmpty == false,
               let proposer = (block["header"] as? [String: Any])?["proposer"] as? String {
                proposers.insert(proposer)
            }
        }
        let tipped = try Set((0..<4).map { net.sim.key($0).bytes }.filter { key in
            try (Self.balances(net, 3, Address(publicKey: key))["FLX"] ?? 0) > 0
        }.map(Hex.encode))
        #expect(!proposers.isEmpty && tipped == proposers, "tipped \(tipped), proposers \(proposers)")
        #expect(try Self.history(net, 0, Self.bobAddress)["count"] as? Int == 2)

        // A node that starts empty replays genesis and the transfers from synced blocks and reaches the same root.
        let root = try Self.stateRoot(net, 0)
        net.sim.crash(3)
        try net.restart(3)
        net.sim.run(forMs: 2_000)
        #expect(try Self.stateRoot(net, 3) == root)
        #expect(try Self.balances(net, 3, Self.bobAddress)["FLX"] == 10_000_000_000)
        // Its history index, empty after the crash, is rebuilt from BPI's stored blocks.
        let rebuilt = try Self.history(net, 3, Self.bobAddress)
        #expect(rebuilt["count"] as? Int == 2, "\(rebuilt)")
        #expect((rebuilt["entries"] as? [[String: Any]])?.first?["direction"] as? String == "received")
    }

    @Test("a sender who queues more transactions than it can pay fees for gets only those it pays for into blocks")
    func unpayableFeesLeaveNoTrace() throws {
        let net = try Self.network(seed: 47)
        net.sim.run(forMs: 1_000)
        #expect(net.submit(0, Self.transfer(6_000, nonce: 0)).status == 202)  // one fee of 5,000 and change
        net.sim.run(forMs: 1_000)
        let queued = (0..<3).map { Self.transfer(1, to: Self.aliceAddress, from: Self.bob, nonce: UInt64($0)) }
        for transaction in queued {
            let answer = net.submit(0, transaction)
            #expect(answer.status == 202, "each fee alone is payable from committed state: \(answer.body)")
        }
        net.sim.run(forMs: 3_000)
        #expect(try net.json(1, "/tx/\(Hex.encode(queued[0].id))").0 == 200)
        for transaction in queued.dropFirst() {
            let (status, answer) = try net.json(1, "/tx/\(Hex.encode(transaction.id))")
            #expect(status == 404, "never in a block: \(answer)")
        }
        #expect(try Self.balances(net, 2, Self.bobAddress)["FLX"] == 999)
        #expect(Set(try (0..<4).map { try Self.stateRoot(net, $0) }).count == 1)
    }

    @Test("a node's history index that missed a block replays it from BPI's stored blocks")
    func historyCatchesUp() throws {
        let net = try Self.network(seed: 53, historyFlushBlocks: 1)
        net.sim.run(forMs: 1_000)
        let bpci = net.modulePlugins[0][1]
        net.sim.host(1).failNextBatchCommit(bpci)  // node 1's index fails to store the next block
        #expect(net.submit(0, Self.transfer(1_000, nonce: 0)).status == 202)
        net.sim.run(forMs: 1_000)
        #expect(net.sim.host(1).logMessages(of: bpci).contains { $0.contains("history index: could not store blocks") })
        #expect(try Self.history(net, 1, Self.bobAddress)["count"] as? Int == 1, "the lost block was indexed again")
        #expect(net.submit(0, Self.transfer(2_000, nonce: 1)).status == 202)
        net.sim.run(forMs: 1_000)
        let page = try Self.history(net, 1, Self.bobAddress)
        #expect(page["count"] as? Int == 2, "\(page)")
        let height1 = try net.height(1)
        #expect(page["indexedThroughHeight"] as? Int == height1)
        let amounts = (page["entries"] as? [[String: Any]] ?? []).map { ($0["amount"] as? [String: Any])?["units"] as? Int }
        #expect(amounts == [2_000, 1_000])

        // BPI's replay itself: event lines from the asked height on; none past the tip.
        var from = WireWriter()
        from.u64(1)
        let replay = net.sim.host(2).request("bpi.blocks.events", from.bytes)
        net.sim.run(forMs: 10)
        let blocks = try BlockEvents.decodeReplay(replay.reply)
        let height2 = try net.height(2)
        #expect(replay.status == 0 && blocks.first?.height == 1 && blocks.count == height2)
        #expect(blocks.flatMap(\.events).filter { $0.type == "bpci.transfer" }.count == 2)
        var past = WireWriter()
        past.u64(UInt64(height2) + 1)
        let none = net.sim.host(2).request("bpi.blocks.events", past.bytes)
        net.sim.run(forMs: 10)
        let noBlocks = try BlockEvents.decodeReplay(none.reply)
        #expect(none.status == 0 && noBlocks.isEmpty)
    }

    @Test("history pages read stored chunks and the blocks not stored yet as one sequence, newest first, and page back with before")
    func historyAcrossChunksAndBuffer() throws {
        let net = try Self.network(seed: 67, historyFlushBlocks: 2)
        net.sim.run(forMs: 1_000)
        // Block 1 came at once; one block each for these: flushes after blocks 2 and 4, and block 5 buffered.
        for nonce in 0..<4 as Range<UInt64> {
            #expect(net.submit(0, Self.transfer(1_000 * (nonce + 1), nonce: nonce)).status == 202)
            net.sim.run(forMs: 500)
        }
        let bpci = net.modulePlugins[0][2]
        let bobsChunks = net.sim.host(2).storedKeys(bpci).filter { $0.starts(with: HistoryIndex.chunkPrefix(Self.bobAddress)) }
        var lastStored = WireReader(Array(try #require(bobsChunks.last).suffix(8)), context: "chunk key")
        let storedCount = try lastStored.u64("last") + 1
        #expect(bobsChunks.count >= 2 && storedCount >= 2 && storedCount < 4, "\(storedCount) of bob's 4 entries stored")
        func amounts(_ page: [String: Any]) -> [Int] {
            (page["entries"] as? [[String: Any]] ?? []).compactMap { ($0["amount"] as? [String: Any])?["units"] as? Int }
        }
        let page = try Self.history(net, 2, Self.bobAddress)
        #expect(page["count"] as? Int == 4 && amounts(page) == [4_000, 3_000, 2_000, 1_000], "\(page)")
        let response = net.sim.host(2).http(bpci, "GET", "/history/\(Self.bobAddress)?before=3")
        let older = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        #expect(amounts(older) == [3_000, 2_000, 1_000])
        let sequences = (older["entries"] as? [[String: Any]] ?? []).compactMap { $0["sequence"] as? Int }
        #expect(sequences == [2, 1, 0])
    }

    /// Four transfers to bob, one block each after block 1, with the index stored every two blocks: blocks 1-4
    /// stored, block 5 buffered.
    static func fourPayments(seed: UInt64, historyBatchOperations: Int? = nil) throws -> BPINetwork {
        let net = try Self.network(seed: seed, historyFlushBlocks: 2, historyBatchOperations: historyBatchOperations)
        net.sim.run(forMs: 1_000)
        for nonce in 0..<4 as Range<UInt64> {
            #expect(net.submit(0, Self.transfer(1_000 * (nonce + 1), nonce: nonce)).status == 202)
            net.sim.run(forMs: 500)
        }
        return net
    }

    static func bobsPayments(_ net: BPINetwork, _ node: Int) throws -> [Int] {
        let page = try Self.history(net, node, Self.bobAddress)
        let entries = page["entries"] as? [[String: Any]] ?? []
        #expect(entries.compactMap { $0["sequence"] as? Int } == Array((0..<entries.count).reversed()))
        #expect(page["count"] as? Int == entries.count)
        return entries.compactMap { ($0["amount"] as? [String: Any])?["units"] as? Int }
    }

    /// After kill -9 a node keeps its stored history and indexes the blocks it held only in memory again. With
    /// `lostLastBatch`, its storage is as if the store of blocks 3-4 wrote the accounts' batch but not the last one,
    /// which moves the next height: those blocks are indexed again without duplicating what was stored.
    @Test("after kill -9 the history index takes again what it held in memory, and what a store that stopped before its last batch left, each entry once",
          arguments: [false, true])
    func historySurvivesACrash(lostLastBatch: Bool) throws {
        let net = try Self.fourPayments(seed: lostLastBatch ? 73 : 71)
        net.sim.crash(3)
        var storage = net.sim.host(3).storedData
        if lostLastBatch { storage[BPCI.name]?[HistoryIndex.nextHeightKey] = StoredU64.encode(3) }
        try net.restart(3, storage: storage)
        net.sim.run(forMs: 2_000)
        #expect(try Self.bobsPayments(net, 3) == [4_000, 3_000, 2_000, 1_000])
    }

    /// Two operations per batch: each store of the index takes a batch per account (a chunk and its progress).
    @Test("a store of the index in several kv batches keeps every account's history, and after a crash that lost its last batch nothing is taken twice")
    func historyStoredInSeveralBatches() throws {
        let net = try Self.fourPayments(seed: 83, historyBatchOperations: 2)
        let bpci = net.modulePlugins[0][1]
        // Blocks 1-4 stored (two stores, each of a batch per account), block 5 in memory.
        #expect(net.sim.host(1).storedData[BPCI.name]?[HistoryIndex.nextHeightKey] == StoredU64.encode(5))
        let keys = net.sim.host(1).storedKeys(bpci)
        for address in [Self.aliceAddress, Self.bobAddress] {
            #expect(keys.contains { $0.starts(with: HistoryIndex.chunkPrefix(address)) }, "\(address)'s chunks stored")
        }
        #expect(try Self.bobsPayments(net, 1) == [4_000, 3_000, 2_000, 1_000])
        let alices = try Self.history(net, 1, Self.aliceAddress)["entries"] as? [[String: Any]] ?? []
        #expect(alices.compactMap { $0["direction"] as? String } == ["sent", "sent", "sent", "sent"])

        // As if the store of blocks 3-4 committed its account batches but not the last, which moves the next height.
        net.sim.crash(1)
        var storage = net.sim.host(1).storedData
        storage[BPCI.name]?[HistoryIndex.nextHeightKey] = StoredU64.encode(3)
        try net.restart(1, storage: storage)
        net.sim.run(forMs: 2_000)
        #expect(try Self.bobsPayments(net, 1) == [4_000, 3_000, 2_000, 1_000])
        let again = try Self.history(net, 1, Self.aliceAddress)
        #expect(again["count"] as? Int == 4, "\(again)")
    }

    @Test("historyBatchOperations outside 2 to 40,000 stops BPCI's start with the reason")
    func historyBatchOperationsBounds() throws {
        for bad in [1, 40_001] {
            let net = try BPINetwork(validators: 1, seed: 89, genesisModules: Self.genesis)
            let error = #expect(throws: (any Error).self) {
                try net.loadModule(BPCI.self, name: BPCI.name, version: BPCI.version,
                                   config: #"{"historyBatchOperations": \#(bad)}"#)
            }
            #expect(error != nil)
            let logged = net.sim.host(0).logs.map(\.message)
            #expect(logged.contains { $0.contains("historyBatchOperations is \(bad); it must be 2 to 40,000") },
                    "\(logged.suffix(3))")
        }
    }

    @Test("a clean stop stores the buffered history; an index in the former layout is deleted and built again")
    func historyStopAndFormerLayout() throws {
        let net = try Self.fourPayments(seed: 79)
        let bpci = net.modulePlugins[0][3]
        net.sim.host(3).stop(bpci)
        let bobsLast = net.sim.host(3).storedKeys(bpci).filter { $0.starts(with: HistoryIndex.chunkPrefix(Self.bobAddress)) }
            .last.map { Array($0.suffix(8)) }
        #expect(bobsLast == StoredU64.encode(3), "all four of bob's entries stored at stop")

        net.sim.crash(3)
        var storage = net.sim.host(3).storedData
        let former = [[0x68] + Self.bobAddress.bytes + StoredU64.encode(0), [0x6E] + Self.bobAddress.bytes]
        for key in former { storage[BPCI.name]?[key] = [1, 2, 3] }
        storage[BPCI.name]?[HistoryIndex.formatKey] = nil
        try net.restart(3, storage: storage)
        net.sim.run(forMs: 2_000)
        let keys = net.sim.host(3).storedKeys(net.modulePlugins[0][3])
        #expect(former.allSatisfy { !keys.contains($0) }, "the former layout's keys are gone")
        #expect(net.sim.host(3).logMessages(of: net.modulePlugins[0][3]).contains {
            $0.contains("rebuilding in the chunked layout from height 1")
        })
        #expect(try Self.bobsPayments(net, 3) == [4_000, 3_000, 2_000, 1_000])
    }

    @Test("a block whose events outgrow one bus message is indexed whole, from its parts")
    func largeBlockHistory() throws {
        let senders = (0..<4).map { Ed25519Signer(seed: WireCrypto.domainHash("bpci-big", [UInt8($0)])) }
        let accounts = senders.enumerated().map { index, signer in
            #"{"address": "\#(Address(publicKey: signer.publicKey))", "balances": {"FLX": "10"\#(index == 0 ? #", "GEN": "100000""# : "")}}"#
        }
        let genesis = #"{"bpci": {"accounts": [\#(accounts.joined(separator: ", "))], "fees": {"initialBaseFee": "0.000001"}}}"#
        let net = try BPINetwork(validators: 4, seed: 61, genesisModules: genesis)
        try net.loadModule(BPCI.self, name: BPCI.name, version: BPCI.version)
        net.sim.run(forMs: 1_000)
        let payees = (0..<64).map { Address(publicKey: WireCrypto.domainHash("payee", [UInt8($0)])) }
        let message = BankMessage.multiSend(payees.map { Payment(to: $0, denomination: .flx, amount: 1) })
        // 176 multi-sends of 64 payments: 22,528 history entries (read from the buffer: fewer than a flush waits
        // for) and about 1.14 MB of events (two bus parts), all in one block.
        var batch: [[UInt8]] = []
        for nonce in 0..<44 {
            for signer in senders {
                batch.append(try Transaction.signed(chainID: "sim", signer: signer, nonce: UInt64(nonce), fee: 5_000,
                                                    kind: message.kind, payload: message.payload).encoded)
            }
        }
        // One request to height 2's proposer, so they are all in its mempool when it builds the block.
        let answer = net.sim.host(2).http(net.plugins[2], "POST", "/txs", body: TransactionBatch.encode(batch))
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        net.sim.run(forMs: 3_000)
        let block = try net.json(0, "/blocks/2").1
        #expect((block["transactions"] as? [Any])?.count == 176, "all in block 2")
        var from = WireWriter()
        from.u64(2)
        let replay = net.sim.host(1).request("bpi.blocks.events", from.bytes)
        net.sim.run(forMs: 10)
        let parts = try BlockEvents.decodeReplay(replay.reply).filter { $0.height == 2 }
        #expect(parts.map(\.firstEvent) == [0, parts.last?.firstEvent ?? 0] && parts.count == 2, "two parts")
        for node in [0, 3] {
            let page = try Self.history(net, node, payees[5])
            #expect(page["count"] as? Int == 176, "node \(node): \(page["count"] ?? "?")")
            let sender = try Self.history(net, node, Address(publicKey: senders[2].publicKey))
            #expect(sender["count"] as? Int == 44 * 64, "node \(node)")
        }
    }

    @Test("a chain whose genesis does not turn test transactions on refuses them at admission")
    func testTransactionsNeedTheGenesis() throws {
        let net = try BPINetwork(validators: 4, seed: 59, genesisModules: Self.genesis, testTransactions: false)
        net.sim.run(forMs: 500)
        let probe = try Transaction.signed(chainID: "sim", signer: Self.alice, nonce: 0, fee: 0, kind: "test/op",
                                           payload: [1])
        let answer = net.submit(0, probe)
        #expect(answer.status == 400 && answer.body.contains("test transactions are off on this chain"), "\(answer.body)")
    }

    @Test("bad transfers are refused at admission with their reason; nothing is deducted")
    func refusals() throws {
        let net = try Self.network(seed: 43)
        net.sim.run(forMs: 1_000)
        let before = try Self.balances(net, 0, Self.aliceAddress)
        let cases: [(Transaction, String)] = [
            (Self.transfer(51_000_000_000, nonce: 0), "bpci refused it: insufficient FLX: has 49.999995, needs 51"),
            (Self.transfer(1, .aur, nonce: 0), "bpci refused it: insufficient AUR: has 0, needs 0.000000001"),
            (Self.transfer(0, nonce: 0), "bpci refused it: amounts must be greater than zero"),
            (Self.transfer(1, nonce: 0, fee: 10), "bpci refused it: fee 0.00000001 FLX is below the base fee"),
            (Self.transfer(1, from: Self.bob, nonce: 0), "bpci refused it: insufficient FLX: has 0, needs 0.000005 for the fee"),
            (Self.transfer(1, nonce: 100), "nonce 100 is too far ahead: next is 0"),
        ]
        for (transaction, expected) in cases {
            let answer = net.submit(0, transaction)
            #expect(answer.status == 400 && answer.body.contains(expected), "\(answer.body), expected \(expected)")
        }
        var forged = Self.transfer(1, nonce: 0)
        forged.signature[3] ^= 1
        let badSignature = net.submit(0, forged)
        #expect(badSignature.status == 400 && badSignature.body.contains("signature"), "\(badSignature.body)")
        var badToken = Self.transfer(1, nonce: 0)
        badToken.payload[20] = 9
        let unknown = net.submit(0, try Transaction.signed(chainID: "sim", signer: Self.alice, nonce: 0, fee: 5_000,
                                                           kind: badToken.kind, payload: badToken.payload))
        #expect(unknown.body.contains("denomination 9 is unknown"), "\(unknown.body)")
        net.sim.run(forMs: 500)
        #expect(try Self.balances(net, 0, Self.aliceAddress) == before)
        #expect(try net.height(0) == 1)
    }
}
