import MetanodeCrypto
import Testing

@Suite("Hash")
struct HashTests {
    @Test("BLAKE2b-256 of the empty string matches the reference")
    func blake2b256Empty() {
        #expect(hexString(Hash.blake2b256([UInt8]())) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
    }

    @Test("BLAKE2b-256 of \"abc\" matches the reference")
    func blake2b256ABC() {
        #expect(hexString(Hash.blake2b256("abc".utf8)) == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319")
    }

    @Test("BLAKE2b-512 of the empty string matches the reference")
    func blake2b512Empty() {
        #expect(
            hexString(Hash.blake2b512([UInt8]()))
                == "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"
        )
    }

    @Test("BLAKE2b-512 of \"abc\" matches RFC 7693")
    func blake2b512ABC() {
        #expect(
            hexString(Hash.blake2b512(Array("abc".utf8)))
                == "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        )
    }

    @Test("SHA-256 of \"abc\" matches NIST FIPS 180-2")
    func sha256ABC() {
        #expect(hexString(Hash.sha256("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("SHA-256 of the empty string matches the reference")
    func sha256Empty() {
        #expect(hexString(Hash.sha256([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test("The into: forms write the same digest into the caller's buffer")
    func intoBuffer() {
        let data = Array("metanode".utf8)
        var blake = [UInt8](repeating: 0, count: 32)
        var sha = [UInt8](repeating: 0, count: 32)
        var blake512 = [UInt8](repeating: 0, count: 64)
        data.withUnsafeBytes { input in
            blake.withUnsafeMutableBytes { Hash.blake2b256(input, into: $0.baseAddress!) }
            sha.withUnsafeMutableBytes { Hash.sha256(input, into: $0.baseAddress!) }
            blake512.withUnsafeMutableBytes { Hash.blake2b512(input, into: $0.baseAddress!) }
        }
        #expect(blake == Hash.blake2b256(data))
        #expect(sha == Hash.sha256(data))
        #expect(blake512 == Hash.blake2b512(data))
    }

    @Test("SHA256Hasher over chunks equals the NIST two-block vector")
    func incrementalSHA256() {
        let message = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        var hasher = SHA256Hasher()
        for chunk in stride(from: 0, to: message.count, by: 7) {
            hasher.update(message[chunk..<min(chunk + 7, message.count)])
        }
        #expect(hexString(hasher.finalize()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test("SecureRandom returns the requested number of bytes, different each time")
    func secureRandom() {
        let first = SecureRandom.bytes(32)
        let second = SecureRandom.bytes(32)
        #expect(first.count == 32)
        #expect(first != second)
        #expect(SecureRandom.bytes(0).isEmpty)
    }
}
