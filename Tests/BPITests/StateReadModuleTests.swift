import BPIPlugin
import Foundation
import MetanodeABI
import MetanodePluginKit
import MetanodePluginTesting
import MetanodeWire
import Testing

/// A module that reads its state with ledger 1.2's `state_read` and holds BPI to the header's contract: the value
/// copied when it fits, the length it needs when it does not (with nothing copied), MN_ERR_NOT_FOUND for an absent
/// key, MN_ERR_TOO_LARGE for a key past the limit. A broken promise fails the transaction (or its admission) with a
/// reason that names it.
final class ReaderModule: Plugin {
    static let name = "reader"
    nonisolated(unsafe) static var api: UnsafePointer<mn_ledger_api>?

    static let word: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]

    /// `state_read` of `key` with `capacity` bytes of room (pre-filled with 0xEE): its status, length and bytes.
    static func read(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?, _ key: [UInt8], capacity: Int)
        -> (status: mn_status, length: Int, bytes: [UInt8]) {
        var room = [UInt8](repeating: 0xEE, count: capacity)
        var length = -1
        let status = key.withMNBytes { key in
            room.withUnsafeMutableBufferPointer { api.pointee.state_read(state, key, $0.baseAddress, capacity, &length) }
        }
        return (status, length, room)
    }

    /// The first broken promise about the committed or written values, or nil.
    static func problem(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?) -> String? {
        let exact = read(api, state, Array("word".utf8), capacity: 8)
        guard exact.status == MN_OK, exact.length == 8, exact.bytes == word else { return "exact room: \(exact)" }
        let more = read(api, state, Array("word".utf8), capacity: 12)
        guard more.status == MN_OK, more.length == 8, more.bytes == word + [0xEE, 0xEE, 0xEE, 0xEE] else {
            return "more room: \(more)"
        }
        let less = read(api, state, Array("word".utf8), capacity: 4)
        guard less.status == MN_ERR_TOO_LARGE, less.length == 8, less.bytes == [0xEE, 0xEE, 0xEE, 0xEE] else {
            return "too little room: \(less)"
        }
        let empty = read(api, state, Array("empty".utf8), capacity: 0)
        guard empty.status == MN_OK, empty.length == 0 else { return "empty value: \(empty)" }
        let absent = read(api, state, Array("absent".utf8), capacity: 8)
        guard absent.status == MN_ERR_NOT_FOUND, absent.length == 0 else { return "absent key: \(absent)" }
        let longKey = read(api, state, [UInt8](repeating: 0x6B, count: Int(MN_LEDGER_KEY_LEN_MAX) + 1), capacity: 8)
        guard longKey.status == MN_ERR_TOO_LARGE, longKey.length == 0 else { return "key too long: \(longKey)" }
        let noLength = Array("word".utf8).withMNBytes { api.pointee.state_read(state, $0, nil, 0, nil) }
        guard noLength == MN_ERR_INVALID_ARGUMENT else { return "no out_len: \(noLength)" }
        // No room and no buffer: whether the key has a value, and its length.
        var length = -1
        let asked = Array("word".utf8).withMNBytes { api.pointee.state_read(state, $0, nil, 0, &length) }
        guard asked == MN_ERR_TOO_LARGE, length == 8 else { return "no room: \(asked), length \(length)" }
        let noBuffer = Array("word".utf8).withMNBytes { api.pointee.state_read(state, $0, nil, 8, &length) }
        guard noBuffer == MN_ERR_INVALID_ARGUMENT else { return "room but no buffer: \(noBuffer)" }
        // SIZE_MAX of room (a size_t past Int.max) holds any value.
        var room = [UInt8](repeating: 0, count: 8)
        let most = Array("word".utf8).withMNBytes { key in
            room.withUnsafeMutableBufferPointer { api.pointee.state_read(state, key, $0.baseAddress, -1, &length) }
        }
        guard most == MN_OK, length == 8, room == word else { return "SIZE_MAX room: \(most), \(room)" }
        // A key whose length has no bytes behind it, and one whose length wrapped past Int.max.
        let noKey = state_read(api, state, mn_bytes(ptr: nil, len: 4), &length)
        guard noKey == MN_ERR_INVALID_ARGUMENT else { return "length without a key: \(noKey)" }
        let wrapped = Array("word".utf8).withMNBytes { key in
            state_read(api, state, mn_bytes(ptr: key.ptr, len: -1), &length)
        }
        guard wrapped == MN_ERR_TOO_LARGE else { return "key length past Int.max: \(wrapped)" }
        return nil
    }

    private static func state_read(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?, _ key: mn_bytes,
                                   _ length: inout Int) -> mn_status {
        api.pointee.state_read(state, key, nil, 0, &length)
    }

    static func refuse(_ api: UnsafePointer<mn_ledger_api>, _ state: OpaquePointer?, _ why: String) -> mn_status {
        why.withMNBytes { api.pointee.reject(state, $0) }
        return MN_ERR_INVALID_ARGUMENT
    }

    nonisolated(unsafe) static let table = ledgerModuleTable(name) { module in
        // "reader/check" is admitted only if committed state keeps every promise.
        module.check = { _, state, tx in
            guard let api = ReaderModule.api, let tx else { return MN_ERR_INTERNAL }
            guard tx.pointee.kind.string == "reader/check" else { return MN_OK }
            return ReaderModule.problem(api, state).map { ReaderModule.refuse(api, state, "committed: \($0)") }
                ?? MN_OK
        }
        // "reader/write" writes the values; every kind then checks them as the block so far has them.
        module.deliver = { _, state, tx in
            guard let api = ReaderModule.api, let tx else { return MN_ERR_INTERNAL }
            if tx.pointee.kind.string == "reader/write" {
                for (key, value) in [("word", ReaderModule.word), ("empty", [])] {
                    let status = key.withMNBytes { key in value.withMNBytes { api.pointee.state_put(state, key, $0) } }
                    guard status == MN_OK else { return status }
                }
            }
            return ReaderModule.problem(api, state).map { ReaderModule.refuse(api, state, "in the block: \($0)") }
                ?? MN_OK
        }
    }

    init(context: PluginContext) throws { Self.api = try registerLedgerModule(context, Self.table, minMinor: 2) }
}

