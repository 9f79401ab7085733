import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeCrypto

/// A plugin package on disk: a directory holding the manifest, its minisign signature and the library.
public struct PluginPackage: Sendable {
    public let directory: String
    public let manifest: PluginManifest
    /// The exact bytes the signature covers.
    public let manifestBytes: [UInt8]
    public let signature: MinisignSignature?

    public var manifestPath: String { "\(directory)/\(PluginManifest.fileName)" }
    public var signaturePath: String { "\(directory)/\(PluginManifest.signatureFileName)" }
    public var libraryPath: String { "\(directory)/\(manifest.library.file)" }

    public static let signatureBytesMax = 16 * 1024
    public static let libraryBytesMax = 512 << 20

    /// Reads a package directory. Checks the manifest's form, not its trust (see `verify`).
    public static func open(_ directory: String) throws(MetanodeError) -> PluginPackage {
        let directory = FileIO.absolute(directory)
        guard FileIO.isDirectory(directory) else {
            throw MetanodeError(.notFound, "\(directory) is not a plugin package directory")
        }
        let manifestPath = "\(directory)/\(PluginManifest.fileName)"
        guard FileIO.exists(manifestPath) else {
            throw MetanodeError(.invalidManifest, "\(directory) has no \(PluginManifest.fileName)")
        }
        let bytes = try FileIO.read(manifestPath, limit: PluginManifest.bytesMax, what: "manifest")
        let manifest: PluginManifest
        do {
            manifest = try PluginManifest.parse(bytes)
        } catch {
            throw MetanodeError(error.code, "\(manifestPath): \(error.message)")
        }
        var signature: MinisignSignature?
        let signaturePath = "\(directory)/\(PluginManifest.signatureFileName)"
        if FileIO.exists(signaturePath) {
            let text = try FileIO.read(signaturePath, limit: signatureBytesMax, what: "signature")
            do {
                signature = try MinisignSignature.parse(String(decoding: text, as: UTF8.self))
            } catch {
                throw MetanodeError(.signature, "\(signaturePath): \(error.message)")
            }
        }
        return PluginPackage(directory: directory, manifest: manifest, manifestBytes: bytes, signature: signature)
    }

    public struct Verification: Sendable {
        /// The trusted key that signed the manifest; nil when loaded unsigned.
        public var signer: MinisignPublicKey?
        /// What --allow-unsigned let through; shown to the operator.
        public var warnings: [String]
    }

    /// Checks that the ABI fits this kernel, the manifest is signed by a trusted key, and the library is the one the
    /// manifest pins. With `allowUnsigned`, signature and hash problems become warnings instead of errors.
    public func verify(trusted: [MinisignPublicKey], allowUnsigned: Bool) throws(MetanodeError) -> Verification {
        let name = "plugin \(manifest.name) \(manifest.version)"
        try Self.checkABI(manifest)
        var warnings: [String] = []
        var signer: MinisignPublicKey?

        func problem(_ error: MetanodeError) throws(MetanodeError) {
            guard allowUnsigned else { throw error }
            warnings.append(error.message)
        }

        if let signature {
            do {
                signer = try Minisign.verify(manifestBytes, signature: signature, trustedKeys: trusted)
            } catch {
                try problem(MetanodeError(error.code, "\(name) (\(directory)): \(error.message)"))
            }
        } else {
            try problem(MetanodeError(.signature, "\(name) (\(directory)) is not signed: there is no "
                + "\(PluginManifest.signatureFileName). Sign it with `metanode plugin sign \(directory) --key KEY`, or "
                + "pass --allow-unsigned to load it anyway"))
        }

        guard FileIO.exists(libraryPath) else {
            throw MetanodeError(.notFound, "\(name): library \(manifest.library.file) is missing from \(directory)")
        }
        if let pinned = manifest.library.sha256 {
            let actual = try Self.sha256(ofFile: libraryPath)
            if actual != pinned {
                try problem(MetanodeError(.integrity, "\(name): library \(manifest.library.file) has SHA-256 \(actual), "
                    + "but the signed manifest says \(pinned) — the package was modified after signing"))
            }
        } else if signature != nil {
            try problem(MetanodeError(.integrity, "\(name): the manifest is signed but does not pin the library's "
                + "SHA-256 (library.sha256), so the library is unverified; re-sign with `metanode plugin sign`"))
        }
        return Verification(signer: signer, warnings: warnings)
    }

