import MetanodePluginKit
import MetanodePluginTesting
import Testing

@Suite struct KeyValueTests {
    let host = TestHost()

    @Test func absentKeyReadsAsNil() throws {
        let (_, probe) = try Probe.load(into: host)
        #expect(try probe.context.kv.get("missing") == nil)
    }

    @Test func putThenGetAndDelete() throws {
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.kv.put("k", [1, 2, 3])
        #expect(try probe.context.kv.get("k") == [1, 2, 3])
        #expect(host.storedValue(plugin, "k") == [1, 2, 3])
        try probe.context.kv.delete("k")
        #expect(try probe.context.kv.get("k") == nil)
        try probe.context.kv.delete("k")  // deleting an absent key is fine
    }

    @Test func emptyValueIsStoredAndDistinctFromAbsent() throws {
        let (_, probe) = try Probe.load(into: host)
        try probe.context.kv.put("empty", [UInt8]())
        #expect(try probe.context.kv.get("empty") == [])
    }

    @Test func pluginsHaveSeparateNamespaces() throws {
        let (_, a) = try Probe.load(into: host, name: "a")
        let (_, b) = try Probe.load(into: host, name: "b")
        try a.context.kv.put("shared", "from a")
        #expect(try b.context.kv.get("shared") == nil)
    }

    @Test func snapshotKeepsTheValuesOfWhenItWasOpened() throws {
        let (_, probe) = try Probe.load(into: host)
        let kv = probe.context.kv
        try kv.put("k", "old")
        try kv.withSnapshot { snapshot in
            try kv.put("k", "new")
            try kv.put("added", "later")
            #expect(try snapshot.string("k") == "old")
            #expect(try snapshot.get("added") == nil)
            #expect(try snapshot.scan(prefix: "").map(\.keyText) == ["k"])
        }
        #expect(try kv.string("k") == "new")
    }

    @Test func batchAppliesEveryOperationOnCommit() throws {
        let (_, probe) = try Probe.load(into: host)
        let kv = probe.context.kv
        try kv.put("gone", "x")
        try kv.batch { batch in
            try batch.put("a", "1")
            try batch.put("b", "2")
            try batch.delete("gone")
            #expect(try kv.get("a") == nil)  // not visible before commit
        }
        #expect(try kv.string("a") == "1")
        #expect(try kv.string("b") == "2")
        #expect(try kv.get("gone") == nil)
    }

    struct Abort: Error {}

    @Test func batchWhoseBodyThrowsWritesNothing() throws {
        let (plugin, probe) = try Probe.load(into: host)
        #expect(throws: Abort.self) {
            try probe.context.kv.batch { batch in
                try batch.put("a", "1")
                try batch.put("b", "2")
                throw Abort()
            }
        }
        #expect(host.storedKeys(plugin).isEmpty)
    }

    @Test func batchWhoseCommitFailsWritesNothing() throws {
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.kv.put("a", "before")
        host.failNextBatchCommit(plugin, message: "disk full")
        let error = #expect(throws: PluginError.self) {
            try probe.context.kv.batch { batch in
                try batch.put("a", "after")
                try batch.put("b", "new")
            }
        }
        #expect(error?.status == PluginStatus.io)
        #expect(error?.function == "kv_batch_commit")
        #expect(error?.message == "disk full; nothing was written")
        #expect(host.storedText(plugin, "a") == "before")
        #expect(host.storedValue(plugin, "b") == nil)
    }

    @Test func scanVisitsPrefixedKeysInByteOrderFromStart() throws {
        let (_, probe) = try Probe.load(into: host)
        let kv = probe.context.kv
        for key in ["user/3", "user/1", "users", "user/2", "other", "user/10"] { try kv.put(key, key) }
        #expect(try kv.scan(prefix: "user/").map(\.keyText) == ["user/1", "user/10", "user/2", "user/3"])
        #expect(try kv.scan(prefix: "user/", start: "user/2").map(\.keyText) == ["user/2", "user/3"])
    }

    @Test func scanVisitorStopsWhenItReturnsFalse() throws {
        let (_, probe) = try Probe.load(into: host)
        for key in ["a1", "a2", "a3"] { try probe.context.kv.put(key, "v") }
        var seen: [String] = []
        try probe.context.kv.scan(prefix: "a") { pair in
            seen.append(pair.keyText)
            return seen.count < 2
        }
        #expect(seen == ["a1", "a2"])
    }

    @Test func emptyKeyIsInvalidWithTheBridgesMessage() throws {
        let (_, probe) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) { try probe.context.kv.put("", "v") }
        #expect(error?.status == PluginStatus.invalidArgument)
        #expect(error?.message == "kv key is empty")
    }
}
