import Foundation
import MetanodeABI
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// Plugin metrics on the kernel's Prometheus text. Fixtures/probe.c registers histograms with buckets 0.1, 1 and 10.
@Suite("Metrics")
struct MetricsTests {
    static let plugin = "metric-probe"

    static func register(_ test: TestKernel, _ kind: Int32, _ name: String) async throws -> UInt64 {
        #expect(try await test.int32(plugin, "register_metric", .int(Int64(kind)), .string(name)) == MN_OK)
        return try await test.uint64(plugin, "last_metric")
    }

    /// The sample lines of the metrics text (no # HELP / # TYPE).
    static func samples(_ test: TestKernel) -> Set<String> {
        Set(test.kernel.metricsText().split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
    }

    @Test("a counter appears as metanode_plugin_<name with - as _>_<metric> with its total")
    func counter() async throws {
        try await withKernel("metrics") { test in
            try await test.start(TestPackage(name: Self.plugin), grants: ["metrics"])
            let requests = try await Self.register(test, MN_METRIC_COUNTER, "requests")
            #expect(try await test.int32(Self.plugin, "counter_add", .uint(requests), 3) == MN_OK)
            #expect(try await test.int32(Self.plugin, "counter_add", .uint(requests), 4) == MN_OK)
            let samples = Self.samples(test)
            #expect(samples.contains("metanode_plugin_metric_probe_requests 7"), "\(test.kernel.metricsText())")
        }
    }

    @Test("a histogram appears with its buckets, sum and count")
    func histogram() async throws {
        try await withKernel("metrics-h") { test in
            try await test.start(TestPackage(name: Self.plugin), grants: ["metrics"])
            let latency = try await Self.register(test, MN_METRIC_HISTOGRAM, "latency_seconds")
            for value in [0.05, 0.5, 5.0] {
                #expect(try await test.int32(Self.plugin, "histogram_observe", .uint(latency), .double(value)) == MN_OK)
            }
            let samples = Self.samples(test)
            let name = "metanode_plugin_metric_probe_latency_seconds"
            for expected in ["\(name)_bucket{le=\"0.1\"} 1", "\(name)_bucket{le=\"1.0\"} 2",
                             "\(name)_bucket{le=\"10.0\"} 3", "\(name)_bucket{le=\"+Inf\"} 3", "\(name)_sum 5.55",
                             "\(name)_count 3"] {
                #expect(samples.contains(expected), "missing \(expected) in\n\(test.kernel.metricsText())")
            }
        }
    }

    @Test("registering a metric name twice fails with MN_ERR_EXISTS, naming it")
    func duplicateName() async throws {
        try await withKernel("metrics-dup") { test in
            try await test.start(TestPackage(name: Self.plugin), grants: ["metrics"])
            _ = try await Self.register(test, MN_METRIC_COUNTER, "requests")
            #expect(try await test.int32(Self.plugin, "register_metric", .int(Int64(MN_METRIC_GAUGE)), "requests")
                == MN_ERR_EXISTS)
            #expect(try await test.string(Self.plugin, "last_error_text").contains("requests"))
        }
    }

    @Test("a metric whose full name another plugin already has is refused with MN_ERR_EXISTS, naming that plugin")
    func fullNameTakenByAnotherPlugin() async throws {
        try await withKernel("metrics-clash") { test in
            try await test.start(TestPackage(name: "metric"), grants: ["metrics"])
            try await test.start(TestPackage(name: "metric-x"), grants: ["metrics"])
            // "metric" + "x_requests" and "metric-x" + "requests" are both metanode_plugin_metric_x_requests.
            #expect(try await test.int32("metric", "register_metric", .int(Int64(MN_METRIC_HISTOGRAM)), "x_requests")
                == MN_OK)
            #expect(try await test.int32("metric-x", "register_metric", .int(Int64(MN_METRIC_COUNTER)), "requests")
                == MN_ERR_EXISTS)
            let message = try await test.string("metric-x", "last_error_text")
            #expect(message.contains("metanode_plugin_metric_x_requests") && message.contains("plugin metric "),
                    "\(message)")
        }
    }

    @Test("a plugin cannot register a metric under one of the kernel's own names")
    func fullNameTakenByTheKernel() async throws {
        try await withKernel("metrics-kernel") { test in
            try await test.start(TestPackage(name: "capability"), grants: ["metrics"])
            // metanode_plugin_capability_denied_total is the kernel's.
            #expect(try await test.int32("capability", "register_metric", .int(Int64(MN_METRIC_COUNTER)),
                                         "denied_total") == MN_ERR_EXISTS)
            #expect(try await test.string("capability", "last_error_text").contains("the kernel"))
        }
    }

    @Test("adding to a metric id that is not a counter fails with MN_ERR_INVALID_ARGUMENT")
    func wrongKind() async throws {
        try await withKernel("metrics-kind") { test in
            try await test.start(TestPackage(name: Self.plugin), grants: ["metrics"])
            let latency = try await Self.register(test, MN_METRIC_HISTOGRAM, "latency_seconds")
            #expect(try await test.int32(Self.plugin, "counter_add", .uint(latency), 1) == MN_ERR_INVALID_ARGUMENT)
            #expect(try await test.int32(Self.plugin, "counter_add", .uint(latency + 1), 1) == MN_ERR_NOT_FOUND)
        }
    }
}
