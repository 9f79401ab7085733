import MetanodeCore
import MetanodeCrypto
import Testing

struct RFC8032Vector: Sendable, CustomTestStringConvertible {
    var name: String
    var seed: String
    var publicKey: String
    var message: String
    var signature: String
    var testDescription: String { name }
}

@Suite("Ed25519")
struct Ed25519Tests {
    static let rfc8032: [RFC8032Vector] = [
        RFC8032Vector(
            name: "TEST 1",
            seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            message: "",
            signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
        RFC8032Vector(
            name: "TEST 2",
            seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            message: "72",
            signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    ]

    @Test("RFC 8032 vectors: seed gives the public key and the signature", arguments: rfc8032)
    func rfc8032Vector(_ vector: RFC8032Vector) throws {
        let keyPair = try Ed25519KeyPair(seed: hex(vector.seed))
        #expect(keyPair.publicKey.hex == vector.publicKey)
        #expect(hexString(keyPair.sign(hex(vector.message))) == vector.signature)
        #expect(keyPair.publicKey.isValidSignature(hex(vector.signature), for: hex(vector.message)))
    }

    @Test("A generated key's signature verifies, and sign(_:into:) writes the same 64 bytes")
    func roundTrip() {
        let keyPair = Ed25519KeyPair.generate()
        let message = Array("transfer 10 GEN".utf8)
        let signature = keyPair.sign(message)
        var written = [UInt8](repeating: 0, count: 64)
        message.withUnsafeBytes { input in
            written.withUnsafeMutableBytes { keyPair.sign(input, into: $0.baseAddress!) }
        }
        #expect(signature == written)
        #expect(keyPair.publicKey.isValidSignature(signature, for: message))
    }

    @Test("A signature does not verify for a changed message")
    func tamperedMessage() {
        let keyPair = Ed25519KeyPair.generate()
        let signature = keyPair.sign(Array("pay 10".utf8))
        #expect(!keyPair.publicKey.isValidSignature(signature, for: Array("pay 11".utf8)))
    }

    @Test("A changed signature does not verify")
    func tamperedSignature() {
        let keyPair = Ed25519KeyPair.generate()
        let message = Array("pay 10".utf8)
        var signature = keyPair.sign(message)
        signature[10] ^= 0x01
        #expect(!keyPair.publicKey.isValidSignature(signature, for: message))
        #expect(!keyPair.publicKey.isValidSignature(Array(signature.prefix(63)), for: message))
    }

    @Test("Another key's public key does not verify the signature")
    func wrongKey() {
        let message = Array("pay 10".utf8)
        let signature = Ed25519KeyPair.generate().sign(message)
        #expect(!Ed25519KeyPair.generate().publicKey.isValidSignature(signature, for: message))
    }

    @Test("The 64-byte libsodium secret key rebuilds the same key pair")
    func secretKeyRoundTrip() throws {
        let keyPair = Ed25519KeyPair.generate()
        let rebuilt = try Ed25519KeyPair(secretKey: keyPair.seed + keyPair.publicKey.bytes)
        #expect(rebuilt.publicKey == keyPair.publicKey)
        #expect(rebuilt.seed == keyPair.seed)
    }

    @Test("A secret key whose public half does not match its seed is refused")
    func inconsistentSecretKey() {
        let secretKey = Ed25519KeyPair.generate().seed + Ed25519KeyPair.generate().publicKey.bytes
        expectFailure(.invalidArgument, containing: "public half does not match its seed") {
            _ = try Ed25519KeyPair(secretKey: secretKey)
        }
    }

    @Test("Wrong-length keys and seeds are refused with their lengths")
    func wrongLengths() {
        let bytes = { (count: Int) in [UInt8](repeating: 1, count: count) }
        expectFailure(.invalidArgument, containing: "public key is 32 bytes, not 31") {
            _ = try Ed25519PublicKey(bytes: bytes(31))
        }
        expectFailure(.invalidArgument, containing: "seed is 32 bytes, not 33") { _ = try Ed25519KeyPair(seed: bytes(33)) }
        expectFailure(.invalidArgument, containing: "secret key is 64 bytes, not 32") {
            _ = try Ed25519KeyPair(secretKey: bytes(32))
        }
    }

    @Test("description, debugDescription and dump show the public key but never the seed")
    func secretsStayOutOfDescriptions() {
        let keyPair = Ed25519KeyPair.generate()
        var dumped = ""
        dump(keyPair, to: &dumped)
        for text in [keyPair.description, keyPair.debugDescription, String(reflecting: keyPair), dumped] {
            #expect(text.contains(keyPair.publicKey.hex))
            #expect(!text.contains(hexString(keyPair.seed)))
        }
    }
}
