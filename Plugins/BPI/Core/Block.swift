import MetanodeWire

/// A block header. Its hash (BLAKE2b-256 of `"metanode/bpi/header/v1" 0 <encoding>`) is what consensus agrees on and
/// commit seals sign. The round a block was decided in is not part of it: a block prepared in one round and proposed
/// again in a later one keeps its hash, so the earlier round's prepares still justify it. The round travels in the
/// block's `CommitCertificate`.
public struct BlockHeader: Sendable, Hashable {
    public static let version: UInt8 = 1
    public static let hashDomain = "metanode/bpi/header/v1"

    public var chainID: String
    public var height: UInt64
    public var parentHash: [UInt8]
    /// The proposer's clock when it built the block; validators check it against the parent's (see the ledger).
    public var timestampMs: UInt64
    /// The key of the validator that built the block (which may differ from the proposer of the deciding round).
    public var proposer: [UInt8]
    public var transactionsRoot: [UInt8]
    public var stateRoot: [UInt8]
    public var resultsRoot: [UInt8]
    public var validatorSetHash: [UInt8]
    public var pohCount: UInt64
    public var pohHash: [UInt8]
    /// Merkle root over the hashes of the block's evidence (`Evidence.root`).
    public var evidenceRoot: [UInt8]

    public init(chainID: String, height: UInt64, parentHash: [UInt8], timestampMs: UInt64, proposer: [UInt8],
                transactionsRoot: [UInt8], stateRoot: [UInt8], resultsRoot: [UInt8], validatorSetHash: [UInt8],
                pohCount: UInt64, pohHash: [UInt8], evidenceRoot: [UInt8] = MerkleTree.emptyRoot) {
        self.chainID = chainID
        self.height = height
        self.parentHash = parentHash
        self.timestampMs = timestampMs
        self.proposer = proposer
        self.transactionsRoot = transactionsRoot
        self.stateRoot = stateRoot
        self.resultsRoot = resultsRoot
        self.validatorSetHash = validatorSetHash
        self.pohCount = pohCount
        self.pohHash = pohHash
        self.evidenceRoot = evidenceRoot
    }

    public func encode(into writer: inout WireWriter) {
        writer.u8(Self.version)
        writer.string16(chainID)
        writer.u64(height)
        writer.fixed(parentHash, count: 32)
        writer.u64(timestampMs)
        writer.fixed(proposer, count: 32)
        writer.fixed(transactionsRoot, count: 32)
        writer.fixed(stateRoot, count: 32)
        writer.fixed(resultsRoot, count: 32)
        writer.fixed(validatorSetHash, count: 32)
        writer.u64(pohCount)
        writer.fixed(pohHash, count: 32)
        writer.fixed(evidenceRoot, count: 32)
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 300)
        encode(into: &writer)
        return writer.bytes
    }

    public var hash: [UInt8] { WireCrypto.domainHash(Self.hashDomain, encoded) }

    public static func decode(from reader: inout WireReader) throws(WireError) -> BlockHeader {
        let version = try reader.u8("header.version")
        guard version == Self.version else {
            throw WireError(.invalidValue, "block header version \(version) is unknown; this node reads version 1")
        }
        return BlockHeader(
            chainID: try reader.string16("header.chainID", max: Transaction.chainIDBytesMax),
            height: try reader.u64("header.height"), parentHash: try reader.fixed(32, "header.parentHash"),
            timestampMs: try reader.u64("header.timestampMs"), proposer: try reader.fixed(32, "header.proposer"),
            transactionsRoot: try reader.fixed(32, "header.transactionsRoot"),
            stateRoot: try reader.fixed(32, "header.stateRoot"), resultsRoot: try reader.fixed(32, "header.resultsRoot"),
            validatorSetHash: try reader.fixed(32, "header.validatorSetHash"),
            pohCount: try reader.u64("header.pohCount"), pohHash: try reader.fixed(32, "header.pohHash"),
            evidenceRoot: try reader.fixed(32, "header.evidenceRoot"))
    }
}

/// A header, its transactions (each an encoded `Transaction`) and any evidence of equivocation.
public struct Block: Sendable, Hashable {
    public static let transactionsMax = 20_000
    public static let bodyBytesMax = 16 * 1024 * 1024

    public var header: BlockHeader
    public var transactions: [[UInt8]]
    public var evidence: [Evidence]

    public init(header: BlockHeader, transactions: [[UInt8]], evidence: [Evidence] = []) {
        self.header = header
        self.transactions = transactions
        self.evidence = evidence
    }

    public var hash: [UInt8] { header.hash }

    /// The root the header must carry: the Merkle root over the transactions' ids.
    public static func transactionsRoot(ids: [[UInt8]]) -> [UInt8] {
        MerkleTree.root(leafDigests: ids.map(MerkleTree.leafDigest))
    }

