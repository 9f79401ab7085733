import Foundation
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// One tar entry to build in memory.
struct TarEntry: Sendable {
    var name: String
    var type: Character = "0"
    var data: [UInt8] = []
    var mode = 0o644
    var link = ""
    /// ustar's prefix field (joined to the name with "/").
    var prefix = ""

    static func file(_ name: String, _ text: String = "x", mode: Int = 0o644) -> TarEntry {
        TarEntry(name: name, data: Array(text.utf8), mode: mode)
    }

    static func directory(_ name: String) -> TarEntry { TarEntry(name: name, type: "5", mode: 0o755) }
}

/// Builds POSIX ustar archives byte by byte.
enum Tar {
    static func header(_ entry: TarEntry, size: Int? = nil, checksumDelta: Int = 0) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, _ length: Int) {
            let bytes = Array(text.utf8)
            precondition(bytes.count <= length, "\(text) does not fit in \(length) bytes")
            header.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
        func octal(_ value: Int, at offset: Int, _ length: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: length - 1 - digits.count) + digits, at: offset, length - 1)
        }
        put(entry.name, at: 0, 100)
        octal(entry.mode, at: 100, 8)
        octal(0, at: 108, 8)
        octal(0, at: 116, 8)
        octal(size ?? entry.data.count, at: 124, 12)
        octal(1_700_000_000, at: 136, 12)
        header[156] = entry.type.asciiValue!
        put(entry.link, at: 157, 100)
        put("ustar", at: 257, 6)
        put("00", at: 263, 2)
        put(entry.prefix, at: 345, 155)
        // The checksum counts its own field as eight spaces.
        put("        ", at: 148, 8)
        let sum = header.reduce(0) { $0 + Int($1) } + checksumDelta
        let digits = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - digits.count) + digits, at: 148, 6)
        header[154] = 0
        header[155] = 0x20
        return header
    }

    static func padded(_ data: [UInt8]) -> [UInt8] {
        data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    static func archive(_ entries: [TarEntry]) -> [UInt8] {
        var bytes: [UInt8] = []
        for entry in entries { bytes += header(entry) + padded(entry.data) }
        return bytes + [UInt8](repeating: 0, count: 1024)
    }
}

/// A refused archive and the words its message must contain.
struct RefusedArchive: Sendable, CustomTestStringConvertible {
    var label: String
    var bytes: [UInt8]
    var message: String
    var testDescription: String { label }
}

@Suite("Package archives")
struct PackageArchiveTests {
    static let manifest = TarEntry.file(PluginManifest.fileName, "{\"name\": \"p\"}")
    static let library = TarEntry.file("libp.so", "\u{7f}ELF...", mode: 0o755)

    static func parse(_ bytes: [UInt8]) throws(MetanodeError) -> [String: String] {
        let entries = try PackageArchive.parseTar(bytes, source: "test.tar")
        return Dictionary(uniqueKeysWithValues: entries.map {
            ($0.name, String(decoding: bytes[$0.range], as: UTF8.self))
        })
    }

    @Test("a flat archive of regular files is accepted with each file's content")
    func flatFiles() throws {
        let files = try Self.parse(Tar.archive([Self.manifest, Self.library]))
        #expect(files == [PluginManifest.fileName: "{\"name\": \"p\"}", "libp.so": "\u{7f}ELF..."])
    }

    @Test("files under one top directory are accepted as if flat, \"./\" and ustar prefixes included")
    func oneTopDirectory() throws {
        var prefixed = Self.library
        prefixed.prefix = "pkg"
        let files = try Self.parse(Tar.archive([
            .directory("./"), .directory("pkg/"), .file("pkg/\(PluginManifest.fileName)", "{}"), prefixed,
        ]))
        #expect(files == [PluginManifest.fileName: "{}", "libp.so": "\u{7f}ELF..."])
    }

    @Test("the executable bit of an entry is kept")
    func executableBit() throws {
        let entries = try PackageArchive.parseTar(Tar.archive([Self.manifest, Self.library]), source: "test.tar")
        #expect(entries.map(\.executable) == [false, true])
    }