@Suite("Ledger 1.2: state_read")
struct StateReadModuleTests {
    @Test("state_read copies a value that fits, gives the length one that does not needs, and refuses absent keys and long keys, in blocks and at admission")
    func stateReadKeepsItsContract() throws {
        let net = try BPINetwork(validators: 1, seed: 71)
        _ = try net.sim.host(0).load(try #require(PluginExport.descriptor(for: ReaderModule.self,
                                                                          name: ReaderModule.name, version: "1.0.0")))
        let signer = Ed25519Signer(seed: WireCrypto.domainHash("reader", []))
        func transaction(_ kind: String, nonce: UInt64) throws -> Transaction {
            try Transaction.signed(chainID: "sim", signer: signer, nonce: nonce, fee: 0, kind: kind, payload: [])
        }
        func result(_ transaction: Transaction) throws -> [String: Any] {
            try #require(try net.json(0, "/tx/\(Hex.encode(transaction.id))").1["result"] as? [String: Any])
        }
        // Before anything is written, admission's check of committed state finds the promises unkept.
        let early = net.submit(0, try transaction("reader/check", nonce: 0))
        #expect(early.status == 400 && early.body.contains("committed: exact room"), "\(early)")

        let write = try transaction("reader/write", nonce: 0)
        #expect(net.submit(0, write).status == 202)
        net.sim.run(forMs: 1_000)
        let written = try result(write)
        #expect(written["status"] as? Int == 0, "\(written)")

        // Committed now: admission reads it, and so does the next block.
        let check = try transaction("reader/check", nonce: 1)
        let admitted = net.submit(0, check)
        #expect(admitted.status == 202, "\(admitted)")
        net.sim.run(forMs: 1_000)
        let checked = try result(check)
        #expect(checked["status"] as? Int == 0, "\(checked)")
    }
}
