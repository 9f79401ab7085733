#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The malloc this process runs on, as the node's start log names it. The `metanode` executable links jemalloc so that
/// it replaces the C library's malloc for the daemon and every plugin (Package.swift says why); the log line shows
/// that it did. Found at run time, so this library does not itself depend on jemalloc.
public enum MemoryAllocator {
    /// "jemalloc <version>" when jemalloc's `mallctl` is in the process, else "the C library's malloc".
    public static var description: String {
        typealias Mallctl = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?,
                                            UnsafeMutableRawPointer?, Int) -> Int32
        guard let symbol = dlsym(nil, "mallctl") else { return "the C library's malloc" }
        let mallctl = unsafeBitCast(symbol, to: Mallctl.self)
        var version: UnsafePointer<CChar>?
        var length = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &length, nil, 0) == 0, let version else { return "jemalloc" }
        return "jemalloc \(String(cString: version))"
    }
}
