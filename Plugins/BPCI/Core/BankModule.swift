import Foundation
import MetanodeWire

/// What the bank reads of a transaction BPI hands it (ledger.h's `mn_ledger_tx`; the signature is already
/// verified): the sender's account rather than its key, derived once per handler call (each handler used to derive
/// it again from a copy of the key), and neither the id nor the key as arrays of their own.
public struct ModuleTransaction: Sendable, Hashable {
    /// The account of the sender's Ed25519 public key.
    public var sender: Address
    public var nonce: UInt64
    public var fee: UInt64
    public var kind: String
    public var payload: [UInt8]

    public init(sender: Address, nonce: UInt64, fee: UInt64, kind: String, payload: [UInt8]) {
        self.sender = sender
        self.nonce = nonce
        self.fee = fee
        self.kind = kind
        self.payload = payload
    }

    /// With the account of the Ed25519 public key `senderKey`.
    public init(senderKey: [UInt8], nonce: UInt64, fee: UInt64, kind: String, payload: [UInt8]) {
        self.init(sender: Address(publicKey: senderKey), nonce: nonce, fee: fee, kind: kind, payload: payload)
    }

    public init(_ transaction: Transaction) {
        self.init(senderKey: transaction.sender, nonce: transaction.nonce, fee: transaction.fee,
                  kind: transaction.kind, payload: transaction.payload)
    }
}

/// An event a handler attaches to its transaction's result.
public struct ModuleEvent: Sendable, Hashable {
    public var type: String
    public var data: [UInt8]
}

/// Why a handler refused; the message goes to the submitter, the transaction's result or the node's log.
public struct ModuleRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// BPCI's ledger module: what each ledger.h handler does, over any `ModuleState`. Pure: no clock, no randomness, no
/// floating point; the plugin only adapts these to the C table.
///
/// Events: "bpci.transfer"  [20] from | [20] to | u8 denomination | u64 amount | u64 fee
///                          one per payment; `fee` is the transaction's whole fee on its first payment, 0 on the rest
///         "bpci.fee"       [20] payer | u64 burned | u64 tip | [20] proposer
///                          the fee of another module's transaction (or of a kind no module handles)
///
/// A transaction of BPCI's own reports its fee in its payment events rather than in an event of its own: an event
/// costs every node about as much as a state write, on the way through the block's results, their store, the
/// event stream and the history index. A BPCI transaction that fails has no events; it paid its envelope's fee, as
/// every transaction in a block does (the block's base fee burned, the rest to its proposer).
public enum BankModule {
    public static let name = "bpci"
    /// Entries a history query returns at most.
    public static let historyPageMax = 100

    // MARK: Genesis

    /// Block 1: balances, supplies and fee parameters from the genesis section (see `BankGenesis`). A genesis
    /// without a section ("{}") leaves BPCI inactive: no fees, and its transactions are refused.
    public static func initChain(_ section: [UInt8], state: inout some ModuleState) -> ModuleRefusal? {
        let genesis: BankGenesis
        do {
            guard let parsed = try BankGenesis.parse(section) else { return nil }
            genesis = parsed
        } catch { return ModuleRefusal(error.description) }
        var store = StateBankStore(state)
        if case .failure(let error) = Bank.genesis(genesis.balances, store: &store) {
            return ModuleRefusal("genesis: \(error)")
        }
        state = store.state
        state.put(BankKeys.feeParameters, genesis.fees.encoded)
        state.setU64(BankKeys.baseFee, genesis.fees.initialBaseFee)
        return nil
    }

    // MARK: Blocks

    /// Settles the block's fees (the burn, and the tips to `proposer`, the block's proposer's public key), moves the
    /// base fee for the next block (by how many of the block limit's `transactions` it held) and checks the supply
    /// invariants; a refusal rejects the block.
    public static func endBlock(transactions: UInt64, proposer: [UInt8]?, state: inout some ModuleState)
        -> ModuleRefusal? {
        // Fees charged (the base fee is there) on a chain without parameters: damaged state, not a quiet chain.
        guard isActive(state) || state.contains(BankKeys.pendingFees) else { return nil }
        guard var market = try? feeMarket(state) else {
            return ModuleRefusal("BPCI's stored fee parameters are damaged")
        }
        if let (burned, tips) = state.u64Pair(BankKeys.pendingFees) {
            guard let proposer else { return ModuleRefusal("end_block names no proposer to pay the block's tips to") }
            var store = StateBankStore(state)
            Bank.settleFees(burned: burned, tips: tips, proposer: Address(publicKey: proposer), store: &store)
            state = store.state
            state.put(BankKeys.pendingFees, nil)
        } else if state.contains(BankKeys.pendingFees) {
            return ModuleRefusal("BPCI's record of the block's fees is damaged")
        }
        market.endBlock(used: transactions)
        state.setU64(BankKeys.baseFee, market.baseFee)
        if let violation = Bank.invariantViolation(StateBankStore(state)) {
            return ModuleRefusal("supply invariant violated, block refused: \(violation)")
        }
        return nil
    }

