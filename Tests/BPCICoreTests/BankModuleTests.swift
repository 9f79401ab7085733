import BPCICore
import Foundation
import MetanodePluginTesting
import MetanodeWire
import Testing

/// The ledger module's handlers over plain dictionaries, as BPI would call them: genesis, admission, fees, delivery,
/// end of block and queries.
@Suite("BPCI ledger module")
struct BankModuleTests {
    static let aliceKey = Ed25519Signer(seed: WireCrypto.domainHash("alice", [])).publicKey
    static let bobKey = Ed25519Signer(seed: WireCrypto.domainHash("bob", [])).publicKey
    static let proposerKey = [UInt8](repeating: 7, count: 32)
    static var alice: Address { Address(publicKey: aliceKey) }
    static var bob: Address { Address(publicKey: bobKey) }

    static func genesisSection(extra: String = "") -> [UInt8] {
        Array("""
            {"accounts": [{"address": "\(alice)", "balances": {"GEN": "100000", "FLX": "100"}},
                          {"address": "\(bob)", "balances": {"FLX": "0.5"}}\(extra)],
             "fees": {"initialBaseFee": "0.000001", "minimumBaseFee": "0.000000001", "changeDenominator": 8,
                      "targetTransactions": 4}}
            """.utf8)
    }

    static func started() -> DictionaryModuleState {
        var state = DictionaryModuleState()
        #expect(BankModule.initChain(genesisSection(), state: &state) == nil)
        return state
    }

    static func transaction(_ message: BankMessage, from sender: [UInt8] = aliceKey, fee: UInt64 = 2_000,
                            nonce: UInt64 = 0) -> ModuleTransaction {
        ModuleTransaction(senderKey: sender, nonce: nonce, fee: fee, kind: message.kind, payload: message.payload)
    }

    static func balance(_ state: DictionaryModuleState, _ address: Address, _ denomination: Denomination) -> UInt64 {
        StateBankStore(state).balance(address, denomination)
    }

    static func refusal<T>(_ result: Result<T, ModuleRefusal>) -> String? {
        if case .failure(let refusal) = result { return refusal.reason }
        return nil
    }

