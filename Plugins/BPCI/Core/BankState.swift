import MetanodeWire

/// A ledger module's own key space, as BPI hands it to the module's handlers (BPI adds the "bpci/" prefix). The
/// plugin backs it with ledger.h's state_get/state_put; tests with `DictionaryModuleState`.
public protocol ModuleState {
    func get(_ key: [UInt8]) -> [UInt8]?
    /// nil deletes.
    mutating func put(_ key: [UInt8], _ value: [UInt8]?)
    /// The value as 8 big-endian bytes (balances, supplies, the base fee); nil when absent or not 8 bytes long. By
    /// default `get` decoded; the plugin's view reads it without allocating (ledger 1.2's `state_read`).
    func u64(_ key: [UInt8]) -> UInt64?
    /// Whether the key has a value. By default `get`; the plugin's view asks without copying the value.
    func contains(_ key: [UInt8]) -> Bool
    /// Writes `value` as 8 big-endian bytes. By default `put`; the plugin's view writes them from the stack.
    mutating func putU64(_ key: [UInt8], _ value: UInt64)
    /// Copies the value into `buffer` if it fits and returns its length; nil when the key has none. By default
    /// `get`; the plugin's view reads small fixed values (the fee parameters, the block's pending fees) onto the stack.
    func read(_ key: [UInt8], into buffer: UnsafeMutableRawBufferPointer) -> Int?
    /// Writes `bytes` as the value. By default `put`; the plugin's view writes them from where they lie.
    mutating func put(_ key: [UInt8], bytes: UnsafeRawBufferPointer)
}

/// Module state in a dictionary: for tests and simulations.
public struct DictionaryModuleState: ModuleState, Sendable, Hashable {
    public var values: [[UInt8]: [UInt8]] = [:]

    public init() {}

    public func get(_ key: [UInt8]) -> [UInt8]? { values[key] }
    public mutating func put(_ key: [UInt8], _ value: [UInt8]?) { values[key] = value }
}

/// Writes kept apart from a base state: a handler's tentative changes (admission simulates the fee and the transfer
/// on one, and throws it away).
public struct OverlayState<Base: ModuleState>: ModuleState {
    public let base: Base
    private var writes: [BytesKey: [UInt8]?] = [:]

    public init(_ base: Base) {
        self.base = base
        writes.reserveCapacity(8)  // a transfer's fee and payment write six keys
    }

    public func get(_ key: [UInt8]) -> [UInt8]? {
        if let written = writes[BytesKey(key)] { return written }
        return base.get(key)
    }

    public mutating func put(_ key: [UInt8], _ value: [UInt8]?) { writes[BytesKey(key)] = .some(value) }

    public func u64(_ key: [UInt8]) -> UInt64? {
        if let written = writes[BytesKey(key)] { return written.flatMap(StoredU64.decode) }
        return base.u64(key)
    }

    public func contains(_ key: [UInt8]) -> Bool {
        if let written = writes[BytesKey(key)] { return written != nil }
        return base.contains(key)
    }
}

/// Where BPCI keeps what, under "bpci/" in the ledger state (so block headers commit to all of it):
///
///     b [20] address u8 denomination   u64 balance (absent: 0)
///     s u8 denomination                u64 supply
///     t u8 denomination                u64 running total of balances
///     fee/parameters                   the fee market's parameters (from genesis)
///     fee/base                         the base fee of the block being made
///     fee/pending                      u64 burned | u64 tips: the fees charged so far in the block being made, settled
///                                      and deleted at its end (so never in a committed state)
public enum BankKeys {
    public static func balance(_ address: Address, _ denomination: Denomination) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(2 + Address.byteCount)
        key.append(0x62)
        address.append(to: &key)
        key.append(denomination.rawValue)
        return key
    }
    public static func supply(_ denomination: Denomination) -> [UInt8] { [0x73, denomination.rawValue] }
    public static func total(_ denomination: Denomination) -> [UInt8] { [0x74, denomination.rawValue] }
    public static let feeParameters = Array("fee/parameters".utf8)
    public static let baseFee = Array("fee/base".utf8)
    public static let pendingFees = Array("fee/pending".utf8)
}