    /// Whether this chain's genesis set BPCI up (a chain without a modules.bpci section has no economy).
    public static func isActive(_ state: some ModuleState) -> Bool { state.contains(BankKeys.feeParameters) }

    static let inactive = ModuleRefusal("BPCI is not set up on this chain: its genesis has no modules.bpci section "
        + "(or its first block is not final yet)")

    public static func feeMarket(_ state: some ModuleState) throws(ModuleRefusal) -> FeeMarket {
        guard let market = try activeFeeMarket(state) else { throw inactive }
        return market
    }

    /// The fee market, or nil on a chain without BPCI: `isActive` and `feeMarket` in one read of the parameters,
    /// for the paths every transaction takes.
    static func activeFeeMarket(_ state: some ModuleState) throws(ModuleRefusal) -> FeeMarket? {
        let parameters: FeeMarket.Parameters
        do throws(WireError) {
            guard let stored = try FeeMarket.Parameters.read(BankKeys.feeParameters, from: state) else { return nil }
            parameters = stored
        } catch { throw ModuleRefusal("stored fee parameters: \(error.message)") }
        guard let base = state.u64(BankKeys.baseFee) else { throw inactive }
        return FeeMarket(parameters: parameters, baseFee: base)
    }

    // MARK: Fees

    /// The fee of any module's transaction: with `proposer` nil it is admission (can the sender pay it?); in a block
    /// it is taken from the sender, and what it burns and tips is added to the block's pending fees, which
    /// `endBlock` settles. Shared keys (the proposer's balance, the FLX supply and total) are so written once a block
    /// rather than once a transaction, and the fee reads the base fee alone: the parameters only matter at the end
    /// of the block, which refuses it if they are damaged.
    public static func chargeFee(_ transaction: ModuleTransaction, proposer: [UInt8]?, state: inout some ModuleState)
        -> Result<[ModuleEvent], ModuleRefusal> {
        // initChain writes the base fee with the parameters: a chain without it has no economy and no fee.
        guard let baseFee = state.u64(BankKeys.baseFee) else { return .success([]) }
        let payer = transaction.sender
        guard let proposer else {
            // Admission reads the parameters too, so that it refuses what every block would (end_block refuses
            // damaged or missing parameters); a block's fees need only the base fee.
            do throws(ModuleRefusal) {
                guard try activeFeeMarket(state) != nil else {
                    return .failure(ModuleRefusal("BPCI's stored fee parameters are damaged"))
                }
            } catch { return .failure(error) }
            if case .failure(let error) = FeeMarket.split(fee: transaction.fee, baseFee: baseFee) {
                return .failure(ModuleRefusal("\(error)"))
            }
            let has = StateBankStore(state).balance(payer, .flx)
            guard has >= transaction.fee else {
                return .failure(ModuleRefusal("\(BankError.insufficientFunds(.flx, has: has, needs: transaction.fee)) "
                    + "for the fee"))
            }
            return .success([])
        }
        let split: (burned: UInt64, tip: UInt64)
        switch takeFee(transaction, baseFee: baseFee, state: &state) {
        case .success(let parts): split = parts
        case .failure(let refusal): return .failure(refusal)
        }
        if isOwnKind(transaction.kind) { return .success([]) }  // its payment events carry the fee
        var writer = WireWriter(capacity: 56)
        payer.write(to: &writer)
        writer.u64(split.burned)
        writer.u64(split.tip)
        Address(publicKey: proposer).write(to: &writer)
        return .success([ModuleEvent(type: "bpci.fee", data: writer.bytes)])
    }

    /// A fee in a block: taken from the sender, and what it burns and tips added to the block's pending fees (which
    /// `endBlock` settles). Returns the split.
    static func takeFee(_ transaction: ModuleTransaction, baseFee: UInt64, state: inout some ModuleState)
        -> Result<(burned: UInt64, tip: UInt64), ModuleRefusal> {
        var store = StateBankStore(state)
        let split: (burned: UInt64, tip: UInt64)
        switch Bank.chargeFee(transaction.fee, baseFee: baseFee, from: transaction.sender, store: &store) {
        case .success(let parts): split = parts
        case .failure(let error):
            if case .insufficientFunds = error { return .failure(ModuleRefusal("\(error) for the fee")) }
            return .failure(ModuleRefusal("\(error)"))
        }
        state = store.state
        // The block's fees so far are at most the FLX taken from balances in it, so the sums cannot overflow.
        let pending = state.u64Pair(BankKeys.pendingFees)
        if pending == nil && state.contains(BankKeys.pendingFees) {
            return .failure(ModuleRefusal("BPCI's record of the block's fees is damaged"))
        }
        let (burned, tips) = pending ?? (0, 0)
        state.putU64Pair(BankKeys.pendingFees, burned + split.burned, tips + split.tip)
        return .success(split)
    }

