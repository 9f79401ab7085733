/// A finalized block's module events, or a part of them, as BPI publishes them for modules' indexes on bus topic
/// "bpi.stream.events" and replays them for the request "bpi.blocks.events" (plugin-sdk/docs/wire.md):
///
///     u64 height | u32 total events in the block | u32 index of this part's first event | u32 n
///     | n × ([32] transaction id | string16 type | bytes32 data)
///
/// A block's events can outgrow one bus message (4 MiB), so they travel in parts of at most `partBytesMax`, in
/// order; a part is the last when `firstEvent + n == totalEvents`. A replay answers with u32 parts, then that many
/// of these. (The JSON line on "bpi.stream.blocks" carries the same events for people and tools.)
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

        var encodedBytes: Int { 32 + 2 + type.utf8.count + 4 + data.count }
    }

    public static let eventsPerBlockMax = 1 << 24
    public static let typeBytesMax = 64
    public static let dataBytesMax = 4096
    public static let partsPerReplayMax = 1_024
    /// A part's size bound: well under the bus's 4 MiB, so several fit in one replay.
    public static let partBytesMax = 1 << 20

    public var height: UInt64
    public var totalEvents: UInt32
    public var firstEvent: UInt32
    public var events: [Event]

    public init(height: UInt64, totalEvents: UInt32, firstEvent: UInt32, events: [Event]) {
        self.height = height
        self.totalEvents = totalEvents
        self.firstEvent = firstEvent
        self.events = events
    }

    /// A whole block's events in one value (a part that is also the last).
    public init(height: UInt64, events: [Event]) {
        self.init(height: height, totalEvents: UInt32(events.count), firstEvent: 0, events: events)
    }

    public var isLastPart: Bool { UInt64(firstEvent) + UInt64(events.count) == UInt64(totalEvents) }

    /// A block's events from `start` on, cut into parts of at most `partBytesMax` (each part at least one event).
    public static func parts(height: UInt64, events: [Event], from start: Int = 0,
                             partBytesMax: Int = partBytesMax) -> [BlockEvents] {
        precondition(start >= 0 && start <= events.count && partBytesMax > 0)
        let total = UInt32(events.count)
        guard start < events.count else {
            return start == 0 ? [BlockEvents(height: height, events: [])] : []
        }
        var parts: [BlockEvents] = []
        var first = start, bytes = 0
        for index in start..<events.count {
            let size = events[index].encodedBytes
            if index > first && bytes + size > partBytesMax {
                parts.append(BlockEvents(height: height, totalEvents: total, firstEvent: UInt32(first),
                                         events: Array(events[first..<index])))
                first = index
                bytes = 0
            }
            bytes += size
        }
        parts.append(BlockEvents(height: height, totalEvents: total, firstEvent: UInt32(first),
                                 events: Array(events[first...])))
        return parts
    }

    public func encode(into writer: inout WireWriter) {
        writer.u64(height)
        writer.u32(totalEvents)
        writer.u32(firstEvent)
        writer.u32(UInt32(events.count))
        for event in events {
            writer.fixed(event.transaction, count: 32)
            writer.string16(event.type)
            writer.bytes32(event.data)
        }
    }

    public var encoded: [UInt8] {
        var writer = WireWriter(capacity: 20 + events.reduce(0) { $0 + $1.encodedBytes })
        encode(into: &writer)
        return writer.bytes
    }

    static func decode(from reader: inout WireReader) throws(WireError) -> BlockEvents {
        let height = try reader.u64("height")
        let total = try reader.u32("totalEvents")
        let first = try reader.u32("firstEvent")
        let count = try reader.count32("events", max: eventsPerBlockMax, itemBytesMin: 32 + 2 + 4)
        guard UInt64(first) + UInt64(count) <= UInt64(total) else {
            throw WireError(.invalidValue, "block events: events \(first)..<\(UInt64(first) + UInt64(count)) "
                + "of a block with \(total)")
        }
        var events: [Event] = []
        events.reserveCapacity(count)
        for _ in 0..<count {
            var transaction = try reader.fixed(32, "transaction")
            // A transaction's events are consecutive: they share one array of its id rather than each holding a copy.
            if let previous = events.last?.transaction, previous == transaction { transaction = previous }
            let type = try reader.string16("type", max: typeBytesMax)
            events.append(Event(transaction: transaction, type: type, data: try reader.bytes32("data", max: dataBytesMax)))
        }
        return BlockEvents(height: height, totalEvents: total, firstEvent: first, events: events)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> BlockEvents {
        var reader = WireReader(bytes, context: "block events")
        let block = try decode(from: &reader)
        try reader.finish()
        return block
    }

    /// A replay: u32 parts, then each part.
    public static func encodeReplay(_ parts: [BlockEvents]) -> [UInt8] {
        var writer = WireWriter()
        writer.u32(UInt32(parts.count))
        for part in parts { part.encode(into: &writer) }
        return writer.bytes
    }

    public static func decodeReplay(_ bytes: [UInt8]) throws(WireError) -> [BlockEvents] {
        var reader = WireReader(bytes, context: "block events replay")
        let count = try reader.count32("parts", max: partsPerReplayMax, itemBytesMin: 20)
        var parts: [BlockEvents] = []
        for _ in 0..<count { parts.append(try decode(from: &reader)) }
        try reader.finish()
        return parts
    }
}
