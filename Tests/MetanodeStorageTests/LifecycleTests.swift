import Dispatch
import Foundation
import MetanodeCore
import MetanodeStorage
import Testing

@Suite("Store: lifecycle, locking and durability")
struct LifecycleTests {
    static let inUse = "is in use by another process (RocksDB lock) — stop the other metanode first"

    @Test func aSecondStoreOnTheSamePathSaysTheDirectoryIsInUse() async throws {
        try await withTemporaryStorePath { (path) throws in
            let first = try Store(path: path)
            defer { first.close() }
            let error = #expect(throws: MetanodeError.self) { try Store(path: path) }
            #expect(error?.code == .storage)
            #expect(error?.message.hasPrefix("the data directory \(path) \(Self.inUse)") == true)
        }
    }

    /// The real case: another process holds RocksDB's fcntl lock. The exit test runs in a child process (a fresh
    /// copy of this test binary) while this process holds the store open.
    @Test func aStoreHeldByAnotherProcessSaysTheDirectoryIsInUse() async throws {
        try await withTemporaryStorePath { (path) throws in
            let holder = try Store(path: path)
            defer { holder.close() }
            let expected = "the data directory \(path) \(Self.inUse)"
            await #expect(processExitsWith: .success) { [path = path as String, expected = expected as String] in
                do {
                    _ = try Store(path: path)
                    exit(2)
                } catch let error as MetanodeError {
                    exit(error.message.hasPrefix(expected) ? 0 : 3)
                }
            }
        }
    }

    @Test func everyOperationAfterCloseThrowsStoppedAndCloseIsIdempotent() async throws {
        try await withTemporaryStorePath { (path) throws in
            let store = try Store(path: path)
            let batch = WriteBatch()
            batch.put(bytes("k"), bytes("v"))
            store.close()
            store.close()
            let operations: [(String, () throws -> Void)] = [
                ("get", { _ = try store.get(bytes("k")) }),
                ("getMalloced", { _ = try bytes("k").withUnsafeBytes { try store.getMalloced($0) } as Any }),
                ("put", { try store.put(bytes("k"), bytes("v")) }),
                ("delete", { try store.delete(bytes("k")) }),
                ("write", { try store.write(batch) }),
                ("snapshot", { _ = try store.snapshot() }),
                ("scan", { try store.scan(prefix: []) { _, _ in true } }),
                ("flush", { try store.flush() }),
                ("approximateSizeBytes", { _ = try store.approximateSizeBytes() }),
            ]
            for (name, operation) in operations {
                let error = #expect(throws: MetanodeError.self, "\(name)") { try operation() }
                #expect(error?.code == .stopped, "\(name)")
                #expect(error?.message.hasPrefix("storage is closed") == true, "\(name)")
            }
        }
    }

    @Test func closingWhileOtherThreadsReadLetsEachReadSucceedOrThrowStopped() async throws {
        try await withTemporaryStorePath { (path) throws in
            let store = try Store(path: path)
            try store.put(bytes("k"), bytes("v"))
            // The closer is its own thread: concurrentPerform runs only as many workers at once as there are cores,
            // so a closer among the workers might never start while the readers spin.
            let closed = DispatchSemaphore(value: 0)
            let closer = Thread {
                usleep(20_000)
                store.close()
                closed.signal()
            }
            closer.start()
            defer { closed.wait() }  // readers stop as soon as close begins; the directory must outlive close
            DispatchQueue.concurrentPerform(iterations: 3) { _ in
                // Each reader runs until close makes it throw; every read before that must succeed.
                while true {
                    do {
                        #expect(try store.get(bytes("k")) == bytes("v"))
                        try store.scan(prefix: bytes("k")) { _, value in
                            #expect(Array(value) == bytes("v"))
                            return true
                        }
                    } catch {
                        #expect((error as? MetanodeError)?.code == .stopped)
                        return
                    }
                }
            }
        }
    }

    @Test func dataPutBeforeCloseIsReadableAfterReopening() async throws {
        try await withTemporaryStorePath { (path) throws in
            let store = try Store(path: path)
            try store.put(bytes("kept"), bytes("v"))
            try store.put(bytes("gone"), bytes("v"))
            try store.delete(bytes("gone"))
            store.close()

            let reopened = try Store(path: path)
            defer { reopened.close() }
            #expect(try reopened.get(bytes("kept")) == bytes("v"))
            #expect(try reopened.get(bytes("gone")) == nil)
        }
    }

    /// With syncWrites == false a write is in the OS before put returns, so it survives the process being killed.
    /// The writer is an exit test: a child process (this test binary again) opens the store, writes, and SIGKILLs
    /// itself without closing or flushing; this process then reopens the store and reads everything back.
    @Test func writesWithoutSyncSurviveSIGKILLOfTheProcess() async throws {
        try await withTemporaryStorePath { (path) throws in
            await #expect(processExitsWith: .signal(SIGKILL)) { [path = path as String] in
                let store = try Store(path: path, options: .init(syncWrites: false))
                for i in 0..<1000 { try store.put(bytes("put/\(i)"), bytes("value \(i)")) }
                let batch = WriteBatch()
                for i in 0..<1000 { batch.put(bytes("batch/\(i)"), bytes("value \(i)")) }
                try store.write(batch)
                try store.delete(bytes("put/0"))
                kill(getpid(), SIGKILL)
            }

            let store = try Store(path: path)
            defer { store.close() }
            #expect(try store.get(bytes("put/0")) == nil)
            for i in 1..<1000 { #expect(try store.get(bytes("put/\(i)")) == bytes("value \(i)")) }
            for i in 0..<1000 { #expect(try store.get(bytes("batch/\(i)")) == bytes("value \(i)")) }
        }
    }
}
