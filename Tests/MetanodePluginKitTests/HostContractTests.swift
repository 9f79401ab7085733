import MetanodePluginKit
import MetanodePluginTesting
import Testing

/// Capabilities, lifecycle, services, metrics, routing and crypto: the host contract as a plugin sees it through
/// MetanodePluginKit.
@Suite struct CapabilityAndLifecycleTests {
    let host = TestHost()

    @Test func kvWithoutTheGrantIsDeniedAndRecorded() throws {
        let (_, probe) = try Probe.load(into: host, grants: [.bus, .http])
        let error = #expect(throws: PluginError.self) { try probe.context.kv.put("k", "v") }
        #expect(error?.status == PluginStatus.denied)
        #expect(error?.message.contains("needs capability 'kv'") == true)
        #expect(host.denials == [Denial(plugin: "probe", function: "kv_put", capability: "kv", count: 1)])
    }

    @Test func everyDeniedCallIsReportedWithItsRunningCount() throws {
        let (_, probe) = try Probe.load(into: host, grants: [])
        for _ in 0..<1000 { _ = try? probe.context.kv.get("k") }
        #expect(host.denials.map(\.count) == Array(1...1000))
        #expect(Set(host.denials.map(\.function)) == ["kv_get"])
    }

    @Test func grantedCapabilityStillWorksNextToADeniedOne() throws {
        let (_, probe) = try Probe.load(into: host, grants: [.kv])
        try probe.context.kv.put("k", "v")
        #expect(throws: PluginError.self) { try probe.context.metrics.counter("c") }
        #expect(try probe.context.kv.string("k") == "v")
    }

    @Test func hostCallsAfterStopAnswerStopped() throws {
        let (plugin, probe) = try Probe.load(into: host)
        host.stop(plugin)
        #expect(plugin.isStopped)
        let error = #expect(throws: PluginError.self) { try probe.context.kv.put("k", "v") }
        #expect(error?.status == PluginStatus.stopped)
        #expect(error?.message == "plugin probe is stopped; the host no longer serves it")
    }

    @Test func stoppedPluginGetsNoMoreMessagesTimersOrRequests() throws {
        let (plugin, probe) = try Probe.load(into: host, subscribe: ["t"])
        let fired = Recorded(false)
        try probe.context.timers.schedule(afterMs: 5) { fired.value = true }
        host.publish("t", "queued before stop")
        host.stop(plugin)
        host.advance(byMs: 10)
        #expect(probe.received.isEmpty)
        #expect(!fired.value)
        #expect(host.publish("t") == 0)
        #expect(host.http(plugin, "GET", "/anything").status == 404)
    }

    @Test func stoppedPluginsRoutesAnswer503() throws {
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.http.route("GET", "/x") { _ in .text("x") }
        host.stop(plugin)
        #expect(host.http(plugin, "GET", "/x").status == 503)
    }

    @Test func secondPluginWithTheSameNameIsRefused() throws {
        try Probe.load(into: host, name: "twin")
        let error = #expect(throws: HostError.self) { try Probe.load(into: host, name: "twin") }
        #expect(error?.status == MN_ERR_EXISTS)
    }

    @Test func descriptorOfAnotherABIMajorIsRefusedNamingBothVersions() throws {
        var descriptor = try #require(Probe.descriptor).load(as: mn_plugin_descriptor.self)
        descriptor.abi_major = 2
        let error = withUnsafePointer(to: &descriptor) { pointer in
            #expect(throws: HostError.self) { try host.load(pointer, name: "future") }
        }
        #expect(error?.status == MN_ERR_VERSION)
        #expect(error?.message.contains("ABI 2.\(MN_ABI_VERSION_MINOR)") == true)
        #expect(error?.message.contains("ABI \(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)") == true)
    }

    @Test func descriptorIsStaticAndTheSameOnEveryCall() {
        #expect(Probe.descriptor == Probe.descriptor)
    }
}

@Suite struct ServiceTests {
    struct MathTable {
        var structSize: UInt32
        var add: @convention(c) (Int64, Int64) -> Int64
    }

    /// A static service table, as the ABI requires (valid for the life of the process).
    nonisolated(unsafe) static let table: UnsafeMutablePointer<MathTable> = {
        let table = UnsafeMutablePointer<MathTable>.allocate(capacity: 1)
        table.initialize(to: MathTable(structSize: UInt32(MemoryLayout<MathTable>.size), add: { $0 &+ $1 }))
        return table
    }()

    let host = TestHost()

    @Test func exportedServiceIsFoundWithItsVersionAndSize() throws {
        let (_, exporter) = try Probe.load(into: host, name: "math")
        let (_, user) = try Probe.load(into: host, name: "user")
        try exporter.context.services.export("math.adder", major: 1, minor: 2, table: UnsafePointer(Self.table))
        let found = try user.context.services.lookup("math.adder", major: 1, minMinor: 1)
        #expect(found.minor == 2)
        #expect(found.size == MemoryLayout<MathTable>.size)
        let math = try #require(found.bound(to: MathTable.self))
        #expect(math.pointee.add(20, 22) == 42)
    }

