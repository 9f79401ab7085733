@testable import BPICore
import MetanodePluginTesting
import MetanodeWire
import Testing

@Suite("State tree (compact sparse Merkle tree)")
struct StateTreeTests {
    static func key(_ index: Int) -> [UInt8] { Array("key-\(index)".utf8) }

    @Test("the root depends only on the contents, not on the order of updates or on removed keys")
    func rootIsAFunctionOfContents() {
        var random = SimulationRandom(seed: 42)
        var forward = StateTree(), backward = StateTree(), withRemovals = StateTree()
        for index in 0..<200 { forward.set(Self.key(index), [UInt8(index & 0xFF)]) }
        for index in (0..<200).reversed() { backward.set(Self.key(index), [UInt8(index & 0xFF)]) }
        for index in 0..<300 { withRemovals.set(Self.key(index), [UInt8(random.below(256))]) }
        for index in 200..<300 { withRemovals.set(Self.key(index), nil) }
        for index in 0..<200 { withRemovals.set(Self.key(index), [UInt8(index & 0xFF)]) }
        #expect(forward.root == backward.root)
        #expect(forward.root == withRemovals.root)
        #expect(forward.count == 200 && withRemovals.count == 200)
        var empty = StateTree()
        #expect(empty.root == StateTree.emptyHash)
        for index in 0..<200 { forward.set(Self.key(index), nil) }
        #expect(forward.root == StateTree.emptyHash && forward.count == 0)
    }

    @Test("every key proves its value, absent keys prove absence, and wrong claims fail", arguments: [1, 2, 3, 17, 300])
    func proofs(size: Int) throws {
        var tree = StateTree()
        for index in 0..<size { tree.set(Self.key(index), Array("value \(index)".utf8)) }
        let root = tree.root
        for index in 0..<size {
            let proof = tree.proof(Self.key(index))
            #expect(proof.verify(key: Self.key(index), value: Array("value \(index)".utf8), root: root))
            #expect(!proof.verify(key: Self.key(index), value: Array("other".utf8), root: root))
            #expect(!proof.verify(key: Self.key(index), value: nil, root: root))
            #expect(try StateProof.decode(proof.encoded) == proof)
        }
        for index in size..<size + 20 {
            let proof = tree.proof(Self.key(index))
            #expect(proof.verify(key: Self.key(index), value: nil, root: root), "absent key \(index)")
            #expect(!proof.verify(key: Self.key(index), value: [1], root: root))
            #expect(!proof.verify(key: Self.key(0), value: nil, root: root))
        }
        var changed = tree
        changed.set(Self.key(0), [9])
        #expect(!tree.proof(Self.key(0)).verify(key: Self.key(0), value: Array("value 0".utf8), root: changed.root))
    }

    @Test("a copy is independent: changing it leaves the original's root alone")
    func valueSemantics() {
        var tree = StateTree()
        for index in 0..<50 { tree.set(Self.key(index), [1]) }
        let before = tree.root
        var copy = tree
        copy.set(Self.key(3), [2])
        #expect(tree.root == before && copy.root != before)
    }

