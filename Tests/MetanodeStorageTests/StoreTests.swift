import Dispatch
import Foundation
import MetanodeCore
import Testing

@testable import MetanodeStorage

@Suite("Store: point reads and writes")
struct PointTests {
    @Test func getReturnsWhatPutStored() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("k"), bytes("v1"))
            #expect(try store.get(bytes("k")) == bytes("v1"))
            try store.put(bytes("k"), bytes("v2"))
            #expect(try store.get(bytes("k")) == bytes("v2"))
        }
    }

    @Test func getOfAnAbsentKeyIsNil() async throws {
        try await withTemporaryStore { (store) throws in
            #expect(try store.get(bytes("missing")) == nil)
        }
    }

    @Test func deleteRemovesTheKeyAndDeletingAnAbsentKeyIsFine() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("k"), bytes("v"))
            try store.delete(bytes("k"))
            #expect(try store.get(bytes("k")) == nil)
            try store.delete(bytes("never-there"))
        }
    }

    @Test func anEmptyValueIsPresentNotAbsent() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("empty"), [])
            #expect(try store.get(bytes("empty")) == [])
            #expect(try store.get(bytes("absent")) == nil)
        }
    }

    @Test func getMallocedReturnsTheValueInABufferFreedByFreeValue() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("k"), bytes("value"))
            let value = try bytes("k").withUnsafeBytes { try store.getMalloced($0) }
            let buffer = try #require(value)
            #expect(Array(buffer) == bytes("value"))
            Store.freeValue(buffer)
            #expect(try bytes("absent").withUnsafeBytes { try store.getMalloced($0) } == nil)
        }
    }

    @Test func getMallocedOfAnEmptyValueIsAnEmptyBufferWithABaseAddress() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("empty"), [])
            let value = try bytes("empty").withUnsafeBytes { try store.getMalloced($0) }
            let buffer = try #require(value)
            #expect(buffer.count == 0)
            #expect(buffer.baseAddress != nil)
            Store.freeValue(buffer)
        }
    }

    @Test func theEmptyKeyIsAKeyLikeAnyOther() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put([], bytes("v"))
            #expect(try store.get([]) == bytes("v"))
        }
    }

    @Test func badOptionsAreRejectedBeforeOpening() async throws {
        try await withTemporaryStorePath { (path) throws in
            let error = #expect(throws: MetanodeError.self) {
                try Store(path: path, options: .init(maxOpenFiles: 3))
            }
            #expect(error?.code == .invalidArgument)
            #expect(!FileManager.default.fileExists(atPath: path))
        }
    }

    @Test func openingAMissingDirectoryWithoutCreateIfMissingNamesThePath() async throws {
        try await withTemporaryStorePath { (path) throws in
            let error = #expect(throws: MetanodeError.self) {
                try Store(path: path, options: .init(createIfMissing: false))
            }
            #expect(error?.code == .storage)
            #expect(error?.message.hasPrefix("open failed for \(path): ") == true)
        }
    }

    @Test(arguments: [Store.Options.Compression.none, .snappy, .lz4, .zstd])
    func everyOfferedCompressionWorksWithThisRocksDBBuild(_ compression: Store.Options.Compression) async throws {
        try await withTemporaryStorePath { (path) throws in
            let store = try Store(path: path, options: .init(compression: compression))
            defer { store.close() }
            try store.put(bytes("k"), [UInt8](repeating: 7, count: 10_000))
            try store.flush()  // compression applies when the memtable becomes an SST file
            #expect(try store.get(bytes("k")) == [UInt8](repeating: 7, count: 10_000))
        }
    }

    @Test func approximateSizeCountsWrittenData() async throws {
        try await withTemporaryStore { (store) throws in
            let before = try store.approximateSizeBytes()
            for i in 0..<100 { try store.put(bytes("key\(i)"), [UInt8](repeating: UInt8(i), count: 1000)) }
            #expect(try store.approximateSizeBytes() > before)
        }
    }
}

