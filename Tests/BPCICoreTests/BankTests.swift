import BPCICore
import MetanodePluginTesting
import MetanodeWire
import Testing

@Suite("BPCI tokens and addresses")
struct TokenTests {
    @Test("amounts parse and format by each token's decimals, with no floating point")
    func amounts() {
        #expect(Denomination.flx.parse("12.5") == 12_500_000_000)
        #expect(Denomination.gen.parse("100000") == Denomination.genSupply)
        #expect(Denomination.flx.format(12_500_000_000) == "12.5")
        #expect(Denomination.gen.format(1) == "0.000001")
        #expect(Denomination.aur.format(0) == "0")
        for bad in ["", ".5", "1.", "1.0000000001", "-1", "1e3", "18446744073.709551616", "x"] {
            #expect(Denomination.flx.parse(bad) == nil, "'\(bad)'")
        }
        #expect(Denomination(symbol: "flx") == .flx && Denomination(symbol: "XYZ") == nil)
    }

    @Test("BIP-173's valid strings decode; a changed character, a wrong prefix or a short address is refused")
    func bech32() throws {
        let key = Ed25519Signer(seed: WireCrypto.domainHash("bech", [])).publicKey
        let address = Address(publicKey: key)
        let text = address.description
        #expect(text.hasPrefix("mn1") && text.count == 3 + 32 + 6)
        #expect(try Address.parse(text) == address)
        #expect(try Address.parse(text.uppercased()) == address)
        var chars = Array(text)
        chars[10] = chars[10] == "q" ? "p" : "q"
        #expect(throws: WireError.self) { try Address.parse(String(chars)) }
        #expect(throws: WireError(.invalidValue, "'a12uel5l' is not a Metanode address (it starts 'a1', not 'mn1')")) {
            try Address.parse("a12uel5l")
        }
        #expect(throws: WireError.self) { try Address.parse("mn1qqqqqqqqq") }
        #expect(Address.treasury != Address.feeCollector)
    }

    @Test("an address keeps its 20 bytes as given; a key's is its digest's first 20; addresses sort, hash and compare as their bytes do")
    func addressBytes() throws {
        let key = Ed25519Signer(seed: WireCrypto.domainHash("bytes", [])).publicKey
        #expect(Address(publicKey: key).bytes
            == Array(WireCrypto.domainHash("metanode/bpci/address/v1", key).prefix(20)))
        var generator = SystemRandomNumberGenerator()
        let raw: [[UInt8]] = (0..<64).map { index in
            // Some share their first 8 or 16 bytes, so that every part of the value decides an order.
            var bytes = (0..<20).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if index % 3 == 1 { bytes.replaceSubrange(0..<8, with: [UInt8](repeating: 7, count: 8)) }
            if index % 3 == 2 { bytes.replaceSubrange(0..<16, with: [UInt8](repeating: 7, count: 16)) }
            return bytes
        }
        let addresses = try raw.map { try #require(Address(bytes: $0)) }
        #expect(addresses.map(\.bytes) == raw)
        for address in addresses {
            var writer = WireWriter()
            address.write(to: &writer)
            var appended: [UInt8] = [9]
            address.append(to: &appended)
            #expect(writer.bytes == address.bytes && appended == [9] + address.bytes)
        }
        #expect(addresses.sorted().map(\.bytes) == raw.sorted { $0.lexicographicallyPrecedes($1) })
        #expect(Set(addresses).count == Set(raw).count)
        // Equal addresses made apart hash alike; different ones (in all three parts of the value) hash apart.
        #expect(raw.map { Address(bytes: $0)!.hashValue } == addresses.map(\.hashValue))
        #expect(Set(addresses.map(\.hashValue)).count == Set(raw).count)
        #expect(Address(bytes: raw[0]) == addresses[0] && Address(bytes: raw[0]) != addresses[1])
        #expect(Address(bytes: [UInt8](repeating: 0, count: 19)) == nil && Address(bytes: [UInt8](repeating: 0, count: 21)) == nil)
    }
}

@Suite("BPCI bank")
struct BankTests {
    static let alice = Address(publicKey: [UInt8](repeating: 1, count: 32))
    static let bob = Address(publicKey: [UInt8](repeating: 2, count: 32))
    static let carol = Address(publicKey: [UInt8](repeating: 3, count: 32))

    static func funded() -> MemoryBankStore {
        var store = MemoryBankStore()
        _ = Bank.genesis([(alice, .gen, Denomination.genSupply), (alice, .flx, 1_000), (bob, .flx, 10)],
                         store: &store)
        return store
    }

    static func fail(_ result: Result<Void, BankError>) -> String? {
        if case .failure(let error) = result { return error.description }
        return nil
    }

