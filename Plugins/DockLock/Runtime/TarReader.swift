import DockLockCore
import Foundation

/// A stream of bytes: a file (or a slice of one), or a decompressor over one.
public protocol TarSource: AnyObject {
    /// Reads up to `buffer.count` bytes into `buffer`; returns 0 only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DockLockError) -> Int
}

/// Bytes `offset ..< offset + length` of a file (to its end when `length` is nil), read on demand with pread.
public final class TarFileSource: TarSource {
    let file: ImageFD
    private var position: UInt64
    private let end: UInt64?

    public convenience init(path: String, offset: UInt64 = 0, length: UInt64? = nil) throws(DockLockError) {
        self.init(file: try ImageFD.open(path, O_RDONLY), offset: offset, length: length)
    }

    init(file: ImageFD, offset: UInt64 = 0, length: UInt64? = nil) {
        self.file = file
        position = offset
        end = length.map { offset + $0 }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(DockLockError) -> Int {
        var wanted = buffer.count
        if let end { wanted = Int(min(UInt64(wanted), end - position)) }
        guard wanted > 0 else { return 0 }
        let count = try file.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<wanted]), at: position)
        position += UInt64(count)
        return count
    }
}

/// Reads a tar stream entry by entry, in bounded memory: ustar, GNU (long names 'L'/'K', base-256 numbers) and
/// pax ('x': path, linkpath, size, uid, gid, mtime). Each entry's data is read (or skipped) from the stream as it
/// comes, so a layer is never held whole. Extensions (pax records, GNU long names) are bounded by
/// `extensionBytesMax`; anything else a layer cannot use (sparse files, multi-volume parts) is refused by name.
///
/// pax global headers ('g') are read past and ignored: what they can carry (charset, comments, defaults for later
/// headers that tools do not emit in image layers) does not change an entry DockLock accepts. Extended attributes
/// (`SCHILY.xattr.*`) are ignored too, so file capabilities are not carried into the rootfs.
public final class TarReader {
    public static let blockBytes = 512
    public static let extensionBytesMaxDefault = 1 << 20
    /// Extension headers ('x', 'g', 'L', 'K') in a row before an entry.
    public static let extensionsInARowMax = 16
    private static let bufferBytes = 64 << 10

    /// Names the archive in errors ("layer sha256:…", "docker save tarball x.tar").
    public let what: String
    public let extensionBytesMax: Int
    private let source: any TarSource
    private let buffer: UnsafeMutableRawBufferPointer
    private var bufferStart = 0
    private var bufferEnd = 0
    private var sourceDone = false
    /// Bytes of the stream consumed so far.
    public private(set) var position: UInt64 = 0
    /// Where the current entry's data starts in the stream (in a plain tar file, its file offset).
    public private(set) var dataOffset: UInt64 = 0
    /// The current entry's data not yet read, and the padding after it.
    public private(set) var dataRemaining: UInt64 = 0
    private var padding: UInt64 = 0
    private var finished = false
    private var currentName = ""