@Suite("Store: write batches")
struct BatchTests {
    @Test func writeAppliesEveryOperationOfTheBatch() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("old"), bytes("x"))
            let batch = WriteBatch()
            batch.put(bytes("a"), bytes("1"))
            batch.put(bytes("b"), bytes("2"))
            batch.delete(bytes("old"))
            try store.write(batch)
            #expect(try store.get(bytes("a")) == bytes("1"))
            #expect(try store.get(bytes("b")) == bytes("2"))
            #expect(try store.get(bytes("old")) == nil)
        }
    }

    /// The batch reaches RocksDB sorted by key; operations on one key must keep their order, so the last one wins
    /// as it would unsorted.
    @Test func theLastOperationOnAKeyWinsThoughTheBatchIsSorted() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("gone"), bytes("x"))
            let batch = WriteBatch()
            batch.put(bytes("z"), bytes("1"))
            batch.delete(bytes("z"))
            batch.delete(bytes("gone"))
            batch.put(bytes("gone"), bytes("back"))
            for round in 0..<5 { batch.put(bytes("k"), bytes("\(round)")) }
            batch.put(bytes("ka"), bytes("longer key"))
            batch.put(bytes("a"), [])
            batch.delete(bytes("k"))
            batch.put(bytes("k"), bytes("last"))
            try store.write(batch)
            #expect(try store.get(bytes("z")) == nil)
            #expect(try store.get(bytes("gone")) == bytes("back"))
            #expect(try store.get(bytes("k")) == bytes("last"))
            #expect(try store.get(bytes("ka")) == bytes("longer key"))
            #expect(try store.get(bytes("a")) == [])
            var keys: [[UInt8]] = []
            try store.scan(prefix: [UInt8]()) { key, _ in keys.append(Array(key)); return true }
            #expect(keys == ["a", "gone", "k", "ka"].map(bytes))
        }
    }

    @Test func aBatchOfOnlyEmptyKeysAndValuesIsWritten() async throws {
        try await withTemporaryStore { (store) throws in
            let batch = WriteBatch()
            batch.put([], [])
            try store.write(batch)
            #expect(try store.get([]) == [])
            batch.clear()
            batch.delete([])
            try store.write(batch)
            #expect(try store.get([]) == nil)
            try store.write(WriteBatch())  // an empty batch is a no-op, not an error
        }
    }

    @Test func aBatchDroppedWithoutWriteChangesNothing() async throws {
        try await withTemporaryStore { (store) throws in
            do {
                let batch = WriteBatch()
                batch.put(bytes("a"), bytes("1"))
                batch.delete(bytes("b"))
            }
            try store.put(bytes("b"), bytes("2"))
            #expect(try store.get(bytes("a")) == nil)
            #expect(try store.get(bytes("b")) == bytes("2"))
        }
    }

    @Test func countAndByteCountSumOperationsAndKeyPlusValueBytes() {
        let batch = WriteBatch()
        batch.put(bytes("ab"), bytes("cde"))
        batch.delete(bytes("fghi"))
        #expect(batch.count == 2)
        #expect(batch.byteCount == 2 + 3 + 4)
        batch.clear()
        #expect(batch.count == 0)
        #expect(batch.byteCount == 0)
    }

    @Test func aBatchIsSeenWholeOrNotAtAllByConcurrentReaders() async throws {
        try await withTemporaryStore { (store) throws in
            let keys = (0..<50).map { bytes("k\($0)") }
            let rounds = 200
            DispatchQueue.concurrentPerform(iterations: 2) { worker in
                for round in 1...rounds {
                    if worker == 0 {
                        let batch = WriteBatch()
                        for key in keys { batch.put(key, bytes("\(round)")) }
                        try! store.write(batch)
                    } else {
                        // A snapshot sees one point in time: all keys must carry the same round.
                        let snapshot = try! store.snapshot()
                        let values = Set(keys.map { try! store.get($0, snapshot: snapshot) })
                        snapshot.release()
                        #expect(values.count == 1)
                    }
                }
            }
        }
    }
}

