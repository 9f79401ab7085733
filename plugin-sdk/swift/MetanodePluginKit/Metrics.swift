import MetanodeABI

/// Metrics on the node's /metrics as metanode_plugin_<plugin>_<name> (capability "metrics"). Names match
/// [a-z_][a-z0-9_]*; registering a name twice is MN_ERR_EXISTS.
///
/// Updates never throw: a failed update (the plugin stopped, a host bug) is logged, except after stop.
public struct Metrics: Sendable {
    let host: Host

    public func counter(_ name: String, help: String = "") throws(PluginError) -> Counter {
        Counter(host: host, id: try register(MN_METRIC_COUNTER, name, help, buckets: []))
    }

    public func gauge(_ name: String, help: String = "") throws(PluginError) -> Gauge {
        Gauge(host: host, id: try register(MN_METRIC_GAUGE, name, help, buckets: []))
    }

    /// A histogram with 1...64 finite, strictly ascending bucket upper bounds.
    public func histogram(_ name: String, help: String = "", buckets: [Double]) throws(PluginError) -> Histogram {
        Histogram(host: host, id: try register(MN_METRIC_HISTOGRAM, name, help, buckets: buckets))
    }

    private func register(_ kind: Int32, _ name: String, _ help: String, buckets: [Double]) throws(PluginError)
        -> mn_metric_id
    {
        var id: mn_metric_id = 0
        let status = name.withMNBytes { name in
            help.withMNBytes { help in
                buckets.withUnsafeBufferPointer { buckets in
                    host.api.pointee.metric_register(
                        host.ctx, kind, name, help, buckets.baseAddress, buckets.count, &id)
                }
            }
        }
        try host.check(status, "metric_register")
        return id
    }
}

/// A monotonically increasing count.
public struct Counter: Sendable {
    let host: Host
    public let id: UInt64

    public func add(_ delta: UInt64 = 1) {
        report(host, host.api.pointee.metric_counter_add(host.ctx, id, delta), "metric_counter_add")
    }

    public func increment() { add(1) }
}

/// A value that goes up and down.
public struct Gauge: Sendable {
    let host: Host
    public let id: UInt64

    public func set(_ value: Double) {
        report(host, host.api.pointee.metric_gauge_set(host.ctx, id, value), "metric_gauge_set")
    }
}

/// A distribution of observed values.
public struct Histogram: Sendable {
    let host: Host
    public let id: UInt64

    public func observe(_ value: Double) {
        report(host, host.api.pointee.metric_histogram_observe(host.ctx, id, value), "metric_histogram_observe")
    }
}

private func report(_ host: Host, _ status: mn_status, _ function: StaticString) {
    guard status != MN_OK, status != MN_ERR_STOPPED else { return }
    host.log(.warn, "\(host.error(status, function))")
}
