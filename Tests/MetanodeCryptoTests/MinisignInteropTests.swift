import Foundation
import MetanodeCore
import MetanodeCrypto
import Testing

/// Both directions against the real minisign 0.11 binary.
@Suite("minisign interop", .enabled(if: minisignInstalled, "needs /usr/bin/minisign"))
struct MinisignInteropTests {
    @Test("minisign -V accepts our key and signature and prints the trusted comment")
    func minisignVerifiesOurs() throws {
        try withTemporaryDirectory { dir in
            let key = MinisignSecretKey.generate()
            let message = Array("plugin court 0.3.0\n".utf8)
            let signature = try Minisign.sign(message, with: key, trustedComment: "court 0.3.0 linux-x86_64")
            try Data(message).write(to: URL(fileURLWithPath: "\(dir)/file"))
            try writeFile("\(dir)/file.minisig", signature.fileContents())
            try writeFile("\(dir)/key.pub", key.publicKey.fileContents())
            let result = try minisign(["-V", "-m", "file", "-p", "key.pub"], in: dir)
            #expect(result.status == 0, "\(result.errorOutput)")
            #expect(result.output.contains("Trusted comment: court 0.3.0 linux-x86_64"))
        }
    }

    @Test("minisign -V -P accepts our public key's base64 line")
    func minisignTakesOurBase64() throws {
        try withTemporaryDirectory { dir in
            let key = MinisignSecretKey.generate()
            try writeFile("\(dir)/file", "data")
            try writeFile("\(dir)/file.minisig", Minisign.sign("data".utf8, with: key, trustedComment: "t").fileContents())
            let result = try minisign(["-V", "-m", "file", "-P", key.publicKey.base64], in: dir)
            #expect(result.status == 0, "\(result.errorOutput)")
        }
    }

    @Test("minisign -V rejects our signature over changed content")
    func minisignRejectsTampered() throws {
        try withTemporaryDirectory { dir in
            let key = MinisignSecretKey.generate()
            try writeFile("\(dir)/file", "tampered")
            try writeFile("\(dir)/file.minisig", Minisign.sign("original".utf8, with: key, trustedComment: "t").fileContents())
            try writeFile("\(dir)/key.pub", key.publicKey.fileContents())
            #expect(try minisign(["-V", "-m", "file", "-p", "key.pub"], in: dir).status != 0)
        }
    }

    @Test("minisign's key and signature verify here; a tampered file does not")
    func weVerifyMinisign() throws {
        try withTemporaryDirectory { dir in
            let generated = try minisign(["-G", "-W", "-p", "key.pub", "-s", "key.sec"], in: dir)
            try #require(generated.status == 0, "\(generated.errorOutput)")
            try writeFile("\(dir)/file", "release bytes\n")
            let signed = try minisign(["-S", "-s", "key.sec", "-m", "file", "-t", "release 1.2.3"], in: dir)
            try #require(signed.status == 0, "\(signed.errorOutput)")

            let publicKey = try MinisignPublicKey.parse(readFile("\(dir)/key.pub"))
            let signature = try MinisignSignature.parse(readFile("\(dir)/file.minisig"))
            #expect(signature.algorithm == .prehashed)
            #expect(signature.trustedComment == "release 1.2.3")
            try Minisign.verify(Array("release bytes\n".utf8), signature: signature, publicKey: publicKey)
            expectFailure(.signature, containing: "signature does not match the content") {
                try Minisign.verify(Array("release bytes!\n".utf8), signature: signature, publicKey: publicKey)
            }
        }
    }

    @Test("minisign's secret key parses here to the public key minisign wrote")
    func weReadMinisignSecretKey() throws {
        try withTemporaryDirectory { dir in
            let generated = try minisign(["-G", "-W", "-p", "key.pub", "-s", "key.sec"], in: dir)
            try #require(generated.status == 0, "\(generated.errorOutput)")
            let secretKey = try MinisignSecretKey.parse(readFile("\(dir)/key.sec"), passphrase: nil)
            #expect(secretKey.publicKey.fileContents() == (try readFile("\(dir)/key.pub")))
        }
    }