    @Test func lookupOfAnotherMajorIsAVersionErrorNamingBothVersions() throws {
        let (_, exporter) = try Probe.load(into: host, name: "math")
        let (_, user) = try Probe.load(into: host, name: "user")
        try exporter.context.services.export("math.adder", major: 1, minor: 2, table: UnsafePointer(Self.table))
        let error = #expect(throws: PluginError.self) { try user.context.services.lookup("math.adder", major: 2) }
        #expect(error?.status == PluginStatus.version)
        #expect(error?.message == "plugin user needs service math.adder 2.0 (or a later 2.x); plugin math exports 1.2")
    }

    @Test func lookupNeedingANewerMinorIsAVersionError() throws {
        let (_, exporter) = try Probe.load(into: host, name: "math")
        try exporter.context.services.export("math.adder", major: 1, minor: 2, table: UnsafePointer(Self.table))
        let error = #expect(throws: PluginError.self) {
            try exporter.context.services.lookup("math.adder", major: 1, minMinor: 3)
        }
        #expect(error?.status == PluginStatus.version)
    }

    @Test func lookupOfAnUnknownServiceIsNotFound() throws {
        let (_, user) = try Probe.load(into: host, name: "user")
        let error = #expect(throws: PluginError.self) { try user.context.services.lookup("math.adder", major: 1) }
        #expect(error?.status == PluginStatus.notFound)
    }

    @Test func exportingTheSameNameTwiceIsExists() throws {
        let (_, exporter) = try Probe.load(into: host, name: "math")
        try exporter.context.services.export("math.adder", major: 1, minor: 0, table: UnsafePointer(Self.table))
        let error = #expect(throws: PluginError.self) {
            try exporter.context.services.export("math.adder", major: 1, minor: 1, table: UnsafePointer(Self.table))
        }
        #expect(error?.status == PluginStatus.exists)
    }

    @Test func exportOutsideThePluginsNamespaceIsInvalid() throws {
        let (_, exporter) = try Probe.load(into: host, name: "math")
        let error = #expect(throws: PluginError.self) {
            try exporter.context.services.export("bpi.ledger", major: 1, minor: 0, table: UnsafePointer(Self.table))
        }
        #expect(error?.status == PluginStatus.invalidArgument)
    }
}

@Suite struct MetricTests {
    let host = TestHost()

    @Test func counterAccumulates() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let counter = try probe.context.metrics.counter("jobs_total", help: "jobs done")
        counter.increment()
        counter.add(41)
        #expect(host.metric(plugin, "jobs_total")?.count == 42)
        #expect(host.metric(plugin, "jobs_total")?.help == "jobs done")
    }

    @Test func gaugeKeepsTheLastValue() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let gauge = try probe.context.metrics.gauge("queue_depth")
        gauge.set(3)
        gauge.set(1.5)
        #expect(host.metric(plugin, "queue_depth")?.value == 1.5)
    }

    @Test func histogramRecordsObservations() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let histogram = try probe.context.metrics.histogram("latency_ms", buckets: [1, 10, 100])
        histogram.observe(0.5)
        histogram.observe(20)
        let metric = try #require(host.metric(plugin, "latency_ms"))
        #expect(metric.buckets == [1, 10, 100])
        #expect(metric.observations == [0.5, 20])
    }

    @Test func registeringANameTwiceIsExists() throws {
        let (_, probe) = try Probe.load(into: host)
        _ = try probe.context.metrics.counter("dup")
        let error = #expect(throws: PluginError.self) { try probe.context.metrics.gauge("dup") }
        #expect(error?.status == PluginStatus.exists)
    }

    @Test func badMetricNameIsInvalid() throws {
        let (_, probe) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) { try probe.context.metrics.counter("Requests-Total") }
        #expect(error?.status == PluginStatus.invalidArgument)
    }
}

@Suite struct HTTPRoutingTests {
    let host = TestHost()

    func routed(_ routes: [(String, String)]) throws -> TestPlugin {
        let (plugin, probe) = try Probe.load(into: host)
        for (method, path) in routes {
            try probe.context.http.route(method, path) { request in .text("\(method) \(path) saw \(request.path)") }
        }
        return plugin
    }

    @Test func exactRouteBeatsAPrefix() throws {
        let plugin = try routed([("GET", "/items/*"), ("GET", "/items/special")])
        #expect(host.http(plugin, "GET", "/items/special").text == "GET /items/special saw /items/special")
        #expect(host.http(plugin, "GET", "/items/7").text == "GET /items/* saw /items/7")
    }

    @Test func longerPrefixBeatsShorter() throws {
        let plugin = try routed([("GET", "/a/*"), ("GET", "/a/b/*")])
        #expect(host.http(plugin, "GET", "/a/b/c").text == "GET /a/b/* saw /a/b/c")
        #expect(host.http(plugin, "GET", "/a/x/c").text == "GET /a/* saw /a/x/c")
    }

    @Test func prefixDoesNotMatchItsParent() throws {
        let plugin = try routed([("GET", "/items/*")])
        #expect(host.http(plugin, "GET", "/items").status == 404)
    }

