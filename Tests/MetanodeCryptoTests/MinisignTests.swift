import MetanodeCore
@testable import MetanodeCrypto
import Testing

@Suite("Minisign formats and verification")
struct MinisignTests {
    // MARK: Keys

    @Test("A public key file parses to minisign's key ID, printed as minisign prints it")
    func parsePublicKeyFile() throws {
        let key = try MinisignPublicKey.parse(MinisignFixture.publicKey)
        #expect(key.keyID == MinisignFixture.publicKeyID)
        #expect(key.keyIDHex == "11143A3155092352")
        #expect(key.base64 == "RWRSIwlVMToUEfSuB3C7ZIIicODBnKG60QURMyjIouqBmJBxDzy64pHp")
    }

    @Test("The base64 line alone parses, as minisign -P takes it")
    func parseBareBase64() throws {
        let key = try MinisignPublicKey.parse("RWRSIwlVMToUEfSuB3C7ZIIicODBnKG60QURMyjIouqBmJBxDzy64pHp")
        #expect(key == (try MinisignPublicKey.parse(MinisignFixture.publicKey)))
    }

    @Test("A public key file we write is byte-identical to minisign's")
    func publicKeyFileContents() throws {
        let key = try MinisignPublicKey.parse(MinisignFixture.publicKey)
        #expect(key.fileContents() == MinisignFixture.publicKey)
    }

    @Test("A key ID below 2^60 is zero-padded in keyIDHex but, as minisign -G writes it, not in the file comment")
    func keyIDPadding() throws {
        let key = try MinisignPublicKey(
            keyID: [0x5D, 0xF1, 0x9B, 0x0A, 0x26, 0xE2, 0x00, 0x09], key: Ed25519KeyPair.generate().publicKey)
        #expect(key.keyIDHex == "0900E2260A9BF15D")
        #expect(key.fileContents().hasPrefix("untrusted comment: minisign public key 900E2260A9BF15D\n"))
    }

    @Test("minisign's unencrypted secret key (zero checksum) parses to the matching public key")
    func parseMinisignUnencryptedSecretKey() throws {
        let secretKey = try MinisignSecretKey.parse(MinisignFixture.secretKey, passphrase: nil)
        #expect(secretKey.publicKey == (try MinisignPublicKey.parse(MinisignFixture.publicKey)))
        #expect(try !MinisignSecretKey.isEncrypted(MinisignFixture.secretKey))
    }

    @Test("An unencrypted secret key we write parses back to the same key")
    func unencryptedSecretKeyRoundTrip() throws {
        let key = MinisignSecretKey.generate()
        let parsed = try MinisignSecretKey.parse(key.fileContents(passphrase: nil), passphrase: nil)
        #expect(parsed.publicKey == key.publicKey)
        #expect(parsed.keyPair.seed == key.keyPair.seed)
    }

    @Test("An encrypted secret key round-trips with the right passphrase")
    func encryptedSecretKeyRoundTrip() throws {
        let key = MinisignSecretKey.generate()
        let file = key.fileContents(passphrase: "correct horse")
        #expect(try MinisignSecretKey.isEncrypted(file))
        let parsed = try MinisignSecretKey.parse(file, passphrase: "correct horse")
        #expect(parsed.publicKey == key.publicKey)
        #expect(parsed.keyPair.seed == key.keyPair.seed)
    }

    @Test("An encrypted secret key with a wrong passphrase gives a clear error")
    func wrongPassphrase() {
        let file = MinisignSecretKey.generate().fileContents(passphrase: "correct horse")
        expectFailure(.denied, containing: "wrong passphrase or corrupted key") {
            _ = try MinisignSecretKey.parse(file, passphrase: "battery staple")
        }
    }

    @Test("An encrypted secret key without a passphrase asks for one")
    func missingPassphrase() {
        let file = MinisignSecretKey.generate().fileContents(passphrase: "correct horse")
        expectFailure(.invalidArgument, containing: "this secret key is encrypted; give its passphrase") {
            _ = try MinisignSecretKey.parse(file, passphrase: nil)
        }
    }

    @Test("An encrypted key file records the standard scrypt limits")
    func encryptedKeyRecordsLimits() throws {
        let file = MinisignSecretKey.generate().fileContents(passphrase: "p")
        let raw = Base64.decode(MinisignFormat.lines(Array(file.utf8))[1])!
        #expect(Array(raw[2..<4]) == Array("Sc".utf8))
        let ops = raw[38..<46].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let mem = raw[46..<54].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(MinisignSecretKey.KDFLimits(opsLimit: ops, memLimitBytes: mem) == .standard)
    }

