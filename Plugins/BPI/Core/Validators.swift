import MetanodeWire

/// The validators of one height, in genesis order. Their index is how consensus messages name their signer.
public struct ValidatorSet: Sendable, Hashable {
    public static let countMax = 256
    public let keys: [[UInt8]]
    private let indexByKey: [[UInt8]: Int]

    public init(keys: [[UInt8]]) throws(WireError) {
        guard !keys.isEmpty, keys.count <= Self.countMax else {
            throw WireError(.invalidValue, "a validator set has 1-\(Self.countMax) validators, not \(keys.count)")
        }
        var indexByKey: [[UInt8]: Int] = [:]
        for (index, key) in keys.enumerated() {
            guard key.count == WireCrypto.publicKeyBytes else {
                throw WireError(.invalidValue, "validator \(index)'s key is \(key.count) bytes; an Ed25519 key is 32")
            }
            if let first = indexByKey[key] {
                throw WireError(.invalidValue, "validator \(index) repeats the key of validator \(first)")
            }
            indexByKey[key] = index
        }
        self.keys = keys
        self.indexByKey = indexByKey
    }

    public var count: Int { keys.count }

    /// Byzantine validators tolerated: f = (n-1)/3.
    public var faultsTolerated: Int { (count - 1) / 3 }

    /// QBFT's quorum, (2n-1)/3 + 1 = ceil(2n/3): any two quorums share an honest validator when at most f are faulty.
    public var quorum: Int { (2 * count - 1) / 3 + 1 }

    /// f+1: at least one of that many is honest.
    public var weakQuorum: Int { faultsTolerated + 1 }

    public func index(of key: [UInt8]) -> Int? { indexByKey[key] }

    public func key(_ index: Int) -> [UInt8]? { keys.indices.contains(index) ? keys[index] : nil }

    /// The proposer of (height, round): round robin by height, moved on by one each round.
    public func proposer(height: UInt64, round: UInt32) -> Int {
        Int((height % UInt64(count) + UInt64(round) % UInt64(count)) % UInt64(count))
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 2 + 32 * count)
        writer.u16(UInt16(count))
        for key in keys { writer.fixed(key, count: 32) }
        return writer.bytes
    }

    /// What block headers carry as `validatorSetHash`.
    public var hash: [UInt8] { WireCrypto.domainHash("metanode/bpi/validators/v1", encoded) }
}
