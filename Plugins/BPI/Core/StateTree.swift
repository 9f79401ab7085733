import MetanodeWire
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The ledger state's authenticated map: a binary sparse Merkle tree over BLAKE2b-256 key hashes, in the compact form
/// Diem's and Aptos's trees use — a subtree holding one entry is that entry's leaf, so paths are about log2(n) deep,
/// not 256. It proves that a key has a value (inclusion) or has none (non-inclusion) against a root that block headers
/// carry as `stateRoot`.
///
///     leaf   H(0x00 ‖ keyHash ‖ valueHash)      keyHash = H("metanode/bpi/state-key/v1" 0 key), valueHash = H(value)
///     inner  H(0x01 ‖ left ‖ right)             bit d of keyHash (most significant first) picks the side at depth d
///     empty  32 zero bytes
///
/// A value: updates share structure with earlier versions, so a proposer can try a block on a copy. Hashes are
/// computed lazily, once per changed node, when `root` is read.
public struct StateTree: Sendable {
    public static let emptyHash = [UInt8](repeating: 0, count: 32)

    /// Nodes hold their hashes inline (`Digest256`): a block rewrites thousands of nodes, and an array per hash was an
    /// allocation and a reference count each. A leaf's hash is made with the leaf, so rehashing a changed parent
    /// does not hash its unchanged leaves again.
    indirect enum Node: Sendable {
        case empty
        case leaf(keyHash: Digest256, valueHash: Digest256, hash: Digest256)
        case inner(left: Node, right: Node, hash: Digest256?)

        var isEmpty: Bool { if case .empty = self { true } else { false } }

        /// The node's hash where it is known without hashing (nil: an inner node not hashed yet).
        var cachedHash: Digest256? {
            switch self {
            case .empty: .zero
            case .leaf(_, _, let hash): hash
            case .inner(_, _, let hash): hash
            }
        }

        static func leaf(keyHash: Digest256, valueHash: Digest256) -> Node {
            .leaf(keyHash: keyHash, valueHash: valueHash, hash: StateTree.leafDigest(keyHash, valueHash))
        }
    }

    private var top: Node = .empty
    public private(set) var count = 0

    public init() {}

    public static func keyHash(_ key: [UInt8]) -> [UInt8] { keyDigest(key).bytes }

    public static func leafHash(keyHash: [UInt8], valueHash: [UInt8]) -> [UInt8] {
        WireCrypto.blake2b256([0], keyHash, valueHash)
    }

    static func innerHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { WireCrypto.blake2b256([1], left, right) }

    static func bit(_ hash: [UInt8], _ depth: Int) -> Int { Int(hash[depth >> 3] >> (7 - UInt8(depth & 7))) & 1 }

    // The same hashes, inline. `keyDigest(key).bytes == keyHash(key)` and so on: a test holds them together.

    private static let leafTag: [UInt8] = [0]
    private static let innerTag: [UInt8] = [1]

    static func keyDigest(_ key: [UInt8]) -> Digest256 { WireCrypto.domainDigest("metanode/bpi/state-key/v1", key) }

    static func valueDigest(_ value: [UInt8]) -> Digest256 { value.withUnsafeBytes { WireCrypto.digest($0) } }

    static func leafDigest(_ keyHash: Digest256, _ valueHash: Digest256) -> Digest256 {
        leafTag.withUnsafeBytes { tag in
            keyHash.withUnsafeBytes { key in valueHash.withUnsafeBytes { WireCrypto.digest(tag, key, $0) } }
        }
    }

    static func innerDigest(_ left: Digest256, _ right: Digest256) -> Digest256 {
        innerTag.withUnsafeBytes { tag in
            left.withUnsafeBytes { left in right.withUnsafeBytes { WireCrypto.digest(tag, left, $0) } }
        }
    }

    static func bit(_ hash: Digest256, _ depth: Int) -> Int { Int(hash.byte(depth >> 3) >> (7 - UInt8(depth & 7))) & 1 }