    static let refused: [RefusedArchive] = {
        let good = Tar.archive([manifest])
        var badChecksum = Tar.header(.file("libp.so"), checksumDelta: 1) + Tar.padded(Array("x".utf8))
        badChecksum = Array(good.prefix(1024)) + badChecksum
        let truncated = Tar.header(.file("libp.so"), size: 1000) + [UInt8](repeating: 0x41, count: 100)
        return [
            RefusedArchive(label: "a ../ path", bytes: Tar.archive([manifest, .file("../evil.so")]),
                           message: "entry '../evil.so' escapes the package directory"),
            RefusedArchive(label: "a ../ inside a path", bytes: Tar.archive([.file("pkg/../../evil.so")]),
                           message: "escapes the package directory"),
            RefusedArchive(label: "an absolute path", bytes: Tar.archive([.file("/etc/passwd")]),
                           message: "entry '/etc/passwd' escapes the package directory"),
            RefusedArchive(label: "a symlink",
                           bytes: Tar.archive([TarEntry(name: "libp.so", type: "2", link: "/etc/passwd")]),
                           message: "entry 'libp.so' is a link"),
            RefusedArchive(label: "a hard link",
                           bytes: Tar.archive([manifest, TarEntry(name: "libp.so", type: "1", link: manifest.name)]),
                           message: "entry 'libp.so' is a link"),
            RefusedArchive(label: "a nested directory",
                           bytes: Tar.archive([.directory("pkg/"), .directory("pkg/sub/")]),
                           message: "nested directory 'pkg/sub/'"),
            RefusedArchive(label: "a nested file", bytes: Tar.archive([.file("pkg/sub/libp.so")]),
                           message: "nested entry 'pkg/sub/libp.so'"),
            RefusedArchive(label: "two top directories", bytes: Tar.archive([.file("a/x"), .file("b/y")]),
                           message: "entries under two directories"),
            RefusedArchive(label: "a device node", bytes: Tar.archive([TarEntry(name: "dev", type: "3")]),
                           message: "entry 'dev' is not a regular file (type '3')"),
            RefusedArchive(label: "a pax header", bytes: Tar.archive([TarEntry(name: "pax", type: "x")]),
                           message: "uses extended headers"),
            RefusedArchive(label: "a duplicate file", bytes: Tar.archive([manifest, manifest]),
                           message: "entry '\(PluginManifest.fileName)' appears twice"),
            RefusedArchive(label: "a bad checksum", bytes: badChecksum,
                           message: "tar header at byte 1024 has a bad checksum"),
            RefusedArchive(label: "a truncated entry", bytes: truncated, message: "entry 'libp.so' is truncated"),
        ]
    }()

    @Test("unsafe or malformed archives are refused with the entry named", arguments: refused)
    func refusedArchive(_ archive: RefusedArchive) {
        expectFailure(.invalidManifest, archive.message) { () throws(MetanodeError) in try Self.parse(archive.bytes) }
    }

    @Test("a .tgz made by tar -czf unpacks to the same files and modes")
    func gzipRoundTrip() throws {
        let scratch = try Scratch("tgz")
        let source = scratch.file("pkg")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: false)
        let library = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(library).write(to: URL(fileURLWithPath: "\(source)/libp.so"))
        try scratch.write("{\"name\": \"p\"}", to: "pkg/\(PluginManifest.fileName)")
        chmod("\(source)/libp.so", 0o755)

        let layouts = [("flat.tgz", ["-C", source, "."]), ("topdir.tar.gz", ["-C", scratch.path, "pkg"])]
        for (archive, arguments) in layouts {
            let result = try run("/bin/tar", ["-czf", scratch.file(archive)] + arguments)
            try #require(result.status == 0, "tar failed: \(result.output)")
            let unpacked = try PackageArchive.unpack(scratch.file(archive), into: scratch.file("work"))
            #expect(FileManager.default.contents(atPath: "\(unpacked)/libp.so") == Data(library), "\(archive)")
            #expect(FileManager.default.contents(atPath: "\(unpacked)/\(PluginManifest.fileName)")
                == Data("{\"name\": \"p\"}".utf8), "\(archive)")
            #expect(FileManager.default.isExecutableFile(atPath: "\(unpacked)/libp.so"), "\(archive)")
            #expect(!FileManager.default.isExecutableFile(atPath: "\(unpacked)/\(PluginManifest.fileName)"))
        }
    }

    @Test("an archive without a manifest at its top level is refused")
    func missingManifest() throws {
        let scratch = try Scratch("tar-nomanifest")
        try Data(Tar.archive([Self.library])).write(to: URL(fileURLWithPath: scratch.file("p.tar")))
        expectFailure(.invalidManifest, "has no \(PluginManifest.fileName) at its top level") {
            () throws(MetanodeError) in try PackageArchive.unpack(scratch.file("p.tar"), into: scratch.file("work"))
        }
    }

    @Test("a corrupt gzip stream is refused")
    func corruptGzip() throws {
        let scratch = try Scratch("tgz-bad")
        let truncatedGzip: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad]
        try Data(truncatedGzip).write(to: URL(fileURLWithPath: scratch.file("p.tgz")))
        expectFailure(.invalidManifest, "is not a valid gzip file") { () throws(MetanodeError) in
            try PackageArchive.unpack(scratch.file("p.tgz"), into: scratch.file("work"))
        }
    }
}
