#if canImport(Glibc)
import Glibc
#endif
import MetanodeABI
import MetanodePluginKit
import Testing

/// A ledger table over a dictionary, cut at ledger 1.1's size or whole (1.2), counting which read each call used.
private enum FakeLedger {
    nonisolated(unsafe) static var values: [[UInt8]: [UInt8]] = [:]
    nonisolated(unsafe) static var gets = 0
    nonisolated(unsafe) static var reads = 0

    static func table(structSize: Int) -> mn_ledger_api {
        mn_ledger_api(
            struct_size: UInt32(structSize),
            register_module: { _, _ in MN_ERR_INTERNAL },
            state_get: { _, key, out in
                FakeLedger.gets += 1
                guard let value = FakeLedger.values[key.array], let out else { return MN_ERR_NOT_FOUND }
                let buffer = value.isEmpty ? nil : malloc(value.count)?.assumingMemoryBound(to: UInt8.self)
                if let buffer { buffer.update(from: value, count: value.count) }
                out.pointee = mn_buf(ptr: buffer, len: buffer == nil ? 0 : value.count)
                return MN_OK
            },
            state_put: { _, key, value in
                FakeLedger.values[key.array] = value.array
                return MN_OK
            },
            state_delete: { _, _ in MN_ERR_INTERNAL },
            reject: { _, _ in },
            emit_event: { _, _, _ in MN_ERR_INTERNAL },
            answer: { _, _ in },
            buf_free: { free($0.ptr) },
            state_read: { _, key, out, capacity, length in
                FakeLedger.reads += 1
                guard let length else { return MN_ERR_INVALID_ARGUMENT }
                // As BPI's: a key past the limit is refused before any value is looked up.
                guard key.len <= Int(MN_LEDGER_KEY_LEN_MAX) else {
                    length.pointee = 0
                    return MN_ERR_TOO_LARGE
                }
                guard let value = FakeLedger.values[key.array] else {
                    length.pointee = 0
                    return MN_ERR_NOT_FOUND
                }
                length.pointee = value.count
                guard value.count <= capacity else { return MN_ERR_TOO_LARGE }
                if let out, !value.isEmpty { out.update(from: value, count: value.count) }
                return MN_OK
            })
    }
}

@Suite("LedgerStateView", .serialized)
struct LedgerStateViewTests {
    @Test("u64, contains and read answer alike through ledger 1.2's state_read and, on a 1.1 table, through state_get")
    func wordsAndPresence() {
        let values: [[UInt8]: [UInt8]] = [
            Array("word".utf8): [0, 0, 0, 0, 0, 0, 0x01, 0x02],
            Array("short".utf8): [1, 2, 3],
            Array("long".utf8): [UInt8](repeating: 7, count: 12),
            Array("empty".utf8): [],
        ]
        let sizes = [
            (version: "1.1", size: MemoryLayout<mn_ledger_api>.offset(of: \mn_ledger_api.state_read)!),
            (version: "1.2", size: MemoryLayout<mn_ledger_api>.size),
        ]
        for (version, size) in sizes {
            var table = FakeLedger.table(structSize: size)
            FakeLedger.values = values  // each pass starts without the word the last one wrote
            FakeLedger.gets = 0
            FakeLedger.reads = 0
            withUnsafePointer(to: &table) { api in
                let view = LedgerStateView(api: api, state: OpaquePointer(bitPattern: 0x1)!)
                #expect(view.u64(Array("word".utf8)) == 0x0102, "\(version)")
                #expect(view.u64(Array("short".utf8)) == nil, "\(version): a value of 3 bytes is no u64")
                #expect(view.u64(Array("long".utf8)) == nil, "\(version): nor is one of 12")
                #expect(view.u64(Array("absent".utf8)) == nil, "\(version)")
                #expect(view.contains(Array("word".utf8)) && view.contains(Array("long".utf8)), "\(version)")
                #expect(view.contains(Array("empty".utf8)), "\(version): an empty value is a value")
                #expect(!view.contains(Array("absent".utf8)), "\(version)")
                var small = [UInt8](repeating: 0xAA, count: 8)
                #expect(small.withUnsafeMutableBytes { view.read(Array("long".utf8), into: $0) } == 12
                    && small == [UInt8](repeating: 0xAA, count: 8), "\(version): a longer value is measured, not copied")
                var room = [UInt8](repeating: 0, count: 16)
                #expect(room.withUnsafeMutableBytes { view.read(Array("long".utf8), into: $0) } == 12
                    && room == [UInt8](repeating: 7, count: 12) + [0, 0, 0, 0], "\(version)")
                #expect(room.withUnsafeMutableBytes { view.read(Array("absent".utf8), into: $0) } == nil, "\(version)")
                // A key too long to have a value has none (1.2's state_read refuses it as too large, with no length).
                let tooLong = [UInt8](repeating: 0x6B, count: Int(MN_LEDGER_KEY_LEN_MAX) + 1)
                #expect(!view.contains(tooLong) && view.u64(tooLong) == nil, "\(version)")
                var writable = view
                [UInt8]([9, 8, 7]).withUnsafeBytes { writable.put(Array("bytes".utf8), bytes: $0) }
                #expect(FakeLedger.values[Array("bytes".utf8)] == [9, 8, 7], "\(version)")
                writable.putU64(Array("written".utf8), 0x0102_0304_0506_0708)
                #expect(FakeLedger.values[Array("written".utf8)] == [1, 2, 3, 4, 5, 6, 7, 8], "\(version)")
                #expect(writable.failure == nil)
            }
            // A 1.1 table ends before state_read: the view never calls it. A 1.2 one spares every state_get.
            let (gets, reads) = (FakeLedger.gets, FakeLedger.reads)
            #expect(version == "1.1" ? reads == 0 && gets == 13 : gets == 0 && reads == 13,
                    "\(version): \(gets) gets, \(reads) reads")
        }
    }
}
