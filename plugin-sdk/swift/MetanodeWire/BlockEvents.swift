/// A finalized block's module events, as BPI publishes them for modules' indexes on bus topic "bpi.stream.events"
/// and replays them for the request "bpi.blocks.events" (plugin-sdk/docs/wire.md):
///
///     u64 height | u32 n | n × ([32] transaction id | string16 type | bytes32 data)
///
/// A replay answers with u32 blocks, then that many of these. (The JSON line on "bpi.stream.blocks" carries the same
/// events for people and tools; this binary form spares a module's index the JSON.)
public struct BlockEvents: Sendable, Hashable {
    public struct Event: Sendable, Hashable {
        public var transaction: [UInt8]
        public var type: String
        public var data: [UInt8]

        public init(transaction: [UInt8], type: String, data: [UInt8]) {
            self.transaction = transaction
            self.type = type
            self.data = data
        }
    }

    public static let eventsMax = 1 << 20
    public static let typeBytesMax = 64
    public static let dataBytesMax = 4096
    public static let blocksPerReplayMax = 1_024

    public var height: UInt64
    public var events: [Event]

    public init(height: UInt64, events: [Event]) {
        self.height = height
        self.events = events
    }

    public func encode(into writer: inout WireWriter) {
        writer.u64(height)
        writer.u32(UInt32(events.count))
        for event in events {
            writer.fixed(event.transaction, count: 32)
            writer.string16(event.type)
            writer.bytes32(event.data)
        }
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 12 + events.count * 96)
        encode(into: &writer)
        return writer.bytes
    }

    static func decode(from reader: inout WireReader) throws(WireError) -> BlockEvents {
        let height = try reader.u64("height")
        let count = try reader.count32("events", max: eventsMax, itemBytesMin: 32 + 2 + 4)
        var events: [Event] = []
        events.reserveCapacity(count)
        for _ in 0..<count {
            let transaction = try reader.fixed(32, "transaction")
            let type = try reader.string16("type", max: typeBytesMax)
            events.append(Event(transaction: transaction, type: type, data: try reader.bytes32("data", max: dataBytesMax)))
        }
        return BlockEvents(height: height, events: events)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> BlockEvents {
        var reader = WireReader(bytes, context: "block events")
        let block = try decode(from: &reader)
        try reader.finish()
        return block
    }

    /// A replay: u32 blocks, then each block's events.
    public static func encodeReplay(_ blocks: [BlockEvents]) -> [UInt8] {
        var writer = WireWriter()
        writer.u32(UInt32(blocks.count))
        for block in blocks { block.encode(into: &writer) }
        return writer.bytes
    }

    public static func decodeReplay(_ bytes: [UInt8]) throws(WireError) -> [BlockEvents] {
        var reader = WireReader(bytes, context: "block events replay")
        let count = try reader.count32("blocks", max: blocksPerReplayMax, itemBytesMin: 12)
        var blocks: [BlockEvents] = []
        for _ in 0..<count { blocks.append(try decode(from: &reader)) }
        try reader.finish()
        return blocks
    }
}