    /// Refuses a manifest declaring another ABI major or a newer minor than this kernel's.
    public static func checkABI(_ manifest: PluginManifest) throws(MetanodeError) {
        let kernel = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)"
        let wanted = "\(manifest.abi.major).\(manifest.abi.minor)"
        if manifest.abi.major != UInt16(MN_ABI_VERSION_MAJOR) {
            throw MetanodeError(.abi, "plugin \(manifest.name) \(manifest.version) is built for plugin ABI \(wanted); "
                + "this kernel has ABI \(kernel) — use a build of the plugin for ABI \(MN_ABI_VERSION_MAJOR).x")
        }
        if manifest.abi.minor > UInt16(MN_ABI_VERSION_MINOR) {
            throw MetanodeError(.abi, "plugin \(manifest.name) \(manifest.version) needs plugin ABI \(wanted); this "
                + "kernel has ABI \(kernel) — upgrade the node")
        }
    }

    public static func sha256(ofFile path: String) throws(MetanodeError) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw MetanodeError(.io, "cannot open \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256Hasher()
        var total = 0
        while true {
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            total += chunk.count
            guard total <= libraryBytesMax else {
                throw MetanodeError(.limitExceeded, "\(path) is over \(libraryBytesMax) bytes")
            }
            chunk.withUnsafeBytes { hasher.update($0) }
        }
        return Hex.encode(hasher.finalize())
    }

    /// Pins the library's SHA-256 in the manifest, rewrites it canonically and signs it. Returns the new package.
    public static func sign(directory: String, key: MinisignSecretKey) throws(MetanodeError) -> PluginPackage {
        let unsigned = try open(directory)
        var manifest = unsigned.manifest
        let library = unsigned.libraryPath
        guard FileIO.exists(library) else {
            throw MetanodeError(.notFound, "library \(manifest.library.file) is missing from \(unsigned.directory)")
        }
        manifest.library.sha256 = try sha256(ofFile: library)
        let bytes = manifest.serialized()
        try FileIO.writeAtomically(bytes, to: unsigned.manifestPath)
        let comment = "timestamp:\(Int(Date().timeIntervalSince1970))\tfile:\(PluginManifest.fileName)\t"
            + "plugin:\(manifest.name) \(manifest.version)"
        let signature = try Minisign.sign(bytes, with: key, trustedComment: comment)
        try FileIO.writeAtomically(Array(signature.fileContents().utf8), to: unsigned.signaturePath)
        return try open(unsigned.directory)
    }
}

/// Publishers' public keys this node trusts to sign plugin packages: `<data>/trust/<KEYID>.pub`, minisign format.
public struct TrustStore: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func keys() throws(MetanodeError) -> [MinisignPublicKey] {
        var keys: [MinisignPublicKey] = []
        for file in FileIO.listDirectory(directory) where file.hasSuffix(".pub") {
            let path = "\(directory)/\(file)"
            let text = try FileIO.read(path, limit: 4096, what: "trusted key")
            do {
                keys.append(try MinisignPublicKey.parse(String(decoding: text, as: UTF8.self)))
            } catch {
                throw MetanodeError(error.code, "trusted key \(path): \(error.message)")
            }
        }
        return keys
    }

    @discardableResult
    public func add(_ key: MinisignPublicKey, comment: String? = nil) throws(MetanodeError) -> String {
        try FileIO.createDirectory(directory)
        let path = "\(directory)/\(key.keyIDHex).pub"
        try FileIO.writeAtomically(Array(key.fileContents(comment: comment).utf8), to: path)
        return path
    }

    public func remove(keyID: String) throws(MetanodeError) {
        let path = "\(directory)/\(keyID.uppercased()).pub"
        guard FileIO.exists(path) else {
            throw MetanodeError(.notFound, "no trusted key \(keyID) (see `metanode trust list`)")
        }
        try FileIO.remove(path)
    }
}