    /// Sets `key` to `value`, or removes it when `value` is nil.
    public mutating func set(_ key: [UInt8], _ value: [UInt8]?) {
        set(keyHash: Self.keyDigest(key), valueHash: value.map { Self.valueDigest($0) })
    }

    /// `set` in the tree's own terms, the key's hash and the value's: tests make keys whose hashes share long
    /// prefixes with it, which no search for real keys would find.
    mutating func set(keyHash: Digest256, valueHash: Digest256?) {
        var changedCount = 0
        var unchanged = false
        top = Self.update(top, keyHash: keyHash, valueHash: valueHash, depth: 0, countChange: &changedCount,
                          unchanged: &unchanged)
        count += changedCount
    }

    public var root: [UInt8] {
        mutating get {
            let (node, hash) = Self.hashed(top)
            top = node
            return hash.bytes
        }
    }

    /// A key's change in a batch: its key hash, its value's hash (nil removes it), and its place in the batch.
    private struct Change {
        let keyHash: Digest256
        /// The key hash's first 64 bits, big-endian: sorting and splitting compare these, not the hash's bytes.
        let prefix: UInt64
        let valueHash: Digest256?
        let order: Int

        init(keyHash: Digest256, valueHash: Digest256?, order: Int) {
            self.keyHash = keyHash
            prefix = keyHash.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).bigEndian }
            self.valueHash = valueHash
            self.order = order
        }

        /// Bit `depth` of the key hash.
        func bit(_ depth: Int) -> Int {
            depth < 64 ? Int(truncatingIfNeeded: prefix >> (63 - UInt64(depth))) & 1 : StateTree.bit(keyHash, depth)
        }
    }

    /// Sets many keys (a nil value removes the key): the same tree as `set` on each in turn, a key given twice taking
    /// its last value. The changes go down the tree together, sorted by key hash, so each node on their paths is
    /// made once, where setting them one by one remakes the top of the tree for every key. A block changes
    /// thousands of keys of a tree a few levels deeper than that, so most of its nodes are near the top.
    public mutating func set(all changes: some Sequence<(key: [UInt8], value: [UInt8]?)>) {
        set(allHashed: changes.lazy.map { (Self.keyDigest($0.key), $0.value.map(Self.valueDigest)) })
    }

    /// `set(all:)` in the tree's own terms (see `set(keyHash:valueHash:)`).
    mutating func set(allHashed changes: some Sequence<(keyHash: Digest256, valueHash: Digest256?)>) {
        var sorted: [Change] = []
        sorted.reserveCapacity(changes.underestimatedCount)
        for (order, change) in changes.enumerated() {
            sorted.append(Change(keyHash: change.keyHash, valueHash: change.valueHash, order: order))
        }
        sorted.sort { a, b in
            if a.prefix != b.prefix { return a.prefix < b.prefix }
            let order = Self.compare(a.keyHash, b.keyHash)
            return order != 0 ? order < 0 : a.order < b.order
        }
        // A key given twice: its last change stands.
        var unique: [Change] = []
        unique.reserveCapacity(sorted.count)
        for change in sorted {
            if let last = unique.last, last.prefix == change.prefix, last.keyHash == change.keyHash {
                unique[unique.count - 1] = change
            } else {
                unique.append(change)
            }
        }
        var countChange = 0
        top = Self.update(top, unique[...], depth: 0, countChange: &countChange).node
        count += countChange
    }

    /// Key hashes in bit order (their bytes in order): -1, 0 or 1.
    private static func compare(_ a: Digest256, _ b: Digest256) -> Int {
        a.withUnsafeBytes { a in b.withUnsafeBytes { b in Int(memcmp(a.baseAddress!, b.baseAddress!, 32).signum()) } }
    }

    /// `node` with `changes` (sorted by key hash, one per key, all on `node`'s path) made; `changed` is false when
    /// they change nothing, and then `node` itself comes back with its cached hashes.
    private static func update(_ node: Node, _ changes: ArraySlice<Change>, depth: Int, countChange: inout Int)
        -> (node: Node, changed: Bool) {
        guard let first = changes.first else { return (node, false) }
        if changes.count == 1 {
            var one = 0
            var unchanged = false
            let updated = update(node, keyHash: first.keyHash, valueHash: first.valueHash, depth: depth,
                                 countChange: &one, unchanged: &unchanged, hashing: true)
            countChange += one
            return (updated, !unchanged)
        }
        // Sorted by key hash, the changes for the left side (bit 0 at this depth) come first.
        let split = changes.firstIndex { $0.bit(depth) == 1 } ?? changes.endIndex
        var left: Node = .empty, right: Node = .empty
        switch node {
        case .inner(let l, let r, _):
            left = l
            right = r
        case .leaf(let keyHash, _, _):
            // Two or more changes meet a leaf: it goes down the side its key takes, as `split` would put it.
            if bit(keyHash, depth) == 0 { left = node } else { right = node }
        case .empty:
            break
        }
        let (newLeft, leftChanged) = update(left, changes[..<split], depth: depth + 1, countChange: &countChange)
        let (newRight, rightChanged) = update(right, changes[split...], depth: depth + 1, countChange: &countChange)
        guard leftChanged || rightChanged else { return (node, false) }
        return (collapse(newLeft, newRight, hashing: true), true)
    }

    /// `node` with the key set (or removed); `unchanged` is set when that changes nothing (the key already had the
    /// value, or a removed key was absent), and then `node` itself comes back, its cached hashes and its parents'
    /// kept.
    /// With `hashing`, the inner nodes it makes carry their hashes already (see `inner`).
    private static func update(_ node: Node, keyHash: Digest256, valueHash: Digest256?, depth: Int,
                               countChange: inout Int, unchanged: inout Bool, hashing: Bool = false) -> Node {
        switch node {
        case .empty:
            guard let valueHash else {
                unchanged = true
                return .empty
            }
            countChange = 1
            return .leaf(keyHash: keyHash, valueHash: valueHash)
        case .leaf(let existing, let existingValue, _):
            if existing == keyHash {
                guard let valueHash else {
                    countChange = -1
                    return .empty
                }
                if valueHash == existingValue {
                    unchanged = true
                    return node
                }
                return .leaf(keyHash: keyHash, valueHash: valueHash)
            }
            guard let valueHash else {
                unchanged = true
                return node
            }
            countChange = 1
            return split(node, existing, .leaf(keyHash: keyHash, valueHash: valueHash), keyHash, depth: depth,
                         hashing: hashing)
        case .inner(let left, let right, _):
            var left = left, right = right
            if bit(keyHash, depth) == 0 {
                left = update(left, keyHash: keyHash, valueHash: valueHash, depth: depth + 1, countChange: &countChange,
                              unchanged: &unchanged, hashing: hashing)
            } else {
                right = update(right, keyHash: keyHash, valueHash: valueHash, depth: depth + 1,
                               countChange: &countChange, unchanged: &unchanged, hashing: hashing)
            }
            return unchanged ? node : collapse(left, right, hashing: hashing)
        }
    }

    /// Two leaves that met at `depth`: inner nodes down to the first bit where their key hashes differ.
    private static func split(_ a: Node, _ aKey: Digest256, _ b: Node, _ bKey: Digest256, depth: Int,
                              hashing: Bool) -> Node {
        let aBit = bit(aKey, depth), bBit = bit(bKey, depth)
        if aBit != bBit { return aBit == 0 ? inner(a, b, hashing: hashing) : inner(b, a, hashing: hashing) }
        let below = split(a, aKey, b, bKey, depth: depth + 1, hashing: hashing)
        return aBit == 0 ? inner(below, .empty, hashing: hashing) : inner(.empty, below, hashing: hashing)
    }

    /// An inner node; with `hashing` it carries its hash from the start when its children have theirs. A batch
    /// (`set(all:)`) makes each node on its paths once and the root is read right after, so hashing as it goes
    /// saves making every such node a second time just to store its hash; single sets stay lazy, since a run of
    /// them would otherwise hash the top of the tree again for every key.
    private static func inner(_ left: Node, _ right: Node, hashing: Bool) -> Node {
        guard hashing, let leftHash = left.cachedHash, let rightHash = right.cachedHash else {
            return .inner(left: left, right: right, hash: nil)
        }
        return .inner(left: left, right: right, hash: innerDigest(leftHash, rightHash))
    }

    /// Keeps the tree compact after a removal: an inner node left with one leaf and an empty side becomes that leaf.
    private static func collapse(_ left: Node, _ right: Node, hashing: Bool) -> Node {
        switch (left, right) {
        case (.empty, .empty): return .empty
        case (.leaf, .empty): return left
        case (.empty, .leaf): return right
        default: return inner(left, right, hashing: hashing)
        }
    }

    private static func hashed(_ node: Node) -> (Node, Digest256) {
        switch node {
        case .empty: return (node, .zero)
        case .leaf(_, _, let hash): return (node, hash)
        case .inner(_, _, let hash?): return (node, hash)
        case .inner(let left, let right, nil):
            let (leftNode, leftHash) = hashed(left)
            let (rightNode, rightHash) = hashed(right)
            let hash = innerDigest(leftHash, rightHash)
            return (.inner(left: leftNode, right: rightNode, hash: hash), hash)
        }
    }

    /// Inner nodes whose hash is not made yet (tests: a batch over a hashed tree leaves none).
    var unhashedInnerNodes: Int { Self.unhashed(top) }

    private static func unhashed(_ node: Node) -> Int {
        guard case .inner(let left, let right, let hash) = node else { return 0 }
        return (hash == nil ? 1 : 0) + unhashed(left) + unhashed(right)
    }

    /// The proof for `key`: the siblings on its path from the root down, and the leaf where the path ends (nil if it
    /// ends in an empty subtree). The leaf is `key`'s own for an inclusion proof, another key's for non-inclusion.
    public mutating func proof(_ key: [UInt8]) -> StateProof {
        _ = root
        let keyHash = Self.keyDigest(key)
        var siblings: [[UInt8]] = []
        var node = top
        var depth = 0
        while true {
            switch node {
            case .empty:
                return StateProof(siblings: siblings, leaf: nil)
            case .leaf(let leafKey, let valueHash, _):
                return StateProof(siblings: siblings, leaf: .init(keyHash: leafKey.bytes, valueHash: valueHash.bytes))
            case .inner(let left, let right, _):
                if Self.bit(keyHash, depth) == 0 {
                    siblings.append(Self.hashed(right).1.bytes)
                    node = left
                } else {
                    siblings.append(Self.hashed(left).1.bytes)
                    node = right
                }
                depth += 1
            }
        }
    }
}