    @Test("A secret key's description and dump show its key ID but not the seed")
    func secretKeyDescription() {
        let key = MinisignSecretKey.generate()
        var dumped = ""
        dump(key, to: &dumped)
        for text in [key.description, String(reflecting: key), dumped] {
            #expect(text.contains(key.keyIDHex))
            #expect(!text.contains(hexString(key.keyPair.seed)))
        }
    }

    // MARK: Signatures

    @Test("Our signature verifies, and survives writing and parsing the file")
    func signVerifyRoundTrip() throws {
        let key = MinisignSecretKey.generate()
        let message = Array("plugin bytes".utf8)
        let signature = try Minisign.sign(message, with: key, trustedComment: "court 0.3.0")
        let parsed = try MinisignSignature.parse(signature.fileContents())
        #expect(parsed == signature)
        #expect(parsed.algorithm == .prehashed)
        #expect(parsed.trustedComment == "court 0.3.0")
        #expect(parsed.untrustedComment == Minisign.defaultUntrustedComment)
        try Minisign.verify(message, signature: parsed, publicKey: key.publicKey)
    }

    @Test("minisign's prehashed signature verifies")
    func verifyMinisignPrehashed() throws {
        let signature = try MinisignSignature.parse(MinisignFixture.prehashedSignature)
        #expect(signature.algorithm == .prehashed)
        #expect(signature.trustedComment == "tc here")
        try Minisign.verify(
            MinisignFixture.message, signature: signature, publicKey: MinisignPublicKey.parse(MinisignFixture.publicKey))
    }

    @Test("minisign's legacy (Ed) signature verifies")
    func verifyMinisignLegacy() throws {
        let signature = try MinisignSignature.parse(MinisignFixture.legacySignature)
        #expect(signature.algorithm == .legacy)
        #expect(signature.trustedComment == "timestamp:1795639737\tfile:f")
        try Minisign.verify(
            MinisignFixture.message, signature: signature, publicKey: MinisignPublicKey.parse(MinisignFixture.publicKey))
    }

    @Test("A signature file we re-emit is byte-identical to minisign's")
    func signatureFileContents() throws {
        for text in [MinisignFixture.prehashedSignature, MinisignFixture.legacySignature] {
            #expect(try MinisignSignature.parse(text).fileContents() == text)
        }
    }

    @Test("Changed content is rejected")
    func tamperedContent() throws {
        let key = MinisignSecretKey.generate()
        let signature = try Minisign.sign(Array("v1".utf8), with: key, trustedComment: "t")
        expectFailure(.signature, containing: "signature does not match the content") {
            try Minisign.verify(Array("v2".utf8), signature: signature, publicKey: key.publicKey)
        }
    }

    @Test("A changed trusted comment is rejected")
    func tamperedTrustedComment() throws {
        let key = MinisignSecretKey.generate()
        let message = Array("v1".utf8)
        let file = try Minisign.sign(message, with: key, trustedComment: "version 1.0.0").fileContents()
        let forged = try MinisignSignature.parse(file.replacingOccurrences(of: "version 1.0.0", with: "version 9.9.9"))
        expectFailure(.signature, containing: "trusted comment signature is invalid") {
            try Minisign.verify(message, signature: forged, publicKey: key.publicKey)
        }
    }

    @Test("A changed untrusted comment still verifies: it is not signed")
    func untrustedCommentIsNotSigned() throws {
        let key = MinisignSecretKey.generate()
        let message = Array("v1".utf8)
        let file = try Minisign.sign(message, with: key, trustedComment: "t").fileContents()
        let edited = file.replacingOccurrences(of: Minisign.defaultUntrustedComment, with: "anything")
        try Minisign.verify(message, signature: MinisignSignature.parse(edited), publicKey: key.publicKey)
    }

    @Test("A signature by another key names both key IDs")
    func wrongPublicKey() throws {
        let signer = MinisignSecretKey.generate()
        let other = MinisignSecretKey.generate()
        let signature = try Minisign.sign(Array("m".utf8), with: signer, trustedComment: "t")
        let expected = "signed by key \(signer.keyIDHex), not by this public key (\(other.keyIDHex))"
        expectFailure(.signature, containing: expected) {
            try Minisign.verify(Array("m".utf8), signature: signature, publicKey: other.publicKey)
        }
    }

