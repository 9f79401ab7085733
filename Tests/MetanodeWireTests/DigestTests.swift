import MetanodeWire
import Testing

@Suite("Inline digests and byte comparison")
struct DigestTests {
    @Test("a digest is the BLAKE2b-256 of its parts in order, its bytes as the array form gives them")
    func digestMatchesArrayHash() {
        let a = Array("state".utf8), b: [UInt8] = [0], c = [UInt8](repeating: 0xAB, count: 100)
        let three = a.withUnsafeBytes { a in b.withUnsafeBytes { b in c.withUnsafeBytes { WireCrypto.digest(a, b, $0) } } }
        #expect(three.bytes == WireCrypto.blake2b256(a, b, c))
        let one = c.withUnsafeBytes { WireCrypto.digest($0) }
        #expect(one.bytes == WireCrypto.blake2b256(c))
        let empty = [UInt8]().withUnsafeBytes { WireCrypto.digest($0) }
        #expect(empty.bytes == WireCrypto.blake2b256([]))
        #expect(MemoryLayout<Digest256>.size == WireCrypto.hashBytes)
        #expect(Digest256(bytes: three.bytes) == three)
        #expect((0..<32).map { three.byte($0) } == three.bytes)
        #expect(Digest256(bytes: [1, 2, 3]) == nil && Digest256(bytes: three.bytes + [0]) == nil)
        #expect(Digest256.zero.bytes == [UInt8](repeating: 0, count: 32) && three != one)
    }

    @Test("hasSameBytes agrees with ==, at every length and at each differing position")
    func sameBytes() {
        for length in [0, 1, 7, 8, 31, 32, 33, 190] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            #expect(bytes.hasSameBytes(as: bytes) && bytes.hasSameBytes(as: Array(bytes)))
            #expect(!bytes.hasSameBytes(as: bytes + [0]) && !(bytes + [0]).hasSameBytes(as: bytes))
            for position in [0, length / 2, length - 1] where length > 0 {
                var other = bytes
                other[position] ^= 0x80
                #expect(!bytes.hasSameBytes(as: other), "length \(length), byte \(position)")
            }
        }
        #expect(BytesKey([1, 2, 3]) == BytesKey([1, 2, 3]) && BytesKey([1, 2, 3]) != BytesKey([1, 2, 4]))
    }

    @Test("byte keys work as dictionary keys: equal bytes find their entry, a table's seed changes the hash")
    func bytesKeyInDictionaries() {
        var table: [BytesKey: Int] = [:]
        // 5,000 distinct keys of 2 to 41 bytes, some of them prefixes of others.
        let keys: [[UInt8]] = (0..<5_000).map { (index: Int) -> [UInt8] in
            let tail: [UInt8] = (0..<(index % 40)).map { UInt8(truncatingIfNeeded: $0 * 7) }
            return [UInt8(index >> 8), UInt8(index & 0xFF)] + tail
        }
        for (index, key) in keys.enumerated() { table[BytesKey(key)] = index }
        #expect(table.count == 5_000)
        for key in keys { #expect(table[BytesKey(Array(key))].map { keys[$0] == key } == true) }
        #expect(table[BytesKey([0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA, 0xF9])] == nil)
        let key = BytesKey([1, 2, 3])
        #expect(key._rawHashValue(seed: 1) == BytesKey([1, 2, 3])._rawHashValue(seed: 1))
        #expect(key._rawHashValue(seed: 1) != key._rawHashValue(seed: 2))
        // Lookups spread over the table: 5,000 random keys fill about 3,740 of 8,192 buckets; well under that is a
        // hash whose low bits clump.
        let buckets = Set(table.keys.map { $0._rawHashValue(seed: 0) & 8_191 })
        #expect(buckets.count > 3_400, "\(buckets.count) buckets")
    }

    @Test("inline and spilled keys: every way of making a key of the same bytes gives the same key, at 0 to 40 bytes")
    func bytesKeyStorage() {
        for length in 0...40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let key = BytesKey(bytes)
            #expect(key.count == length && key.bytes == bytes, "length \(length)")
            #expect(key.withUnsafeBytes { Array($0) } == bytes, "length \(length)")
            #expect(bytes.withUnsafeBytes { BytesKey($0) } == key, "length \(length)")
            for split in 0...length {
                let joined = bytes[split...].withUnsafeBytes { BytesKey(Array(bytes[..<split]), $0) }
                #expect(joined == key && joined.hashValue == key.hashValue, "length \(length), split \(split)")
            }
            // A trailing zero byte makes another key, inline or not: the length is part of it.
            #expect(BytesKey(bytes + [0]) != key, "length \(length)")
            if length > 0 {
                var changed = bytes
                changed[length - 1] ^= 0x80
                #expect(BytesKey(changed) != key, "length \(length)")
            }
        }
        #expect(BytesKey.inlineBytesMax == 32)
        let keys = [[], [0], [0, 0], [1], [1, 0], Array(repeating: 1, count: 32), Array(repeating: 1, count: 33), [2]]
            .map { BytesKey($0) }
        for (a, b) in zip(keys, keys.dropFirst()) {
            #expect(a.lexicographicallyPrecedes(b) && !b.lexicographicallyPrecedes(a), "\(a.bytes) < \(b.bytes)")
        }
        #expect(!keys[3].lexicographicallyPrecedes(keys[3]))
    }
}