@Suite("Store: snapshots")
struct SnapshotTests {
    @Test func writesAfterASnapshotAreInvisibleThroughIt() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("p/a"), bytes("1"))
            try store.put(bytes("p/b"), bytes("1"))
            let snapshot = try store.snapshot()
            defer { snapshot.release() }
            try store.put(bytes("p/a"), bytes("2"))
            try store.delete(bytes("p/b"))
            try store.put(bytes("p/c"), bytes("new"))

            #expect(try store.get(bytes("p/a"), snapshot: snapshot) == bytes("1"))
            #expect(try store.get(bytes("p/b"), snapshot: snapshot) == bytes("1"))
            #expect(try store.get(bytes("p/c"), snapshot: snapshot) == nil)
            let malloced = try #require(
                try bytes("p/a").withUnsafeBytes { try store.getMalloced($0, snapshot: snapshot) })
            #expect(Array(malloced) == bytes("1"))
            Store.freeValue(malloced)
            #expect(try store.collect(prefix: bytes("p/"), snapshot: snapshot) == [bytes("p/a"), bytes("p/b")])
            #expect(try store.get(bytes("p/a")) == bytes("2"))
        }
    }

    @Test func readsThroughAReleasedSnapshotThrowAndReleaseIsIdempotent() async throws {
        try await withTemporaryStore { (store) throws in
            let snapshot = try store.snapshot()
            snapshot.release()
            snapshot.release()
            let error = #expect(throws: MetanodeError.self) { try store.get(bytes("k"), snapshot: snapshot) }
            #expect(error?.code == .invalidArgument)
        }
    }

    @Test func closeReleasesOpenSnapshotsAndTheirLaterReleaseIsHarmless() async throws {
        try await withTemporaryStorePath { (path) throws in
            let store = try Store(path: path)
            let snapshot = try store.snapshot()
            store.close()
            let error = #expect(throws: MetanodeError.self) { try store.get(bytes("k"), snapshot: snapshot) }
            #expect(error?.code == .stopped)
            snapshot.release()
        }
    }
}

@Suite("Store: prefix scans")
struct ScanTests {
    /// Keys around the prefix "ab": just below it, in it (including 0x00 and 0xFF continuations), just above it.
    static let aroundAB: [[UInt8]] = [
        bytes("a"), bytes("aa") + [0xFF, 0xFF], bytes("ab"), bytes("ab") + [0x00], bytes("abc"),
        bytes("ab") + [0xFF], bytes("ab") + [0xFF, 0xFF, 0xFF], bytes("ac"), bytes("ac") + [0x00], bytes("b"),
    ]

    static func store(with keys: [[UInt8]], _ body: (Store) async throws -> Void) async throws {
        try await withTemporaryStore { (store) throws in
            for key in keys.shuffled() { try store.put(key, key) }
            try await body(store)
        }
    }

