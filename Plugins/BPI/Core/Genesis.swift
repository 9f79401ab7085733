import Foundation
import MetanodeWire

/// A network's genesis file: the chain id, the validators, the consensus parameters every node must share, one
/// section per module, and (for the kernel's transport) the peers' addresses. One JSON file serves both: the kernel
/// reads `peers`, BPI reads the rest.
///
///     {"chainId": "metanode-dev", "genesisTimeMs": 0,
///      "validators": [{"key": "<64 hex>"}],
///      "parameters": {"blockTransactionsMax": 5000, "blockBytesMax": 8388608, "pohTicksPerEntry": 1},
///      "modules": {"bpci": {...}},
///      "peers": [{"address": "127.0.0.1:7701", "key": "<64 hex>"}]}
public struct Genesis: Sendable, Equatable {
    public struct Parameters: Codable, Sendable, Equatable {
        public var blockTransactionsMax: Int
        public var blockBytesMax: Int
        public var pohTicksPerEntry: UInt32
        /// Whether BPI's own `test/…` kinds are valid: transactions no module executes and no fee is charged for,
        /// for load tests and examples. Off unless the genesis turns it on (`chain genesis --test-transactions`);
        /// on a chain without it they are like any kind no module handles, and pay their fee.
        public var testTransactions: Bool

        public init(blockTransactionsMax: Int, blockBytesMax: Int, pohTicksPerEntry: UInt32,
                    testTransactions: Bool = false) {
            self.blockTransactionsMax = blockTransactionsMax
            self.blockBytesMax = blockBytesMax
            self.pohTicksPerEntry = pohTicksPerEntry
            self.testTransactions = testTransactions
        }

        enum CodingKeys: String, CodingKey {
            case blockTransactionsMax, blockBytesMax, pohTicksPerEntry, testTransactions
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            blockTransactionsMax = try container.decode(Int.self, forKey: .blockTransactionsMax)
            blockBytesMax = try container.decode(Int.self, forKey: .blockBytesMax)
            pohTicksPerEntry = try container.decode(UInt32.self, forKey: .pohTicksPerEntry)
            testTransactions = try container.decodeIfPresent(Bool.self, forKey: .testTransactions) ?? false
        }

        /// One PoH tick per transaction: ticks run only as a block's transactions are mixed in, so a block's count
        /// is a fixed multiple of its transactions whatever the multiple, and the order is fixed by the mixes. Each
        /// tick past the first was a hash per transaction on every validator; at 4 (the default until 2026-11),
        /// about 1.5% of a validator's time under load and 2.1% fewer transfers a second (README, Benchmarks).
        public static let defaults = Parameters(blockTransactionsMax: 5_000, blockBytesMax: 2 << 20,
                                                pohTicksPerEntry: 1)
        /// A proposal carries its block in one network message (at most 4 MiB, MN_NET_MESSAGE_LEN_MAX), next to
        /// its justification; 3 MiB leaves room for that.
        public static let blockBytesLimit = 3 << 20
    }

    public var chainID: String
    public var genesisTimeMs: UInt64
    public var validators: ValidatorSet
    public var parameters: Parameters
    /// Each module's section, as canonical JSON (sorted keys).
    public var modules: [String: String]

    public static let fileBytesMax = 4 << 20

    public init(chainID: String, genesisTimeMs: UInt64, validators: ValidatorSet,
                parameters: Parameters = .defaults, modules: [String: String] = [:]) {
        self.chainID = chainID
        self.genesisTimeMs = genesisTimeMs
        self.validators = validators
        self.parameters = parameters
        self.modules = modules
    }

    /// The parent hash of height 1 and the first PoH seed: BLAKE2b-256 over the genesis's wire encoding.
    public var hash: [UInt8] {
        var writer = WireWriter()
        writer.string16(chainID)
        writer.u64(genesisTimeMs)
        writer.raw(validators.encoded)
        writer.u32(UInt32(parameters.blockTransactionsMax))
        writer.u32(UInt32(parameters.blockBytesMax))
        writer.u32(parameters.pohTicksPerEntry)
        // Appended only when on, so the hashes of chains that never had it stay what they were.
        if parameters.testTransactions { writer.raw(Array("testTransactions".utf8)) }
        writer.u16(UInt16(modules.count))
        for name in modules.keys.sorted() {
            writer.string16(name)
            writer.bytes32(Array(modules[name]!.utf8))
        }
        return WireCrypto.domainHash("metanode/bpi/genesis/v1", writer.bytes)
    }

    private struct File: Codable {
        struct Validator: Codable { var key: String }
        var chainId: String?
        var genesisTimeMs: UInt64?
        var validators: [Validator]?
        var parameters: Parameters?
    }

    /// Parses a genesis file's bytes; errors name the field. `source` names the file in messages.
    public static func parse(_ bytes: [UInt8], source: String) throws(WireError) -> Genesis {
        func fail(_ message: String) -> WireError { WireError(.invalidValue, "genesis file \(source): \(message)") }
        guard bytes.count <= fileBytesMax else { throw fail("is \(bytes.count) bytes; at most \(fileBytesMax)") }
        let file: File
        let object: [String: Any]
        do {
            file = try JSONDecoder().decode(File.self, from: Data(bytes))
            object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] ?? [:]
        } catch {
            throw fail("is not valid genesis JSON (\(Self.describe(error)))")
        }
        guard let chainID = file.chainId else { throw fail("has no \"chainId\"") }
        guard Transaction.isName(chainID, max: Transaction.chainIDBytesMax, allowingSlash: false) else {
            throw fail("chainId '\(chainID)' must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")
        }
        guard let listed = file.validators, !listed.isEmpty else { throw fail("has no \"validators\"") }
        var keys: [[UInt8]] = []
        for (index, validator) in listed.enumerated() {
            guard let key = Hex.decode(validator.key), key.count == 32 else {
                throw fail("validators[\(index)].key must be 64 hex digits (an Ed25519 public key)")
            }
            keys.append(key)
        }
        let validators: ValidatorSet
        do { validators = try ValidatorSet(keys: keys) } catch { throw fail(error.message) }
        let parameters = file.parameters ?? .defaults
        guard parameters.blockTransactionsMax >= 1, parameters.blockTransactionsMax <= Block.transactionsMax else {
            throw fail("parameters.blockTransactionsMax must be 1-\(Block.transactionsMax)")
        }
        guard parameters.blockBytesMax >= 1024, parameters.blockBytesMax <= Parameters.blockBytesLimit else {
            throw fail("parameters.blockBytesMax must be 1024-\(Parameters.blockBytesLimit)")
        }
        guard parameters.pohTicksPerEntry <= ProofOfHistory.ticksPerEntryMax else {
            throw fail("parameters.pohTicksPerEntry must be at most \(ProofOfHistory.ticksPerEntryMax)")
        }
        var modules: [String: String] = [:]
        for (name, section) in object["modules"] as? [String: Any] ?? [:] {
            guard let data = try? JSONSerialization.data(withJSONObject: section,
                                                         options: [.sortedKeys, .fragmentsAllowed]) else {
                throw fail("modules.\(name) is not JSON")
            }
            modules[name] = String(decoding: data, as: UTF8.self)
        }
        return Genesis(chainID: chainID, genesisTimeMs: file.genesisTimeMs ?? 0, validators: validators,
                       parameters: parameters, modules: modules)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
             DecodingError.keyNotFound(_, let context), DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return path.isEmpty ? context.debugDescription : "\(path.dropFirst()): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}