    @Test("genesis sets balances, supplies and fee parameters; a bad section is refused, naming what is wrong")
    func genesis() throws {
        let state = Self.started()
        #expect(Self.balance(state, Self.alice, .gen) == Denomination.genSupply)
        #expect(Self.balance(state, Self.bob, .flx) == 500_000_000)
        #expect(StateBankStore(state).supply(.flx) == 100_500_000_000)
        #expect(try BankModule.feeMarket(state).baseFee == 1_000)
        let cases: [(String, String)] = [
            (#"{"accounts": [{"address": "mn1qqq", "balances": {"GEN": "100000"}}]}"#, "is not an address"),
            (#"{"accounts": [], "extra": 1}"#, "unknown field(s) [\"extra\"]"),
            (#"{"accounts": []}"#, "genesis GEN adds up to 0; it must be exactly 100000"),
            (#"{"accounts": [{"address": "\#(Self.alice)", "balances": {"XYZ": "1"}}]}"#, "'XYZ' is not a token"),
            (#"{"accounts": [{"address": "\#(Self.alice)", "balances": {"GEN": 100000}}]}"#, "must be a positive amount"),
            (#"{"accounts": [], "fees": {"initialBaseFee": "0.1", "minimumBaseFee": "1"}}"#, "initialBaseFee is below"),
            ("[1]", "is not a JSON object"),
        ]
        for (section, expected) in cases {
            var empty = DictionaryModuleState()
            let refusal = BankModule.initChain(Array(section.utf8), state: &empty)
            #expect(refusal?.reason.contains(expected) == true, "\(section) → \(refusal?.reason ?? "accepted")")
        }
    }

    @Test("a genesis without a bpci section leaves BPCI inactive: no fees, its transactions refused, blocks go on")
    func inactiveWithoutGenesis() {
        var state = DictionaryModuleState()
        #expect(BankModule.initChain(Array("{}".utf8), state: &state) == nil)
        #expect(state.values.isEmpty && !BankModule.isActive(state))
        let transfer = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1)))
        #expect(BankModule.check(transfer, state: state)?.reason.contains("no modules.bpci section") == true)
        #expect((try? BankModule.chargeFee(transfer, proposer: Self.proposerKey, state: &state).get()) == [])
        #expect(Self.refusal(BankModule.deliver(transfer, state: &state))?.contains("not set up") == true)
        #expect(BankModule.endBlock(transactions: 1, proposer: Self.proposerKey, state: &state) == nil
            && state.values.isEmpty)
        var other = DictionaryModuleState()
        #expect(BankModule.initChain(Array(#"{"fees": {}}"#.utf8), state: &other)?.reason.contains("needs \"accounts\"")
            == true)
    }

    @Test("admission refuses each bad transfer with its reason and writes nothing")
    func admissionRefusals() {
        let state = Self.started()
        let before = state
        let payment = { (amount: UInt64, to: Address, denomination: Denomination) in
            Payment(to: to, denomination: denomination, amount: amount)
        }
        let cases: [(ModuleTransaction, String)] = [
            (Self.transaction(.transfer(payment(101_000_000_000, Self.bob, .flx))), "insufficient FLX: has 99.999998, needs 101"),
            (Self.transaction(.transfer(payment(1, Self.alice, .gen)), from: Self.bobKey), "insufficient GEN: has 0, needs 0.000001"),
            (Self.transaction(.transfer(payment(0, Self.bob, .flx))), "amounts must be greater than zero"),
            (Self.transaction(.multiSend([payment(.max, Self.bob, .gen), payment(2, Self.bob, .gen)])), "GEN amount would overflow"),
            (Self.transaction(.mint(payment(5, Self.alice, .nex))), "minting NEX is reserved"),
            (Self.transaction(.multiSend([])), "a multi-send needs at least one output"),
            (Self.transaction(.transfer(payment(1, Self.bob, .flx)), fee: 999), "below the base fee"),
            (Self.transaction(.transfer(payment(1, Self.alice, .flx)), from: Self.proposerKey), "insufficient FLX: has 0, needs 0.000002 for the fee"),
            // All of bob's 0.5 FLX is more than he can send once the fee is paid.
            (Self.transaction(.transfer(payment(500_000_000, Self.alice, .flx)), from: Self.bobKey), "insufficient FLX"),
        ]
        for (transaction, expected) in cases {
            let refusal = BankModule.check(transaction, state: state)
            #expect(refusal?.reason.contains(expected) == true, "\(refusal?.reason ?? "admitted"), expected \(expected)")
        }
        var badDenomination = Self.transaction(.transfer(payment(1, Self.bob, .flx)))
        badDenomination.payload[20] = 9
        #expect(BankModule.check(badDenomination, state: state)?.reason
            == "bpci/transfer: denomination 9 is unknown (1 GEN, 2 NEX, 3 FLX, 4 AUR)")
        var truncated = Self.transaction(.transfer(payment(1, Self.bob, .flx)))
        truncated.payload.removeLast()
        #expect(BankModule.check(truncated, state: state) != nil)
        var unknownKind = truncated
        unknownKind.kind = "bpci/steal"
        #expect(BankModule.check(unknownKind, state: state)?.reason == "BPCI has no transaction kind 'bpci/steal'")
        #expect(BankModule.check(Self.transaction(.transfer(payment(1, Self.bob, .flx))), state: state) == nil)
        #expect(state == before)
    }

