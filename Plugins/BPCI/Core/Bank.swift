import MetanodeWire

/// Where balances and supplies live. The plugin keeps them in the ledger state (so blocks commit to them); tests keep
/// them in a `MemoryBankStore`. Both see the same rules in `Bank`.
public protocol BankStore {
    func balance(_ address: Address, _ denomination: Denomination) -> UInt64
    mutating func setBalance(_ address: Address, _ denomination: Denomination, _ amount: UInt64)
    /// How much of a token exists (changed only by minting and burning).
    func supply(_ denomination: Denomination) -> UInt64
    mutating func setSupply(_ denomination: Denomination, _ amount: UInt64)
    /// The running sum of all balances of a token, kept beside the supply so the invariant check needs no scan.
    func balanceTotal(_ denomination: Denomination) -> UInt64
    mutating func setBalanceTotal(_ denomination: Denomination, _ amount: UInt64)
}

/// A bank in memory: dictionaries, for tests and simulations.
public struct MemoryBankStore: BankStore, Sendable, Hashable {
    public var balances: [Address: [Denomination: UInt64]] = [:]
    public var supplies: [Denomination: UInt64] = [:]
    public var totals: [Denomination: UInt64] = [:]

    public init() {}

    public func balance(_ address: Address, _ denomination: Denomination) -> UInt64 {
        balances[address]?[denomination] ?? 0
    }

    public mutating func setBalance(_ address: Address, _ denomination: Denomination, _ amount: UInt64) {
        balances[address, default: [:]][denomination] = amount == 0 ? nil : amount
        if balances[address]?.isEmpty == true { balances[address] = nil }
    }

    public func supply(_ denomination: Denomination) -> UInt64 { supplies[denomination] ?? 0 }
    public mutating func setSupply(_ denomination: Denomination, _ amount: UInt64) { supplies[denomination] = amount }
    public func balanceTotal(_ denomination: Denomination) -> UInt64 { totals[denomination] ?? 0 }
    public mutating func setBalanceTotal(_ denomination: Denomination, _ amount: UInt64) { totals[denomination] = amount }
}

/// Why a bank operation was refused. Nothing was changed.
public enum BankError: Error, Equatable, Sendable, CustomStringConvertible {
    case zeroAmount
    case insufficientFunds(Denomination, has: UInt64, needs: UInt64)
    case overflow(Denomination)
    case tooManyOutputs(max: Int)
    case reserved(String)

    public var description: String {
        switch self {
        case .zeroAmount: "amounts must be greater than zero"
        case .insufficientFunds(let denomination, let has, let needs):
            "insufficient \(denomination): has \(denomination.format(has)), needs \(denomination.format(needs))"
        case .overflow(let denomination): "the \(denomination) amount would overflow"
        case .tooManyOutputs(let max): "a multi-send pays at most \(max) outputs"
        case .reserved(let why): why
        }
    }
}

/// An amount of one token for one account.
public struct Payment: Sendable, Hashable {
    public var to: Address
    public var denomination: Denomination
    public var amount: UInt64

    public init(to: Address, denomination: Denomination, amount: UInt64) {
        self.to = to
        self.denomination = denomination
        self.amount = amount
    }
}

/// BPCI's transaction payloads (kinds "bpci/transfer", "bpci/multi-send", "bpci/mint"):
///
///     transfer     [20] to | u8 denomination | u64 amount
///     multi-send   u16 n | n × ([20] to | u8 denomination | u64 amount)
///     mint         [20] to | u8 denomination | u64 amount       (module authority only: refused for any key)
public enum BankMessage: Sendable, Hashable {
    case transfer(Payment)
    case multiSend([Payment])
    case mint(Payment)

    /// Each output writes two history entries; the fee is per transaction, so outputs are few.
    public static let multiSendOutputsMax = 64

    public var kind: String {
        switch self {
        case .transfer: "bpci/transfer"
        case .multiSend: "bpci/multi-send"
        case .mint: "bpci/mint"
        }
    }

    public var payload: [UInt8] {
        var writer = WireWriter(capacity: 32)
        func put(_ payment: Payment) {
            payment.to.write(to: &writer)
            writer.u8(payment.denomination.rawValue)
            writer.u64(payment.amount)
        }
        switch self {
        case .transfer(let payment), .mint(let payment):
            put(payment)
        case .multiSend(let payments):
            writer.u16(UInt16(payments.count))
            payments.forEach(put)
        }
        return writer.bytes
    }

    public static func decode(kind: String, payload: [UInt8]) throws(WireError) -> BankMessage {
        var reader = WireReader(payload, context: kind)
        func payment() throws(WireError) -> Payment {
            let to = Address(bytes: try reader.fixed(Address.byteCount, "to"))!
            let raw = try reader.u8("denomination")
            guard let denomination = Denomination(rawValue: raw) else {
                throw WireError(.invalidValue, "\(kind): denomination \(raw) is unknown (1 GEN, 2 NEX, 3 FLX, 4 AUR)")
            }
            return Payment(to: to, denomination: denomination, amount: try reader.u64("amount"))
        }
        let message: BankMessage
        switch kind {
        case "bpci/transfer": message = .transfer(try payment())
        case "bpci/mint": message = .mint(try payment())
        case "bpci/multi-send":
            let count = try reader.count16("outputs", max: multiSendOutputsMax, itemBytesMin: 29)
            var payments: [Payment] = []
            for _ in 0..<count { payments.append(try payment()) }
            message = .multiSend(payments)
        default:
            throw WireError(.invalidValue, "BPCI has no transaction kind '\(kind)'")
        }
        try reader.finish()
        return message
    }
}