    public func encode(into writer: inout WireWriter) {
        header.encode(into: &writer)
        writer.u32(UInt32(transactions.count))
        for transaction in transactions { writer.bytes32(transaction) }
        writer.u16(UInt16(evidence.count))
        for piece in evidence { piece.encode(into: &writer) }
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: encodedCapacity)
        encode(into: &writer)
        return writer.bytes
    }

    /// Room for `encoded` (evidence aside, which is rare): what a message or record that carries the block reserves,
    /// rather than its writer doubling from 256 bytes to a block's size, copying and faulting in fresh memory each time.
    public var encodedCapacity: Int { 300 + transactions.reduce(0) { $0 + 4 + $1.count } }

    public static func decode(from reader: inout WireReader) throws(WireError) -> Block {
        let header = try BlockHeader.decode(from: &reader)
        let count = try reader.count32("transactions", max: transactionsMax, itemBytesMin: 4)
        var transactions: [[UInt8]] = []
        transactions.reserveCapacity(count)
        var bodyBytes = 0
        for index in 0..<count {
            let transaction = try reader.bytes32("transactions[\(index)]", max: Transaction.encodedBytesMax)
            bodyBytes += transaction.count
            guard bodyBytes <= bodyBytesMax else {
                throw WireError(.tooLong, "\(reader.context)'s transactions exceed \(bodyBytesMax) bytes")
            }
            transactions.append(transaction)
        }
        let evidenceCount = try reader.count16("evidence", max: Evidence.perBlockMax, itemBytesMin: 222)
        var evidence: [Evidence] = []
        for _ in 0..<evidenceCount { evidence.append(try Evidence.decode(from: &reader)) }
        return Block(header: header, transactions: transactions, evidence: evidence)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Block {
        var reader = WireReader(bytes, context: "block")
        let block = try decode(from: &reader)
        try reader.finish()
        return block
    }
}

/// Transactions travelling together (gossip between nodes, bulk submission): `u32 count | count × bytes32 tx`.
public enum TransactionBatch {
    public static let countMax = 20_000

    public static func encode(_ transactions: some Collection<[UInt8]>) -> [UInt8] {
        var writer = WireWriter(capacity: 4 + transactions.reduce(0) { $0 + 4 + $1.count })
        writer.u32(UInt32(transactions.count))
        for transaction in transactions { writer.bytes32(transaction) }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> [[UInt8]] {
        var reader = WireReader(bytes, context: "transaction batch")
        let count = try reader.count32("transactions", max: countMax, itemBytesMin: 4)
        var transactions: [[UInt8]] = []
        transactions.reserveCapacity(count)
        for index in 0..<count {
            transactions.append(try reader.bytes32("transactions[\(index)]", max: Transaction.encodedBytesMax))
        }
        try reader.finish()
        return transactions
    }
}

/// A commit seal: validator `validator`'s signature over `CommitSeal.signingBytes(blockHash:round:)`.
public struct CommitSeal: Sendable, Hashable {
    public static let domain = "metanode/bpi/commit-seal/v1"

    public var validator: UInt16
    public var signature: [UInt8]

    public init(validator: UInt16, signature: [UInt8]) {
        self.validator = validator
        self.signature = signature
    }

    public static func signingBytes(blockHash: [UInt8], round: UInt32) -> [UInt8] {
        var writer = WireWriter(capacity: 64)
        writer.raw(Array(domain.utf8))
        writer.u8(0)
        writer.fixed(blockHash, count: 32)
        writer.u32(round)
        return writer.bytes
    }
}

/// The proof a block is final: a quorum of distinct validators' commit seals for its hash in one round.
public struct CommitCertificate: Sendable, Hashable {
    public var round: UInt32
    public var seals: [CommitSeal]

    public init(round: UInt32, seals: [CommitSeal]) {
        self.round = round
        self.seals = seals.sorted { $0.validator < $1.validator }
    }

    public func encode(into writer: inout WireWriter) {
        writer.u32(round)
        writer.u16(UInt16(seals.count))
        for seal in seals {
            writer.u16(seal.validator)
            writer.fixed(seal.signature, count: 64)
        }
    }

    public static func decode(from reader: inout WireReader) throws(WireError) -> CommitCertificate {
        let round = try reader.u32("certificate.round")
        let count = try reader.count16("certificate.seals", max: ValidatorSet.countMax, itemBytesMin: 66)
        var seals: [CommitSeal] = []
        for index in 0..<count {
            seals.append(CommitSeal(validator: try reader.u16("certificate.seals[\(index)].validator"),
                                    signature: try reader.fixed(64, "certificate.seals[\(index)].signature")))
        }
        return CommitCertificate(round: round, seals: seals)
    }

    /// nil if a quorum of `validators` sealed `blockHash`; otherwise why not.
    public func problem(blockHash: [UInt8], validators: ValidatorSet, plugin: String) -> String? {
        var sealed = Set<UInt16>()
        let message = CommitSeal.signingBytes(blockHash: blockHash, round: round)
        for seal in seals {
            guard let key = validators.key(Int(seal.validator)) else {
                return "a seal names validator \(seal.validator); the set has \(validators.count)"
            }
            guard sealed.insert(seal.validator).inserted else {
                return "validator \(seal.validator) sealed twice"
            }
            guard NodeSignature.verify(signature: seal.signature, nodeKey: key, plugin: plugin, message: message) else {
                return "validator \(seal.validator)'s seal does not verify"
            }
        }
        guard sealed.count >= validators.quorum else {
            return "\(sealed.count) seal(s); a quorum of \(validators.count) validators is \(validators.quorum)"
        }
        return nil
    }
}

/// A decided block with its certificate: what is stored and what block sync sends.
public struct FinalizedBlock: Sendable, Hashable {
    public var block: Block
    public var certificate: CommitCertificate

    public init(block: Block, certificate: CommitCertificate) {
        self.block = block
        self.certificate = certificate
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: block.encodedCapacity + 8 + certificate.seals.count * 66)
        block.encode(into: &writer)
        certificate.encode(into: &writer)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> FinalizedBlock {
        var reader = WireReader(bytes, context: "finalized block")
        let block = try Block.decode(from: &reader)
        let certificate = try CommitCertificate.decode(from: &reader)
        try reader.finish()
        return FinalizedBlock(block: block, certificate: certificate)
    }
}
