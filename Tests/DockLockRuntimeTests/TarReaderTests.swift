import DockLockCore
import Foundation
import Testing

@testable import DockLockRuntime

/// A class that serves bytes from memory, in chunks no larger than `chunk`, to exercise buffer boundaries.
final class ImageMemorySource: TarSource {
    private let bytes: [UInt8]
    private let chunk: Int
    private var position = 0

    init(_ bytes: [UInt8], chunk: Int = .max) {
        self.bytes = bytes
        self.chunk = chunk
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DockLockError) -> Int {
        let count = min(buffer.count, chunk, bytes.count - position)
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: count) }
        position += count
        return count
    }
}

/// The streaming tar reader and gzip inflater, against archives from GNU tar and gzip and hand-made ones.
@Suite("Tar reader")
struct TarReaderTests {
    static func entries(_ bytes: [UInt8], chunk: Int = .max) throws -> [(LayerEntry, String)] {
        let reader = TarReader(ImageMemorySource(bytes, chunk: chunk), what: "test.tar")
        var out: [(LayerEntry, String)] = []
        while let entry = try reader.next() {
            out.append((entry, String(decoding: try reader.readAll(bytesMax: 1 << 20), as: UTF8.self)))
        }
        return out
    }

    /// tar(1) over a small tree with a long name and a long symlink target, in `format`.
    static func gnuTar(format: String) -> [UInt8] {
        let tree = ImageTestDirectory("tartree")
        let long = String(repeating: "d", count: 120) + "/" + String(repeating: "f", count: 120)
        tree.write(long, Array("long".utf8))
        tree.write("small", Array("s".utf8), mode: 0o600)
        tree.symlink("link", to: String(repeating: "t", count: 150))
        return ImageFixtures.run("/bin/tar", ["--format=\(format)", "--sort=name", "-cf", "-", "-C", tree.path, "."])
    }

    @Test("GNU and pax long names and link targets from tar(1) are read in full", arguments: ["gnu", "pax"])
    func longNames(_ format: String) throws {
        let read = try Self.entries(Self.gnuTar(format: format))
        let byPath = Dictionary(read.map { ($0.0.path, $0) }, uniquingKeysWith: { first, _ in first })
        let long = "./" + String(repeating: "d", count: 120) + "/" + String(repeating: "f", count: 120)
        #expect(byPath[long]?.1 == "long")
        #expect(byPath[long]?.0.kind == .file)
        #expect(byPath["./small"]?.0.mode == 0o600)
        #expect(byPath["./link"]?.0.kind == .symlink)
        #expect(byPath["./link"]?.0.linkTarget == String(repeating: "t", count: 150))
        #expect(byPath["./" + String(repeating: "d", count: 120) + "/"]?.0.kind == .directory)
    }

    @Test("entries read the same however the stream is chunked")
    func chunking() throws {
        let archive = Self.gnuTar(format: "pax")
        let whole = try Self.entries(archive).map { "\($0.0.path) \($0.1)" }
        #expect(try Self.entries(archive, chunk: 7).map { "\($0.0.path) \($0.1)" } == whole)
    }

    @Test("hand-made pax and GNU 'L' headers name the next entry")
    func extensionHeaders() throws {
        var tar = ImageTarBuilder()
        let name = String(repeating: "p", count: 300)
        tar.paxFile(name, "pax")
        tar.gnuLongFile(String(repeating: "g", count: 200), "gnu")
        let read = try Self.entries(tar.archive)
        #expect(read.map(\.0.path) == [name, String(repeating: "g", count: 200)])
        #expect(read.map(\.1) == ["pax", "gnu"])
    }

    @Test("device, fifo and hard-link entries come back with their kinds")
    func kinds() throws {
        var tar = ImageTarBuilder()
        tar.entry("c", .characterDevice)
        tar.entry("b", .blockDevice)
        tar.entry("f", .fifo)
        tar.file("x", "1", uid: 1000)
        tar.hardLink("y", to: "x")
        let read = try Self.entries(tar.archive)
        #expect(read.map(\.0.kind) == [.characterDevice, .blockDevice, .fifo, .file, .hardLink])
        #expect(read[3].0.uid == 1000)
        #expect(read[4].0.linkTarget == "x")
    }

    @Test("an extension header larger than extensionBytesMax is refused")
    func extensionBounded() {
        var tar = ImageTarBuilder()
        tar.paxFile(String(repeating: "p", count: 5000), "x")
        let reader = TarReader(ImageMemorySource(tar.archive), what: "t.tar", extensionBytesMax: 1024)
        #expect(throws: DockLockError.self) { try reader.next() }
    }