extension ModuleState {
    public func u64(_ key: [UInt8]) -> UInt64? { get(key).flatMap(StoredU64.decode) }

    public func contains(_ key: [UInt8]) -> Bool { get(key) != nil }

    public mutating func putU64(_ key: [UInt8], _ value: UInt64) { put(key, StoredU64.encode(value)) }

    public func read(_ key: [UInt8], into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let value = get(key) else { return nil }
        if value.count <= buffer.count { buffer.copyBytes(from: value) }
        return value.count
    }

    public mutating func put(_ key: [UInt8], bytes: UnsafeRawBufferPointer) { put(key, Array(bytes)) }

    /// The value as two u64s (16 big-endian bytes); nil when absent or another length.
    public func u64Pair(_ key: [UInt8]) -> (UInt64, UInt64)? {
        var words: (UInt64, UInt64) = (0, 0)
        guard withUnsafeMutableBytes(of: &words, { read(key, into: $0) }) == 16 else { return nil }
        return (UInt64(bigEndian: words.0), UInt64(bigEndian: words.1))
    }

    /// Writes two u64s as 16 big-endian bytes.
    public mutating func putU64Pair(_ key: [UInt8], _ first: UInt64, _ second: UInt64) {
        withUnsafeBytes(of: (first.bigEndian, second.bigEndian)) { put(key, bytes: $0) }
    }

    /// Writes `value` as 8 big-endian bytes; 0 deletes the key when `zeroDeletes` (absent balances read as 0).
    public mutating func setU64(_ key: [UInt8], _ value: UInt64, zeroDeletes: Bool = false) {
        if zeroDeletes && value == 0 { put(key, nil) } else { putU64(key, value) }
    }
}

/// The bank's balances, supplies and totals kept in module state.
public struct StateBankStore<State: ModuleState>: BankStore {
    public var state: State

    public init(_ state: State) { self.state = state }

    public func balance(_ address: Address, _ denomination: Denomination) -> UInt64 {
        state.u64(BankKeys.balance(address, denomination)) ?? 0
    }
    public mutating func setBalance(_ address: Address, _ denomination: Denomination, _ amount: UInt64) {
        state.setU64(BankKeys.balance(address, denomination), amount, zeroDeletes: true)
    }
    public func supply(_ denomination: Denomination) -> UInt64 { state.u64(BankKeys.supply(denomination)) ?? 0 }
    public mutating func setSupply(_ denomination: Denomination, _ amount: UInt64) {
        state.setU64(BankKeys.supply(denomination), amount)
    }
    public func balanceTotal(_ denomination: Denomination) -> UInt64 { state.u64(BankKeys.total(denomination)) ?? 0 }
    public mutating func setBalanceTotal(_ denomination: Denomination, _ amount: UInt64) {
        state.setU64(BankKeys.total(denomination), amount)
    }
}

/// One line of an account's history (`HistoryIndex`): a payment it sent or received.
///
///     u64 height | [32] transaction id | u8 direction (0 sent, 1 received) | [20] counterparty | u8 denomination
///     | u64 amount | u64 fee (what the sender paid for the whole transaction; 0 on the receiving side)
public struct HistoryEntry: Sendable, Hashable {
    public enum Direction: UInt8, Sendable { case sent = 0, received = 1 }

    public var height: UInt64
    public var transaction: [UInt8]
    public var direction: Direction
    public var counterparty: Address
    public var denomination: Denomination
    public var amount: UInt64
    public var fee: UInt64

    public init(height: UInt64, transaction: [UInt8], direction: Direction, counterparty: Address,
                denomination: Denomination, amount: UInt64, fee: UInt64) {
        self.height = height
        self.transaction = transaction
        self.direction = direction
        self.counterparty = counterparty
        self.denomination = denomination
        self.amount = amount
        self.fee = fee
    }