    @Test("Verifying against a trust store picks the signer's key")
    func trustStorePicksKey() throws {
        let signer = MinisignSecretKey.generate()
        let trusted = [MinisignSecretKey.generate().publicKey, signer.publicKey]
        let signature = try Minisign.sign(Array("m".utf8), with: signer, trustedComment: "t")
        #expect(try Minisign.verify(Array("m".utf8), signature: signature, trustedKeys: trusted) == signer.publicKey)
    }

    @Test("A signer missing from the trust store is untrusted, with how to add it")
    func untrustedSigner() throws {
        let signer = MinisignSecretKey.generate()
        let signature = try Minisign.sign(Array("m".utf8), with: signer, trustedComment: "t")
        expectFailure(
            .untrusted,
            containing: "signed by key \(signer.keyIDHex), which is not in the trust store "
                + "(add it with `metanode trust add KEYFILE`)"
        ) {
            let others = [MinisignSecretKey.generate().publicKey]
            _ = try Minisign.verify(Array("m".utf8), signature: signature, trustedKeys: others)
        }
    }

    @Test("A trusted key that shares the signer's key ID but not its key does not verify")
    func keyIDCollision() throws {
        let signer = MinisignSecretKey.generate()
        let impostor = try MinisignPublicKey(keyID: signer.keyID, key: Ed25519KeyPair.generate().publicKey)
        let signature = try Minisign.sign(Array("m".utf8), with: signer, trustedComment: "t")
        expectFailure(.signature, containing: "signature does not match the content") {
            _ = try Minisign.verify(Array("m".utf8), signature: signature, trustedKeys: [impostor])
        }
        let both = [impostor, signer.publicKey]
        #expect(try Minisign.verify(Array("m".utf8), signature: signature, trustedKeys: both) == signer.publicKey)
    }

    @Test("A trusted comment with a line break or over minisign's limit is refused")
    func invalidTrustedComment() {
        let key = MinisignSecretKey.generate()
        expectFailure(.invalidArgument, containing: "must be one line") {
            _ = try Minisign.sign(Array("m".utf8), with: key, trustedComment: "a\nb")
        }
        expectFailure(.limitExceeded, containing: "at most 8173") {
            _ = try Minisign.sign(Array("m".utf8), with: key, trustedComment: String(repeating: "x", count: 8174))
        }
    }

    @Test("An untrusted comment is made one line so the file stays parseable")
    func untrustedCommentMadeOneLine() throws {
        let key = MinisignSecretKey.generate()
        let signature = try Minisign.sign(Array("m".utf8), with: key, trustedComment: "t", untrustedComment: "a\nb")
        #expect(try MinisignSignature.parse(signature.fileContents()).untrustedComment == "a b")
    }

    // MARK: Malformed input

    static let validSignatureLines = MinisignFixture.prehashedSignature.split(separator: "\n").map(String.init)

    static func signature(replacingLine index: Int, with line: String) -> String {
        var lines = validSignatureLines
        lines[index] = line
        return lines.joined(separator: "\n") + "\n"
    }

    static let malformedSignatures: [(text: String, fragment: String)] = [
        (String(repeating: "a", count: 16 * 1024 + 1), "a signature file is at most 16384"),
        ("", "expected 4 lines"),
        (validSignatureLines.prefix(3).joined(separator: "\n"), "expected 4 lines"),
        (MinisignFixture.prehashedSignature + "extra\n", "found 5"),
        (signature(replacingLine: 0, with: "comment: x"), "line 1 must start with \"untrusted comment: \""),
        (
            signature(replacingLine: 0, with: "untrusted comment: " + String(repeating: "c", count: 1004)),
            "the untrusted comment line is 1023 bytes; the limit is 1022"
        ),
        (signature(replacingLine: 1, with: "RURS!!!"), "line 2 (the signature) is not valid base64"),
        (signature(replacingLine: 1, with: "RURSIwlVMToUEQ=="), "decodes to 10 bytes; expected 74"),
        (
            signature(replacingLine: 1, with: Base64.encode(Array("XY".utf8) + [UInt8](repeating: 0, count: 72))),
            "unsupported signature algorithm \"XY\""
        ),
        (signature(replacingLine: 2, with: "comment: tc here"), "line 3 must start with \"trusted comment: \""),
        (
            signature(replacingLine: 2, with: "trusted comment: " + String(repeating: "t", count: 8174)),
            "the trusted comment line is 8191 bytes; the limit is 8190"
        ),
        (signature(replacingLine: 2, with: "trusted comment: a\u{0}b"), "contains a NUL byte"),
        (signature(replacingLine: 3, with: "T0Ct C9Y="), "line 4 (the global signature) is not valid base64"),
        (signature(replacingLine: 3, with: "AAAA"), "the global signature decodes to 3 bytes; expected 64"),
    ]

