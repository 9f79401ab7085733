import MetanodeABI

/// A service table another plugin exported: a static C struct whose first field is, by convention, a uint32_t
/// struct_size. Bind it to the C struct type the service's header defines.
public struct ServiceTable: @unchecked Sendable {  // the table is static and immutable for the life of the process
    public let pointer: UnsafeRawPointer
    /// The minor version the exporter provides (>= the minimum asked for).
    public let minor: UInt32
    /// The table's size in bytes as exported; fields past it (added in later minors) are absent.
    public let size: Int

    /// The table as a `T`, if it is at least `MemoryLayout<T>.size` bytes.
    public func bound<T>(to type: T.Type) -> UnsafePointer<T>? {
        guard size >= MemoryLayout<T>.size else { return nil }
        return pointer.assumingMemoryBound(to: T.self)
    }
}

/// Typed, versioned function tables between plugins (capability "service").
public struct Services: Sendable {
    let host: Host

    /// Publishes `table` (static: valid for the life of the process) as `name` ("<this plugin>.<service>") at
    /// version major.minor. Export from `init(context:)` so dependents find it.
    public func export(_ name: String, major: UInt32, minor: UInt32, table: UnsafeRawPointer, size: Int)
        throws(PluginError)
    {
        let status = name.withMNBytes { host.api.pointee.service_export(host.ctx, $0, major, minor, table, size) }
        try host.check(status, "service_export")
    }

    /// Publishes a static `T` (its size is `MemoryLayout<T>.size`).
    public func export<T>(_ name: String, major: UInt32, minor: UInt32, table: UnsafePointer<T>) throws(PluginError) {
        try export(name, major: major, minor: minor, table: UnsafeRawPointer(table), size: MemoryLayout<T>.size)
    }

    /// Finds `name` with exactly `major` and a minor >= `minMinor`. Throws MN_ERR_NOT_FOUND if nobody exports it and
    /// MN_ERR_VERSION (naming both versions) if the version does not fit.
    public func lookup(_ name: String, major: UInt32, minMinor: UInt32 = 0) throws(PluginError) -> ServiceTable {
        var table: UnsafeRawPointer?
        var minor: UInt32 = 0
        var size = 0
        let status = name.withMNBytes {
            host.api.pointee.service_lookup(host.ctx, $0, major, minMinor, &table, &minor, &size)
        }
        try host.check(status, "service_lookup")
        guard let table else {
            throw PluginError(MN_ERR_INTERNAL, "service_lookup of '\(name)' gave a NULL table",
                              function: "service_lookup")
        }
        return ServiceTable(pointer: table, minor: minor, size: size)
    }
}