    @Test("a transfer moves the amount; refusals name what was wrong and change nothing")
    func transfers() {
        var store = Self.funded()
        #expect(Self.fail(Bank.apply(.transfer(Payment(to: Self.bob, denomination: .flx, amount: 400)), from: Self.alice,
                                     to: &store)) == nil)
        #expect(store.balance(Self.alice, .flx) == 600 && store.balance(Self.bob, .flx) == 410)
        let before = store
        #expect(Self.fail(Bank.apply(.transfer(Payment(to: Self.alice, denomination: .flx, amount: 411)),
                                     from: Self.bob, to: &store)) == "insufficient FLX: has 0.00000041, needs 0.000000411")
        #expect(Self.fail(Bank.apply(.transfer(Payment(to: Self.alice, denomination: .flx, amount: 0)),
                                     from: Self.bob, to: &store)) == "amounts must be greater than zero")
        #expect(Self.fail(Bank.apply(.transfer(Payment(to: Self.alice, denomination: .aur, amount: 1)),
                                     from: Self.bob, to: &store)) == "insufficient AUR: has 0, needs 0.000000001")
        #expect(Self.fail(Bank.apply(.mint(Payment(to: Self.bob, denomination: .nex, amount: 5)), from: Self.bob,
                                     to: &store)) == "minting NEX is reserved to its module's authority")
        #expect(store == before)
    }

    @Test("a multi-send pays everyone or no one, and sums that overflow are refused")
    func multiSend() {
        var store = Self.funded()
        let before = store
        let tooMuch = BankMessage.multiSend([Payment(to: Self.bob, denomination: .flx, amount: 600),
                                             Payment(to: Self.carol, denomination: .flx, amount: 401)])
        #expect(Self.fail(Bank.apply(tooMuch, from: Self.alice, to: &store)) == "insufficient FLX: has 0.000001, needs 0.000001001")
        let overflow = BankMessage.multiSend([Payment(to: Self.bob, denomination: .flx, amount: .max),
                                              Payment(to: Self.carol, denomination: .flx, amount: 1)])
        #expect(Self.fail(Bank.apply(overflow, from: Self.alice, to: &store)) == "the FLX amount would overflow")
        #expect(store == before)
        let split = BankMessage.multiSend([Payment(to: Self.bob, denomination: .flx, amount: 600),
                                           Payment(to: Self.carol, denomination: .gen, amount: 7)])
        #expect(Self.fail(Bank.apply(split, from: Self.alice, to: &store)) == nil)
        #expect(store.balance(Self.bob, .flx) == 610 && store.balance(Self.carol, .gen) == 7)
    }

    @Test("genesis must hand out exactly 100,000 GEN, and GEN can never be minted")
    func genSupplyIsFixed() {
        var store = MemoryBankStore()
        #expect(Self.fail(Bank.genesis([(Self.alice, .gen, 5)], store: &store))
            == "genesis GEN adds up to 0.000005; it must be exactly 100000")
        var funded = Self.funded()
        #expect(Self.fail(Bank.mint(Payment(to: Self.alice, denomination: .gen, amount: 1), store: &funded))
            == "GEN's supply is fixed at genesis")
    }

    @Test("payloads decode to what was encoded; unknown tokens and kinds are refused by name")
    func encoding() throws {
        let messages: [BankMessage] = [
            .transfer(Payment(to: Self.bob, denomination: .aur, amount: 5)),
            .multiSend([Payment(to: Self.bob, denomination: .flx, amount: 1), Payment(to: Self.carol, denomination: .nex, amount: 2)]),
        ]
        for message in messages {
            #expect(try BankMessage.decode(kind: message.kind, payload: message.payload) == message)
        }
        var bad = BankMessage.transfer(Payment(to: Self.bob, denomination: .aur, amount: 5)).payload
        bad[20] = 9
        #expect(throws: WireError(.invalidValue, "bpci/transfer: denomination 9 is unknown (1 GEN, 2 NEX, 3 FLX, 4 AUR)")) {
            try BankMessage.decode(kind: "bpci/transfer", payload: bad)
        }
        #expect(throws: WireError(.invalidValue, "BPCI has no transaction kind 'bpci/steal'")) {
            try BankMessage.decode(kind: "bpci/steal", payload: [])
        }
    }

    /// Random transfers, multi-sends, refused transactions, mints by authority and burns, seeded.
    static func randomRun(seed: UInt64, steps: Int) -> (MemoryBankStore, violations: [String]) {
        var random = SimulationRandom(seed: seed)
        let accounts = (0..<8).map { Address(publicKey: [UInt8](repeating: UInt8($0 + 10), count: 32)) }
        var store = MemoryBankStore()
        _ = Bank.genesis([(accounts[0], .gen, Denomination.genSupply), (accounts[1], .flx, 1_000_000),
                          (accounts[2], .aur, 50_000)], store: &store)
        var violations: [String] = []
        for _ in 0..<steps {
            let denomination = Denomination.allCases[Int(random.below(4))]
            let from = accounts[Int(random.below(8))], to = accounts[Int(random.below(8))]
            // Amounts around each balance, so many succeed and many fail.
            let amount = random.below(max(store.balance(from, denomination) * 2, 3))
            switch random.below(5) {
            case 0, 1:
                _ = Bank.apply(.transfer(Payment(to: to, denomination: denomination, amount: amount)), from: from, to: &store)
            case 2:
                let other = accounts[Int(random.below(8))]
                _ = Bank.apply(.multiSend([Payment(to: to, denomination: denomination, amount: amount / 2),
                                           Payment(to: other, denomination: denomination, amount: amount / 3 + 1)]),
                               from: from, to: &store)
            case 3:
                _ = Bank.mint(Payment(to: to, denomination: denomination, amount: amount), store: &store)
            default:
                _ = Bank.burn(amount, of: denomination, from: from, store: &store)
            }
            if let violation = Bank.invariantViolation(store) { violations.append(violation) }
        }
        return (store, violations)
    }

    @Test("random sequences keep every supply equal to the sum of balances, and replay identically", arguments: 1...50)
    func invariantsHold(seed: UInt64) {
        let (store, violations) = Self.randomRun(seed: seed, steps: 400)
        #expect(violations.isEmpty, "seed \(seed): \(violations.first ?? "")")
        for denomination in Denomination.allCases {
            let sum = store.balances.values.reduce(UInt64(0)) { $0 + ($1[denomination] ?? 0) }
            #expect(sum == store.supply(denomination), "seed \(seed) \(denomination)")
        }
        #expect(store.supply(.gen) <= Denomination.genSupply, "seed \(seed): GEN can be burned, never minted")
        #expect(Self.randomRun(seed: seed, steps: 400).0 == store, "seed \(seed) replays differently")
    }

    @Test("a bank whose totals and supplies disagree is caught by the invariant check")
    func violationIsReported() {
        var store = Self.funded()
        store.setBalanceTotal(.flx, store.balanceTotal(.flx) + 1)
        #expect(Bank.invariantViolation(store) == "FLX: balances add up to 0.000001011 but the supply is 0.00000101")
    }
}

