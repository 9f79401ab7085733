import MetanodeWire

/// A change of the validator set, made by a "bpi/validators" transaction and effective from the height after the
/// block that carries it. Its payload names the new set and carries a quorum of the current validators' approvals:
///
///     u16 n | n × [32] key | u16 m | m × (u16 validator | [64] approval)
///
/// An approval is the validator's node-key signature under BPI's scope over
/// `"metanode/bpi/validator-set/v1" 0x00 chainID 0x00 currentSetHash newSet.encoded`. Naming the current set's hash
/// means an approval cannot be replayed once the set has changed.
public struct ValidatorSetChange: Sendable, Hashable {
    public static let kind = "bpi/validators"
    public static let domain = "metanode/bpi/validator-set/v1"
    /// Where the ledger state keeps the set in force for the next height.
    public static let stateKey = Array("bpi/validators".utf8)

    public struct Approval: Sendable, Hashable {
        public var validator: UInt16
        public var signature: [UInt8]

        public init(validator: UInt16, signature: [UInt8]) {
            self.validator = validator
            self.signature = signature
        }
    }

    public var newSet: ValidatorSet
    public var approvals: [Approval]

    public init(newSet: ValidatorSet, approvals: [Approval]) {
        self.newSet = newSet
        self.approvals = approvals
    }

    /// What each current validator signs (through its node key's "bpi" scope).
    public static func approvalMessage(chainID: String, current: ValidatorSet, new: ValidatorSet) -> [UInt8] {
        Array(domain.utf8) + [0] + Array(chainID.utf8) + [0] + current.hash + new.encoded
    }

    public var encoded: [UInt8] {
        var writer = WireWriter()
        writer.raw(newSet.encoded)
        writer.u16(UInt16(approvals.count))
        for approval in approvals {
            writer.u16(approval.validator)
            writer.fixed(approval.signature, count: 64)
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ValidatorSetChange {
        var reader = WireReader(bytes, context: "validator set change")
        let newSet = try ValidatorSet.decode(from: &reader)
        let count = try reader.count16("approvals", max: ValidatorSet.countMax, itemBytesMin: 66)
        var approvals: [Approval] = []
        for index in 0..<count {
            approvals.append(Approval(validator: try reader.u16("approvals[\(index)].validator"),
                                      signature: try reader.fixed(64, "approvals[\(index)].signature")))
        }
        try reader.finish()
        return ValidatorSetChange(newSet: newSet, approvals: approvals)
    }

    /// nil if a quorum of `current` approved exactly this change on `chainID`; otherwise why not.
    public func problem(chainID: String, current: ValidatorSet, plugin: String) -> String? {
        let message = Self.approvalMessage(chainID: chainID, current: current, new: newSet)
        var approvers = Set<UInt16>()
        for approval in approvals {
            guard let key = current.key(Int(approval.validator)) else {
                return "approval from validator \(approval.validator), but the set has \(current.count)"
            }
            guard approvers.insert(approval.validator).inserted else {
                return "validator \(approval.validator) approved twice"
            }
            guard NodeSignature.verify(signature: approval.signature, nodeKey: key, plugin: plugin, message: message)
            else { return "validator \(approval.validator)'s approval does not verify" }
        }
        guard approvers.count >= current.quorum else {
            return "\(approvers.count) approval(s); a quorum of the \(current.count) current validators is "
                + "\(current.quorum)"
        }
        return nil
    }
}

extension ValidatorSet {
    public static func decode(from reader: inout WireReader) throws(WireError) -> ValidatorSet {
        let count = try reader.count16("validators", max: countMax, itemBytesMin: 32)
        var keys: [[UInt8]] = []
        for index in 0..<count { keys.append(try reader.fixed(32, "validators[\(index)]")) }
        return try ValidatorSet(keys: keys)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ValidatorSet {
        var reader = WireReader(bytes, context: "validator set")
        let set = try decode(from: &reader)
        try reader.finish()
        return set
    }
}
