import DockLockCore
import Foundation
import Testing

@testable import DockLockRuntime

/// The image store on a real file system: imports (OCI layout, docker save), builds, whiteouts, hostile layers,
/// integrity, references and removal.
@Suite("Image store")
struct ImageStoreTests {
    let directory = ImageTestDirectory("store")
    var store: ImageStore { ImageStore(root: "\(directory.path)/docklock") }

    static func simpleLayer() -> [UInt8] {
        var tar = ImageTarBuilder()
        tar.directory("./")
        tar.directory("etc/")
        tar.file("etc/hostname", "demo\n")
        tar.directory("bin/", mode: 0o755)
        tar.file("bin/tool", "#!/bin/sh\n", mode: 0o755)
        tar.symlink("bin/alias", to: "tool")
        tar.hardLink("bin/tool2", to: "bin/tool")
        return tar.archive
    }

    /// Nothing of a refused import is visible or left over.
    func expectNothingLeft() {
        #expect(directory.list("docklock/rootfs").isEmpty)
        #expect(directory.list("docklock/images").isEmpty)
        #expect(directory.list("docklock/tmp").isEmpty)
        #expect(directory.list("docklock/blobs/sha256").isEmpty)
        #expect((try? store.list())?.isEmpty == true)
    }

    @Test("an OCI layout with a gzip layer imports under the name its index gives, with the config's run defaults")
    func importsOCILayout() throws {
        let source = ImageTestDirectory("oci")
        let digest = ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()])
        let record = try store.importImage(from: source.path)
        #expect(record.digest == digest)
        #expect(record.tags == ["demo:1"])
        #expect(record.config == ImageRunConfig(env: ["PATH=/bin", "GREETING=hi"], entrypoint: ["/bin/sh"],
                                                cmd: ["-c", "echo hi"], workingDir: "/srv", user: "1000"))
        #expect(record.layers.count == 1)
        #expect(record.sizeBytes == 5 + 10)
        let rootfs = store.rootfsPath(of: record)
        #expect(rootfs == "\(directory.path)/docklock/rootfs/\(digest.hex)")
        #expect(FileManager.default.contents(atPath: "\(rootfs)/etc/hostname") == Data("demo\n".utf8))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(rootfs)/bin/alias") == "tool")
        let tool = try FileManager.default.attributesOfItem(atPath: "\(rootfs)/bin/tool")
        #expect((tool[.posixPermissions] as? Int) == 0o755)
        #expect((tool[.referenceCount] as? Int) == 2)  // bin/tool2 is a hard link to it
        #expect(try store.resolve("demo:1") == record)
    }

    @Test("a docker save tarball imports under its RepoTags")
    func importsDockerSave() throws {
        let work = ImageTestDirectory("save")
        let tarball = ImageFixtures.dockerSave(in: work, layers: [Self.simpleLayer()], repoTags: ["saved:latest"])
        let record = try store.importImage(from: tarball)
        #expect(record.tags == ["saved:latest"])
        #expect(record.config.workingDir == "/srv")
        #expect(record.layers == [ImageFixtures.sha256(Self.simpleLayer())])
        #expect(try store.resolve("saved").digest == record.digest)
        #expect(directory.read("docklock/rootfs/\(record.digest.hex)/etc/hostname") == "demo\n")
    }

    @Test("an OCI layout in a tarball (newer docker save) imports, tagged from its manifest.json")
    func importsOCITarball() throws {
        let work = ImageTestDirectory("ocitar")
        let layout = ImageTestDirectory("ocilayout")
        let digest = ImageFixtures.ociLayout(in: layout, layers: [Self.simpleLayer()], name: nil)
        let index = try ImageIndex.parse(Array(layout.read("index.json")!.utf8), what: "index.json")
        let manifest = try ImageManifest.parse(Array(layout.read("blobs/sha256/\(index.manifests[0].digest.hex)")!.utf8),
                                               what: "m")
        layout.write("manifest.json", Array(#"[{"Config": "blobs/sha256/\#(manifest.config.digest.hex)", "RepoTags": ["new:2"], "Layers": []}]"#.utf8))
        ImageFixtures.run("/bin/tar", ["-cf", "\(work.path)/image.tar", "-C", layout.path, "."])
        let record = try store.importImage(from: "\(work.path)/image.tar")
        #expect(record.digest == digest)
        #expect(record.tags == ["new:2"])
    }

    @Test("a tag given to import wins over the source's name")
    func givenTagWins() throws {
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()])
        #expect(try store.importImage(from: source.path, tag: "mine").tags == ["mine:latest"])
    }

    @Test("two layers: .wh.<name> removes a lower file, .wh..wh..opq empties a lower directory, upper entries stay")
    func whiteoutsApply() throws {
        var lower = ImageTarBuilder()
        lower.file("a/keep", "1")
        lower.file("a/gone", "2")
        lower.file("b/x", "3")
        lower.file("b/sub/y", "4")
        lower.file("c/z", "5")
        var upper = ImageTarBuilder()
        upper.file("b/new", "6")  // before the opaque marker: it must survive it
        upper.file("b/.wh..wh..opq")
        upper.file("a/.wh.gone")
        upper.file(".wh.c")
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [lower.archive, upper.archive])
        let record = try store.importImage(from: source.path)
        let rootfs = "docklock/rootfs/\(record.digest.hex)"
        #expect(directory.list(rootfs) == ["a", "b"])
        #expect(directory.list("\(rootfs)/a") == ["keep"])
        #expect(directory.list("\(rootfs)/b") == ["new"])
    }

    @Test("building from the same busybox tree twice gives the same digest; symlinks stay symlinks")
    func buildDeterministic() throws {
        let tree = ImageTestDirectory("busybox")
        ImageFixtures.busyboxTree(in: tree)
        let first = try store.build(from: tree.path, tag: "busybox")
        let other = ImageTestDirectory("store2")
        let copy = ImageTestDirectory("busybox2")
        ImageFixtures.busyboxTree(in: copy)
        let second = try ImageStore(root: "\(other.path)/docklock").build(from: copy.path, tag: "busybox")
        #expect(first.digest == second.digest)
        #expect(first.tags == ["busybox:latest"])
        let rootfs = store.rootfsPath(of: first)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(rootfs)/bin/sh") == "busybox")
        #expect(FileManager.default.isExecutableFile(atPath: "\(rootfs)/bin/busybox"))
        #expect(FileManager.default.contentsEqual(atPath: "\(rootfs)/bin/busybox", andPath: "/bin/busybox"))
        #expect(try store.resolve("busybox:latest").config.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    }

    @Test("importing an image already in the store reuses it and moves the tag")
    func reimportReuses() throws {
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()])
        let first = try store.importImage(from: source.path)
        let marker = "\(store.rootfsPath(of: first))/etc/marker"
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        let second = try store.importImage(from: source.path, tag: "again")
        #expect(second.digest == first.digest)
        #expect(second.tags == ["again:latest", "demo:1"])
        #expect(second.importedAtMs == first.importedAtMs)
        #expect(FileManager.default.fileExists(atPath: marker))  // not unpacked again
    }

    /// One hostile entry per case, after a harmless one; `name` must appear in the error.
    static let hostile: [(label: String, name: String, build: @Sendable (inout ImageTarBuilder, String) -> Void)] = [
        ("dot-dot", "../escape", { tar, _ in tar.file("../escape", "x") }),
        ("absolute", "/etc/evil", { tar, _ in tar.file("/etc/evil", "x") }),
        ("escaping symlink", "bin/up", { tar, _ in tar.symlink("bin/up", to: "../../..") }),
        ("hard link outside", "bin/h", { tar, _ in tar.hardLink("bin/h", to: "../../etc/passwd") }),
        ("hard link to no earlier entry", "bin/h", { tar, _ in
            tar.hardLink("bin/h", to: "bin/later")
            tar.file("bin/later", "x")
        }),
        ("write through symlink", "a/owned", { tar, outside in
            tar.symlink("a", to: outside)
            tar.file("a/owned", "pwned")
        }),
        ("character device", "dev/mem", { tar, _ in tar.entry("dev/mem", .characterDevice) }),
        ("block device", "dev/sda", { tar, _ in tar.entry("dev/sda", .blockDevice) }),
        ("fifo", "run/pipe", { tar, _ in tar.entry("run/pipe", .fifo) }),
        ("setuid", "bin/su", { tar, _ in tar.file("bin/su", "x", mode: 0o4755) }),
        ("too large", "big", { tar, _ in tar.file("big", String(repeating: "x", count: 2000)) }),
    ]

    @Test("a hostile layer entry is refused, naming it, and nothing is left in the store",
          arguments: Self.hostile.indices)
    func hostileRefused(_ index: Int) throws {
        let (label, name, build) = Self.hostile[index]
        let outside = ImageTestDirectory("outside")
        var tar = ImageTarBuilder()
        tar.file("bin/ok", "fine")
        build(&tar, outside.path)
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [tar.archive])
        let limited = ImageStore(root: store.root, limits: LayerLimits(entryBytesMax: 1000))
        do {
            _ = try limited.importImage(from: source.path)
            Issue.record("\(label): accepted")
        } catch {
            #expect(error.message.contains("'\(name)'"), "\(label): \(error.message)")
            #expect(error.message.contains("layer 1/1"), "\(label): \(error.message)")
        }
        expectNothingLeft()
        #expect(outside.list("").isEmpty, "\(label): wrote outside the rootfs")
    }

    @Test("writing through a symlink a lower layer placed is refused")
    func symlinkFromLowerLayerRefused() throws {
        let outside = ImageTestDirectory("outside")
        var lower = ImageTarBuilder()
        lower.symlink("etc", to: outside.path)
        var upper = ImageTarBuilder()
        upper.file("etc/passwd", "root::0:0::/:/bin/sh\n")
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [lower.archive, upper.archive])
        #expect(throws: DockLockError.self) { try store.importImage(from: source.path) }
        do { _ = try store.importImage(from: source.path) } catch {
            #expect(error.message.contains("layer 2/2"))
            #expect(error.message.contains("'etc/passwd'"))
            #expect(error.message.contains("'etc' is a symlink"))
        }
        expectNothingLeft()
        #expect(outside.list("").isEmpty)
    }

    @Test("setuid files are kept when the import allows them")
    func setuidAllowed() throws {
        var tar = ImageTarBuilder()
        tar.file("bin/su", "x", mode: 0o4755)
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [tar.archive])
        let record = try store.importImage(from: source.path, allowSetuid: true)
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(store.rootfsPath(of: record))/bin/su")
        #expect((attributes[.posixPermissions] as? Int) == 0o4755)
    }

    @Test("a blob whose content does not match its digest is refused, naming the blob and both digests")
    func corruptBlobRefused() throws {
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()], corruptBlob: true)
        let named = ImageFixtures.sha256(ImageFixtures.gzip(Self.simpleLayer()))
        do {
            _ = try store.importImage(from: source.path)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .integrity)
            #expect(error.message.contains("blobs/sha256/\(named.hex)"))
            #expect(error.message.contains("not the \(named)"))
            #expect(error.message.contains("has digest sha256:"))
        }
        expectNothingLeft()
    }

    @Test("an unknown reference names itself and says how to list and import")
    func unknownReference() {
        do {
            _ = try store.resolve("nosuch:1")
            Issue.record("resolved")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("'nosuch:1'"))
            #expect(error.message.contains("image list"))
            #expect(error.message.contains("image import"))
        }
    }

    @Test("an image resolves by tag, by digest and by a unique prefix of 12 or more hex digits")
    func referencesResolve() throws {
        let source = ImageTestDirectory("oci")
        let digest = ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()])
        _ = try store.importImage(from: source.path)
        for reference in ["demo:1", "\(digest)", String(digest.hex.prefix(12)), "sha256:\(digest.hex.prefix(20))"] {
            #expect(try store.resolve(reference).digest == digest, "\(reference)")
        }
        #expect(throws: DockLockError.self) { try store.resolve(String(digest.hex.prefix(11))) }
    }

    @Test("the daemon's resolved records follow what another writer (the CLI) does to tags and images")
    func resolvedRecordsFollowOtherWriters() throws {
        let reader = ImageStore(root: store.root) // the daemon's store: its own cache, no writes
        let first = ImageTestDirectory("first"), second = ImageTestDirectory("second")
        first.write("f", Array("1".utf8))
        second.write("f", Array("2".utf8))
        let one = try store.build(from: first.path, tag: "app")
        #expect(try reader.resolve("app").digest == one.digest)
        #expect(try reader.resolve("app").digest == one.digest) // from the cache
        #expect(try reader.resolve(one.digest.description).tags == ["app:latest"])
        _ = try store.build(from: first.path, tag: "alias") // tags.json changes: the cached record's tags are stale
        #expect(try reader.resolve("app").tags == ["alias:latest", "app:latest"])
        let two = try store.build(from: second.path, tag: "app") // the tag moves to another image
        #expect(try reader.resolve("app").digest == two.digest)
        _ = try store.remove(one.digest.description)
        #expect(throws: DockLockError.self) { try reader.resolve(one.digest.description) }
        _ = try store.remove("app")
        #expect { try reader.resolve("app") } throws: { ($0 as? DockLockError)?.code == .notFound }
    }

    @Test("rm of one of two tags keeps the image; rm of the last tag deletes it, its rootfs and its blobs")
    func removeThenList() throws {
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()])
        let record = try store.importImage(from: source.path)
        _ = try store.importImage(from: source.path, tag: "other")
        #expect(try store.remove("other") == ImageRemoval(untagged: ["other:latest"], deleted: nil))
        #expect(try store.list().map(\.tags) == [["demo:1"]])
        #expect(try store.remove("demo:1") == ImageRemoval(untagged: ["demo:1"], deleted: record.digest))
        #expect(try store.list().isEmpty)
        #expect(directory.list("docklock/rootfs").isEmpty)
        #expect(directory.list("docklock/blobs/sha256").isEmpty)
        #expect(throws: DockLockError.self) { try store.resolve("demo:1") }
    }

    @Test("rm by digest removes the image and every tag, keeping blobs another image shares")
    func removeByDigest() throws {
        let source = ImageTestDirectory("oci")
        let digest = ImageFixtures.ociLayout(in: source, layers: [Self.simpleLayer()])
        _ = try store.importImage(from: source.path, tag: "a")
        _ = try store.importImage(from: source.path, tag: "b")
        let tree = ImageTestDirectory("tree")
        tree.write("f", Array("x".utf8))
        let kept = try store.build(from: tree.path, tag: "kept")
        let removal = try store.remove(digest.description)
        #expect(removal == ImageRemoval(untagged: ["a:latest", "b:latest"], deleted: digest))
        #expect(try store.list().map(\.digest) == [kept.digest])
        #expect(Set(directory.list("docklock/blobs/sha256")) == Set([kept.digest.hex, kept.configDigest.hex]
            + kept.layers.map(\.hex)))
    }

    @Test("a zstd layer is refused as unsupported")
    func zstdLayerRefused() throws {
        let source = ImageTestDirectory("oci")
        ImageFixtures.ociLayout(in: source, layers: [[0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0, 0]], gzip: false)
        #expect(throws: DockLockError.self) { try store.importImage(from: source.path) }
        expectNothingLeft()
    }

    @Test("a path that is neither a layout nor a tarball is refused with what was expected")
    func notAnImage() throws {
        let empty = ImageTestDirectory("empty")
        #expect(throws: DockLockError.self) { try store.importImage(from: empty.path) }
        do { _ = try store.importImage(from: empty.path) } catch {
            #expect(error.message.contains("neither an OCI image layout"))
        }
        #expect(throws: DockLockError.self) { try store.importImage(from: "\(empty.path)/missing.tar") }
    }
}