    public init(_ source: any TarSource, what: String, extensionBytesMax: Int = extensionBytesMaxDefault) {
        self.source = source
        self.what = what
        self.extensionBytesMax = extensionBytesMax
        buffer = .allocate(byteCount: Self.bufferBytes, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The next entry, or nil at the end of the archive. Any unread data of the previous entry is skipped.
    public func next() throws(DockLockError) -> LayerEntry? {
        guard !finished else { return nil }
        try skip(dataRemaining + padding)
        dataRemaining = 0
        padding = 0

        var paxPath: String?
        var paxLink: String?
        var paxSize: UInt64?
        var paxUID: UInt32?
        var paxGID: UInt32?
        var paxMtime: Int64?
        var longName: String?
        var longLink: String?
        var header = [UInt8](repeating: 0, count: Self.blockBytes)
        for _ in 0...Self.extensionsInARowMax {
            let headerOffset = position
            guard try readBlock(into: &header) else {
                // A clean end without the two zero blocks: accepted, as Go's archive/tar does.
                finished = true
                return nil
            }
            if header.allSatisfy({ $0 == 0 }) {
                finished = true  // the end-of-archive marker; what follows is not read
                return nil
            }
            try checkChecksum(header, at: headerOffset)
            let type = header[156]
            var size = try number(header, 124, 12, field: "size", at: headerOffset)
            if [UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K")].contains(type) {
                let data = try readExtension(size: size, type: type, at: headerOffset)
                switch type {
                case UInt8(ascii: "x"):
                    for (key, value) in try paxRecords(data, at: headerOffset) {
                        switch key {
                        case "path": paxPath = try text(value, field: "pax path", at: headerOffset)
                        case "linkpath": paxLink = try text(value, field: "pax linkpath", at: headerOffset)
                        case "size": paxSize = try decimal(value, field: "pax size", at: headerOffset)
                        case "uid": paxUID = UInt32(exactly: try decimal(value, field: "pax uid", at: headerOffset))
                        case "gid": paxGID = UInt32(exactly: try decimal(value, field: "pax gid", at: headerOffset))
                        case "mtime":
                            // "1700000000.123456789"; only whole seconds are kept. Negative times become 0.
                            let whole = value.prefix { $0 != UInt8(ascii: ".") }
                            paxMtime = (try? decimal(Array(whole), field: "pax mtime", at: headerOffset)).map { Int64($0) }
                        default: break
                        }
                    }
                case UInt8(ascii: "L"): longName = try text(trimNUL(data), field: "GNU long name", at: headerOffset)
                case UInt8(ascii: "K"): longLink = try text(trimNUL(data), field: "GNU long link", at: headerOffset)
                default: break  // 'g': see the type comment
                }
                continue
            }

            let isUstar = header[257..<262].elementsEqual("ustar".utf8) && header[262] == 0
            var name = try text(trimNUL(header[0..<100]), field: "name", at: headerOffset)
            if isUstar {
                let prefix = try text(trimNUL(header[345..<500]), field: "name prefix", at: headerOffset)
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            name = paxPath ?? longName ?? name
            currentName = name
            let headerLink = try text(trimNUL(header[157..<257]), field: "link name", at: headerOffset)
            let link = paxLink ?? longLink ?? headerLink
            if let paxSize { size = paxSize }
            let kind: LayerEntry.Kind
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = name.hasSuffix("/") && type == 0 ? .directory : .file
            case UInt8(ascii: "1"): kind = .hardLink
            case UInt8(ascii: "2"): kind = .symlink
            case UInt8(ascii: "3"): kind = .characterDevice
            case UInt8(ascii: "4"): kind = .blockDevice
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "6"): kind = .fifo
            default:
                let described = switch type {
                case UInt8(ascii: "S"): "a GNU sparse file"
                case UInt8(ascii: "M"): "a multi-volume continuation"
                case UInt8(ascii: "V"): "a volume label"
                case UInt8(ascii: "D"): "a GNU dump directory"
                default: "an unknown kind"
                }
                let shownType = type >= 0x20 && type < 0x7F ? String(UnicodeScalar(type)) : "\\(\(type))"
                throw DockLockError(.unsupported, "\(what): tar entry '\(LayerEntryPolicy.shown(name))' has type "
                    + "'\(shownType)' (\(described)), which DockLock does not unpack")
            }
            let mode = UInt32(truncatingIfNeeded: try number(header, 100, 8, field: "mode", at: headerOffset)) & 0o7777
            let headerUID = try owner(header, 108, field: "uid", at: headerOffset)
            let headerGID = try owner(header, 116, field: "gid", at: headerOffset)
            let uid = paxUID ?? headerUID
            let gid = paxGID ?? headerGID
            let mtime = paxMtime ?? (try? number(header, 136, 12, field: "mtime", at: headerOffset)).map {
                Int64(clamping: $0)
            } ?? 0
            dataOffset = position
            dataRemaining = size
            padding = (UInt64(Self.blockBytes) - size % UInt64(Self.blockBytes)) % UInt64(Self.blockBytes)
            return LayerEntry(kind: kind, path: name, linkTarget: link, mode: mode, size: size, uid: uid, gid: gid,
                              mtimeSeconds: mtime)
        }
        throw DockLockError(.limit, "\(what): more than \(Self.extensionsInARowMax) extension headers in a row at "
            + "offset \(position); the archive is refused")
    }

    /// Reads the current entry's data, up to `buffer.count` bytes; 0 when it is all read.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(DockLockError) -> Int {
        let wanted = Int(min(UInt64(buffer.count), dataRemaining))
        guard wanted > 0 else { return 0 }
        if bufferStart == bufferEnd, try !fill() {
            throw truncated(reading: "the data of '\(LayerEntryPolicy.shown(currentName))'")
        }
        let count = min(wanted, bufferEnd - bufferStart)
        buffer.baseAddress!.copyMemory(from: self.buffer.baseAddress! + bufferStart, byteCount: count)
        bufferStart += count
        position += UInt64(count)
        dataRemaining -= UInt64(count)
        return count
    }