    @Test("Malformed signature files are refused with a precise message", arguments: malformedSignatures.indices)
    func malformedSignature(_ index: Int) {
        let (text, fragment) = Self.malformedSignatures[index]
        expectFailure(.signature, containing: fragment) { _ = try MinisignSignature.parse(text) }
    }

    @Test("Signature files with CRLF line endings parse")
    func crlfSignature() throws {
        let crlf = MinisignFixture.prehashedSignature.replacingOccurrences(of: "\n", with: "\r\n")
        #expect(try MinisignSignature.parse(crlf) == MinisignSignature.parse(MinisignFixture.prehashedSignature))
    }

    static let malformedPublicKeys: [(text: String, fragment: String)] = [
        ("", "there is no base64 key line"),
        ("untrusted comment: only a comment\n", "there is no base64 key line"),
        ("untrusted comment: x\nRWQ=\nRWQ=\n", "expected one base64 line after the untrusted comment, found 2"),
        ("untrusted comment: x\nnot base64!\n", "the key line is not valid base64"),
        ("untrusted comment: x\nRWRSIwlVMToUEQ==\n", "decodes to 10 bytes; expected 42"),
        (
            Base64.encode(Array("XX".utf8) + [UInt8](repeating: 7, count: 40)),
            "unsupported signature algorithm \"XX\"; expected \"Ed\""
        ),
        (String(repeating: "A", count: 5000), "a key file is at most 4096"),
    ]

    @Test("Malformed public keys are refused with a precise message", arguments: malformedPublicKeys.indices)
    func malformedPublicKey(_ index: Int) {
        let (text, fragment) = Self.malformedPublicKeys[index]
        expectFailure(.invalidArgument, containing: fragment) { _ = try MinisignPublicKey.parse(text) }
    }

    /// The fixture's secret key line with bytes replaced, re-encoded.
    static func secretKey(replacing range: Range<Int>, with bytes: [UInt8]) -> String {
        var raw = Base64.decode(MinisignFormat.lines(Array(MinisignFixture.secretKey.utf8))[1])!
        raw.replaceSubrange(range, with: bytes)
        return "untrusted comment: x\n" + Base64.encode(raw) + "\n"
    }

    static let malformedSecretKeys: [(text: String, code: MetanodeError.Code, fragment: String)] = [
        (secretKey(replacing: 2..<4, with: Array("Ar".utf8)), .invalidArgument, "unsupported key derivation \"Ar\""),
        (secretKey(replacing: 4..<6, with: Array("S2".utf8)), .invalidArgument, "unsupported checksum algorithm \"S2\""),
        (secretKey(replacing: 126..<127, with: [1]), .invalidArgument, "checksum does not match"),
        (secretKey(replacing: 100..<101, with: [0xFF]), .invalidArgument, "public half does not match its seed"),
        (secretKey(replacing: 2..<4, with: Array("Sc".utf8)), .invalidArgument, "give its passphrase"),
        ("untrusted comment: x\nRWQAAEIy\n", .invalidArgument, "decodes to 6 bytes; expected 158"),
    ]

    @Test("Malformed secret keys are refused with a precise message", arguments: malformedSecretKeys.indices)
    func malformedSecretKey(_ index: Int) {
        let (text, code, fragment) = Self.malformedSecretKeys[index]
        expectFailure(code, containing: fragment) { _ = try MinisignSecretKey.parse(text, passphrase: nil) }
    }

    @Test("A secret key asking scrypt for more than 1 GiB is refused before deriving")
    func excessiveScryptMemory() {
        var memLimit = [UInt8](repeating: 0, count: 8)
        memLimit[4] = 0x01  // 2^32 bytes, little-endian
        let text = Self.secretKey(replacing: 2..<4, with: Array("Sc".utf8))
        let raw = Base64.decode(MinisignFormat.lines(Array(text.utf8))[1])!
        let greedy = "untrusted comment: x\n" + Base64.encode(Array(raw[..<46]) + memLimit + raw[54...]) + "\n"
        expectFailure(.limitExceeded, containing: "memlimit 4096 MiB") {
            _ = try MinisignSecretKey.parse(greedy, passphrase: "p")
        }
    }
}