    @Test func starMethodMatchesAnyMethodButANamedMethodWins() throws {
        let plugin = try routed([("*", "/thing"), ("POST", "/thing")])
        #expect(host.http(plugin, "DELETE", "/thing").text == "* /thing saw /thing")
        #expect(host.http(plugin, "POST", "/thing").text == "POST /thing saw /thing")
    }

    @Test func duplicateRouteIsExists() throws {
        let (_, probe) = try Probe.load(into: host)
        try probe.context.http.route("GET", "/x") { _ in .text("1") }
        let error = #expect(throws: PluginError.self) { try probe.context.http.route("get", "/x") { _ in .text("2") } }
        #expect(error?.status == PluginStatus.exists)
    }

    @Test func reservedCallPathIsRefused() throws {
        let (_, probe) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) {
            try probe.context.http.route("GET", "/call/x") { _ in .text("") }
        }
        #expect(error?.status == PluginStatus.invalidArgument)
    }

    @Test func handlerSeesQueryHeadersAndBody() throws {
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.http.route("POST", "/echo") { request in
            .text("\(request.queryItem("name") ?? "-")|\(request.header("x-token") ?? "-")|\(request.text)")
        }
        let response = host.http(plugin, "POST", "/echo?name=a%20b", body: "payload",
                                 headers: [("X-Token", "secret")])
        #expect(response.text == "a b|secret|payload")
    }

    @Test func jsonResponseAndExtraHeaders() throws {
        struct Body: Encodable { var ok = true; var n = 3 }
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.http.route("GET", "/json") { _ in HTTPResponse.json(Body(), status: 201).header("X-A", "1") }
        let response = host.http(plugin, "GET", "/json")
        #expect(response.status == 201)
        #expect(response.contentType == "application/json")
        #expect(response.text == #"{"n":3,"ok":true}"#)
        #expect(response.header("x-a") == "1")
    }

    @Test func throwingHandlerAnswers500AndLogs() throws {
        let (plugin, probe) = try Probe.load(into: host, grants: [.http])
        try probe.context.http.route("GET", "/kv") { _ in .text(try probe.context.kv.string("k") ?? "") }
        let response = host.http(plugin, "GET", "/kv")
        #expect(response.status == 500)
        #expect(response.text.contains("MN_ERR_DENIED"))
        #expect(host.logMessages(of: plugin).contains { $0.hasPrefix("GET /kv failed") })
    }
}

@Suite struct CryptoTests {
    let host = TestHost()

    @Test func hashesMatchKnownVectors() throws {
        let (_, probe) = try Probe.load(into: host)
        #expect(hex(try probe.context.crypto.sha256("abc"))
            == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(try probe.context.crypto.blake2b256("abc"))
            == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319")
    }

    @Test func signatureVerifiesForItsPluginOnly() throws {
        let (_, probe) = try Probe.load(into: host, name: "signer")
        let key = try probe.context.signer.publicKey()
        #expect(key == host.nodePublicKey)
        let signature = try probe.context.signer.sign("message")
        #expect(try probe.context.signer.verifyScoped(publicKey: key, message: "message", signature: signature))
        #expect(try probe.context.signer.verifyScoped(publicKey: key, signer: "signer", message: "message",
                                                      signature: signature))
        #expect(try !probe.context.signer.verifyScoped(publicKey: key, signer: "other", message: "message",
                                                       signature: signature))
        #expect(try !probe.context.crypto.verify(publicKey: key, message: "message", signature: signature))
    }

    @Test func signaturesAndRandomBytesAreReproducibleAcrossHosts() throws {
        func run() throws -> [UInt8] {
            let host = TestHost()
            let (_, probe) = try Probe.load(into: host, name: "signer")
            return try probe.context.signer.sign("m") + probe.context.crypto.randomBytes(16)
        }
        #expect(try run() == run())
    }

    @Test func unknownKeyIDIsNotFound() throws {
        let (_, probe) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) { try probe.context.signer.publicKey(keyID: "validator") }
        #expect(error?.status == PluginStatus.notFound)
    }

    @Test func wrongSizedKeyIsRefusedBeforeReachingTheHost() throws {
        let (_, probe) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) {
            try probe.context.crypto.verify(publicKey: [1, 2, 3], message: "m",
                                            signature: [UInt8](repeating: 0, count: 64))
        }
        #expect(error?.status == PluginStatus.invalidArgument)
    }

    func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}

@Suite struct ClockAndConfigTests {
    @Test func clocksFollowTheManualClock() throws {
        let host = TestHost(startUnixMs: 1_000)
        let (_, probe) = try Probe.load(into: host)
        host.advance(byMs: 250)
        #expect(probe.context.unixTimeMs == 1_250)
        #expect(probe.context.monotonicNs == 250_000_000)
    }

    @Test func contextCarriesTheConfigBytes() throws {
        let host = TestHost()
        let (_, probe) = try Probe.load(into: host, replyPrefix: "p")
        #expect(probe.context.configText.contains(#""replyPrefix":"p""#))
    }
}
