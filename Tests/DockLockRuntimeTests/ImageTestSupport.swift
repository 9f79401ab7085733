import DockLockCore
import Foundation
import MetanodeWire
import Testing

@testable import DockLockRuntime

/// A fresh directory under /tmp, removed with everything in it when the value goes.
final class ImageTestDirectory {
    let path: String

    init(_ label: String = "image") {
        var template = Array("/tmp/docklock-\(label)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ relative: String, _ bytes: [UInt8], mode: Int = 0o644) {
        let full = "\(path)/\(relative)"
        try! FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        precondition(FileManager.default.createFile(atPath: full, contents: Data(bytes),
                                                    attributes: [.posixPermissions: mode]))
    }

    func symlink(_ relative: String, to target: String) {
        try! FileManager.default.createSymbolicLink(atPath: "\(path)/\(relative)", withDestinationPath: target)
    }

    /// Names in a directory under this one ([] if it does not exist).
    func list(_ relative: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(path)/\(relative)")) ?? []).sorted()
    }

    func exists(_ relative: String) -> Bool {
        var info = stat()
        return lstat("\(path)/\(relative)", &info) == 0
    }

    func read(_ relative: String) -> String? {
        FileManager.default.contents(atPath: "\(path)/\(relative)").map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Tar archives byte by byte, written here independently of the store's own writer, so tests can make the
/// entries no well-behaved tool would (".." names, devices, links through symlinks).
struct ImageTarBuilder {
    private(set) var bytes: [UInt8] = []

    enum Kind: Character {
        case file = "0", hardLink = "1", symlink = "2", characterDevice = "3", blockDevice = "4", directory = "5"
        case fifo = "6", pax = "x", gnuLongName = "L"
    }

    mutating func file(_ name: String, _ content: String = "", mode: UInt32 = 0o644, uid: UInt32 = 0) {
        entry(name, .file, data: Array(content.utf8), mode: mode, uid: uid)
    }

    mutating func directory(_ name: String, mode: UInt32 = 0o755) { entry(name, .directory, mode: mode) }
    mutating func symlink(_ name: String, to target: String) { entry(name, .symlink, link: target, mode: 0o777) }
    mutating func hardLink(_ name: String, to target: String) { entry(name, .hardLink, link: target) }

    /// An entry whose name goes in a pax header (so it may be any length).
    mutating func paxFile(_ name: String, _ content: String) {
        let record = LayerTarWriter.paxRecord("path", name)
        entry("PaxHeaders/x", .pax, data: record)
        file("placeholder", content)
    }

    /// An entry whose name goes in a GNU 'L' header.
    mutating func gnuLongFile(_ name: String, _ content: String) {
        entry("././@LongLink", .gnuLongName, data: Array(name.utf8) + [0])
        file(String(name.prefix(100)), content)
    }

    mutating func entry(_ name: String, _ kind: Kind, link: String = "", data: [UInt8] = [], mode: UInt32 = 0o644,
                        uid: UInt32 = 0) {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, _ offset: Int, _ width: Int) {
            for (index, byte) in text.utf8.prefix(width).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: UInt64, _ offset: Int, _ width: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: width - 1 - digits.count) + digits, offset, width - 1)
        }
        put(name, 0, 100)
        octal(UInt64(mode), 100, 8)
        octal(UInt64(uid), 108, 8)
        octal(0, 116, 8)
        octal(UInt64(data.count), 124, 12)
        octal(1_700_000_000, 136, 12)
        put("        ", 148, 8)
        header[156] = kind.rawValue.asciiValue!
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        octal(UInt64(header.reduce(0) { $0 + Int($1) }), 148, 7)
        bytes += header + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    /// The archive with its end-of-archive marker.
    var archive: [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }
}

enum ImageFixtures {
    static func sha256(_ bytes: [UInt8]) -> ImageDigest { ImageDigest(sha256: SHA256Hasher.hash(bytes)) }

    /// Runs a tool (gzip, tar) to completion; its stdout.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], input: [UInt8]? = nil) -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        let stdin = Pipe()
        if input != nil { process.standardInput = stdin }
        try! process.run()
        if let input {
            // Written on another thread: the tool may fill its stdout pipe before it has read all of stdin.
            let writer = stdin.fileHandleForWriting
            Thread.detachNewThread {
                writer.write(Data(input))
                try? writer.close()
            }
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        precondition(process.terminationStatus == 0, "\(tool) \(arguments) failed")
        return [UInt8](data)
    }