    @Test("minisign's legacy (-l) signature verifies here")
    func weVerifyMinisignLegacy() throws {
        try withTemporaryDirectory { dir in
            try #require(try minisign(["-G", "-W", "-p", "key.pub", "-s", "key.sec"], in: dir).status == 0)
            try writeFile("\(dir)/file", "legacy bytes")
            let signed = try minisign(["-S", "-l", "-s", "key.sec", "-m", "file", "-t", "legacy"], in: dir)
            try #require(signed.status == 0, "\(signed.errorOutput)")
            let signature = try MinisignSignature.parse(readFile("\(dir)/file.minisig"))
            #expect(signature.algorithm == .legacy)
            try Minisign.verify(
                Array("legacy bytes".utf8), signature: signature,
                publicKey: MinisignPublicKey.parse(readFile("\(dir)/key.pub")))
        }
    }

    @Test("minisign signs with our unencrypted secret key, and -R recreates our public key from it")
    func minisignUsesOurUnencryptedKey() throws {
        try withTemporaryDirectory { dir in
            let key = MinisignSecretKey.generate()
            try KeyFile.writeSecret(key.fileContents(passphrase: nil), to: "\(dir)/key.sec")
            try writeFile("\(dir)/file", "data")
            let signed = try minisign(["-S", "-s", "key.sec", "-m", "file", "-t", "by minisign"], in: dir)
            try #require(signed.status == 0, "\(signed.errorOutput)")
            try Minisign.verify(
                Array("data".utf8), signature: MinisignSignature.parse(readFile("\(dir)/file.minisig")),
                publicKey: key.publicKey)
            let recreated = try minisign(["-R", "-s", "key.sec", "-p", "key.pub"], in: dir)
            try #require(recreated.status == 0, "\(recreated.errorOutput)")
            #expect(try MinisignPublicKey.parse(readFile("\(dir)/key.pub")) == key.publicKey)
        }
    }

    @Test("minisign decrypts our encrypted secret key with its passphrase and signs with it")
    func minisignUsesOurEncryptedKey() throws {
        try withTemporaryDirectory { dir in
            let key = MinisignSecretKey.generate()
            try KeyFile.writeSecret(key.fileContents(passphrase: "hunter2 hunter2"), to: "\(dir)/key.sec")
            try writeFile("\(dir)/file", "data")
            // Not a terminal, so minisign reads the passphrase line from stdin.
            let signed = try minisign(["-S", "-s", "key.sec", "-m", "file", "-t", "t"], input: "hunter2 hunter2\n", in: dir)
            try #require(signed.status == 0, "\(signed.output)\(signed.errorOutput)")
            try Minisign.verify(
                Array("data".utf8), signature: MinisignSignature.parse(readFile("\(dir)/file.minisig")),
                publicKey: key.publicKey)
            let refused = try minisign(["-S", "-s", "key.sec", "-m", "file", "-x", "bad.minisig"], input: "wrong\n", in: dir)
            #expect(refused.status != 0)
            #expect(refused.errorOutput.contains("Wrong password"))
        }
    }

    /// minisign -G encrypts with 1 GiB scrypt, and decrypting it here costs the same, so this runs only on request.
    @Test(
        "minisign's own encrypted secret key decrypts here",
        .enabled(if: ProcessInfo.processInfo.environment["METANODE_SLOW_TESTS"] != nil, "set METANODE_SLOW_TESTS=1"))
    func weDecryptMinisignEncryptedKey() throws {
        try withTemporaryDirectory { dir in
            let generated = try minisign(["-G", "-p", "key.pub", "-s", "key.sec"], input: "pw\npw\n", in: dir)
            try #require(generated.status == 0, "\(generated.errorOutput)")
            let text = try readFile("\(dir)/key.sec")
            #expect(try MinisignSecretKey.isEncrypted(text))
            let secretKey = try MinisignSecretKey.parse(text, passphrase: "pw")
            #expect(secretKey.publicKey == (try MinisignPublicKey.parse(readFile("\(dir)/key.pub"))))
        }
    }
}
