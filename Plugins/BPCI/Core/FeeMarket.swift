/// EIP-1559-style fees in FLX. Each block has a base fee per transaction; the next block's moves toward keeping
/// blocks half full, by at most 1/8 per block. A transaction's envelope `fee` is the most its sender pays: the base fee
/// is burned and the rest goes to the block's proposer as its tip. (EIP-1559 has a separate tip cap; here the whole
/// excess is the tip, so a sender sets `fee` to base fee + the tip it wants to give.)
public struct FeeMarket: Sendable, Hashable {
    public struct Parameters: Sendable, Hashable {
        /// Transactions per block the base fee aims for: half the block's limit.
        public var targetTransactions: UInt64
        /// The base fee changes by at most 1/`changeDenominator` per block (8 in EIP-1559).
        public var changeDenominator: UInt64
        /// The base fee never falls below this (in FLX's smallest unit).
        public var minimumBaseFee: UInt64
        public var initialBaseFee: UInt64

        public init(blockTransactionsMax: Int, changeDenominator: UInt64 = 8, minimumBaseFee: UInt64 = 1,
                    initialBaseFee: UInt64 = 1_000) {
            precondition(blockTransactionsMax >= 2)
            self.init(targetTransactions: UInt64(blockTransactionsMax / 2), changeDenominator: changeDenominator,
                      minimumBaseFee: minimumBaseFee, initialBaseFee: initialBaseFee)
        }

        public init(targetTransactions: UInt64, changeDenominator: UInt64, minimumBaseFee: UInt64,
                    initialBaseFee: UInt64) {
            precondition(targetTransactions >= 1 && changeDenominator >= 1 && initialBaseFee >= minimumBaseFee)
            self.targetTransactions = targetTransactions
            self.changeDenominator = changeDenominator
            self.minimumBaseFee = minimumBaseFee
            self.initialBaseFee = initialBaseFee
        }
    }

    public let parameters: Parameters
    public private(set) var baseFee: UInt64

    public init(parameters: Parameters, baseFee: UInt64? = nil) {
        self.parameters = parameters
        self.baseFee = baseFee ?? parameters.initialBaseFee
    }

    /// What a transaction offering `fee` pays: `burned` (the base fee) and `tip` (the rest), or why it cannot.
    public func split(fee: UInt64) -> Result<(burned: UInt64, tip: UInt64), FeeError> {
        Self.split(fee: fee, baseFee: baseFee)
    }

    /// `split(fee:)` under the base fee `baseFee`.
    public static func split(fee: UInt64, baseFee: UInt64) -> Result<(burned: UInt64, tip: UInt64), FeeError> {
        guard fee >= baseFee else { return .failure(.belowBaseFee(fee: fee, baseFee: baseFee)) }
        return .success((baseFee, fee - baseFee))
    }

    /// Moves the base fee after a block that held `used` transactions.
    public mutating func endBlock(used: UInt64) {
        let target = parameters.targetTransactions, denominator = parameters.changeDenominator
        if used > target {
            // base × (used − target) / target / denominator, at least 1 (EIP-1559); computed in 128 bits.
            let product = UInt128(baseFee) * UInt128(used - target)
            let delta = max(UInt64(min(product / UInt128(target) / UInt128(denominator), UInt128(UInt64.max))), 1)
            let (raised, overflow) = baseFee.addingReportingOverflow(delta)
            baseFee = overflow ? .max : raised
        } else if used < target {
            let product = UInt128(baseFee) * UInt128(target - used)
            let delta = UInt64(product / UInt128(target) / UInt128(denominator))
            baseFee = max(baseFee - min(delta, baseFee), parameters.minimumBaseFee)
        }
    }
}

public enum FeeError: Error, Equatable, Sendable, CustomStringConvertible {
    case belowBaseFee(fee: UInt64, baseFee: UInt64)

    public var description: String {
        switch self {
        case .belowBaseFee(let fee, let baseFee):
            "fee \(Denomination.flx.format(fee)) FLX is below the base fee \(Denomination.flx.format(baseFee)) FLX"
        }
    }
}

extension Bank {
    /// Takes a transaction's fee from its sender: what to burn (the base fee) and the tip, which `settleFees` applies
    /// for the whole block at its end. Until then the FLX running total and supply still count the fee, which no
    /// balance holds: the balances add up to the total again only once the block's fees are settled.
    public static func chargeFee(_ fee: UInt64, baseFee: UInt64, from sender: Address, store: inout some BankStore)
        -> Result<(burned: UInt64, tip: UInt64), BankError> {
        let split: (burned: UInt64, tip: UInt64)
        switch FeeMarket.split(fee: fee, baseFee: baseFee) {
        case .success(let parts): split = parts
        case .failure(let error): return .failure(.reserved(error.description))
        }
        let has = store.balance(sender, .flx)
        guard has >= fee else { return .failure(.insufficientFunds(.flx, has: has, needs: fee)) }
        store.setBalance(sender, .flx, has - fee)
        return .success(split)
    }

    /// Settles a block's charged fees: `burned` leaves the FLX supply, `tips` go to the proposer. Both are sums of
    /// amounts taken from balances in this block, so neither can exceed the running total, and the proposer's
    /// balance cannot overflow (every balance is at most the total).
    public static func settleFees(burned: UInt64, tips: UInt64, proposer: Address, store: inout some BankStore) {
        if tips > 0 { store.setBalance(proposer, .flx, store.balance(proposer, .flx) + tips) }
        guard burned > 0 else { return }
        store.setBalanceTotal(.flx, store.balanceTotal(.flx) - burned)
        store.setSupply(.flx, store.supply(.flx) - burned)
    }
}