    /// gzip -n: no name or time in the header, so the same bytes always compress the same.
    static func gzip(_ bytes: [UInt8]) -> [UInt8] { run("/bin/gzip", ["-n", "-c"], input: bytes) }

    static let runConfig = #"{"Env": ["PATH=/bin", "GREETING=hi"], "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "WorkingDir": "/srv", "User": "1000"}"#

    static func configBytes(diffIDs: [ImageDigest]) -> [UInt8] {
        let ids = diffIDs.map { "\"\($0)\"" }.joined(separator: ",")
        return Array(#"{"architecture": "amd64", "os": "linux", "config": \#(runConfig), "rootfs": {"type": "layers", "diff_ids": [\#(ids)]}}"#.utf8)
    }

    /// Writes an OCI image layout into `directory`: each layer tar stored gzipped when `gzip` says so. Returns the
    /// manifest's digest.
    @discardableResult
    static func ociLayout(in directory: ImageTestDirectory, layers: [[UInt8]], gzip compress: Bool = true,
                          name: String? = "docker.io/library/demo:1", corruptBlob: Bool = false) -> ImageDigest {
        func blob(_ bytes: [UInt8]) -> ImageDigest {
            let digest = sha256(bytes)
            directory.write("blobs/sha256/\(digest.hex)", bytes)
            return digest
        }
        var layerJSON: [String] = []
        for tar in layers {
            let stored = compress ? gzip(tar) : tar
            let digest = blob(stored)
            let type = compress ? ImageMediaType.ociLayerGzip : ImageMediaType.ociLayer
            layerJSON.append(#"{"mediaType": "\#(type)", "digest": "\#(digest)", "size": \#(stored.count)}"#)
            if corruptBlob { directory.write("blobs/sha256/\(digest.hex)", stored + [0]) }
        }
        let config = configBytes(diffIDs: layers.map(sha256))
        let configDigest = blob(config)
        let manifest = Array("""
            {"schemaVersion": 2, "mediaType": "\(ImageMediaType.ociManifest)",
             "config": {"mediaType": "\(ImageMediaType.ociConfig)", "digest": "\(configDigest)", "size": \(config.count)},
             "layers": [\(layerJSON.joined(separator: ","))]}
            """.utf8)
        let manifestDigest = blob(manifest)
        let annotations = name.map { #", "annotations": {"\#(ImageAnnotation.containerdName)": "\#($0)", "\#(ImageAnnotation.refName)": "1"}"# } ?? ""
        directory.write("oci-layout", Array(#"{"imageLayoutVersion": "1.0.0"}"#.utf8))
        directory.write("index.json", Array("""
            {"schemaVersion": 2, "manifests": [{"mediaType": "\(ImageMediaType.ociManifest)", "digest": "\(manifestDigest)",
             "size": \(manifest.count)\(annotations)}]}
            """.utf8))
        return manifestDigest
    }

    /// A `docker save` tarball in the old format (manifest.json, <hex>.json, <id>/layer.tar), made with tar(1).
    static func dockerSave(in work: ImageTestDirectory, layers: [[UInt8]], repoTags: [String]) -> String {
        let staging = "save"
        let config = configBytes(diffIDs: layers.map(sha256))
        let configName = "\(sha256(config).hex).json"
        work.write("\(staging)/\(configName)", config)
        var names: [String] = []
        for (index, tar) in layers.enumerated() {
            let name = "layer\(index)/layer.tar"
            work.write("\(staging)/\(name)", tar)
            names.append(name)
        }
        let tags = repoTags.map { "\"\($0)\"" }.joined(separator: ",")
        let layerList = names.map { "\"\($0)\"" }.joined(separator: ",")
        work.write("\(staging)/manifest.json",
                   Array(#"[{"Config": "\#(configName)", "RepoTags": [\#(tags)], "Layers": [\#(layerList)]}]"#.utf8))
        let tarball = "\(work.path)/saved.tar"
        run("/bin/tar", ["-cf", tarball, "-C", "\(work.path)/\(staging)", "."])
        return tarball
    }

    /// A busybox tree: bin/busybox (Debian's busybox-static) and applet symlinks to it.
    static func busyboxTree(in directory: ImageTestDirectory) {
        let busybox = FileManager.default.contents(atPath: "/bin/busybox")!
        directory.write("bin/busybox", [UInt8](busybox), mode: 0o755)
        for applet in ["sh", "true", "echo", "ls", "cat"] { directory.symlink("bin/\(applet)", to: "busybox") }
        directory.write("etc/hostname", Array("box\n".utf8))
    }
}
