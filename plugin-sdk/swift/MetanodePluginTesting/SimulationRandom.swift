/// The simulation's pseudo-random numbers: xoshiro256** seeded through SplitMix64, as in the reference code by
/// Blackman and Vigna. Fully determined by its seed, the same on every platform and toolchain — never
/// SystemRandomNumberGenerator, never the wall clock.
///
/// Decisions use `below(_:)` and `chance(perMille:)` (integers only). Conforming to RandomNumberGenerator lets tests
/// pass it to the standard library, but the standard library's algorithms (`shuffle`, `random(in:)`) may change how
/// they draw between Swift versions; use this type's own methods where a trace must stay the same.
public struct SimulationRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var splitmix = seed
        func next() -> UInt64 {
            splitmix &+= 0x9e37_79b9_7f4a_7c15
            var z = splitmix
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        s0 = next()
        s1 = next()
        s2 = next()
        s3 = next()
    }

    public mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    /// Uniform in 0..<bound (bound > 0), without modulo bias (Lemire's multiply-and-reject).
    public mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0, "SimulationRandom.below(0)")
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
        }
        return product.high
    }

    /// Uniform in 0...max.
    public mutating func upTo(_ max: UInt64) -> UInt64 {
        max == UInt64.max ? next() : below(max + 1)
    }

    /// True with probability perMille/1000. Draws nothing for 0 and 1000 or more, so a setting of 0 leaves the
    /// stream (and every later decision) exactly as if the fault did not exist.
    public mutating func chance(perMille: UInt32) -> Bool {
        if perMille == 0 { return false }
        if perMille >= 1000 { return true }
        return below(1000) < UInt64(perMille)
    }

    private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