/// A state proof (see `StateTree`). Wire: `u16 n | n × [32] sibling (root first) | bool hasLeaf | [32] keyHash |
/// [32] valueHash`.
public struct StateProof: Sendable, Hashable {
    public struct Leaf: Sendable, Hashable {
        public var keyHash: [UInt8]
        public var valueHash: [UInt8]

        public init(keyHash: [UInt8], valueHash: [UInt8]) {
            self.keyHash = keyHash
            self.valueHash = valueHash
        }
    }

    public var siblings: [[UInt8]]
    public var leaf: Leaf?

    public init(siblings: [[UInt8]], leaf: Leaf?) {
        self.siblings = siblings
        self.leaf = leaf
    }

    /// Whether this proves that `key` has `value` (or, with `value` nil, that it has none) under `root`.
    public func verify(key: [UInt8], value: [UInt8]?, root: [UInt8]) -> Bool {
        guard siblings.count <= 256 else { return false }
        let keyHash = StateTree.keyHash(key)
        var hash: [UInt8]
        if let value {
            guard let leaf, leaf.keyHash == keyHash, leaf.valueHash == WireCrypto.blake2b256(value) else { return false }
            hash = StateTree.leafHash(keyHash: keyHash, valueHash: leaf.valueHash)
        } else if let leaf {
            // Another key's leaf where this key's path ends: it must share the path so far, and differ.
            guard leaf.keyHash != keyHash,
                  (0..<siblings.count).allSatisfy({ StateTree.bit(leaf.keyHash, $0) == StateTree.bit(keyHash, $0) })
            else { return false }
            hash = StateTree.leafHash(keyHash: leaf.keyHash, valueHash: leaf.valueHash)
        } else {
            hash = StateTree.emptyHash
        }
        for depth in stride(from: siblings.count - 1, through: 0, by: -1) {
            hash = StateTree.bit(keyHash, depth) == 0 ? StateTree.innerHash(hash, siblings[depth])
                : StateTree.innerHash(siblings[depth], hash)
        }
        return hash == root
    }