    /// Whether `kind` is one of BPCI's ("bpci/…"), whose fee its payment events report.
    static func isOwnKind(_ kind: String) -> Bool { kind.utf8.starts(with: ownKindPrefix) }
    private static let ownKindPrefix = Array("\(name)/".utf8)
    /// A `bpci.transfer` event's size.
    public static let transferEventBytes = 57

    // MARK: Transactions

    /// Admission of a "bpci/…" transaction over committed state: the fee and the payments together must be payable.
    public static func check(_ transaction: ModuleTransaction, state: some ModuleState) -> ModuleRefusal? {
        // One read of the fee parameters; its refusals keep their turn: an inactive chain first, then an undecodable
        // message, then damaged parameters.
        let market: Result<FeeMarket, ModuleRefusal>
        do {
            guard let active = try activeFeeMarket(state) else { return inactive }
            market = .success(active)
        } catch { market = .failure(error) }
        let message: BankMessage
        do throws(WireError) {
            message = try BankMessage.decode(kind: transaction.kind, payload: transaction.payload)
        } catch { return ModuleRefusal(error.message) }
        switch market {
        case .failure(let refusal): return refusal
        case .success(let market):
            if case .transfer(let payment) = message {
                return checkTransfer(transaction, payment, market: market, state: state)
            }
            return checkBySimulating(transaction, message, state: state)
        }
    }

    /// A transfer's admission worked out from the balances instead of simulated: a few reads and no writes, where
    /// the simulation takes about twice the state accesses (it runs on every node for every transfer). It gives the
    /// same answer and message as `checkBySimulating`; a property test holds the two to that.
    static func checkTransfer(_ transaction: ModuleTransaction, _ payment: Payment, market: FeeMarket,
                              state: some ModuleState) -> ModuleRefusal? {
        if case .failure(let error) = market.split(fee: transaction.fee) {
            return ModuleRefusal(BankError.reserved(error.description).description)
        }
        let store = StateBankStore(state)
        let payer = transaction.sender
        let flx = store.balance(payer, .flx)
        guard flx >= transaction.fee else {
            return ModuleRefusal("\(BankError.insufficientFunds(.flx, has: flx, needs: transaction.fee)) for the fee")
        }
        guard payment.amount > 0 else { return ModuleRefusal(BankError.zeroAmount.description) }
        let has = payment.denomination == .flx ? flx - transaction.fee : store.balance(payer, payment.denomination)
        guard has >= payment.amount else {
            return ModuleRefusal(BankError.insufficientFunds(payment.denomination, has: has, needs: payment.amount)
                .description)
        }
        return nil
    }

    /// Admission by running the fee and the payments on a throwaway overlay of `state`, as a block would: the
    /// reference for every kind, and the path of multi-sends and mints.
    public static func checkBySimulating(_ transaction: ModuleTransaction, _ message: BankMessage,
                                         state: some ModuleState) -> ModuleRefusal? {
        var overlay = OverlayState(state)
        // The fee first, as in a block (the fee collector stands in for the proposer it does not know yet).
        if case .failure(let refusal) = chargeFee(transaction, proposer: Address.admissionProposerKey, state: &overlay) {
            return refusal
        }
        var store = StateBankStore(overlay)
        if case .failure(let error) = Bank.apply(message, from: transaction.sender, to: &store) {
            return ModuleRefusal(error.description)
        }
        return nil
    }