    /// The tree hashes inline; the documented formulas (which proofs are checked with) use arrays. Pinned here: a
    /// one-key tree's root is that key's leaf hash, and every key hash is the domain hash the wire documents.
    @Test("the inline hashes are the documented leaf, inner and key hashes")
    func inlineHashesMatchTheFormulas() {
        for index in 0..<20 {
            #expect(StateTree.keyHash(Self.key(index))
                == WireCrypto.domainHash("metanode/bpi/state-key/v1", Self.key(index)))
        }
        var one = StateTree()
        one.set(Self.key(1), [7, 7])
        #expect(one.root == StateTree.leafHash(keyHash: StateTree.keyHash(Self.key(1)),
                                               valueHash: WireCrypto.blake2b256([7, 7])))
        // Setting a key to the value it has, or removing an absent one, leaves the root and count as they were.
        var same = one
        same.set(Self.key(1), [7, 7])
        same.set(Self.key(2), nil)
        #expect(same.root == one.root && same.count == 1)
    }

    @Test("a batch over a hashed tree makes its inner nodes with their hashes; single sets leave them for the root")
    func batchesHashAsTheyGo() {
        var tree = StateTree()
        tree.set(all: (0..<500).map { (key: Self.key($0), value: Optional([UInt8($0 & 0xFF)])) })
        _ = tree.root
        #expect(tree.unhashedInnerNodes == 0)
        tree.set(all: (250..<750).map { (key: Self.key($0), value: $0 < 600 ? Optional([1]) : nil) })
        #expect(tree.unhashedInnerNodes == 0)
        var oneByOne = StateTree()
        for index in 0..<500 { oneByOne.set(Self.key(index), [UInt8(index & 0xFF)]) }
        for index in 250..<750 { oneByOne.set(Self.key(index), index < 600 ? [1] : nil) }
        #expect(oneByOne.unhashedInnerNodes > 0)
        #expect(tree.root == oneByOne.root && oneByOne.unhashedInnerNodes == 0)
    }

    @Test("blocks applied with remembered key hashes give the roots of plain updates, also once the memo empties",
          arguments: [4, 1 << 18])
    func rememberedKeyHashes(entriesMax: Int) throws {
        let validators = try ValidatorSet(keys: [[UInt8](repeating: 9, count: 32)])
        let rules = BlockRules(genesis: Genesis(chainID: "memo", genesisTimeMs: 1_000, validators: validators),
                               keyDigests: StateKeyDigests(entriesMax: entriesMax))
        var random = SimulationRandom(seed: 7)
        var memoized = StateTree(), plain = StateTree()
        for _ in 0..<6 {
            // A few senders and keys, so later blocks change keys earlier ones did (hits), with some new ones.
            var nonces: [BytesKey: UInt64] = [:]
            var writes: [BytesKey: [UInt8]?] = [:]
            for _ in 0..<5 {
                nonces[BytesKey([UInt8](repeating: UInt8(random.below(8)), count: 32))] = UInt64(random.below(1_000))
                let value: [UInt8]? = random.below(4) == 0 ? nil : [UInt8(random.below(256))]
                writes[BytesKey(Array("bpci/key-\(random.below(10))".utf8))] = .some(value)
            }
            memoized = rules.applying(nonces, writes, to: memoized)
            plain.set(all: nonces.map { (BlockRules.nonceKey($0.key.bytes), BlockRules.nonceValue($0.value)) }
                + writes.map { ($0.key.bytes, $0.value) })
            #expect(memoized.root == plain.root)
            #expect(rules.keyDigests.count <= 2 * entriesMax)
        }
    }

    @Test("a batch of changes gives the tree that setting them one by one gives", arguments: 0..<40)
    func batchMatchesOneByOne(seed: UInt64) {
        var random = SimulationRandom(seed: seed)
        // Sizes from empty and one leaf to a few hundred: batches meet empty subtrees, lone leaves and inner nodes.
        let size = [0, 1, 2, 5, 300][Int(seed % 5)]
        var base = StateTree()
        for index in 0..<size { base.set(Self.key(index), [UInt8(random.below(4))]) }
        let before = base.root
        var changes: [(key: [UInt8], value: [UInt8]?)] = []
        for _ in 0..<(1 + Int(random.below(UInt64(2 * size + 8)))) {
            // Keys present and absent; new values, the value a key has, and removals; some keys twice.
            let key = Self.key(Int(random.below(UInt64(2 * size + 6))))
            changes.append((key, random.below(4) == 0 ? nil : [UInt8(random.below(4))]))
        }
        var oneByOne = base, batched = base
        for change in changes { oneByOne.set(change.key, change.value) }
        batched.set(all: changes)
        #expect(batched.root == oneByOne.root, "seed \(seed)")
        #expect(batched.count == oneByOne.count, "seed \(seed)")
        #expect(base.root == before, "the batch changed the tree it was copied from (seed \(seed))")
        // The shape matches too: each key proves the same way in both.
        for index in 0..<(2 * size + 6) {
            let key = Self.key(index)
            #expect(batched.proof(key) == oneByOne.proof(key), "seed \(seed), key \(index)")
        }
    }

    /// Key hashes that agree on their first `shared` bits and differ after: real keys never share 64 bits, where
    /// the batch stops reading the first word it sorts by and reads the hash's bytes.
    static func hashes(sharing shared: Int, count: Int, seed: UInt64) -> [Digest256] {
        var random = SimulationRandom(seed: seed)
        let common = (0..<32).map { _ in UInt8(random.below(256)) }
        return (0..<count).map { _ in
            var bytes = (0..<32).map { _ in UInt8(random.below(256)) }
            for bit in 0..<shared {
                let mask = UInt8(0x80) >> UInt8(bit & 7)
                bytes[bit >> 3] = (bytes[bit >> 3] & ~mask) | (common[bit >> 3] & mask)
            }
            return Digest256(bytes: bytes)!
        }
    }

    @Test("a batch matches one-by-one updates for key hashes that share 60 to 200 leading bits",
          arguments: [60, 63, 64, 65, 71, 130, 200])
    func batchWithLongSharedPrefixes(shared: Int) {
        var random = SimulationRandom(seed: UInt64(shared))
        let hashes = Self.hashes(sharing: shared, count: 12, seed: UInt64(shared))
        let value = { (tag: UInt8) in [tag].withUnsafeBytes { WireCrypto.digest($0) } }
        var base = StateTree()
        for hash in hashes.prefix(6) { base.set(keyHash: hash, valueHash: value(0)) }
        var changes: [(keyHash: Digest256, valueHash: Digest256?)] = []
        for _ in 0..<16 {
            let hash = hashes[Int(random.below(UInt64(hashes.count)))]
            changes.append((hash, random.below(3) == 0 ? nil : value(UInt8(random.below(3)))))
        }
        var oneByOne = base, batched = base
        for change in changes { oneByOne.set(keyHash: change.keyHash, valueHash: change.valueHash) }
        batched.set(allHashed: changes)
        #expect(batched.root == oneByOne.root && batched.count == oneByOne.count, "shared \(shared)")
    }

    /// Roots computed by an independent implementation of the formulas above (Python's hashlib.blake2b with
    /// digest_size 32, recursing on the key-hash bits): chains stored before the inline hashes must verify after.
    @Test("roots match pinned values from an independent implementation")
    func pinnedRoots() {
        var small = StateTree(), large = StateTree()
        for index in 0..<200 { small.set(Self.key(index), [UInt8(index & 0xFF)]) }
        for index in 0..<300 { large.set(Self.key(index), Array("value \(index)".utf8)) }
        #expect(Hex.encode(small.root) == "a50283bc083c4f174509d131d42166ac2329853a9ebf82711f9e6a2edf707a50")
        #expect(Hex.encode(large.root) == "01d83deb50180a432538d17302bbd78e72bdc3c6344342bdec9739cfa7fffeb0")
        // The same contents reached through changes and removals give the same root.
        for index in 0..<300 { large.set(Self.key(index), index.isMultiple(of: 3) ? nil : [1]) }
        for index in 0..<300 { large.set(Self.key(index), Array("value \(index)".utf8)) }
        #expect(Hex.encode(large.root) == "01d83deb50180a432538d17302bbd78e72bdc3c6344342bdec9739cfa7fffeb0")
        var batched = StateTree()
        batched.set(all: (0..<300).map { (key: Self.key($0), value: Optional(Array("value \($0)".utf8))) })
        #expect(Hex.encode(batched.root) == "01d83deb50180a432538d17302bbd78e72bdc3c6344342bdec9739cfa7fffeb0")
    }
}