@Suite("BPCI fee market")
struct FeeMarketTests {
    static let parameters = FeeMarket.Parameters(blockTransactionsMax: 1_000, initialBaseFee: 8_000)

    @Test("the base fee holds at the target, rises and falls by at most 1/8, and never drops below the minimum")
    func baseFeeMoves() {
        var market = FeeMarket(parameters: Self.parameters)
        market.endBlock(used: 500)
        #expect(market.baseFee == 8_000)
        market.endBlock(used: 1_000)
        #expect(market.baseFee == 9_000)  // full block: +1/8
        market.endBlock(used: 0)
        #expect(market.baseFee == 7_875)  // empty block: −1/8
        var floor = FeeMarket(parameters: FeeMarket.Parameters(blockTransactionsMax: 10, initialBaseFee: 1))
        for _ in 0..<5 { floor.endBlock(used: 0) }
        #expect(floor.baseFee == 1)
        floor.endBlock(used: 6)
        #expect(floor.baseFee == 2)  // above target moves it by at least 1
        for used in [0, 1, 499, 501, 999, 1_000] as [UInt64] {
            var step = FeeMarket(parameters: Self.parameters)
            step.endBlock(used: used)
            let change = step.baseFee > 8_000 ? step.baseFee - 8_000 : 8_000 - step.baseFee
            #expect(change <= 8_000 / 8, "used \(used)")
        }
    }

    @Test("a fee is taken from its sender; settled, its base fee is burned and its tip paid; too low a fee is refused")
    func charging() {
        var store = BankTests.funded()
        let supply = store.supply(.flx)
        let charge = { (fee: UInt64, from: Address, store: inout MemoryBankStore) in
            Bank.chargeFee(fee, baseFee: 100, from: from, store: &store)
        }
        #expect((try? charge(150, BankTests.alice, &store).get()).map { [$0.burned, $0.tip] } == [100, 50])
        #expect((try? charge(100, BankTests.alice, &store).get()).map { [$0.burned, $0.tip] } == [100, 0])
        #expect(store.balance(BankTests.alice, .flx) == 1_000 - 250)
        // Until the block's fees are settled, the running total and the supply still count them.
        #expect(store.supply(.flx) == supply && store.balance(BankTests.carol, .flx) == 0)
        #expect(store.balanceTotal(.flx) - 250 == store.balances.values.reduce(0) { $0 + ($1[.flx] ?? 0) })
        Bank.settleFees(burned: 200, tips: 50, proposer: BankTests.carol, store: &store)
        #expect(store.supply(.flx) == supply - 200 && store.balance(BankTests.carol, .flx) == 50)
        #expect(Bank.invariantViolation(store) == nil)
        #expect(store.balanceTotal(.flx) == store.balances.values.reduce(0) { $0 + ($1[.flx] ?? 0) })
        let before = store
        for (fee, from, expected) in [(99, BankTests.alice, "fee 0.000000099 FLX is below the base fee 0.0000001 FLX"),
                                      (100, BankTests.bob, "insufficient FLX: has 0.00000001, needs 0.0000001")] {
            let result = charge(UInt64(fee), from, &store)
            guard case .failure(let error) = result else {
                Issue.record("a fee of \(fee) from \(from) was taken")
                continue
            }
            #expect(error.description == expected)
        }
        #expect(store == before)
    }
}
