import BPICore
import MetanodeWire
import Testing

@Suite("Validator sets")
struct ValidatorSetTests {
    static func keys(_ count: Int) -> [[UInt8]] {
        (0..<count).map { Ed25519Signer(seed: WireCrypto.domainHash("key", [UInt8($0)])).publicKey }
    }

    @Test("the quorum is (2n-1)/3+1, which is ceil(2n/3), and two quorums always share more than f validators")
    func quorum() throws {
        let expected = [1: 1, 2: 2, 3: 2, 4: 3, 5: 4, 6: 4, 7: 5, 10: 7, 100: 67]
        for (count, quorum) in expected {
            let set = try ValidatorSet(keys: Self.keys(count))
            #expect(set.quorum == quorum, "n=\(count)")
            #expect(2 * set.quorum - count > set.faultsTolerated, "n=\(count)")
        }
    }

    @Test("the proposer rotates by height and moves on by one each round")
    func proposerRotation() throws {
        let set = try ValidatorSet(keys: Self.keys(4))
        #expect((0..<8).map { set.proposer(height: UInt64($0), round: 0) } == [0, 1, 2, 3, 0, 1, 2, 3])
        #expect((0..<5).map { set.proposer(height: 6, round: UInt32($0)) } == [2, 3, 0, 1, 2])
        #expect(set.proposer(height: .max, round: .max) < 4)
    }

    @Test("a repeated key, a short key or an empty set is refused, naming the validator")
    func badSets() {
        var keys = Self.keys(3)
        keys.append(keys[1])
        #expect(throws: WireError(.invalidValue, "validator 3 repeats the key of validator 1")) {
            try ValidatorSet(keys: keys)
        }
        #expect(throws: WireError(.invalidValue, "validator 0's key is 31 bytes; an Ed25519 key is 32")) {
            try ValidatorSet(keys: [[UInt8](repeating: 1, count: 31)])
        }
        #expect(throws: WireError.self) { try ValidatorSet(keys: []) }
    }
}

@Suite("Merkle tree (RFC 6962 shape, BLAKE2b)")
struct MerkleTreeTests {
    @Test("every leaf's audit path verifies, for trees of 1 to 33 leaves; a wrong leaf, index or root does not")
    func proofs() {
        for count in 1...33 {
            let leaves = (0..<count).map { MerkleTree.leafHash([UInt8($0)]) }
            let root = MerkleTree.root(leafHashes: leaves)
            for index in 0..<count {
                let path = MerkleTree.proof(leafHashes: leaves, index: index)
                #expect(MerkleTree.verify(leafHash: leaves[index], index: index, count: count, path: path, root: root))
                #expect(!MerkleTree.verify(leafHash: MerkleTree.leafHash([0xFF]), index: index, count: count,
                                           path: path, root: root))
                if count > 1 {
                    #expect(!MerkleTree.verify(leafHash: leaves[index], index: (index + 1) % count, count: count,
                                               path: path, root: root))
                }
                #expect(!MerkleTree.verify(leafHash: leaves[index], index: index, count: count, path: path,
                                           root: MerkleTree.emptyRoot))
            }
        }
    }

    @Test("the root of two leaves is H(1 || leaf0 || leaf1) and a single leaf is its own root")
    func shape() {
        let a = MerkleTree.leafHash([1]), b = MerkleTree.leafHash([2])
        #expect(MerkleTree.root(leafHashes: [a]) == a)
        #expect(MerkleTree.root(leafHashes: [a, b]) == WireCrypto.blake2b256([1], a, b))
    }

    @Test("roots over inline digests equal roots over hash arrays, for 0 to 70 leaves")
    func inlineDigests() {
        for count in 0...70 {
            let leaves = (0..<count).map { [UInt8(truncatingIfNeeded: $0), 7] }
            #expect(leaves.allSatisfy { MerkleTree.leafDigest($0).bytes == MerkleTree.leafHash($0) })
            #expect(MerkleTree.root(leafDigests: leaves.map(MerkleTree.leafDigest))
                == MerkleTree.root(leafHashes: leaves.map(MerkleTree.leafHash)), "\(count) leaves")
        }
    }
}

@Suite("Consensus message and block encoding")
struct MessageCodingTests {
    static let signer = Ed25519Signer(seed: [UInt8](repeating: 7, count: 32))

    static func block(height: UInt64 = 3) -> Block {
        let zero = [UInt8](repeating: 0, count: 32)
        let header = BlockHeader(chainID: "dev", height: height, parentHash: zero, timestampMs: 1_700_000_000_000,
                                 proposer: signer.publicKey, transactionsRoot: zero, stateRoot: zero,
                                 resultsRoot: zero, validatorSetHash: zero, pohCount: 4, pohHash: zero)
        return Block(header: header, transactions: [[1, 2, 3], []])
    }

    static func signed(_ kind: MessageKind, round: UInt32 = 1) -> SignedMessage {
        var payload = ConsensusPayload(kind: kind, height: 3, round: round, digest: block().hash)
        if kind == .commit { payload.commitSeal = [UInt8](repeating: 9, count: 64) }
        if kind == .roundChange { payload.preparedRound = 0 }
        return SignedMessage(payload: payload, signer: 2, signature: signer.sign(payload.signingBytes))
    }

