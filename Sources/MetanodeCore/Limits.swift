/// Named bounds of the kernel, units last in every name. The ABI ones mirror `metanode/plugin.h` (a test in the kernel
/// compares them with the header's macros); the rest bound the kernel's own inputs.
public enum Limits {
    // MARK: From the ABI header (MN_*)
    public static let abiMajor: UInt16 = 1
    public static let abiMinor: UInt16 = 3
    /// MN_PLUGIN_NAME_LEN_MAX; names are ASCII, so bytes and characters agree.
    public static let pluginNameBytesMax = 63
    public static let logMessageBytesMax = 8192
    public static let kvKeyBytesMax = 1024
    public static let kvValueBytesMax = 16 * 1024 * 1024
    public static let kvBatchOpsMax = 100_000
    public static let kvBatchBytesMax = 64 * 1024 * 1024
    public static let kvSnapshotsMax = 64
    public static let busTopicBytesMax = 255
    public static let busPayloadBytesMax = 4 * 1024 * 1024
    public static let busSubscriptionsMax = 1024
    public static let busRequestTimeoutMsMax = 600_000
    public static let mailboxDepthMax = 65536
    public static let timersMax = 4096
    public static let timerDelayMsMax = 7 * 24 * 3600 * 1000
    public static let httpRoutesMax = 256
    public static let httpBodyBytesMax = 8 * 1024 * 1024
    public static let httpHeaderBytesMax = 8192
    public static let metricNameBytesMax = 128
    public static let metricsMax = 1024
    public static let histogramBucketsMax = 64
    /// MN_NET_* (ABI 1.1)
    public static let netProtocolBytesMax = 64
    public static let netMessageBytesMax = 4 * 1024 * 1024
    public static let netProtocolsMax = 64
    /// MN_HTTP_DEFERRED_MAX, MN_HTTP_DEFER_TIMEOUT_MS_MAX (ABI 1.2)
    public static let httpDeferredMax = 1024
    public static let httpDeferTimeoutMsMax = 3_600_000
    public static let serviceNameBytesMax = 127
    public static let serviceTableBytesMax = 65536
    public static let randomBytesMax = 65536
    public static let keyIdBytesMax = 64
    /// Parameters of an exported function ("At most 16 parameters" in the header).
    public static let ffiArgumentsMax = 16

    // MARK: Kernel inputs
    public static let manifestBytesMax = 64 * 1024
    public static let manifestDescriptionCharsMax = 1024
    public static let exportsMax = 64
    /// Export names, as used on the command line and in URLs.
    public static let exportNameBytesMax = 64
    /// Library file names inside a package.
    public static let libraryFileNameBytesMax = 255
    /// A plugin's JSON config.
    public static let configBytesMax = 1024 * 1024
    /// Nesting of JSON documents the kernel parses (containers inside containers).
    public static let jsonDepthMax = 64
    public static let jsonBytesMax = 1024 * 1024
    /// Elements of one JSON array or members of one JSON object.
    public static let jsonContainerCountMax = 100_000
    /// Nesting of subschemas in a config schema.
    public static let schemaDepthMax = 32
}
