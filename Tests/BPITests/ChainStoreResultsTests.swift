@testable import BPIPlugin
import BPICore
import MetanodeWire
import Testing

@Suite("A block's results in x values")
struct ChainStoreResultsTests {
    static func entries(_ count: Int, resultBytes: (Int) -> Int) -> (ids: [[UInt8]], results: [[UInt8]]) {
        let ids = (0..<count).map { WireCrypto.domainHash("result id", [UInt8(truncatingIfNeeded: $0)]) }
        let results = (0..<count).map { index in [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: resultBytes(index)) }
        return (ids, results)
    }

    @Test("results past the part size go into more parts, each within it unless one result alone is larger; every result is found by index, across parts")
    func partsSplitAndLookUp() throws {
        let (ids, results) = Self.entries(40) { $0 == 17 ? 300 : 20 + $0 % 7 }
        let parts = ChainStore.encodeResults(ids: ids, results: results, partBytesMax: 200)
        #expect(parts.count > 5)
        for part in parts where part.count > 200 {
            #expect(try ChainStore.decodeResults(part, height: 9).count == 1, "only a result larger than a part alone")
        }
        let decoded = try parts.flatMap { try ChainStore.decodeResults($0, height: 9) }
        #expect(decoded.map(\.id) == ids && decoded.map(\.result) == results)
        for index in ids.indices {
            #expect(try ChainStore.result(in: parts, index: index, id: ids[index], height: 9) == results[index])
        }
        let one = ChainStore.encodeResults(ids: ids, results: results)
        #expect(one.count == 1)
        #expect(try ChainStore.decodeResults(one[0], height: 9).count == 40)
    }

    @Test("a block without transactions has one empty part")
    func emptyBlock() throws {
        let parts = ChainStore.encodeResults(ids: [], results: [])
        #expect(parts == [[0, 0, 0, 0]])
        #expect(try ChainStore.decodeResults(parts[0], height: 3).isEmpty)
    }

    @Test("a wrong id, an index past the end and damaged bytes are refused, naming the block")
    func refusals() throws {
        let (ids, results) = Self.entries(5) { _ in 10 }
        let parts = ChainStore.encodeResults(ids: ids, results: results, partBytesMax: 100)
        for (index, id) in [(2, ids[3]), (5, ids[0])] {
            #expect {
                try ChainStore.result(in: parts, index: index, id: id, height: 12)
            } throws: { error in
                (error as? WireError)?.message.contains("the results of block 12 have no transaction \(index)") == true
            }
        }
        var truncated = parts[0]
        truncated.removeLast()
        #expect(throws: WireError.self) { try ChainStore.decodeResults(truncated, height: 12) }
        #expect(throws: WireError.self) { try ChainStore.result(in: [truncated], index: 1, id: ids[1], height: 12) }
        let huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        #expect(throws: WireError.self) { try ChainStore.decodeResults(huge, height: 12) }
    }
}