    @Test("a truncated archive is refused as truncated")
    func truncated() {
        var tar = ImageTarBuilder()
        tar.file("a", String(repeating: "x", count: 1000))
        let reader = TarReader(ImageMemorySource(Array(tar.bytes.prefix(900))), what: "t.tar")
        do {
            _ = try reader.next()
            _ = try reader.readAll(bytesMax: 2000)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("truncated"))
        }
    }

    @Test("a header with a bad checksum is refused")
    func badChecksum() {
        var tar = ImageTarBuilder()
        tar.file("a", "x")
        var bytes = tar.archive
        bytes[0] = UInt8(ascii: "b")
        #expect(throws: DockLockError.self) { try TarReader(ImageMemorySource(bytes), what: "t").next() }
    }

    @Test("GNU sparse entries are refused as unsupported, by name")
    func sparseRefused() {
        var tar = ImageTarBuilder()
        tar.file("a", "x")
        var bytes = tar.archive
        bytes[156] = UInt8(ascii: "S")
        // Fix the checksum for the changed type byte.
        for index in 148..<156 { bytes[index] = UInt8(ascii: " ") }
        let sum = String(bytes[0..<512].reduce(0) { $0 + Int($1) }, radix: 8)
        for (index, byte) in (String(repeating: "0", count: 6 - sum.count) + sum).utf8.enumerated() { bytes[148 + index] = byte }
        bytes[154] = 0
        do {
            _ = try TarReader(ImageMemorySource(bytes), what: "t").next()
            Issue.record("accepted")
        } catch {
            #expect(error.code == .unsupported)
            #expect(error.message.contains("'a'"))
        }
    }

    @Test("gzip inflates as it is read, concatenated members included")
    func gzipStreams() throws {
        let first = [UInt8](repeating: 0x41, count: 300_000)
        let second = Array("and more".utf8)
        let compressed = ImageFixtures.gzip(first) + ImageFixtures.gzip(second)
        let source = try GzipSource(ImageMemorySource(compressed, chunk: 1000), outputBytesMax: 1 << 20, what: "g")
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
            if count == 0 { break }
            out += buffer[..<count]
        }
        #expect(out == first + second)
    }

    @Test("gzip output past outputBytesMax is refused (a gzip bomb)")
    func gzipBounded() throws {
        let source = try GzipSource(ImageMemorySource(ImageFixtures.gzip([UInt8](repeating: 0, count: 100_000))),
                                    outputBytesMax: 50_000, what: "bomb")
        var buffer = [UInt8](repeating: 0, count: 8192)
        #expect(throws: DockLockError.self) {
            while try buffer.withUnsafeMutableBytes({ try source.read(into: $0) }) > 0 {}
        }
    }

    @Test("truncated or corrupt gzip is refused")
    func gzipCorrupt() throws {
        let compressed = ImageFixtures.gzip(Array(repeating: 7, count: 10_000))
        for bad in [Array(compressed.prefix(compressed.count / 2)), Array(compressed.prefix(12)) + [0xFF, 0xFF, 0xFF]] {
            let source = try GzipSource(ImageMemorySource(bad), outputBytesMax: 1 << 20, what: "g")
            var buffer = [UInt8](repeating: 0, count: 4096)
            #expect(throws: DockLockError.self) {
                while try buffer.withUnsafeMutableBytes({ try source.read(into: $0) }) > 0 {}
            }
        }
    }

    @Test("the store's own tar writer output reads back with the same names, links and contents")
    func writerRoundTrip() throws {
        let tree = ImageTestDirectory("writer")
        let long = String(repeating: "n", count: 150)
        tree.write("a/\(long)", Array("content".utf8), mode: 0o640)
        tree.symlink("a/l", to: "../x")
        let file = ImageTestDirectory("out")
        let out = ImageBlobWriter(try ImageFD.open("\(file.path)/t.tar", O_WRONLY | O_CREAT, mode: 0o600))
        var writer = LayerTarWriter(limits: .standard, out: out)
        try writer.write(directory: tree.path)
        _ = try out.finish()
        let read = try Self.entries([UInt8](FileManager.default.contents(atPath: "\(file.path)/t.tar")!))
        #expect(read.map(\.0.path) == ["a/", "a/l", "a/\(long)"])
        #expect(read[1].0.linkTarget == "../x")
        #expect(read[2].1 == "content")
        #expect(read[2].0.mode == 0o640)
        #expect(read.allSatisfy { $0.0.mtimeSeconds == 0 && $0.0.uid == 0 })
    }
}
