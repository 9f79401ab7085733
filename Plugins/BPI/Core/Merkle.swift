import MetanodeWire

/// A binary Merkle tree in the shape of RFC 6962 (Certificate Transparency) with BLAKE2b-256: leaves hash as
/// H(0x00 || leaf), inner nodes as H(0x01 || left || right), the split point is the largest power of two below the
/// count. The domain bytes keep a leaf from posing as an inner node.
public enum MerkleTree {
    public static let emptyRoot = WireCrypto.blake2b256([])

    public static func leafHash(_ leaf: [UInt8]) -> [UInt8] { WireCrypto.blake2b256([0], leaf) }

    static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { WireCrypto.blake2b256([1], left, right) }

    /// The root over `leaves`, each already a leaf hash.
    public static func root(leafHashes: [[UInt8]]) -> [UInt8] {
        guard !leafHashes.isEmpty else { return emptyRoot }
        return root(leafHashes[...])
    }

    private static let leafTag: [UInt8] = [0], nodeTag: [UInt8] = [1]

    /// `leafHash`, as an inline digest.
    public static func leafDigest(_ leaf: [UInt8]) -> Digest256 {
        leafTag.withUnsafeBytes { tag in leaf.withUnsafeBytes { WireCrypto.digest(tag, $0) } }
    }

    /// `root(leafHashes:)` over inline digests: a block's transaction and result roots, with no array per hash.
    public static func root(leafDigests: [Digest256]) -> [UInt8] {
        guard !leafDigests.isEmpty else { return emptyRoot }
        return root(leafDigests[...]).bytes
    }

    private static func root(_ digests: ArraySlice<Digest256>) -> Digest256 {
        if digests.count == 1 { return digests.first! }
        let split = digests.startIndex + largestPowerOfTwo(below: digests.count)
        let left = root(digests[..<split]), right = root(digests[split...])
        return nodeTag.withUnsafeBytes { tag in
            left.withUnsafeBytes { left in right.withUnsafeBytes { WireCrypto.digest(tag, left, $0) } }
        }
    }

    private static func root(_ hashes: ArraySlice<[UInt8]>) -> [UInt8] {
        if hashes.count == 1 { return hashes.first! }
        let split = hashes.startIndex + largestPowerOfTwo(below: hashes.count)
        return nodeHash(root(hashes[..<split]), root(hashes[split...]))
    }

    /// The audit path for leaf `index`: sibling hashes from the bottom up.
    public static func proof(leafHashes: [[UInt8]], index: Int) -> [[UInt8]] {
        precondition(leafHashes.indices.contains(index), "no leaf \(index) among \(leafHashes.count)")
        var path: [[UInt8]] = []
        var hashes = leafHashes[...]
        var index = index
        var stack: [[UInt8]] = []
        while hashes.count > 1 {
            let split = largestPowerOfTwo(below: hashes.count)
            let left = hashes.prefix(split), right = hashes.dropFirst(split)
            if index < split {
                stack.append(root(right))
                hashes = left
            } else {
                stack.append(root(left))
                hashes = right
                index -= split
            }
        }
        while let sibling = stack.popLast() { path.append(sibling) }
        return path
    }

    /// Whether `leafHash` is leaf `index` of `count` leaves under `root`, given its audit path (RFC 9162 2.1.3.2).
    public static func verify(leafHash: [UInt8], index: Int, count: Int, path: [[UInt8]], root: [UInt8]) -> Bool {
        guard index >= 0, index < count else { return false }
        var fn = index, sn = count - 1
        var hash = leafHash
        for sibling in path {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                hash = nodeHash(sibling, hash)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                hash = nodeHash(hash, sibling)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && hash == root
    }

    static func largestPowerOfTwo(below count: Int) -> Int {
        precondition(count > 1)
        var split = 1
        while split << 1 < count { split <<= 1 }
        return split
    }
}