    /// An encoded entry's size: every field has a fixed width.
    public static let byteCount = 78

    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        append(to: &bytes)
        return bytes
    }

    /// Appends the encoding to `bytes`, as `encoded` has it, with no array of its own on the way: the room is made
    /// once and each field stored at its offset (every node encodes two entries per payment).
    public func append(to bytes: inout [UInt8]) {
        precondition(transaction.count == 32, "a history entry's transaction id is 32 bytes")
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: Self.byteCount))
        bytes.withUnsafeMutableBytes { out in
            out.storeBytes(of: height.bigEndian, toByteOffset: start, as: UInt64.self)
            transaction.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[(start + 8)...]).copyMemory(from: $0) }
            out[start + 40] = direction.rawValue
            counterparty.store(into: out, at: start + 41)
            out[start + 61] = denomination.rawValue
            out.storeBytes(of: amount.bigEndian, toByteOffset: start + 62, as: UInt64.self)
            out.storeBytes(of: fee.bigEndian, toByteOffset: start + 70, as: UInt64.self)
        }
    }

    /// The height of the entry encoded at `offset` in `bytes` (its first field).
    static func height(inEncoded bytes: [UInt8], at offset: Int) -> UInt64 {
        bytes[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> HistoryEntry {
        var reader = WireReader(bytes, context: "history entry")
        let height = try reader.u64("height")
        let transaction = try reader.fixed(32, "transaction")
        let rawDirection = try reader.u8("direction")
        let counterparty = Address(bytes: try reader.fixed(Address.byteCount, "counterparty"))!
        let rawDenomination = try reader.u8("denomination")
        let amount = try reader.u64("amount"), fee = try reader.u64("fee")
        try reader.finish()
        guard let direction = Direction(rawValue: rawDirection),
              let denomination = Denomination(rawValue: rawDenomination) else {
            throw WireError(.invalidValue, "history entry: direction \(rawDirection) or denomination "
                + "\(rawDenomination) is unknown")
        }
        return HistoryEntry(height: height, transaction: transaction, direction: direction, counterparty: counterparty,
                            denomination: denomination, amount: amount, fee: fee)
    }
}

extension FeeMarket.Parameters {
    /// u64 target transactions | u64 change denominator | u64 minimum base fee | u64 initial base fee
    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 32)
        writer.u64(targetTransactions)
        writer.u64(changeDenominator)
        writer.u64(minimumBaseFee)
        writer.u64(initialBaseFee)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> FeeMarket.Parameters {
        var reader = WireReader(bytes, context: "fee parameters")
        let target = try reader.u64("targetTransactions"), denominator = try reader.u64("changeDenominator")
        let minimum = try reader.u64("minimumBaseFee"), initial = try reader.u64("initialBaseFee")
        try reader.finish()
        return try checked(target: target, denominator: denominator, minimum: minimum, initial: initial)
    }

    /// The parameters stored under `key`, read onto the stack (admission and every block read them); nil when there
    /// are none.
    static func read(_ key: [UInt8], from state: some ModuleState) throws(WireError) -> FeeMarket.Parameters? {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        guard let length = withUnsafeMutableBytes(of: &words, { state.read(key, into: $0) }) else { return nil }
        guard length == 32 else { throw WireError(.invalidValue, "fee parameters: \(length) bytes; they are 32") }
        return try checked(target: UInt64(bigEndian: words.0), denominator: UInt64(bigEndian: words.1),
                           minimum: UInt64(bigEndian: words.2), initial: UInt64(bigEndian: words.3))
    }

    private static func checked(target: UInt64, denominator: UInt64, minimum: UInt64, initial: UInt64)
        throws(WireError) -> FeeMarket.Parameters {
        guard target >= 1, denominator >= 1, initial >= minimum else {
            throw WireError(.invalidValue, "fee parameters: target and denominator must be ≥ 1 and the initial base "
                + "fee at least the minimum")
        }
        return FeeMarket.Parameters(targetTransactions: target, changeDenominator: denominator,
                                    minimumBaseFee: minimum, initialBaseFee: initial)
    }
}
