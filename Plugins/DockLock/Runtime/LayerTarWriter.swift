import DockLockCore
import Foundation
import MetanodeWire

/// Writes a file while hashing it (SHA-256) and counting its bytes, in 64 KiB writes.
final class ImageBlobWriter {
    private static let bufferBytes = 64 << 10
    let file: ImageFD
    private var hasher = SHA256Hasher()
    private var pending: [UInt8] = []
    private(set) var byteCount: UInt64 = 0

    init(_ file: ImageFD) {
        self.file = file
        pending.reserveCapacity(Self.bufferBytes)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(DockLockError) {
        hasher.update(bytes)
        byteCount += UInt64(bytes.count)
        if pending.count + bytes.count > Self.bufferBytes { try flush() }
        if bytes.count >= Self.bufferBytes { try file.write(bytes) } else { pending.append(contentsOf: bytes) }
    }

    func write(_ bytes: [UInt8]) throws(DockLockError) {
        try ImageSys.typed { try bytes.withUnsafeBytes { try write($0) } }
    }

    func flush() throws(DockLockError) {
        guard !pending.isEmpty else { return }
        try file.write(pending)
        pending.removeAll(keepingCapacity: true)
    }

    /// Flushes and syncs; the digest of everything written.
    func finish() throws(DockLockError) -> ImageDigest {
        try flush()
        try file.sync()
        return ImageDigest(sha256: hasher.finalize())
    }
}

/// Tars a host directory, deterministically, so the same tree always gives the same layer digest: entries in
/// byte order, depth first; mtime 0; owner 0:0 with no user or group names; permission bits as on disk. Regular
/// files, directories and symlinks (kept as symlinks) only; a hard-linked file is written once per name. Names or
/// link targets over 100 bytes and files over 8 GiB get a pax header.
struct LayerTarWriter {
    let limits: LayerLimits
    let out: ImageBlobWriter
    private var entryCount = 0
    private var totalBytes: UInt64 = 0

    init(limits: LayerLimits, out: ImageBlobWriter) {
        self.limits = limits
        self.out = out
    }

    /// Writes the tree under `directory` and the end-of-archive marker.
    mutating func write(directory: String) throws(DockLockError) {
        let root = try ImageFD.open(directory, O_RDONLY | O_DIRECTORY)
        try walk(root, prefix: "", source: directory)
        try out.write([UInt8](repeating: 0, count: 2 * TarReader.blockBytes))
    }

    private mutating func walk(_ directory: ImageFD, prefix: String, source: String) throws(DockLockError) {
        for name in try directory.entries() {
            let path = prefix + name
            let shown = "\(source)/\(path)"
            guard let info = try directory.stat(name) else { continue }  // gone since the listing
            entryCount += 1
            guard entryCount <= limits.entriesMax, path.utf8.count < limits.pathBytesMax else {
                throw DockLockError(.limit, "build: \(shown): the tree has more than \(limits.entriesMax) entries or "
                    + "a path over \(limits.pathBytesMax) bytes")
            }
            let mode = UInt32(info.st_mode) & 0o7777
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                try header(path + "/", type: "5", mode: mode)
                try walk(try directory.openDirectory(name), prefix: path + "/", source: source)
            case S_IFREG:
                let size = UInt64(info.st_size)
                totalBytes += size
                guard size <= limits.entryBytesMax, totalBytes <= limits.unpackedBytesMax else {
                    throw DockLockError(.limit, "build: \(shown) is \(size) bytes, past entryBytesMax "
                        + "(\(limits.entryBytesMax)) or unpackedBytesMax (\(limits.unpackedBytesMax)) for the tree")
                }
                try header(path, type: "0", mode: mode, size: size)
                try copy(try directory.openAt(name, O_RDONLY), size: size, shown: shown)
            case S_IFLNK:
                var target = [CChar](repeating: 0, count: limits.linkTargetBytesMax + 1)
                let count = try ImageSys.call("readlink \(shown)") {
                    readlinkat(directory.fd, name, &target, target.count)
                }
                guard count <= limits.linkTargetBytesMax else {
                    throw DockLockError(.limit, "build: the symlink \(shown) has a target over "
                        + "\(limits.linkTargetBytesMax) bytes")
                }
                let link = String(decoding: target[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                try header(path, type: "2", mode: 0o777, link: link)
            default:
                throw DockLockError(.invalid, "build: \(shown) is a socket, fifo or device; an image is built from "
                    + "regular files, directories and symlinks")
            }
        }
    }

    private func copy(_ file: ImageFD, size: UInt64, shown: String) throws(DockLockError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var left = size
        while true {
            let count = try file.read(into: buffer)
            guard UInt64(count) <= left, count > 0 || left == 0 else {
                throw DockLockError(.invalid, "build: \(shown) changed size while it was read; build again")
            }
            if count == 0 { break }
            try out.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            left -= UInt64(count)
        }
        let padding = (TarReader.blockBytes - Int(size % UInt64(TarReader.blockBytes))) % TarReader.blockBytes
        try out.write([UInt8](repeating: 0, count: padding))
    }

    /// A ustar header, preceded by a pax header when a field does not fit.
    private func header(_ name: String, type: Character, mode: UInt32, size: UInt64 = 0, link: String = "")
        throws(DockLockError) {
        var pax: [(String, String)] = []
        if name.utf8.count > 100 { pax.append(("path", name)) }
        if link.utf8.count > 100 { pax.append(("linkpath", link)) }
        if size > 0o77777777777 { pax.append(("size", String(size))) }
        if !pax.isEmpty {
            var records: [UInt8] = []
            for (key, value) in pax { records += Self.paxRecord(key, value) }
            try out.write(Self.block(name: "PaxHeaders/entry", type: "x", mode: 0o644, size: UInt64(records.count),
                                     link: ""))
            try out.write(records)
            let padding = (TarReader.blockBytes - records.count % TarReader.blockBytes) % TarReader.blockBytes
            try out.write([UInt8](repeating: 0, count: padding))
        }
        try out.write(Self.block(name: name, type: type, mode: mode, size: size > 0o77777777777 ? 0 : size, link: link))
    }

    /// "<length> <key>=<value>\n", where the length counts itself.
    static func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).utf8.count + body.utf8.count != length { length += 1 }
        return Array((String(length) + body).utf8)
    }

    /// One 512-byte ustar header; names and links longer than their fields are cut (a pax header carries them).
    static func block(name: String, type: Character, mode: UInt32, size: UInt64, link: String) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: TarReader.blockBytes)
        func put(_ bytes: some Collection<UInt8>, at offset: Int, max: Int) {
            for (index, byte) in bytes.prefix(max).enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: UInt64, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8), at: offset,
                max: width - 1)
        }
        put(Array(name.utf8), at: 0, max: 100)
        octal(UInt64(mode), at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        put(Array("        ".utf8), at: 148, max: 8)
        block[156] = type.asciiValue!
        put(Array(link.utf8), at: 157, max: 100)
        put(Array("ustar\u{0}00".utf8), at: 257, max: 8)
        let sum = block.reduce(0) { $0 + Int($1) }
        octal(UInt64(sum), at: 148, width: 7)  // six digits, then a NUL and the space already there
        block[154] = 0
        return block
    }
}