    @Test func visitsExactlyTheKeysWithThePrefixInAscendingOrder() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            #expect(
                try store.collect(prefix: bytes("ab")) == [
                    bytes("ab"), bytes("ab") + [0x00], bytes("abc"), bytes("ab") + [0xFF],
                    bytes("ab") + [0xFF, 0xFF, 0xFF],
                ])
        }
    }

    @Test func theVisitorSeesEachKeysValue() async throws {
        try await withTemporaryStore { (store) throws in
            try store.put(bytes("p1"), bytes("one"))
            try store.put(bytes("p2"), [])
            var pairs: [[UInt8]: [UInt8]] = [:]
            try store.scan(prefix: bytes("p")) { key, value in
                pairs[Array(key)] = Array(value)
                return true
            }
            #expect(pairs == [bytes("p1"): bytes("one"), bytes("p2"): []])
        }
    }

    @Test func aPrefixEndingIn0xFFStopsBeforeTheNextByteUp() async throws {
        let keys: [[UInt8]] = [[0x01, 0xFE], [0x01, 0xFF], [0x01, 0xFF, 0x00], [0x01, 0xFF, 0xFF], [0x02], [0x02, 0x00]]
        try await Self.store(with: keys) { (store) throws in
            #expect(try store.collect(prefix: [0x01, 0xFF]) == [[0x01, 0xFF], [0x01, 0xFF, 0x00], [0x01, 0xFF, 0xFF]])
        }
    }

    @Test func anAll0xFFPrefixRunsToTheEndOfTheKeyspace() async throws {
        let keys: [[UInt8]] = [[0xFE], [0xFE, 0xFF], [0xFF], [0xFF, 0x00], [0xFF, 0xFF], [0xFF, 0xFF, 0xFF, 0x01]]
        try await Self.store(with: keys) { (store) throws in
            #expect(try store.collect(prefix: [0xFF]) == [[0xFF], [0xFF, 0x00], [0xFF, 0xFF], [0xFF, 0xFF, 0xFF, 0x01]])
            #expect(try store.collect(prefix: [0xFF, 0xFF]) == [[0xFF, 0xFF], [0xFF, 0xFF, 0xFF, 0x01]])
        }
    }

    @Test func theEmptyPrefixVisitsEveryKey() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            #expect(try store.collect(prefix: []) == Self.aroundAB)
        }
    }

    @Test func aStartBelowThePrefixStartsAtThePrefix() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            #expect(try store.collect(prefix: bytes("ab"), from: bytes("a")).first == bytes("ab"))
            #expect(try store.collect(prefix: bytes("ab"), from: []).count == 5)
        }
    }

    @Test func aStartInsideThePrefixIsInclusive() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            #expect(try store.collect(prefix: bytes("ab"), from: bytes("abc")) == [
                bytes("abc"), bytes("ab") + [0xFF], bytes("ab") + [0xFF, 0xFF, 0xFF],
            ])
            // A start between keys begins at the next key.
            #expect(try store.collect(prefix: bytes("ab"), from: bytes("abd")).first == bytes("ab") + [0xFF])
        }
    }

    @Test func aStartAfterThePrefixRangeVisitsNothing() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            #expect(try store.collect(prefix: bytes("ab"), from: bytes("ac")) == [])
            #expect(try store.collect(prefix: bytes("ab"), from: bytes("b")) == [])
        }
    }

    @Test func returningFalseStopsTheScan() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            #expect(try store.collect(prefix: bytes("ab"), limit: 2) == [bytes("ab"), bytes("ab") + [0x00]])
        }
    }

    @Test func anErrorThrownByTheVisitorEndsTheScanAndPropagates() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            var visited = 0
            let error = #expect(throws: MetanodeError.self) {
                try store.scan(prefix: []) { _, _ in
                    visited += 1
                    throw MetanodeError(.limitExceeded, "enough")
                }
            }
            #expect(error?.code == .limitExceeded)
            #expect(visited == 1)
        }
    }

    @Test func aForeignErrorFromTheVisitorBecomesInternalWithItAsCause() async throws {
        struct Foreign: Error {}
        try await Self.store(with: Self.aroundAB) { (store) throws in
            let error = #expect(throws: MetanodeError.self) {
                try store.scan(prefix: []) { _, _ in throw Foreign() }
            }
            #expect(error?.code == .internal)
            #expect(error?.cause is Foreign)
        }
    }

    @Test func aVisitorMayReadTheStore() async throws {
        try await Self.store(with: Self.aroundAB) { (store) throws in
            var values: [[UInt8]?] = []
            try store.scan(prefix: bytes("ac")) { key, _ in
                values.append(try store.get(Array(key)))
                return true
            }
            #expect(values == [bytes("ac"), bytes("ac") + [0x00]])
        }
    }

    @Test func successorDropsTrailing0xFFAndIncrements() {
        func successor(_ prefix: [UInt8]) -> [UInt8]? { prefix.withUnsafeBytes { Store.successor(of: $0) } }
        #expect(successor([0x61, 0x62]) == [0x61, 0x63])
        #expect(successor([0x61, 0xFF, 0xFF]) == [0x62])
        #expect(successor([0xFF, 0xFF]) == nil)
        #expect(successor([]) == nil)
    }
}
