import MetanodePluginKit
import MetanodePluginTesting
import Testing

/// Values over the ABI's named limits get MN_ERR_TOO_LARGE (or MN_ERR_INVALID_ARGUMENT for malformed names) with a
/// message naming the argument, its size and the limit, and nothing is stored. The rules live in
/// MetanodeHostBridge, so the kernel answers exactly the same.
@Suite struct LimitTests {
    let host = TestHost()

    func expectRefused(_ status: Int32, _ fragment: String, _ body: () throws -> Void,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try body()
            Issue.record("expected \(PluginStatus.name(status))", sourceLocation: sourceLocation)
        } catch let error as PluginError {
            #expect(error.status == status, sourceLocation: sourceLocation)
            #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected a PluginError, got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func kvKeyOverTheLimitIsRefusedAndNothingIsStored() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let key = String(repeating: "k", count: Int(MN_KV_KEY_LEN_MAX) + 1)
        expectRefused(PluginStatus.tooLarge, "kv key is 1025 bytes; the limit is 1024") {
            try probe.context.kv.put(key, "v")
        }
        #expect(host.storedKeys(plugin).isEmpty)
        try probe.context.kv.put(String(repeating: "k", count: Int(MN_KV_KEY_LEN_MAX)), "v")
        #expect(host.storedKeys(plugin).count == 1)
    }

    @Test func kvValueOverTheLimitIsRefused() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let value = [UInt8](repeating: 1, count: Int(MN_KV_VALUE_LEN_MAX) + 1)
        expectRefused(PluginStatus.tooLarge, "kv value is \(MN_KV_VALUE_LEN_MAX + 1) bytes") {
            try probe.context.kv.put("big", value)
        }
        #expect(host.storedKeys(plugin).isEmpty)
    }

    @Test func emptyKvKeyIsInvalid() throws {
        let (_, probe) = try Probe.load(into: host)
        expectRefused(PluginStatus.invalidArgument, "kv key is empty") { try probe.context.kv.put("", "v") }
    }

    @Test func busPayloadOverTheLimitIsRefusedAndNotDelivered() throws {
        let (_, sender) = try Probe.load(into: host, name: "sender")
        let (_, receiver) = try Probe.load(into: host, name: "receiver", subscribe: ["big.news"])
        let payload = [UInt8](repeating: 0, count: Int(MN_BUS_PAYLOAD_LEN_MAX) + 1)
        expectRefused(PluginStatus.tooLarge, "payload is \(MN_BUS_PAYLOAD_LEN_MAX + 1) bytes") {
            _ = try sender.context.bus.publish("big.news", payload)
        }
        host.runUntilIdle()
        #expect(receiver.received.isEmpty)
    }

    @Test func topicOverTheLimitOrMalformedIsRefused() throws {
        let (_, probe) = try Probe.load(into: host)
        expectRefused(PluginStatus.tooLarge, "topic is 256 bytes; the limit is 255") {
            _ = try probe.context.bus.publish(String(repeating: "t", count: 256))
        }
        for topic in ["", "a..b", ".a", "a.", "a b", "a.*", "*"] {
            expectRefused(PluginStatus.invalidArgument, "is not dot-separated") {
                _ = try probe.context.bus.publish(topic)
            }
        }
        for pattern in ["a.*.b", "*", ".*"] {
            expectRefused(PluginStatus.invalidArgument, "is not dot-separated") {
                _ = try probe.context.bus.subscribe(pattern)
            }
        }
        _ = try probe.context.bus.subscribe("a.b.*")
    }

    @Test func batchOverTheOperationLimitIsRefusedAndAppliesNothing() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) {
            try probe.context.kv.batch { batch in
                for index in 0...Int(MN_KV_BATCH_OPS_MAX) { try batch.put("k\(index)", "v") }
            }
        }
        #expect(error?.status == PluginStatus.tooLarge)
        #expect(error?.message.contains("the limit is \(MN_KV_BATCH_OPS_MAX)") == true, "\(String(describing: error))")
        #expect(host.storedKeys(plugin).isEmpty)
    }

    @Test func metricNamesAndRouteMethodsAreChecked() throws {
        let (_, probe) = try Probe.load(into: host)
        expectRefused(PluginStatus.invalidArgument, "must match [a-z_][a-z0-9_]*") {
            _ = try probe.context.metrics.counter("Bad-Name")
        }
        expectRefused(PluginStatus.invalidArgument, "is not one of") {
            try probe.context.http.route("FETCH", "/x") { _ in .text("") }
        }
        expectRefused(PluginStatus.invalidArgument, "is reserved") {
            try probe.context.http.route("GET", "/call/x") { _ in .text("") }
        }
        expectRefused(PluginStatus.invalidArgument, "kernel's status of the plugin") {
            try probe.context.http.route("GET", "/") { _ in .text("") }
        }
    }
}
