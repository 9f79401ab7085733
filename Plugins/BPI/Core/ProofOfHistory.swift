import MetanodeWire

/// Proof of History over a block's transactions: a sequential BLAKE2b-256 chain that starts from the parent's PoH
/// hash, runs `ticksPerEntry` plain hashes, then mixes in the next transaction id, and so on in block order. The
/// header carries the final count and hash; a validator recomputes both. The result fixes the order of the
/// transactions, and `count` sequential hashes put a lower bound on the time the proposer spent.
///
///     tick:  h = BLAKE2b-256(h)
///     mix:   h = BLAKE2b-256(h ‖ id)
public enum ProofOfHistory {
    public static let ticksPerEntryMax: UInt32 = 100_000

    /// The starting point of height 1.
    public static func genesisSeed(chainID: String) -> [UInt8] {
        WireCrypto.domainHash("metanode/bpi/poh/v1", Array(chainID.utf8))
    }

    public static func run(from seed: [UInt8], entries: [[UInt8]], ticksPerEntry: UInt32) -> (count: UInt64,
                                                                                                hash: [UInt8]) {
        precondition(ticksPerEntry <= ticksPerEntryMax, "PoH ticksPerEntry \(ticksPerEntry) > \(ticksPerEntryMax)")
        var count: UInt64 = 0
        // Inline digests, so a tick is a hash and nothing else (an array per hash was two allocations per tick on
        // every validator). A seed that is no 32-byte hash takes its first step as bytes.
        var entries = entries[...]
        var hash: Digest256
        if let digest = Digest256(bytes: seed) {
            hash = digest
        } else {
            guard let first = entries.popFirst() else { return (0, seed) }
            var bytes = seed
            for _ in 0..<ticksPerEntry { bytes = WireCrypto.blake2b256(bytes) }
            hash = Digest256(bytes: WireCrypto.blake2b256(bytes, first))!
            count = UInt64(ticksPerEntry) + 1
        }
        for entry in entries {
            for _ in 0..<ticksPerEntry { hash = hash.withUnsafeBytes { WireCrypto.digest($0) } }
            hash = hash.withUnsafeBytes { hash in entry.withUnsafeBytes { WireCrypto.digest(hash, $0) } }
            count += UInt64(ticksPerEntry) + 1
        }
        return (count, hash.bytes)
    }
}
