import CZlib
import DockLockCore
import Foundation

/// Inflates a gzip stream (RFC 1952) as it is read, in bounded memory, with a cap on the output so a small
/// compressed layer cannot expand without end. Concatenated gzip members (pigz, some registries) are read as one
/// stream, as `gzip -d` and Go's compress/gzip do.
public final class GzipSource: TarSource {
    private static let inputBytes = 64 << 10

    /// Names the stream in errors.
    public let what: String
    public let outputBytesMax: UInt64
    public private(set) var outputBytes: UInt64 = 0
    private let upstream: any TarSource
    private let stream: UnsafeMutablePointer<z_stream>
    private let input: UnsafeMutableRawBufferPointer
    private var upstreamDone = false
    private var memberEnded = false
    private var finished = false

    /// The two bytes every gzip member starts with.
    public static func hasMagic(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.starts(with: [0x1F, 0x8B])
    }

    public init(_ upstream: any TarSource, outputBytesMax: UInt64, what: String) throws(DockLockError) {
        self.upstream = upstream
        self.outputBytesMax = outputBytesMax
        self.what = what
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        input = .allocate(byteCount: Self.inputBytes, alignment: 16)
        let status = mn_inflate_init_gzip(stream)
        guard status == Z_OK else {
            input.deallocate()
            stream.deallocate()
            throw DockLockError(.system, "\(what): zlib inflateInit2 failed (\(status))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
        input.deallocate()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(DockLockError) -> Int {
        guard !finished, let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        // One byte past the cap is asked for, so reaching the cap exactly is not mistaken for passing it.
        let cap = min(buffer.count, Int(UInt32.max))
        let left = outputBytesMax - outputBytes
        let room = left >= UInt64(cap) ? cap : Int(left) + 1
        stream.pointee.next_out = base.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(room)
        while stream.pointee.avail_out == uInt(room) {
            if stream.pointee.avail_in == 0 {
                try refill()
                if stream.pointee.avail_in == 0 {
                    // No more input: the end, if the last member was complete.
                    guard memberEnded else {
                        throw DockLockError(.invalid, "\(what): the gzip stream is truncated")
                    }
                    finished = true
                    return 0
                }
            }
            if memberEnded {
                // More input after a complete member: the next member of a concatenated stream.
                guard inflateReset(stream) == Z_OK else { throw DockLockError(.system, "\(what): inflateReset failed") }
                memberEnded = false
            }
            let status = inflate(stream, Z_NO_FLUSH)
            switch status {
            case Z_OK, Z_BUF_ERROR: break
            case Z_STREAM_END: memberEnded = true
            default:
                let detail = stream.pointee.msg.map { String(cString: $0) } ?? "status \(status)"
                throw DockLockError(.invalid, "\(what): the gzip data is corrupt (\(detail))")
            }
        }
        let count = room - Int(stream.pointee.avail_out)
        outputBytes += UInt64(count)
        guard outputBytes <= outputBytesMax else {
            throw DockLockError(.limit, "\(what) inflates to more than \(outputBytesMax) bytes; the layer is refused")
        }
        return count
    }

    private func refill() throws(DockLockError) {
        guard !upstreamDone else { return }
        let count = try upstream.read(into: input)
        if count == 0 { upstreamDone = true }
        stream.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_in = uInt(count)
    }
}
