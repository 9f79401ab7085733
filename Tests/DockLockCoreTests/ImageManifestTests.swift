import DockLockCore
import Foundation
import Testing

/// Image JSON (OCI and Docker), digests, tags and the store's record, as pure values.
@Suite("Image manifests")
struct ImageManifestTests {
    static let hexA = String(repeating: "a", count: 64)
    static let hexB = String(repeating: "b", count: 64)
    static let hexC = String(repeating: "c", count: 64)

    static func manifestJSON(layerType: String = ImageMediaType.ociLayerGzip, configType: String = ImageMediaType.ociConfig,
                             schemaVersion: Int = 2, layerCount: Int = 1) -> [UInt8] {
        let layers = (0..<layerCount).map { _ in
            #"{"mediaType": "\#(layerType)", "digest": "sha256:\#(hexB)", "size": 100}"#
        }.joined(separator: ",")
        return Array("""
            {"schemaVersion": \(schemaVersion), "mediaType": "\(ImageMediaType.ociManifest)",
             "config": {"mediaType": "\(configType)", "digest": "sha256:\(hexA)", "size": 10},
             "layers": [\(layers)]}
            """.utf8)
    }

    @Test("a digest is sha256: and 64 lowercase hex digits")
    func digestParses() throws {
        let digest = try ImageDigest(parsing: "sha256:\(Self.hexA)")
        #expect(digest.hex == Self.hexA)
        #expect(digest.description == "sha256:\(Self.hexA)")
        #expect(digest.short == String(repeating: "a", count: 12))
    }

    @Test("a digest with another algorithm, capitals or the wrong length is refused, naming the text", arguments: [
        "sha512:\(String(repeating: "a", count: 64))", "sha256:\(String(repeating: "A", count: 64))",
        "sha256:abc", "sha256:\(String(repeating: "a", count: 65))", String(repeating: "a", count: 64),
    ])
    func digestRefused(_ text: String) {
        #expect(throws: DockLockError.self) { try ImageDigest(parsing: text) }
        do { _ = try ImageDigest(parsing: text) } catch { #expect(error.message.contains(String(text.prefix(20)))) }
    }

    @Test("an OCI manifest gives its config and layers")
    func manifestParses() throws {
        let manifest = try ImageManifest.parse(Self.manifestJSON(layerCount: 2), what: "m")
        #expect(manifest.config.digest.hex == Self.hexA)
        #expect(manifest.layers.map(\.digest.hex) == [Self.hexB, Self.hexB])
        #expect(manifest.layers[0].size == 100)
    }

    @Test("a zstd layer is refused as unsupported, naming the layer")
    func zstdRefused() {
        #expect(throws: DockLockError.self) { try ImageManifest.parse(Self.manifestJSON(layerType: ImageMediaType.ociLayerZstd), what: "m") }
        do { _ = try ImageManifest.parse(Self.manifestJSON(layerType: ImageMediaType.ociLayerZstd), what: "m") } catch {
            #expect(error.code == .unsupported)
            #expect(error.message.contains("layer 1 (sha256:\(Self.hexB))"))
        }
    }

    @Test("an artifact (a config that is not an image config) is refused")
    func artifactRefused() {
        #expect(throws: DockLockError.self) {
            try ImageManifest.parse(Self.manifestJSON(configType: "application/vnd.cncf.helm.config.v1+json"), what: "m")
        }
    }