    /// The current entry's data, refused if it is larger than `bytesMax`.
    public func readAll(bytesMax: Int) throws(DockLockError) -> [UInt8] {
        guard dataRemaining <= UInt64(bytesMax) else {
            throw DockLockError(.limit, "\(what): '\(LayerEntryPolicy.shown(currentName))' is \(dataRemaining) bytes; "
                + "at most \(bytesMax) are read")
        }
        var out = [UInt8](repeating: 0, count: Int(dataRemaining))
        var done = 0
        while done < out.count {
            let offset = done
            done += try ImageSys.typed {
                try out.withUnsafeMutableBytes { try read(into: UnsafeMutableRawBufferPointer(rebasing: $0[offset...])) }
            }
        }
        return out
    }

    // MARK: Stream

    private func fill() throws(DockLockError) -> Bool {
        guard !sourceDone else { return false }
        let count = try source.read(into: buffer)
        bufferStart = 0
        bufferEnd = count
        if count == 0 { sourceDone = true }
        return count > 0
    }

    /// One 512-byte block; false at a clean end of the stream, an error if it ends inside the block.
    private func readBlock(into block: inout [UInt8]) throws(DockLockError) -> Bool {
        var done = 0
        while done < Self.blockBytes {
            if bufferStart == bufferEnd, try !fill() {
                if done == 0 { return false }
                throw truncated(reading: "a header")
            }
            let count = min(Self.blockBytes - done, bufferEnd - bufferStart)
            block.withUnsafeMutableBytes { raw in
                (raw.baseAddress! + done).copyMemory(from: buffer.baseAddress! + bufferStart, byteCount: count)
            }
            bufferStart += count
            done += count
        }
        position += UInt64(Self.blockBytes)
        return true
    }

    private func skip(_ count: UInt64) throws(DockLockError) {
        var left = count
        while left > 0 {
            if bufferStart == bufferEnd, try !fill() {
                throw truncated(reading: "the data of '\(LayerEntryPolicy.shown(currentName))'")
            }
            let step = Int(min(left, UInt64(bufferEnd - bufferStart)))
            bufferStart += step
            position += UInt64(step)
            left -= UInt64(step)
        }
    }

    private func truncated(reading part: String) -> DockLockError {
        DockLockError(.invalid, "\(what) ends in the middle of \(part) (offset \(position)); the archive is truncated")
    }

    // MARK: Fields

    private func readExtension(size: UInt64, type: UInt8, at offset: UInt64) throws(DockLockError) -> [UInt8] {
        guard size <= UInt64(extensionBytesMax) else {
            throw DockLockError(.limit, "\(what): the '\(String(UnicodeScalar(type)))' extension header at offset "
                + "\(offset) is \(size) bytes; at most \(extensionBytesMax) are read")
        }
        currentName = "extension header at offset \(offset)"
        dataRemaining = size
        padding = (UInt64(Self.blockBytes) - size % UInt64(Self.blockBytes)) % UInt64(Self.blockBytes)
        let data = try readAll(bytesMax: extensionBytesMax)
        try skip(padding)
        padding = 0
        return data
    }