    public var encoded: [UInt8] {
        var writer = WireWriter()
        writer.u16(UInt16(siblings.count))
        for sibling in siblings { writer.fixed(sibling, count: 32) }
        writer.bool(leaf != nil)
        if let leaf {
            writer.fixed(leaf.keyHash, count: 32)
            writer.fixed(leaf.valueHash, count: 32)
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> StateProof {
        var reader = WireReader(bytes, context: "state proof")
        let count = try reader.count16("siblings", max: 256, itemBytesMin: 32)
        var siblings: [[UInt8]] = []
        for index in 0..<count { siblings.append(try reader.fixed(32, "siblings[\(index)]")) }
        let leaf: Leaf? = try reader.bool("hasLeaf")
            ? Leaf(keyHash: try reader.fixed(32, "leaf.keyHash"), valueHash: try reader.fixed(32, "leaf.valueHash"))
            : nil
        try reader.finish()
        return StateProof(siblings: siblings, leaf: leaf)
    }
}

/// State key hashes, remembered: each block changes mostly the keys of the accounts the blocks before it changed (a
/// sender's nonce, its balance, the fee pool), and each key hash is a BLAKE2b of the key. A pure function of the key,
/// so the memo cannot change a root. A table that holds `entriesMax` keys empties before it takes another.
public final class StateKeyDigests: Sendable {
    public static let defaultEntriesMax = 1 << 18
    /// The most key hashes each table keeps.
    public let entriesMax: Int

    private struct Tables {
        /// By full state key.
        var byKey: [BytesKey: Digest256] = [:]
        /// A sender's nonce key (`BlockRules.nonceKey`) by the sender: no key made to look it up.
        var bySender: [BytesKey: Digest256] = [:]
    }

    private let tables = Mutex(Tables())

    public init(entriesMax: Int = StateKeyDigests.defaultEntriesMax) {
        precondition(entriesMax > 0, "entriesMax must be positive")
        self.entriesMax = entriesMax
    }

    /// The key hashes of the block's changed keys: each sender's nonce key, then each written key, in the order given.
    func keyHashes(nonceKeysOf senders: some Collection<BytesKey>, keys: some Collection<BytesKey>) -> [Digest256] {
        var hashes: [Digest256] = []
        hashes.reserveCapacity(senders.count + keys.count)
        tables.withLock { tables in
            for sender in senders {
                if let known = tables.bySender[sender] {
                    hashes.append(known)
                } else {
                    let hash = StateTree.keyDigest(BlockRules.nonceKey(sender.bytes))
                    if tables.bySender.count >= entriesMax { tables.bySender.removeAll(keepingCapacity: true) }
                    tables.bySender[sender] = hash
                    hashes.append(hash)
                }
            }
            for key in keys {
                if let known = tables.byKey[key] {
                    hashes.append(known)
                } else {
                    let hash = StateTree.keyDigest(key.bytes)
                    if tables.byKey.count >= entriesMax { tables.byKey.removeAll(keepingCapacity: true) }
                    tables.byKey[key] = hash
                    hashes.append(hash)
                }
            }
        }
        return hashes
    }

    var count: Int { tables.withLock { $0.byKey.count + $0.bySender.count } }
}