    @Test("schemaVersion 1 and more than layersMax layers are refused")
    func manifestBounds() {
        #expect(throws: DockLockError.self) { try ImageManifest.parse(Self.manifestJSON(schemaVersion: 1), what: "m") }
        #expect(throws: DockLockError(.limit, "m has 129 layers; at most 128 are allowed")) {
            try ImageManifest.parse(Self.manifestJSON(layerCount: ImageManifest.layersMax + 1), what: "m")
        }
    }

    @Test("JSON larger than fileBytesMax is refused before it is parsed")
    func jsonBounded() {
        let big = [UInt8](repeating: 0x20, count: ImageJSON.fileBytesMax + 1)
        #expect(throws: DockLockError.self) { try ImageIndex.parse(big, what: "index.json") }
    }

    @Test("malformed JSON is refused, naming the file and the field")
    func malformedNamed() {
        let bytes = Array(#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, "layers": []}"#.utf8)
        do {
            _ = try ImageManifest.parse(bytes, what: "manifest.json")
            Issue.record("accepted")
        } catch {
            #expect(error.message.hasPrefix("manifest.json is not valid: at config.digest"))
        }
    }

    @Test("an index lists manifests with their platform and name annotations")
    func indexParses() throws {
        let bytes = Array("""
            {"schemaVersion": 2, "manifests": [{"mediaType": "\(ImageMediaType.ociManifest)", "digest": "sha256:\(Self.hexC)",
             "size": 5, "platform": {"architecture": "amd64", "os": "linux"},
             "annotations": {"io.containerd.image.name": "docker.io/library/busybox:1.36", "org.opencontainers.image.ref.name": "1.36"}}]}
            """.utf8)
        let index = try ImageIndex.parse(bytes, what: "index.json")
        #expect(index.manifests[0].platform == ImagePlatform(architecture: "amd64", os: "linux"))
        #expect(index.manifests[0].annotatedTag == "busybox:1.36")
    }

    @Test("a config gives the run defaults: Env, Entrypoint, Cmd, WorkingDir, User")
    func configRunDefaults() throws {
        let bytes = Array("""
            {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sh", "-c"],
             "Cmd": ["echo hi"], "WorkingDir": "/srv", "User": "1000:1000"}, "rootfs": {"type": "layers", "diff_ids": []}}
            """.utf8)
        let config = try ImageConfigFile.parse(bytes, what: "config")
        #expect(config.runConfig == ImageRunConfig(env: ["PATH=/bin"], entrypoint: ["/bin/sh", "-c"], cmd: ["echo hi"],
                                                   workingDir: "/srv", user: "1000:1000"))
    }

    @Test("a config with no container section gives empty defaults; null Entrypoint stays nil")
    func configEmptyDefaults() throws {
        let config = try ImageConfigFile.parse(Array(#"{"os": "linux", "config": {"Entrypoint": null}}"#.utf8), what: "c")
        #expect(config.runConfig == ImageRunConfig())
    }

    @Test("a windows image is refused as unsupported")
    func windowsRefused() {
        #expect(throws: DockLockError(.unsupported, "c is a windows image; DockLock runs linux images only")) {
            try ImageConfigFile.parse(Array(#"{"os": "windows"}"#.utf8), what: "c")
        }
    }

    @Test("a docker save manifest.json lists Config, RepoTags and Layers")
    func dockerSaveParses() throws {
        let bytes = Array(#"[{"Config": "abc.json", "RepoTags": ["busybox:latest"], "Layers": ["1/layer.tar"]}]"#.utf8)
        let entries = try DockerSaveEntry.parse(bytes, what: "manifest.json")
        #expect(entries == [DockerSaveEntry(Config: "abc.json", RepoTags: ["busybox:latest"], Layers: ["1/layer.tar"])])
    }

    @Test("tags normalize: the default tag is latest and Docker Hub's long names shorten", arguments: [
        ("busybox", "busybox:latest"), ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox:1.36", "busybox:1.36"), ("docker.io/me/app", "me/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"), ("ghcr.io/o/x:v1.2_3", "ghcr.io/o/x:v1.2_3"),
    ])
    func tagsNormalize(_ input: String, _ expected: String) throws {
        #expect(try ImageReference.normalizeTag(input) == expected)
    }

    @Test("malformed names are refused", arguments: [
        "", "Busybox", "busybox:", "busybox:-x", "a//b", "/abs", "busybox@sha256:\(String(repeating: "a", count: 64))",
        "x:\(String(repeating: "t", count: 129))", "na me",
    ])
    func tagsRefused(_ input: String) {
        #expect(throws: DockLockError.self) { try ImageReference.normalizeTag(input) }
    }

    @Test("a record round-trips through JSON, digests as sha256: strings")
    func recordRoundTrips() throws {
        let record = ImageRecord(
            digest: try ImageDigest(parsing: "sha256:\(Self.hexA)"), tags: ["busybox:latest"],
            configDigest: try ImageDigest(parsing: "sha256:\(Self.hexB)"),
            layers: [try ImageDigest(parsing: "sha256:\(Self.hexC)")],
            config: ImageRunConfig(env: ["A=1"], cmd: ["sh"]), sizeBytes: 42, importedAtMs: 1_700_000_000_000)
        let bytes = record.jsonBytes()
        #expect(String(decoding: bytes, as: UTF8.self).contains(#""digest" : "sha256:\#(Self.hexA)""#))
        #expect(try ImageRecord.parse(bytes, what: "r") == record)
    }

    @Test("a manifest's canonical bytes are the same for the same content")
    func canonicalDeterministic() throws {
        let config = ImageDescriptor(mediaType: ImageMediaType.ociConfig, digest: try ImageDigest(parsing: "sha256:\(Self.hexA)"),
                                     size: 3)
        let layer = ImageDescriptor(mediaType: ImageMediaType.ociLayer, digest: try ImageDigest(parsing: "sha256:\(Self.hexB)"),
                                    size: 4)
        let one = ImageManifest(config: config, layers: [layer]).canonicalBytes()
        #expect(one == ImageManifest(config: config, layers: [layer]).canonicalBytes())
        #expect(try ImageManifest.parse(one, what: "m") == ImageManifest(config: config, layers: [layer]))
        #expect(!one.contains(UInt8(ascii: "\n")))
    }
}
