import Foundation
import MetanodeCore
import MetanodeCrypto
import Testing

@Suite("Key files")
struct KeyFileTests {
    @Test("A secret key file is created with mode 0600, whatever the umask")
    func secretMode() throws {
        try withTemporaryDirectory { dir in
            let previous = umask(0)
            defer { umask(previous) }
            try KeyFile.writeSecret("secret\n", to: "\(dir)/key.sec")
            #expect(try fileMode("\(dir)/key.sec") == 0o600)
            #expect(try readFile("\(dir)/key.sec") == "secret\n")
        }
    }

    @Test("A public key file is created with mode 0644")
    func publicMode() throws {
        try withTemporaryDirectory { dir in
            try KeyFile.writePublic("public\n", to: "\(dir)/key.pub")
            #expect(try fileMode("\(dir)/key.pub") == 0o644)
            #expect(try KeyFile.readPublic(at: "\(dir)/key.pub") == "public\n")
        }
    }

    @Test("An existing key file is not overwritten unless asked")
    func noOverwrite() throws {
        try withTemporaryDirectory { dir in
            try KeyFile.writeSecret("first\n", to: "\(dir)/key.sec")
            expectFailure(.alreadyExists, containing: "key file \(dir)/key.sec already exists") {
                try KeyFile.writeSecret("second\n", to: "\(dir)/key.sec")
            }
            #expect(try KeyFile.readSecret(at: "\(dir)/key.sec") == "first\n")
            try KeyFile.writeSecret("second\n", to: "\(dir)/key.sec", overwrite: true)
            #expect(try KeyFile.readSecret(at: "\(dir)/key.sec") == "second\n")
            #expect(try fileMode("\(dir)/key.sec") == 0o600)
        }
    }

    @Test("Writing leaves no temporary file behind, even when refused")
    func noTemporaryFiles() throws {
        try withTemporaryDirectory { dir in
            try KeyFile.writeSecret("a\n", to: "\(dir)/key.sec")
            try KeyFile.writeSecret("b\n", to: "\(dir)/key.sec", overwrite: true)
            _ = try? KeyFile.writeSecret("c\n", to: "\(dir)/key.sec")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["key.sec"])
        }
    }

    @Test("A secret key file readable by others is refused with the fix")
    func refuseWorldReadable() throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/key.sec"
            try writeFile(path, "secret\n")
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
            expectFailure(
                .denied,
                containing: "key file \(path) has mode 0644; it must not be readable by others — run chmod 600 \(path)"
            ) { _ = try KeyFile.readSecret(at: path) }
        }
    }

    @Test("A secret key file writable by its group is refused")
    func refuseGroupWritable() throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/key.sec"
            try writeFile(path, "secret\n")
            try FileManager.default.setAttributes([.posixPermissions: 0o620], ofItemAtPath: path)
            expectFailure(.denied, containing: "has mode 0620; it must not be writable by others") {
                _ = try KeyFile.readSecret(at: path)
            }
        }
    }

    @Test("A missing key file is notFound and names the path")
    func missingFile() throws {
        try withTemporaryDirectory { dir in
            expectFailure(.notFound, containing: "\(dir)/absent.pub") { _ = try KeyFile.readPublic(at: "\(dir)/absent.pub") }
        }
    }

    @Test("A key file over the size limit is refused")
    func oversizedFile() throws {
        try withTemporaryDirectory { dir in
            let path = "\(dir)/big.pub"
            try writeFile(path, String(repeating: "A", count: KeyFile.fileMaxBytes + 1))
            expectFailure(.limitExceeded, containing: "a key file is at most 4096") { _ = try KeyFile.readPublic(at: path) }
        }
    }

    @Test("A generated key survives writing and reading its files")
    func keyRoundTripThroughFiles() throws {
        try withTemporaryDirectory { dir in
            let key = MinisignSecretKey.generate()
            try KeyFile.writeSecret(key.fileContents(passphrase: nil), to: "\(dir)/key.sec")
            try KeyFile.writePublic(key.publicKey.fileContents(), to: "\(dir)/key.pub")
            let secret = try MinisignSecretKey.parse(KeyFile.readSecret(at: "\(dir)/key.sec"), passphrase: nil)
            #expect(secret.publicKey == (try MinisignPublicKey.parse(KeyFile.readPublic(at: "\(dir)/key.pub"))))
        }
    }
}