    @Test("a block charges the fee (base burned, tip to the proposer), pays, records history and events")
    func delivery() throws {
        var state = Self.started()
        let transfer = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1_000_000_000)),
                                        fee: 1_500)
        let feeEvents = try BankModule.chargeFee(transfer, proposer: Self.proposerKey, state: &state).get()
        let events = try BankModule.deliver(transfer, state: &state).get()
        // A BPCI transaction's fee is in its payment's event, not in one of its own.
        #expect(feeEvents.isEmpty && events.map(\.type) == ["bpci.transfer"])
        #expect(events.first?.data.count == BankModule.transferEventBytes
            && events.first.map { Array($0.data.suffix(8)) } == [0, 0, 0, 0, 0, 0, 0x05, 0xDC], "fee 1,500")
        let proposer = Address(publicKey: Self.proposerKey)
        #expect(Self.balance(state, Self.alice, .flx) == 100_000_000_000 - 1_000_000_000 - 1_500)
        #expect(Self.balance(state, Self.bob, .flx) == 1_500_000_000)
        // The burn and the tip wait for the end of the block.
        #expect(Self.balance(state, proposer, .flx) == 0 && StateBankStore(state).supply(.flx) == 100_500_000_000)
        #expect(state.u64Pair(BankKeys.pendingFees).map { [$0.0, $0.1] } == [1_000, 500])
        #expect(BankModule.endBlock(transactions: 1, proposer: Self.proposerKey, state: &state) == nil)
        #expect(Self.balance(state, proposer, .flx) == 500)
        #expect(StateBankStore(state).supply(.flx) == 100_500_000_000 - 1_000)
        #expect(state.get(BankKeys.pendingFees) == nil, "no block's pending fees outlive it")
        // One transaction against a target of four: the base fee falls by (4-1)/4/8 of itself.
        #expect(try BankModule.feeMarket(state).baseFee == 1_000 - 1_000 * 3 / 4 / 8)

        // Each node indexes history from the events, as they come in the finalized block.
        let transferID = WireCrypto.domainHash("tx", [9])
        let block = BlockEvents(height: 9, events: (feeEvents + events).map {
            BlockEvents.Event(transaction: transferID, type: $0.type, data: $0.data)
        })
        let entries = HistoryIndex.entries(block)
        #expect(entries.count == 2)
        #expect(entries.first?.0 == Self.alice && entries.first?.1.direction == .sent && entries.first?.1.fee == 1_500)
        #expect(entries.last?.0 == Self.bob && entries.last?.1 == HistoryEntry(
            height: 9, transaction: transferID, direction: .received, counterparty: Self.alice, denomination: .flx,
            amount: 1_000_000_000, fee: 0))
        let chunks = HistoryIndex.chunks([try #require(entries.last?.1)], after: 0)
        #expect(chunks.count == 1 && chunks[0].last == 0 && chunks[0].value.count == HistoryEntry.byteCount)
        let chunk = try #require(HistoryChunk(last: 0, bytes: chunks[0].value))
        let page = try JSONSerialization.jsonObject(with: Data(
            try HistoryIndex.page(Self.bob, count: 1, indexedThrough: 9, entry: { chunk.entry($0) }).get()))
            as? [String: Any]
        let pageEntries = page?["entries"] as? [[String: Any]]
        #expect(page?["count"] as? Int == 1 && pageEntries?.first?["direction"] as? String == "received")
        #expect(pageEntries?.first?["counterparty"] as? String == Self.alice.description)
        #expect(page?["indexedThroughHeight"] as? Int == 9)
        #expect(HistoryChunk(last: 0, bytes: [1, 2, 3]) == nil, "not a whole entry")
        #expect(Self.refusal(HistoryIndex.page(Self.bob, count: 1, indexedThrough: 9, entry: { _ in nil }))?
            .contains("history entry 0") == true)
        let supply = String(decoding: try BankModule.query(path: "supply", request: [], state: state).get(), as: UTF8.self)
        #expect(supply.contains(#""amount":"100.499999","denom":"FLX""#))
        #expect(Self.refusal(BankModule.query(path: "balance/nonsense", request: [], state: state))?
            .contains("is not an address") == true)
        #expect(Self.refusal(BankModule.query(path: "steal", request: [], state: state))?
            .contains("BPCI answers balance/<address>, supply and fees") == true)
    }

    static func entry(_ height: UInt64, _ amount: UInt64) -> HistoryEntry {
        HistoryEntry(height: height, transaction: [UInt8](repeating: UInt8(truncatingIfNeeded: amount), count: 32),
                     direction: .received, counterparty: Self.alice, denomination: .flx, amount: amount, fee: 0)
    }

    @Test("an account's entries are stored in chunks keyed by their last sequence; each sequence reads back from its chunk",
          arguments: [1, 2, HistoryIndex.chunkEntriesMax - 1, HistoryIndex.chunkEntriesMax, HistoryIndex.chunkEntriesMax + 1,
                      2 * HistoryIndex.chunkEntriesMax + 5])
    func historyChunks(count: Int) throws {
        let entries = (0..<count).map { Self.entry(7, UInt64($0) + 1) }
        let stored: UInt64 = 40  // entries the account already has
        let chunks = HistoryIndex.chunks(entries, after: stored)
        #expect(chunks.count == (count + HistoryIndex.chunkEntriesMax - 1) / HistoryIndex.chunkEntriesMax)
        #expect(chunks.last?.last == stored + UInt64(count) - 1)
        var sequence = stored
        for (last, value) in chunks {
            let chunk = try #require(HistoryChunk(last: last, bytes: value))
            #expect(chunk.first == sequence && !chunk.contains(sequence - 1) && !chunk.contains(last + 1))
            while sequence <= last {
                #expect(chunk.entry(sequence) == entries[Int(sequence - stored)], "sequence \(sequence)")
                sequence += 1
            }
        }
        #expect(sequence == stored + UInt64(count))
        // Keys order by account, then by last sequence: a forward seek from a sequence lands on its chunk.
        let keys = chunks.map { HistoryIndex.chunkKey(Self.bob, last: $0.last) }
        #expect(keys == keys.sorted { $0.lexicographicallyPrecedes($1) })
        #expect(keys.allSatisfy { $0.starts(with: HistoryIndex.chunkPrefix(Self.bob)) && HistoryIndex.isAccountKey($0) })
        #expect(HistoryIndex.isAccountKey(HistoryIndex.progressKey(Self.bob)))
        #expect(!HistoryIndex.isAccountKey(HistoryIndex.nextHeightKey) && !HistoryIndex.isAccountKey(HistoryIndex.formatKey))
        #expect(!HistoryIndex.isAccountKey(Array("history/abcdefghijklmnopqrstu".utf8)), "29 bytes, but the index's own")
        // A chunk claiming more entries than its last sequence allows is refused.
        #expect(HistoryChunk(last: 0, bytes: Self.entry(1, 1).encoded + Self.entry(1, 2).encoded) == nil)
        #expect(HistoryChunk(last: .max, bytes: Self.entry(1, 1).encoded)?.first == .max, "a damaged key does not trap")
    }

    @Test("a history entry is its fields in order at fixed widths, big-endian, and decodes back")
    func historyEntryLayout() throws {
        let entry = HistoryEntry(height: 0x0102_0304_0506_0708, transaction: Array(100..<132), direction: .sent,
                                 counterparty: Self.bob, denomination: .aur, amount: 0x1112_1314_1516_1718,
                                 fee: 0x2122_2324_2526_2728)
        let expected: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8] + Array(100..<132) + [0] + Self.bob.bytes
            + [Denomination.aur.rawValue] + [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
            + [0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28]
        #expect(entry.encoded == expected && expected.count == HistoryEntry.byteCount)
        var appended: [UInt8] = [0xEE]  // after bytes already there, as a buffer appends
        entry.append(to: &appended)
        #expect(appended == [0xEE] + expected)
        #expect(try HistoryEntry.decode(expected) == entry)
    }

    @Test("the history buffer leaves out the blocks an account's stored history already has (a replay after a flush that stopped halfway)")
    func historyBufferSkipsStoredBlocks() throws {
        var buffer = HistoryBuffer()
        let stored = [Self.alice: AccountProgress(count: 3, height: 10)]
        var looked: [Address] = []
        buffer.add([(Self.alice, Self.entry(10, 1)), (Self.bob, Self.entry(10, 2)), (Self.alice, Self.entry(10, 3))],
                   height: 10) { address in
            looked.append(address)
            return stored[address] ?? .none
        }
        #expect(buffer.entries(of: Self.alice).isEmpty, "block 10 is already in alice's stored history")
        #expect(buffer.entries(of: Self.bob).map(\.amount) == [2])
        #expect(looked == [Self.alice, Self.bob], "each account is looked up once per block")
        buffer.add([(Self.alice, Self.entry(11, 4)), (Self.bob, Self.entry(11, 5))], height: 11) { stored[$0] ?? .none }
        #expect(buffer.entries(of: Self.alice).map(\.amount) == [4] && buffer.entries(of: Self.bob).map(\.amount) == [2, 5])
        #expect(buffer.entryCount == 3 && buffer.blockCount == 2)
        // Kept encoded, as a chunk stores them: bob's two entries in 2 × 78 bytes, the newest from block 11.
        let bobs = try #require(buffer.accounts[Self.bob])
        #expect(bobs == Self.entry(10, 2).encoded + Self.entry(11, 5).encoded && HistoryBuffer.lastHeight(bobs) == 11)
        buffer.removeAll()
        #expect(buffer.entryCount == 0 && buffer.blockCount == 0 && buffer.accounts.isEmpty)

        let progress = AccountProgress(count: 70_000, height: 123)
        #expect(try AccountProgress.decode(progress.encoded) == progress)
        #expect(throws: WireError.self) { try AccountProgress.decode(Array(progress.encoded.dropLast())) }
    }

    @Test("another module's transaction gets a bpci.fee event; a multi-send's fee is in its first payment's event")
    func feeEvents() throws {
        var state = Self.started()
        var other = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1)), fee: 1_500)
        other.kind = "forge/thing"
        let fee = try BankModule.chargeFee(other, proposer: Self.proposerKey, state: &state).get()
        #expect(fee.map(\.type) == ["bpci.fee"] && fee.first?.data.count == 56)
        let multiSend = Self.transaction(.multiSend([Payment(to: Self.bob, denomination: .flx, amount: 5),
                                                     Payment(to: Self.bob, denomination: .gen, amount: 7)]),
                                         fee: 2_000, nonce: 1)
        #expect(try BankModule.chargeFee(multiSend, proposer: Self.proposerKey, state: &state).get().isEmpty)
        let events = try BankModule.deliver(multiSend, state: &state).get()
        let block = BlockEvents(height: 3, events: events.map {
            BlockEvents.Event(transaction: WireCrypto.domainHash("tx", [3]), type: $0.type, data: $0.data)
        })
        let sent = HistoryIndex.entries(block).filter { $0.1.direction == .sent }
        #expect(sent.map(\.1.fee) == [2_000, 0] && sent.map(\.1.amount) == [5, 7])
        // Blocks from before the fee moved into payment events: a bpci.fee event, then 49-byte payments.
        var payer = WireWriter(capacity: 56)
        Self.alice.write(to: &payer)
        payer.u64(1_000)
        payer.u64(300)
        Address(publicKey: Self.proposerKey).write(to: &payer)
        let former = BlockEvents(height: 2, events: [
            BlockEvents.Event(transaction: WireCrypto.domainHash("tx", [3]), type: "bpci.fee", data: payer.bytes),
            BlockEvents.Event(transaction: WireCrypto.domainHash("tx", [3]), type: "bpci.transfer", data: Array(events[0].data.prefix(49))),
        ])
        #expect(HistoryIndex.entries(former).map(\.1.fee) == [1_300, 0])
    }

    @Test("a transfer that fails in a block leaves the fee paid and nothing else changed")
    func failedDelivery() throws {
        var state = Self.started()
        let tooMuch = Self.transaction(.transfer(Payment(to: Self.alice, denomination: .flx, amount: 500_000_000)),
                                       from: Self.bobKey, fee: 1_000)
        _ = try BankModule.chargeFee(tooMuch, proposer: Self.proposerKey, state: &state).get()
        let afterFee = state
        var attempt = state
        #expect(Self.refusal(BankModule.deliver(tooMuch, state: &attempt))?.contains("insufficient FLX") == true)
        // BPI drops a failed deliver's writes; the module reported failure before writing anything.
        #expect(attempt == afterFee)
        #expect(Self.balance(state, Self.bob, .flx) == 500_000_000 - 1_000)
        #expect(BankModule.endBlock(transactions: 1, proposer: Self.proposerKey, state: &state) == nil)
    }

    @Test("end of block refuses a block whose fees it cannot settle: no proposer to tip, or a damaged record")
    func unsettledFeesRefuseBlock() throws {
        var state = Self.started()
        let transfer = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1)), fee: 1_500)
        _ = try BankModule.chargeFee(transfer, proposer: Self.proposerKey, state: &state).get()
        var noProposer = state
        #expect(BankModule.endBlock(transactions: 1, proposer: nil, state: &noProposer)?.reason
            == "end_block names no proposer to pay the block's tips to")
        var damaged = state
        damaged.put(BankKeys.pendingFees, [1, 2, 3])
        #expect(BankModule.endBlock(transactions: 1, proposer: Self.proposerKey, state: &damaged)?.reason
            == "BPCI's record of the block's fees is damaged")
        // A block without fees needs no proposer.
        var quiet = Self.started()
        #expect(BankModule.endBlock(transactions: 0, proposer: nil, state: &quiet) == nil)
        // Fees charged on a chain whose parameters are gone: refused, not left pending in committed state.
        var noParameters = state
        noParameters.put(BankKeys.feeParameters, nil)
        #expect(BankModule.endBlock(transactions: 1, proposer: Self.proposerKey, state: &noParameters)?.reason
            == "BPCI's stored fee parameters are damaged")
        // A damaged record is not started afresh by the next fee either.
        let next = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1)), fee: 1_500, nonce: 1)
        #expect(Self.refusal(BankModule.chargeFee(next, proposer: Self.proposerKey, state: &damaged))
            == "BPCI's record of the block's fees is damaged")
    }

    @Test("end of block refuses a block whose balances and supply disagree")
    func invariantRefusesBlock() {
        var state = Self.started()
        // The running total moving without the supply is what a bug in a payment path would do.
        state.setU64(BankKeys.total(.flx), 1)
        #expect(BankModule.endBlock(transactions: 0, proposer: Self.proposerKey, state: &state)?.reason == "supply invariant violated, block refused: FLX: balances "
            + "add up to 0.000000001 but the supply is 100.5")
    }

    /// Random blocks of transfers, multi-sends, overdrafts, low fees and mints; each transaction is admitted or not
    /// as BPI would, and delivered with BPI's drop-on-failure rule. Returns the final state.
    /// With `feesInDeliver`, as BPI runs a fee module registered with MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER: each
    /// transaction one deliver that takes its fee too, and only when that fails (undone), the fee alone. Returns the
    /// state, the problems and every included transaction's events in order.
    static func randomChain(seed: UInt64, blocks: Int, feesInDeliver: Bool = false)
        -> (DictionaryModuleState, [String], [ModuleEvent]) {
        var random = SimulationRandom(seed: seed)
        let keys = (0..<6).map { Ed25519Signer(seed: WireCrypto.domainHash("k", [UInt8($0)])).publicKey }
        let addresses = keys.map(Address.init(publicKey:))
        let accounts = addresses.map { #"{"address": "\#($0)", "balances": {"FLX": "10", "AUR": "1"}}"# }
        var state = DictionaryModuleState()
        var problems: [String] = []
        let section = Self.genesisSection(extra: ", " + accounts.joined(separator: ", "))
        var events: [ModuleEvent] = []
        if let refusal = BankModule.initChain(section, state: &state) { return (state, [refusal.reason], []) }
        for height in 1...UInt64(blocks) {
            var included: UInt64 = 0
            for index in 0..<Int(random.below(12)) {
                let sender = Int(random.below(UInt64(keys.count)))
                let denomination: Denomination = random.chance(perMille: 800) ? .flx : .aur
                let amount = random.below(3_000_000_000) + (random.chance(perMille: 50) ? 0 : 1)
                let to = addresses[Int(random.below(UInt64(addresses.count)))]
                let message: BankMessage = switch random.below(10) {
                case 0: .mint(Payment(to: to, denomination: .nex, amount: amount))
                case 1, 2: .multiSend([Payment(to: to, denomination: denomination, amount: amount / 2),
                                       Payment(to: addresses[0], denomination: .flx, amount: amount / 3)])
                default: .transfer(Payment(to: to, denomination: denomination, amount: amount))
                }
                let fee = ((try? BankModule.feeMarket(state))?.baseFee ?? 0) + random.below(2_000)
                let transaction = Self.transaction(message, from: keys[sender], fee: random.chance(perMille: 50) ? 1 : fee,
                                                   nonce: height << 8 | UInt64(index))
                let proposer = keys[Int(height) % keys.count]
                var tentative = state
                if feesInDeliver, case .success(let delivered) = BankModule.deliver(transaction, chargingFee: true,
                                                                                    state: &tentative) {
                    state = tentative
                    included += 1
                    events += delivered
                    continue
                }
                tentative = state
                guard case .success(let feeEvents) = BankModule.chargeFee(transaction, proposer: proposer,
                                                                          state: &tentative) else { continue }
                state = tentative
                included += 1
                events += feeEvents
                if feesInDeliver { continue }  // its deliver failed above: the fee alone stays
                if case .success(let delivered) = BankModule.deliver(transaction, state: &tentative) {
                    state = tentative
                    events += delivered
                }
            }
            let proposer = keys[Int(height) % keys.count]
            if let refusal = BankModule.endBlock(transactions: included, proposer: proposer, state: &state) {
                problems.append("block \(height): \(refusal)")
            }
        }
        return (state, problems, events)
    }

    /// Admission of a transfer is worked out from balances; the simulation (fee, then payment, on an overlay) is the
    /// reference. Amounts and fees sit at the edges: zero, the base fee and one below, the balance with and
    /// without the fee, one more, and more than any balance.
    /// Admission reads the fee parameters once, before decoding the message; its refusals keep their old turn.
    @Test("damaged or missing fee parameters are named at admission, after a message that does not decode")
    func damagedFeeParameters() {
        let transfer = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1)))
        let multiSend = Self.transaction(.multiSend([Payment(to: Self.bob, denomination: .flx, amount: 1)]))
        var damaged = Self.started()
        damaged.put(BankKeys.feeParameters, [1, 2, 3])
        var withoutBaseFee = Self.started()
        withoutBaseFee.put(BankKeys.baseFee, nil)
        for (state, expected) in [(damaged, "stored fee parameters"), (withoutBaseFee, "no modules.bpci section")] {
            for transaction in [transfer, multiSend] {
                let refusal = BankModule.check(transaction, state: state)?.reason
                #expect(refusal?.contains(expected) == true, "\(transaction.kind): \(refusal ?? "admitted")")
            }
            var garbled = transfer
            garbled.payload = [0xFF]
            let refusal = BankModule.check(garbled, state: state)?.reason
            #expect(refusal != nil && refusal?.contains(expected) == false,
                    "the undecodable message is named first: \(refusal ?? "admitted")")
        }
    }

    @Test("another module's transaction is refused at admission when the fee parameters are damaged or gone, as its block would be")
    func otherModuleAdmissionWithDamagedParameters() {
        var other = Self.transaction(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 1)), fee: 1_500)
        other.kind = "forge/thing"
        var healthy = Self.started()
        #expect(Self.refusal(BankModule.chargeFee(other, proposer: nil, state: &healthy)) == nil)
        var damaged = Self.started()
        damaged.put(BankKeys.feeParameters, [1, 2, 3])
        #expect(Self.refusal(BankModule.chargeFee(other, proposer: nil, state: &damaged))?
            .contains("stored fee parameters") == true)
        var gone = Self.started()
        gone.put(BankKeys.feeParameters, nil)
        #expect(Self.refusal(BankModule.chargeFee(other, proposer: nil, state: &gone))
            == "BPCI's stored fee parameters are damaged")
    }

    @Test("a transfer's admission answers as the full simulation does, message for message", arguments: 1...20)
    func transferAdmissionMatchesSimulation(seed: UInt64) {
        let (state, _, _) = Self.randomChain(seed: seed, blocks: 1 + Int(seed % 8))
        var random = SimulationRandom(seed: seed &* 7919)
        let keys = (0..<6).map { Ed25519Signer(seed: WireCrypto.domainHash("k", [UInt8($0)])).publicKey }
            + [Self.aliceKey, Self.bobKey, [UInt8](repeating: 9, count: 32)]  // the last has no account
        let baseFee = (try? BankModule.feeMarket(state))?.baseFee ?? 0
        var refused = Set<String>()
        for _ in 0..<300 {
            let key = keys[Int(random.below(UInt64(keys.count)))]
            let payer = Address(publicKey: key)
            let denomination = Denomination.allCases[Int(random.below(UInt64(Denomination.allCases.count)))]
            let flx = Self.balance(state, payer, .flx)
            let fee: UInt64 = [0, baseFee &- 1, baseFee, baseFee + random.below(5_000), flx, flx + 1,
                               UInt64.max][Int(random.below(7))]
            let has = Self.balance(state, payer, denomination)
            let left = denomination == .flx ? has &- fee : has
            let amount: UInt64 = [0, 1, left, left &+ 1, has, random.below(has + 1), UInt64.max][Int(random.below(7))]
            let to = random.chance(perMille: 100) ? payer : Address(publicKey: keys[Int(random.below(UInt64(keys.count)))])
            let message = BankMessage.transfer(Payment(to: to, denomination: denomination, amount: amount))
            let transaction = Self.transaction(message, from: key, fee: fee)
            let worked = BankModule.check(transaction, state: state)
            let simulated = BankModule.checkBySimulating(transaction, message, state: state)
            #expect(worked == simulated, "seed \(seed): fee \(fee), \(amount) \(denomination) from \(payer)")
            if let worked { refused.insert(String(worked.reason.prefix(12))) }
        }
        #expect(refused.count >= 3, "the cases reach several refusals: \(refused)")
    }

    @Test("random blocks keep every invariant, and the same blocks give the same state", arguments: 1...30)
    func randomBlocks(seed: UInt64) {
        let (first, problems, _) = Self.randomChain(seed: seed, blocks: 40)
        #expect(problems.isEmpty, "seed \(seed): \(problems)")
        #expect(first.get(BankKeys.pendingFees) == nil)
        #expect(Bank.invariantViolation(StateBankStore(first)) == nil)
        #expect(StateBankStore(first).supply(.gen) == Denomination.genSupply)
        let (second, _, _) = Self.randomChain(seed: seed, blocks: 40)
        #expect(first == second, "seed \(seed) replayed differently")
    }

    @Test("a deliver that takes its own fee reaches the state and events of the fee then the payment, failures and unpayable fees among them",
          arguments: 1...30)
    func feesInDeliverMatchTwoCalls(seed: UInt64) {
        let (twoCalls, problems, twoCallEvents) = Self.randomChain(seed: seed, blocks: 40)
        let (oneCall, oneCallProblems, oneCallEvents) = Self.randomChain(seed: seed, blocks: 40, feesInDeliver: true)
        #expect(problems.isEmpty && oneCallProblems.isEmpty, "seed \(seed): \(problems) \(oneCallProblems)")
        #expect(oneCall == twoCalls, "seed \(seed)")
        #expect(oneCallEvents == twoCallEvents, "seed \(seed)")
        #expect(oneCallEvents.count > 40, "seed \(seed): the blocks hold payments")
    }
}