/// The bank's rules: all-or-nothing transfers and minting, with the running totals that the supply invariant checks.
public enum Bank {
    /// Applies `message` sent by `sender`. On failure nothing in `store` has changed.
    public static func apply(_ message: BankMessage, from sender: Address, to store: inout some BankStore)
        -> Result<Void, BankError> {
        switch message {
        case .transfer(let payment):
            return pay(from: sender, [payment], store: &store)
        case .multiSend(let payments):
            guard !payments.isEmpty else { return .failure(.reserved("a multi-send needs at least one output")) }
            guard payments.count <= BankMessage.multiSendOutputsMax else {
                return .failure(.tooManyOutputs(max: BankMessage.multiSendOutputsMax))
            }
            return pay(from: sender, payments, store: &store)
        case .mint(let payment):
            // Minting belongs to modules (NEX to mining, AUR to the gold reserve, FLX to billing): no key may mint.
            return .failure(.reserved("minting \(payment.denomination) is reserved to its module's authority"))
        }
    }

    /// Creates `amount` for `to`, raising the supply: for module authorities (mining, gold reserve), never for keys.
    public static func mint(_ payment: Payment, store: inout some BankStore) -> Result<Void, BankError> {
        guard payment.amount > 0 else { return .failure(.zeroAmount) }
        if payment.denomination == .gen { return .failure(.reserved("GEN's supply is fixed at genesis")) }
        let denomination = payment.denomination
        let (supply, o1) = store.supply(denomination).addingReportingOverflow(payment.amount)
        let (total, o2) = store.balanceTotal(denomination).addingReportingOverflow(payment.amount)
        let (balance, o3) = store.balance(payment.to, denomination).addingReportingOverflow(payment.amount)
        guard !o1, !o2, !o3 else { return .failure(.overflow(denomination)) }
        store.setSupply(denomination, supply)
        store.setBalanceTotal(denomination, total)
        store.setBalance(payment.to, denomination, balance)
        return .success(())
    }

    /// Destroys `amount` of `from`'s balance, lowering the supply (burned base fees, AUR redemptions).
    public static func burn(_ amount: UInt64, of denomination: Denomination, from: Address, store: inout some BankStore)
        -> Result<Void, BankError> {
        let has = store.balance(from, denomination)
        guard has >= amount else { return .failure(.insufficientFunds(denomination, has: has, needs: amount)) }
        store.setBalance(from, denomination, has - amount)
        store.setBalanceTotal(denomination, store.balanceTotal(denomination) - amount)
        store.setSupply(denomination, store.supply(denomination) - amount)
        return .success(())
    }

    private static func pay(from sender: Address, _ payments: [Payment], store: inout some BankStore)
        -> Result<Void, BankError> {
        if payments.count == 1 {  // a transfer: each balance read once
            let payment = payments[0]
            guard payment.amount > 0 else { return .failure(.zeroAmount) }
            let has = store.balance(sender, payment.denomination)
            guard has >= payment.amount else {
                return .failure(.insufficientFunds(payment.denomination, has: has, needs: payment.amount))
            }
            store.setBalance(sender, payment.denomination, has - payment.amount)
            store.setBalance(payment.to, payment.denomination,
                             store.balance(payment.to, payment.denomination) + payment.amount)
            return .success(())
        }
        // Check everything before writing anything.
        var needed: [Denomination: UInt64] = [:]
        for payment in payments {
            guard payment.amount > 0 else { return .failure(.zeroAmount) }
            let (sum, overflow) = needed[payment.denomination, default: 0].addingReportingOverflow(payment.amount)
            guard !overflow else { return .failure(.overflow(payment.denomination)) }
            needed[payment.denomination] = sum
        }
        for denomination in Denomination.allCases {
            guard let amount = needed[denomination] else { continue }
            let has = store.balance(sender, denomination)
            guard has >= amount else { return .failure(.insufficientFunds(denomination, has: has, needs: amount)) }
        }
        // Receivers' balances cannot overflow: every balance is at most the running total, which does not change.
        for payment in payments {
            let denomination = payment.denomination
            store.setBalance(sender, denomination, store.balance(sender, denomination) - payment.amount)
            store.setBalance(payment.to, denomination, store.balance(payment.to, denomination) + payment.amount)
        }
        return .success(())
    }

    /// nil if, for every token, the running total of balances equals the supply; otherwise which does not. Checked at
    /// the end of every block: a violation refuses the block instead of committing it.
    public static func invariantViolation(_ store: some BankStore) -> String? {
        for denomination in Denomination.allCases {
            let total = store.balanceTotal(denomination), supply = store.supply(denomination)
            if total != supply {
                return "\(denomination): balances add up to \(denomination.format(total)) but the supply is "
                    + "\(denomination.format(supply))"
            }
        }
        return nil
    }

    /// Seeds the bank from genesis balances, setting supplies and totals; GEN must add up to exactly 100,000.
    public static func genesis(_ balances: [(Address, Denomination, UInt64)], store: inout some BankStore)
        -> Result<Void, BankError> {
        for (address, denomination, amount) in balances {
            let (balance, o1) = store.balance(address, denomination).addingReportingOverflow(amount)
            let (total, o2) = store.balanceTotal(denomination).addingReportingOverflow(amount)
            guard !o1, !o2 else { return .failure(.overflow(denomination)) }
            store.setBalance(address, denomination, balance)
            store.setBalanceTotal(denomination, total)
            store.setSupply(denomination, total)
        }
        let gen = store.supply(.gen)
        guard gen == Denomination.genSupply else {
            return .failure(.reserved("genesis GEN adds up to \(Denomination.gen.format(gen)); it must be exactly "
                + "\(Denomination.gen.format(Denomination.genSupply))"))
        }
        return .success(())
    }
}
