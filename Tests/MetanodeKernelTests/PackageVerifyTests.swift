import Foundation
import MetanodeABI
import MetanodeCore
import MetanodeCrypto
@testable import MetanodeKernel
import Testing

/// PluginPackage.verify: ABI, signature, trust and the library hash, in that order of concern.
@Suite("Package verification")
struct PackageVerifyTests {
    /// An unsigned package directory with a manifest and a (fake) library; no cc needed, verify never loads it.
    static func makePackage(_ scratch: Scratch, abi: String = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)")
        throws -> String
    {
        let directory = scratch.file("pkg")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        try scratch.write("not really a library\n", to: "pkg/libsigned.so")
        try scratch.write("""
            {"name": "signed", "version": "1.2.3", "abi": "\(abi)", "library": {"file": "libsigned.so"}}
            """, to: "pkg/\(PluginManifest.fileName)")
        return directory
    }

    @Test("a package signed by a trusted key verifies and names its signer")
    func trustedSigner() throws {
        let scratch = try Scratch("verify")
        let key = MinisignSecretKey.generate()
        let package = try PluginPackage.sign(directory: try Self.makePackage(scratch), key: key)
        let verification = try package.verify(trusted: [MinisignSecretKey.generate().publicKey, key.publicKey],
                                              allowUnsigned: false)
        #expect(verification.signer == key.publicKey)
        #expect(verification.warnings.isEmpty)
        #expect(package.manifest.library.sha256 != nil, "signing pins the library's hash")
    }

    @Test("a package signed by a key outside the trust store is .untrusted, naming the key")
    func untrustedSigner() throws {
        let scratch = try Scratch("verify-untrusted")
        let key = MinisignSecretKey.generate()
        let package = try PluginPackage.sign(directory: try Self.makePackage(scratch), key: key)
        expectFailure(.untrusted, key.keyIDHex, "not in the trust store") { () throws(MetanodeError) in
            try package.verify(trusted: [MinisignSecretKey.generate().publicKey], allowUnsigned: false)
        }
    }

    @Test("an unsigned package is refused with .signature")
    func unsignedRefused() throws {
        let scratch = try Scratch("verify-unsigned")
        let package = try PluginPackage.open(try Self.makePackage(scratch))
        expectFailure(.signature, "is not signed", "--allow-unsigned") { () throws(MetanodeError) in
            try package.verify(trusted: [], allowUnsigned: false)
        }
    }

    @Test("an unsigned package is let through with a warning when unsigned packages are allowed")
    func unsignedAllowedWithWarning() throws {
        let scratch = try Scratch("verify-allowed")
        let package = try PluginPackage.open(try Self.makePackage(scratch))
        let verification = try package.verify(trusted: [], allowUnsigned: true)
        #expect(verification.signer == nil)
        #expect(verification.warnings.count == 1)
        #expect(verification.warnings.first?.contains("plugin signed 1.2.3") == true, "\(verification.warnings)")
        #expect(verification.warnings.first?.contains("is not signed") == true, "\(verification.warnings)")
    }

    @Test("a library changed after signing fails with .integrity, showing both hashes")
    func libraryChangedAfterSigning() throws {
        let scratch = try Scratch("verify-integrity")
        let key = MinisignSecretKey.generate()
        let package = try PluginPackage.sign(directory: try Self.makePackage(scratch), key: key)
        try scratch.write("a different library\n", to: "pkg/libsigned.so")
        let actual = Hex.encode(Hash.sha256(Array("a different library\n".utf8)))
        expectFailure(.integrity, actual, package.manifest.library.sha256!, "modified after signing") {
            () throws(MetanodeError) in try package.verify(trusted: [key.publicKey], allowUnsigned: false)
        }
    }

    @Test("a manifest changed after signing fails with .signature")
    func manifestChangedAfterSigning() throws {
        let scratch = try Scratch("verify-manifest")
        let key = MinisignSecretKey.generate()
        let signed = try PluginPackage.sign(directory: try Self.makePackage(scratch), key: key)
        let text = String(decoding: signed.manifestBytes, as: UTF8.self)
            .replacingOccurrences(of: "1.2.3", with: "1.2.4")
        try scratch.write(text, to: "pkg/\(PluginManifest.fileName)")
        let package = try PluginPackage.open(signed.directory)
        expectFailure(.signature, "does not match") { () throws(MetanodeError) in
            try package.verify(trusted: [key.publicKey], allowUnsigned: false)
        }
    }

    @Test("a manifest declaring a newer ABI minor is refused with .abi naming both versions, even if signed")
    func newerABIRefused() throws {
        let scratch = try Scratch("verify-abi")
        let key = MinisignSecretKey.generate()
        let wanted = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR + 9)"
        let package = try PluginPackage.sign(directory: try Self.makePackage(scratch, abi: wanted), key: key)
        let kernel = "\(MN_ABI_VERSION_MAJOR).\(MN_ABI_VERSION_MINOR)"
        expectFailure(.abi, "needs plugin ABI \(wanted)", "this kernel has ABI \(kernel)") {
            () throws(MetanodeError) in try package.verify(trusted: [key.publicKey], allowUnsigned: true)
        }
    }
}