    /// pax records: "<length> <key>=<value>\n", the length counting the whole record.
    private func paxRecords(_ data: [UInt8], at offset: UInt64) throws(DockLockError) -> [(String, [UInt8])] {
        var records: [(String, [UInt8])] = []
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")), space - index <= 20,
                  let length = Int(String(decoding: data[index..<space], as: UTF8.self)), length > space - index + 2,
                  index + length <= data.count, data[index + length - 1] == UInt8(ascii: "\n"),
                  let equals = data[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "=")) else {
                throw DockLockError(.invalid, "\(what): the pax header at offset \(offset) has a malformed record at "
                    + "byte \(index)")
            }
            let key = String(decoding: data[(space + 1)..<equals], as: UTF8.self)
            records.append((key, Array(data[(equals + 1)..<(index + length - 1)])))
            index += length
        }
        return records
    }

    private func checkChecksum(_ header: [UInt8], at offset: UInt64) throws(DockLockError) {
        let recorded = try number(header, 148, 8, field: "checksum", at: offset)
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in header.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard Int64(recorded) == unsigned || Int64(recorded) == signed else {
            throw DockLockError(.invalid, "\(what): the tar header at offset \(offset) has a bad checksum; this is "
                + "not a tar archive, or it is corrupt")
        }
    }

    /// A numeric field: octal ASCII (space/NUL padded), or GNU base-256 when the first byte has its top bit set.
    private func number(_ header: [UInt8], _ start: Int, _ length: Int, field: String, at offset: UInt64)
        throws(DockLockError) -> UInt64 {
        let bytes = header[start..<(start + length)]
        if bytes.first! & 0x80 != 0 {
            // Base-256, big-endian after the marker bit; 0xFF first means negative, which no field here may be.
            guard bytes.first! != 0xFF else {
                throw DockLockError(.invalid, "\(what): the header at offset \(offset) has a negative \(field)")
            }
            var value = UInt64(bytes.first! & 0x7F)
            for byte in bytes.dropFirst() {
                guard value >> 55 == 0 else {
                    throw DockLockError(.invalid, "\(what): the header at offset \(offset) has an out-of-range \(field)")
                }
                value = value << 8 | UInt64(byte)
            }
            return value
        }
        var value: UInt64 = 0
        var seenDigit = false
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value >> 60 == 0 else {
                    throw DockLockError(.invalid, "\(what): the header at offset \(offset) has an out-of-range \(field)")
                }
                value = value << 3 | UInt64(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " "), 0:
                if seenDigit { return value }  // the terminator
            default:
                throw DockLockError(.invalid, "\(what): the header at offset \(offset) has a malformed \(field) field")
            }
        }
        return value
    }

    private func owner(_ header: [UInt8], _ start: Int, field: String, at offset: UInt64) throws(DockLockError)
        -> UInt32 {
        guard let value = UInt32(exactly: try number(header, start, 8, field: field, at: offset)) else {
            throw DockLockError(.invalid, "\(what): the header at offset \(offset) has an out-of-range \(field)")
        }
        return value
    }

    private func decimal(_ bytes: [UInt8], field: String, at offset: UInt64) throws(DockLockError) -> UInt64 {
        guard !bytes.isEmpty, bytes.count <= 19, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = UInt64(String(decoding: bytes, as: UTF8.self)) else {
            throw DockLockError(.invalid, "\(what): the \(field) in the header at offset \(offset) is not a number")
        }
        return value
    }

    /// Names must be UTF-8: a name that is not cannot be shown or checked faithfully, so it is refused.
    private func text(_ bytes: some Collection<UInt8>, field: String, at offset: UInt64) throws(DockLockError)
        -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw DockLockError(.unsupported, "\(what): the \(field) in the header at offset \(offset) is not UTF-8")
        }
        return string
    }

    private func trimNUL(_ bytes: some Collection<UInt8>) -> [UInt8] {
        Array(bytes.prefix { $0 != 0 })
    }
}
