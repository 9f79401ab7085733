import MetanodeWire

extension QBFTRecord {
    /// `u8 1 | consensus message` for a sent message, `u8 2 | u32 round | block | u16 n × signed prepare` for a
    /// prepared block.
    public var encoded: [UInt8] {
        switch self {
        case .sent(let envelope):
            var writer = WireWriter(capacity: 1 + envelope.encodedCapacity)
            writer.u8(1)
            envelope.encode(into: &writer)
            return writer.bytes
        case .prepared(let round, let block, let prepares):
            var writer = WireWriter(capacity: 8 + block.encodedCapacity + 1_024 * prepares.count)
            writer.u8(2)
            writer.u32(round)
            block.encode(into: &writer)
            writer.u16(UInt16(prepares.count))
            for prepare in prepares { prepare.encode(into: &writer) }
            return writer.bytes
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> QBFTRecord {
        guard let tag = bytes.first else { throw WireError(.truncated, "a consensus WAL record is empty") }
        switch tag {
        case 1:
            return .sent(try ConsensusEnvelope.decode(Array(bytes.dropFirst())))
        case 2:
            var reader = WireReader(Array(bytes.dropFirst()), context: "consensus WAL record")
            let round = try reader.u32("round")
            let block = try Block.decode(from: &reader)
            let count = try reader.count16("prepares", max: ValidatorSet.countMax, itemBytesMin: 111)
            var prepares: [SignedMessage] = []
            for _ in 0..<count { prepares.append(try SignedMessage.decode(from: &reader)) }
            try reader.finish()
            return .prepared(round: round, block: block, prepares: prepares)
        default:
            throw WireError(.invalidValue, "consensus WAL record type \(tag) is unknown (1 sent, 2 prepared)")
        }
    }
}