    /// Execution in a block: the payments and their events (from which each node indexes history). With
    /// `chargingFee` (BPCI registered with MN_LEDGER_MODULE_OWN_FEES_IN_DELIVER) the fee is taken first, as
    /// `chargeFee` would in the same block: a refusal of either fails the call, and BPI then undoes it and charges
    /// the fee alone.
    public static func deliver(_ transaction: ModuleTransaction, chargingFee: Bool = false,
                               state: inout some ModuleState) -> Result<[ModuleEvent], ModuleRefusal> {
        // initChain writes the base fee with the parameters: a chain without it has no economy and no fee.
        if chargingFee, let baseFee = state.u64(BankKeys.baseFee),
           case .failure(let refusal) = takeFee(transaction, baseFee: baseFee, state: &state) {
            return .failure(refusal)
        }
        // Whether BPCI is set up is asked only when the transaction fails: a payment that succeeds spends a balance,
        // and only the genesis of an active chain makes balances.
        let message: BankMessage
        do throws(WireError) {
            message = try BankMessage.decode(kind: transaction.kind, payload: transaction.payload)
        } catch { return .failure(isActive(state) ? ModuleRefusal(error.message) : inactive) }
        let sender = transaction.sender
        var store = StateBankStore(state)
        if case .failure(let error) = Bank.apply(message, from: sender, to: &store) {
            return .failure(isActive(state) ? ModuleRefusal(error.description) : inactive)
        }
        state = store.state
        let payments: [Payment]
        switch message {
        case .transfer(let payment): payments = [payment]
        case .multiSend(let all): payments = all
        case .mint: payments = []  // refused by Bank.apply
        }
        var events: [ModuleEvent] = []
        events.reserveCapacity(payments.count)
        for (index, payment) in payments.enumerated() {
            var writer = WireWriter(capacity: transferEventBytes)
            sender.write(to: &writer)
            payment.to.write(to: &writer)
            writer.u8(payment.denomination.rawValue)
            writer.u64(payment.amount)
            writer.u64(index == 0 ? transaction.fee : 0)
            events.append(ModuleEvent(type: "bpci.transfer", data: writer.bytes))
        }
        return .success(events)
    }

    // MARK: Queries

    /// Read-only answers over committed state, as JSON:
    ///   balance/<address>    every token's balance
    ///   supply               every token's supply
    ///   fees                 the base fee and the fee parameters
    public static func query(path: String, request: [UInt8], state: some ModuleState) -> Result<[UInt8], ModuleRefusal> {
        let parts = path.split(separator: "/", maxSplits: 1).map(String.init)
        switch (parts.first ?? "", parts.count) {
        case ("balance", 2):
            return address(parts[1]).map { address in
                json(BalanceView(address: address.description, balances: Denomination.allCases.map {
                    AmountView($0, StateBankStore(state).balance(address, $0))
                }))
            }
        case ("supply", 1):
            let store = StateBankStore(state)
            return .success(json(SupplyView(supply: Denomination.allCases.map { AmountView($0, store.supply($0)) })))
        case ("fees", 1):
            do {
                let market = try feeMarket(state)
                let parameters = market.parameters
                return .success(json(FeesView(
                    baseFee: AmountView(.flx, market.baseFee), minimumBaseFee: AmountView(.flx, parameters.minimumBaseFee),
                    targetTransactions: parameters.targetTransactions,
                    changeDenominator: parameters.changeDenominator)))
            } catch { return .failure(error) }
        default:
            return .failure(ModuleRefusal("BPCI answers balance/<address>, supply and fees (history is at "
                + "GET /v1/plugins/bpci/history/<address>); not '\(path)'"))
        }
    }

    private static func address(_ text: String) -> Result<Address, ModuleRefusal> {
        do throws(WireError) { return .success(try Address.parse(text)) } catch {
            return .failure(ModuleRefusal(error.message))
        }
    }

    private static func json(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    public struct AmountView: Codable, Sendable, Hashable {
        public var denom: String
        /// In whole tokens, e.g. "12.5".
        public var amount: String
        /// In the token's smallest unit.
        public var units: UInt64

        public init(_ denomination: Denomination, _ units: UInt64) {
            denom = denomination.symbol
            amount = denomination.format(units)
            self.units = units
        }
    }

    public struct BalanceView: Codable, Sendable { public var address: String; public var balances: [AmountView] }
    public struct SupplyView: Codable, Sendable { public var supply: [AmountView] }
    public struct FeesView: Codable, Sendable {
        public var baseFee: AmountView
        public var minimumBaseFee: AmountView
        public var targetTransactions: UInt64
        public var changeDenominator: UInt64
    }
    public struct HistoryView: Codable, Sendable {
        public var sequence: UInt64
        public var height: UInt64
        public var transaction: String
        public var direction: String
        public var counterparty: String
        public var amount: AmountView
        public var fee: AmountView

        public init(sequence: UInt64, entry: HistoryEntry) {
            self.sequence = sequence
            height = entry.height
            transaction = entry.transaction.map { String(format: "%02x", $0) }.joined()
            direction = entry.direction == .sent ? "sent" : "received"
            counterparty = entry.counterparty.description
            amount = AmountView(entry.denomination, entry.amount)
            fee = AmountView(.flx, entry.fee)
        }
    }
    public struct HistoryPage: Codable, Sendable {
        public var address: String
        public var count: UInt64
        /// The node's index holds every finalized block up to this height.
        public var indexedThroughHeight: UInt64
        public var entries: [HistoryView]
    }
}

extension Address {
    /// A stand-in proposer for admission's fee simulation, which does not know the block's proposer yet.
    static let admissionProposerKey = [UInt8](repeating: 0, count: 32)
}
