import CZlib
import Foundation
import MetanodeCore

/// Unpacks a plugin package tarball (.tar, .tar.gz or .tgz). A package is a handful of regular files, so anything
/// else — links, devices, absolute or `..` paths, nested directories, oversized entries — is refused with the entry
/// named, before anything is written.
public enum PackageArchive {
    public static let archiveBytesMax = 256 << 20
    public static let unpackedBytesMax = 512 << 20
    public static let entriesMax = 64

    public static func isArchive(_ path: String) -> Bool {
        path.hasSuffix(".tar") || path.hasSuffix(".tar.gz") || path.hasSuffix(".tgz")
    }

    /// Unpacks `archive` into a new directory inside `workDirectory` and returns its path.
    public static func unpack(_ archive: String, into workDirectory: String) throws(MetanodeError) -> String {
        var bytes = try FileIO.read(archive, limit: archiveBytesMax, what: "package archive")
        if bytes.starts(with: [0x1f, 0x8b]) { bytes = try gunzip(bytes, source: archive) }
        let entries = try parseTar(bytes, source: archive)
        guard entries.contains(where: { $0.name == PluginManifest.fileName }) else {
            throw MetanodeError(.invalidManifest, "\(archive) has no \(PluginManifest.fileName) at its top level")
        }
        try FileIO.createDirectory(workDirectory)
        var template = Array("\(workDirectory)/unpack-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw MetanodeError(.io, "cannot create a directory in \(workDirectory): \(FileIO.errnoText())")
        }
        let directory = String(cString: created)
        for entry in entries {
            try FileIO.writeAtomically(Array(bytes[entry.range]), to: "\(directory)/\(entry.name)",
                                       mode: entry.executable ? 0o755 : 0o644)
        }
        return directory
    }

    struct Entry {
        var name: String
        var range: Range<Int>
        var executable: Bool
    }

    /// POSIX ustar (and GNU) headers; pax headers are refused rather than half-understood.
    static func parseTar(_ bytes: [UInt8], source: String) throws(MetanodeError) -> [Entry] {
        var entries: [Entry] = []
        var offset = 0
        var topDirectory: String?
        while offset + 512 <= bytes.count {
            let header = bytes[offset..<offset + 512]
            if header.allSatisfy({ $0 == 0 }) { break }  // end-of-archive marker
            let stored = octal(header, 148, 8)
            var sum = 0
            for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : Int(byte) }
            guard stored == sum else {
                throw MetanodeError(.invalidManifest, "\(source): tar header at byte \(offset) has a bad checksum")
            }
            var name = text(header, 0, 100)
            let magic = text(header, 257, 6)
            if magic.hasPrefix("ustar") {
                let prefix = text(header, 345, 155)
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            guard let size = octal(header, 124, 12), size >= 0, size <= unpackedBytesMax else {
                throw MetanodeError(.limitExceeded, "\(source): entry '\(name)' is too large or has a bad size")
            }
            let type = header[header.startIndex + 156]
            let dataStart = offset + 512
            guard dataStart + size <= bytes.count else {
                throw MetanodeError(.invalidManifest, "\(source): entry '\(name)' is truncated")
            }
            offset = dataStart + (size + 511) / 512 * 512

            if name.hasPrefix("./") { name.removeFirst(2) }
            if name.isEmpty || name == "." { continue }
            guard !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else {
                throw MetanodeError(.invalidManifest, "\(source): entry '\(name)' escapes the package directory")
            }
            switch type {
            case UInt8(ascii: "5"):
                let components = name.split(separator: "/")
                guard components.count == 1, topDirectory == nil || topDirectory == String(components[0]) else {
                    throw MetanodeError(.invalidManifest, "\(source): nested directory '\(name)'; a package is flat")
                }
                topDirectory = String(components[0])
                continue
            case UInt8(ascii: "0"), 0:
                break
            case UInt8(ascii: "1"), UInt8(ascii: "2"):
                throw MetanodeError(.invalidManifest, "\(source): entry '\(name)' is a link; packages hold only files")
            case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
                throw MetanodeError(.invalidManifest, "\(source): entry '\(name)' uses extended headers; repack with "
                    + "`tar --format=ustar`")
            default:
                throw MetanodeError(.invalidManifest, "\(source): entry '\(name)' is not a regular file (type "
                    + "'\(Character(UnicodeScalar(type)))')")
            }
            var components = name.split(separator: "/").map(String.init)
            if components.count == 2 {
                guard topDirectory == nil || topDirectory == components[0] else {
                    throw MetanodeError(.invalidManifest, "\(source): entries under two directories; a package is flat")
                }
                topDirectory = components[0]
                components.removeFirst()
            }
            guard components.count == 1 else {
                throw MetanodeError(.invalidManifest, "\(source): nested entry '\(name)'; a package is flat")
            }
            let file = components[0]
            guard !entries.contains(where: { $0.name == file }) else {
                throw MetanodeError(.invalidManifest, "\(source): entry '\(file)' appears twice")
            }
            guard entries.count < entriesMax else {
                throw MetanodeError(.limitExceeded, "\(source): more than \(entriesMax) entries")
            }
            let mode = octal(header, 100, 8) ?? 0o644
            entries.append(Entry(name: file, range: dataStart..<dataStart + size, executable: mode & 0o111 != 0))
        }
        return entries
    }

    private static func text(_ header: ArraySlice<UInt8>, _ start: Int, _ length: Int) -> String {
        let field = header[(header.startIndex + start)..<(header.startIndex + start + length)]
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[field.startIndex..<end], as: UTF8.self)
    }

    private static func octal(_ header: ArraySlice<UInt8>, _ start: Int, _ length: Int) -> Int? {
        let digits = text(header, start, length).trimmingCharacters(in: .whitespaces)
        return digits.isEmpty ? 0 : Int(digits, radix: 8)
    }

    static func gunzip(_ input: [UInt8], source: String) throws(MetanodeError) -> [UInt8] {
        var stream = z_stream()
        guard mn_inflate_init_gzip(&stream) == Z_OK else { throw MetanodeError(.io, "zlib could not start") }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        var input = input
        input.withUnsafeMutableBufferPointer { inputBuffer in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = UInt32(inputBuffer.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    output.append(contentsOf: out[0..<(out.count - Int(stream.avail_out))])
                }
            } while status == Z_OK && output.count <= unpackedBytesMax
        }
        guard output.count <= unpackedBytesMax else {
            throw MetanodeError(.limitExceeded, "\(source) unpacks to more than \(unpackedBytesMax) bytes")
        }
        guard status == Z_STREAM_END else {
            throw MetanodeError(.invalidManifest, "\(source) is not a valid gzip file (zlib status \(status))")
        }
        return output
    }
}