    @Test("every envelope kind decodes to what was encoded")
    func roundTrip() throws {
        let envelopes: [ConsensusEnvelope] = [
            .proposal(Self.signed(.proposal), block: Self.block(), roundChanges: [Self.signed(.roundChange)],
                      prepares: [Self.signed(.prepare, round: 0)]),
            .prepare(Self.signed(.prepare)), .commit(Self.signed(.commit)),
            .roundChange(Self.signed(.roundChange), preparedBlock: Self.block(), prepares: [Self.signed(.prepare)]),
            .roundChange(Self.signed(.roundChange), preparedBlock: nil, prepares: []),
        ]
        for envelope in envelopes {
            #expect(try ConsensusEnvelope.decode(envelope.encoded) == envelope)
            // A sent message's WAL record is its tag and the message's own bytes, written in one buffer.
            let record = QBFTRecord.sent(envelope)
            #expect(record.encoded == [1] + envelope.encoded)
            #expect(try QBFTRecord.decode(record.encoded) == record)
        }
        let prepared = QBFTRecord.prepared(round: 3, block: Self.block(), prepares: [Self.signed(.prepare)])
        #expect(try QBFTRecord.decode(prepared.encoded) == prepared)
        let finalized = FinalizedBlock(block: Self.block(), certificate: CommitCertificate(
            round: 2, seals: [CommitSeal(validator: 1, signature: [UInt8](repeating: 5, count: 64))]))
        #expect(try FinalizedBlock.decode(finalized.encoded) == finalized)
    }

    @Test("a transaction batch round-trips, and a damaged one is refused naming the element, built only on error")
    func transactionBatch() throws {
        let batch: [[UInt8]] = [[1, 2, 3], [], [UInt8](repeating: 7, count: 300)]
        let encoded = TransactionBatch.encode(batch)
        #expect(try TransactionBatch.decode(encoded) == batch)
        #expect(throws: WireError(.truncated,
                                  "transaction batch ends inside transactions[2]: needs 300 byte(s), 299 left")) {
            try TransactionBatch.decode(Array(encoded.dropLast()))
        }
        let pair = TransactionBatch.encode([[1, 2, 3], [9, 9, 9, 9, 9]])
        #expect(throws: WireError(.truncated,
                                  "transaction batch ends inside transactions[1] length: needs 4 byte(s), 2 left")) {
            try TransactionBatch.decode(Array(pair.prefix(4 + 4 + 3 + 2)))
        }
    }

    @Test("a block header's hash covers every field but not the round it was decided in")
    func headerHash() {
        let block = Self.block()
        var changed = block
        changed.header.pohCount += 1
        #expect(changed.hash != block.hash)
        changed = block
        changed.header.timestampMs += 1
        #expect(changed.hash != block.hash)
    }

    @Test("every truncation of a proposal fails with an error, never a crash or a partial value")
    func truncations() {
        let bytes = ConsensusEnvelope.proposal(Self.signed(.proposal), block: Self.block(), roundChanges: [],
                                               prepares: []).encoded
        for length in 0..<bytes.count {
            #expect(throws: WireError.self) { try ConsensusEnvelope.decode(Array(bytes[..<length])) }
        }
        #expect(throws: WireError(.trailingBytes, "consensus message has 1 byte(s) after its last field")) {
            try ConsensusEnvelope.decode(bytes + [0])
        }
    }

    @Test("an unknown message type or a list longer than a validator set is refused, naming the field")
    func badFields() {
        var bytes = ConsensusEnvelope.prepare(Self.signed(.prepare)).encoded
        bytes[1] = 9
        #expect(throws: WireError(.invalidValue, "consensus message.kind 9 is not a QBFT message type (1-4)")) {
            try ConsensusEnvelope.decode(bytes)
        }
        var writer = WireWriter()
        writer.raw(ConsensusEnvelope.roundChange(Self.signed(.roundChange), preparedBlock: nil, prepares: []).encoded
            .dropLast(2))
        writer.u16(300)
        #expect(throws: WireError(.tooLong, "consensus message.prepares has 300 items; at most 256")) {
            try ConsensusEnvelope.decode(writer.bytes)
        }
    }
}

@Suite("State diffs")
struct StateDiffTests {
    static let diff = StateDiff(
        nextNonces: [BytesKey([UInt8](repeating: 1, count: 32)): 7, BytesKey([UInt8](repeating: 2, count: 32)): 1],
        writes: [BytesKey(Array("bpci/b1".utf8)): [0, 0, 0, 0, 0, 0, 0, 9], BytesKey(Array("bpci/gone".utf8)): nil as [UInt8]?,
                 BytesKey(Array("counter/empty".utf8)): []])

    @Test("a block's state changes encode and decode to the same nonces, puts, deletes and empty values")
    func roundTrip() throws {
        #expect(try StateDiff.decode(Self.diff.encoded) == Self.diff)
        #expect(Self.diff.encoded.count == Self.diff.encodedCount)
        let empty = StateDiff(nextNonces: [:], writes: [:])
        #expect(empty.isEmpty && !Self.diff.isEmpty)
        #expect(try StateDiff.decode(empty.encoded) == empty)
    }

    @Test("a damaged diff is refused naming what is wrong")
    func damaged() throws {
        let bytes = Self.diff.encoded
        #expect { try StateDiff.decode(Array(bytes.dropLast()), context: "block 9") } throws: { error in
            "\(error)".contains("block 9")
        }
        #expect { try StateDiff.decode(bytes + [0]) } throws: { error in "\(error)".contains("after its last field") }
        var writer = WireWriter()
        writer.u32(1)
        writer.bytes16([UInt8](repeating: 1, count: StateDiff.senderBytesMax + 1))
        writer.u64(1)
        writer.u32(0)
        #expect { try StateDiff.decode(writer.bytes) } throws: { error in "\(error)".contains("sender") }
        var huge = WireWriter()
        huge.u32(.max)
        #expect { try StateDiff.decode(huge.bytes) } throws: { error in "\(error)".contains("nonces") }
    }
}
