import Foundation
import MetanodeCore
import Testing

@Suite("Packages, trust and bad input")
struct PackageTests {
    @Test("a plugin built for another ABI major is refused at load with both versions named")
    func wrongMajorRefusedAtLoad() throws {
        let node = try TestNode("abi2")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "future", defines: ["ABI_MAJOR": "2", "ABI_MINOR": "0"]))
        let process = try node.start()
        let status = try JSONValue.parse(try process.get("/v1/plugins/future").body)
        #expect(status["status"]?.stringValue == "not started")
        #expect(status["reason"]?.stringValue?.contains("built for plugin ABI 2.0; this kernel has ABI 1.\(Limits.abiMinor)") == true,
                "\(status)")
        process.stop()
    }

    @Test("a plugin needing a newer ABI minor is refused at load with both versions named")
    func newerMinorRefusedAtLoad() throws {
        let node = try TestNode("abi19")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "newer", defines: ["ABI_MINOR": "9"]))
        let process = try node.start()
        let status = try JSONValue.parse(try process.get("/v1/plugins/newer").body)
        #expect(status["reason"]?.stringValue?.contains("needs plugin ABI 1.9; this kernel has ABI 1.\(Limits.abiMinor)") == true,
                "\(status)")
        process.stop()
    }

    @Test("a manifest declaring a newer ABI is refused at install")
    func manifestABIRefusedAtInstall() throws {
        let node = try TestNode("abimanifest")
        let package = try Packages.testPlugin(in: node.scratch, name: "later", abi: "1.7")
        try node.cli.ok("plugin", "sign", package, "--key", node.key + ".key")
        let error = try node.cli.fails("plugin", "install", package)
        #expect(error.contains("needs plugin ABI 1.7; this kernel has ABI 1.\(Limits.abiMinor)"), "\(error)")
    }

    @Test("unsigned packages are refused unless --allow-unsigned, which warns")
    func unsignedPackages() throws {
        let node = try TestNode("unsigned")
        let package = try Packages.testPlugin(in: node.scratch, name: "rough")
        let refused = try node.cli.fails("plugin", "install", package)
        #expect(refused.contains("is not signed"))
        #expect(refused.contains("--allow-unsigned"))
        let allowed = try node.cli("plugin", "install", package, "--allow-unsigned")
        try allowed.requireSuccess()
        #expect(allowed.stderr.contains("warning:"))
        try node.cli.ok("plugin", "enable", "rough")
        let process = try node.start()
        #expect(try process.get("/v1/plugins/rough/hello").status == 200)
        process.stop()
    }

    @Test("a package signed by a key outside the trust store is refused, naming the key")
    func untrustedSigner() throws {
        let node = try TestNode("untrusted")
        let stranger = node.scratch.file("stranger")
        try node.cli.ok("plugin", "keygen", "--out", stranger)
        let package = try Packages.testPlugin(in: node.scratch, name: "alien")
        try node.cli.ok("plugin", "sign", package, "--key", stranger + ".key")
        let error = try node.cli.fails("plugin", "install", package)
        #expect(error.contains("not in the trust store"), "\(error)")
        #expect(error.contains("metanode trust add"))
    }

    @Test("a library changed after signing is refused; so is a manifest changed after signing")
    func tamperedPackages() throws {
        let node = try TestNode("tamper")
        let package = try Packages.testPlugin(in: node.scratch, name: "victim")
        try node.cli.ok("plugin", "sign", package, "--key", node.key + ".key")
        #expect(try node.cli("plugin", "verify", package).status == 0)

        let library = package + "/libvictim.so"
        let handle = try #require(FileHandle(forWritingAtPath: library))
        handle.seekToEndOfFile()
        handle.write(Data([0]))
        try handle.close()
        #expect(try node.cli.fails("plugin", "install", package).contains("modified after signing"))

        try node.cli.ok("plugin", "sign", package, "--key", node.key + ".key")  // fresh signature, then edit text
        let manifestPath = package + "/metanode-plugin.json"
        let edited = try String(contentsOfFile: manifestPath, encoding: .utf8)
            .replacingOccurrences(of: "\"http\"", with: "\"sign\"")
        try edited.write(toFile: manifestPath, atomically: true, encoding: .utf8)
        #expect(try node.cli.fails("plugin", "install", package).contains("does not match"))
    }

    @Test("minisign itself verifies the signature metanode writes")
    func minisignVerifies() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/minisign"),
                     "minisign is not installed (make deps installs it)")
        let node = try TestNode("minisign")
        let package = try Packages.testPlugin(in: node.scratch, name: "portable")
        try node.cli.ok("plugin", "sign", package, "--key", node.key + ".key")
        let result = try run("/usr/bin/minisign", ["-V", "-m", package + "/metanode-plugin.json", "-p", node.key + ".pub"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("plugin:portable 1.0.0"))
    }

    @Test("a tarball package installs; one with a path escaping the package is refused")
    func tarballs() throws {
        let node = try TestNode("tar")
        let package = try Packages.testPlugin(in: node.scratch, name: "packed")
        try node.cli.ok("plugin", "sign", package, "--key", node.key + ".key")
        let archive = node.scratch.file("packed.tar.gz")
        try run("/bin/tar", ["--format=ustar", "-czf", archive, "-C", package, "."]).requireSuccess()
        try node.cli.ok("plugin", "install", archive)
        #expect(try node.cli.json("plugin", "info", "packed")["signer"]?.stringValue?.isEmpty == false)

        let evil = node.scratch.file("evil")
        try FileManager.default.createDirectory(atPath: evil + "/inner", withIntermediateDirectories: true)
        try "{}".write(toFile: evil + "/inner/metanode-plugin.json", atomically: true, encoding: .utf8)
        let evilArchive = node.scratch.file("evil.tar")
        try run("/bin/tar", ["--format=ustar", "-cf", evilArchive, "-C", evil + "/inner", "metanode-plugin.json",
                             "--transform", "s,^,../,"]).requireSuccess()
        #expect(try node.cli.fails("plugin", "install", evilArchive).contains("escapes the package directory"))

        let linked = node.scratch.file("linked")
        try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: linked + "/metanode-plugin.json", withDestinationPath: "/etc/passwd")
        let linkedArchive = node.scratch.file("linked.tar")
        try run("/bin/tar", ["--format=ustar", "-cf", linkedArchive, "-C", linked, "metanode-plugin.json"]).requireSuccess()
        #expect(try node.cli.fails("plugin", "install", linkedArchive).contains("is a link"))
    }

    @Test("malformed and oversized manifests get messages naming the problem; nothing is installed")
    func badManifests() throws {
        let node = try TestNode("badmanifest")
        let package = try Packages.testPlugin(in: node.scratch, name: "shaky")
        let manifestPath = package + "/metanode-plugin.json"
        let good = try String(contentsOfFile: manifestPath, encoding: .utf8)

        try good.replacingOccurrences(of: "\"version\"", with: "\"verzion\"")
            .write(toFile: manifestPath, atomically: true, encoding: .utf8)
        #expect(try node.cli.fails("plugin", "install", package, "--allow-unsigned").contains("verzion"))

        try "{ not json".write(toFile: manifestPath, atomically: true, encoding: .utf8)
        #expect(try node.cli.fails("plugin", "install", package, "--allow-unsigned").contains("invalid JSON"))

        try (good.dropLast(2) + ", \"description\": \"" + String(repeating: "x", count: 70_000) + "\"}")
            .write(toFile: manifestPath, atomically: true, encoding: .utf8)
        #expect(try node.cli.fails("plugin", "install", package, "--allow-unsigned").contains("limit"))

        #expect(try node.cli.json("plugin", "list").arrayValue?.isEmpty == true)
    }

    @Test("unknown plugins, double enable, undeclared grants and uninstalling an enabled plugin are clear errors")
    func operatorMistakes() throws {
        let node = try TestNode("mistakes")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "solid"))
        #expect(try node.cli.fails("plugin", "enable", "nosuch").contains("no plugin named 'nosuch' is installed"))
        #expect(try node.cli.fails("plugin", "enable", "solid").contains("already enabled"))
        #expect(try node.cli.fails("plugin", "uninstall", "solid").contains("disable solid"))
        try node.cli.ok("plugin", "disable", "solid")
        #expect(try node.cli.fails("plugin", "disable", "solid").contains("already disabled"))
        #expect(try node.cli.fails("plugin", "enable", "solid", "--grant", "sign")
            .contains("does not declare capability 'sign'"))
        #expect(try node.cli.fails("plugin", "enable", "solid", "--grant", "teleport").contains("unknown capability"))
        try node.cli.ok("plugin", "uninstall", "solid")
        #expect(!FileManager.default.fileExists(atPath: node.data + "/plugins/solid"))
    }

    @Test("a plugin without the kv grant gets MN_ERR_DENIED, and the denial is logged and counted")
    func capabilityDenied() throws {
        let node = try TestNode("denied")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "limited"), grants: ["http"])
        let process = try node.start()
        let answer = try process.post("/v1/plugins/limited/count")
        #expect(answer.status == 500)
        #expect(answer.text.contains("kv_get status 1"))
        #expect(answer.text.contains("needs capability 'kv'"))
        let metrics = try process.get("/metrics").text
        #expect(metrics.contains("metanode_plugin_capability_denied_total 1"))
        process.stop()
        #expect(process.log.contains("denied kv_get"))
    }

    @Test("the API documents every kernel route in its OpenAPI document")
    func openAPI() throws {
        let node = try TestNode("openapi")
        let process = try node.start()
        let document = try JSONValue.parse(try process.get("/openapi.json").body)
        let paths = try #require(document["paths"]?.objectValue)
        for path in ["/healthz", "/v1/node", "/v1/plugins", "/v1/plugins/{name}", "/v1/plugins/{name}/call/{function}",
                     "/metrics", "/openapi.json"] {
            #expect(paths[path] != nil, "\(path) is not documented")
        }
        #expect(try process.get("/healthz").text == "ok\n")
        #expect(try process.get("/v1/plugins/nobody/anything").status == 404)
        process.stop()
    }
}
