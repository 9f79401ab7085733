import DockLockCore
import Testing

/// The rules each layer entry must pass before anything is written, and what an accepted entry does.
@Suite("Layer entry policy")
struct LayerEntryPolicyTests {
    static func file(_ path: String, mode: UInt32 = 0o644, size: UInt64 = 1) -> LayerEntry {
        LayerEntry(kind: .file, path: path, mode: mode, size: size)
    }

    static func refusal(_ entries: [LayerEntry], policy: LayerEntryPolicy = LayerEntryPolicy()) -> DockLockError? {
        var policy = policy
        do {
            for entry in entries { _ = try policy.admit(entry) }
            return nil
        } catch {
            return error
        }
    }

    @Test("a leading ./, empty and . components are dropped; a trailing slash is fine")
    func pathsNormalize() throws {
        var policy = LayerEntryPolicy()
        #expect(try policy.admit(Self.file("./usr//bin/./env")) == .file(path: ["usr", "bin", "env"], mode: 0o644, size: 1))
        #expect(try policy.admit(LayerEntry(kind: .directory, path: "etc/", mode: 0o755))
            == .directory(path: ["etc"], mode: 0o755))
    }

    @Test("the root directory entry ./ is skipped")
    func rootSkipped() throws {
        var policy = LayerEntryPolicy()
        #expect(try policy.admit(LayerEntry(kind: .directory, path: "./", mode: 0o755)) == .skip)
    }

    @Test("a .. component is refused, naming the entry and the rule")
    func dotDotRefused() {
        let error = Self.refusal([Self.file("usr/../../etc/passwd")])
        #expect(error?.code == .invalid)
        #expect(error?.message.contains("'usr/../../etc/passwd'") == true)
        #expect(error?.message.contains("'..' component") == true)
    }

    @Test("an absolute path is refused, naming the entry")
    func absoluteRefused() {
        let error = Self.refusal([Self.file("/etc/passwd")])
        #expect(error?.message.contains("'/etc/passwd'") == true)
        #expect(error?.message.contains("absolute") == true)
    }

    @Test("an absolute symlink target is accepted: it resolves inside the container's root")
    func absoluteSymlinkAccepted() throws {
        var policy = LayerEntryPolicy()
        #expect(try policy.admit(LayerEntry(kind: .symlink, path: "etc/mtab", linkTarget: "/proc/self/mounts"))
            == .symlink(path: ["etc", "mtab"], target: "/proc/self/mounts"))
    }

    @Test("a relative symlink target may climb to the root but not above it")
    func relativeSymlinkBounded() throws {
        var policy = LayerEntryPolicy()
        #expect(try policy.admit(LayerEntry(kind: .symlink, path: "usr/lib/x", linkTarget: "../../bin/sh"))
            == .symlink(path: ["usr", "lib", "x"], target: "../../bin/sh"))
        let error = Self.refusal([LayerEntry(kind: .symlink, path: "usr/lib/x", linkTarget: "../../../etc/shadow")])
        #expect(error?.message.contains("'usr/lib/x'") == true)
        #expect(error?.message.contains("climbs above the image root") == true)
    }

    @Test("symlink targets resolve lexically from the link's directory")
    func lexicalResolution() {
        #expect(LayerEntryPolicy.resolve("../b/./c", from: ["a", "x"]) == ["a", "b", "c"])
        #expect(LayerEntryPolicy.resolve("/etc", from: ["a"]) == ["etc"])
        #expect(LayerEntryPolicy.resolve("../..", from: ["a"]) == nil)
    }

    @Test("a hard link to a file placed earlier in the same layer is accepted")
    func hardLinkAccepted() throws {
        var policy = LayerEntryPolicy()
        _ = try policy.admit(Self.file("bin/busybox"))
        #expect(try policy.admit(LayerEntry(kind: .hardLink, path: "bin/sh", linkTarget: "./bin/busybox"))
            == .hardLink(path: ["bin", "sh"], target: ["bin", "busybox"]))
    }

    @Test("a hard link to a path no earlier entry placed, or outside the root, is refused", arguments: [
        "bin/later", "../etc/passwd", "/etc/passwd",
    ])
    func hardLinkRefused(_ target: String) {
        let error = Self.refusal([Self.file("bin/busybox"), LayerEntry(kind: .hardLink, path: "bin/sh", linkTarget: target)])
        #expect(error?.message.contains("'bin/sh'") == true)
    }

    @Test("a hard link cannot reach into an earlier layer, nor to a file replaced by a symlink")
    func hardLinkOwnLayerOnly() {
        var policy = LayerEntryPolicy()
        _ = try? policy.admit(Self.file("a"))
        policy.beginLayer()
        #expect(Self.refusal([LayerEntry(kind: .hardLink, path: "b", linkTarget: "a")], policy: policy) != nil)
        #expect(Self.refusal([Self.file("a"), LayerEntry(kind: .symlink, path: "a", linkTarget: "/x"),
                              LayerEntry(kind: .hardLink, path: "b", linkTarget: "a")]) != nil)
    }

    @Test("device nodes and fifos are refused, naming the entry", arguments: [
        LayerEntry.Kind.characterDevice, .blockDevice, .fifo,
    ])
    func specialFilesRefused(_ kind: LayerEntry.Kind) {
        let error = Self.refusal([LayerEntry(kind: kind, path: "dev/thing")])
        #expect(error?.message.contains("'dev/thing'") == true)
    }

    @Test("setuid and setgid files are refused unless allowed")
    func setuidRefused() throws {
        let error = Self.refusal([Self.file("bin/su", mode: 0o4755)])
        #expect(error?.message.contains("'bin/su' is setuid") == true)
        #expect(Self.refusal([Self.file("bin/wall", mode: 0o2755)])?.message.contains("setgid") == true)
        var allowing = LayerEntryPolicy(allowSetuid: true)
        #expect(try allowing.admit(Self.file("bin/su", mode: 0o4755)) == .file(path: ["bin", "su"], mode: 0o4755, size: 1))
    }

    @Test("a setgid directory is accepted (it only passes on its group)")
    func setgidDirectoryAccepted() throws {
        var policy = LayerEntryPolicy()
        #expect(try policy.admit(LayerEntry(kind: .directory, path: "var/mail", mode: 0o2775))
            == .directory(path: ["var", "mail"], mode: 0o2775))
    }

    @Test(".wh.<name> removes name from lower layers; .wh..wh..opq makes its directory opaque")
    func whiteouts() throws {
        var policy = LayerEntryPolicy()
        #expect(try policy.admit(Self.file("etc/.wh.motd", size: 0)) == .whiteout(path: ["etc", "motd"]))
        #expect(try policy.admit(Self.file("var/cache/.wh..wh..opq", size: 0)) == .opaque(directory: ["var", "cache"]))
        #expect(try policy.admit(Self.file(".wh..wh..opq", size: 0)) == .opaque(directory: []))
    }

    @Test("other .wh..wh. names and a bare .wh. are refused")
    func unknownWhiteoutRefused() {
        #expect(Self.refusal([Self.file("a/.wh..wh.plnk")])?.message.contains("'a/.wh..wh.plnk'") == true)
        #expect(Self.refusal([Self.file("a/.wh.")]) != nil)
    }

    @Test("a file larger than entryBytesMax is refused, naming the limit")
    func entryBytesBounded() {
        let policy = LayerEntryPolicy(limits: LayerLimits(entryBytesMax: 10))
        let error = Self.refusal([Self.file("big", size: 11)], policy: policy)
        #expect(error?.code == .limit)
        #expect(error?.message.contains("entryBytesMax") == true)
    }

    @Test("more than unpackedBytesMax in all layers together is refused")
    func unpackedBytesBounded() {
        var policy = LayerEntryPolicy(limits: LayerLimits(unpackedBytesMax: 10))
        _ = try? policy.admit(Self.file("a", size: 6))
        policy.beginLayer()
        #expect(Self.refusal([Self.file("b", size: 5)], policy: policy)?.message.contains("unpackedBytesMax") == true)
    }

    @Test("more than entriesMax entries are refused")
    func entriesBounded() {
        let policy = LayerEntryPolicy(limits: LayerLimits(entriesMax: 2))
        let error = Self.refusal([Self.file("a"), Self.file("b"), Self.file("c")], policy: policy)
        #expect(error?.message.contains("entriesMax") == true)
        #expect(error?.message.contains("'c'") == true)
    }

    @Test("over-long paths and components are refused")
    func lengthsBounded() {
        #expect(Self.refusal([Self.file(String(repeating: "a/", count: 2100))])?.message.contains("pathBytesMax") == true)
        #expect(Self.refusal([Self.file(String(repeating: "n", count: 256))])?.message.contains("componentBytesMax") == true)
    }

    @Test("control characters in a refused name are escaped in the message")
    func namesEscaped() {
        let error = Self.refusal([Self.file("/x\u{1B}[2J")])
        #expect(error?.message.contains("\\u{1B}") == true)
    }
}
