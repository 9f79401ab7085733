import MetanodeCore
import MetanodeCrypto
import Testing

/// The libsodium additions the transport is built on (KeyExchange.swift, AEAD.swift, KeyedHash.swift).
@Suite struct CryptoPrimitiveTests {
    let key = try! AEADKey(bytes: (0..<32).map { UInt8($0) })

    func seal(_ text: [UInt8], ad: [UInt8] = [1, 2], counter: UInt64 = 0) -> (ciphertext: [UInt8], tag: [UInt8]) {
        var buffer = text
        var tag = [UInt8](repeating: 0, count: 16)
        buffer.withUnsafeMutableBytes { buffer in
            tag.withUnsafeMutableBytes { tag in
                ad.withUnsafeBytes { ad in
                    ChaCha20Poly1305.seal(buffer, tag: tag.baseAddress!, associatedData: ad, counter: counter, key: key)
                }
            }
        }
        return (buffer, tag)
    }

    func open(_ sealed: (ciphertext: [UInt8], tag: [UInt8]), ad: [UInt8] = [1, 2], counter: UInt64 = 0,
              key: AEADKey? = nil) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: sealed.ciphertext.count)
        let ok = sealed.ciphertext.withUnsafeBytes { ciphertext in
            sealed.tag.withUnsafeBytes { tag in
                ad.withUnsafeBytes { ad in
                    output.withUnsafeMutableBytes { output in
                        ChaCha20Poly1305.open(ciphertext, tag: tag.baseAddress!, associatedData: ad, counter: counter,
                                              key: key ?? self.key, into: output.baseAddress ?? UnsafeMutableRawPointer(mutating: tag.baseAddress!))
                    }
                }
            }
        }
        return ok ? output : nil
    }

    @Test func sealThenOpenRoundTripsAndEncrypts() {
        let text = Array("attack at dawn".utf8)
        let sealed = seal(text)
        #expect(sealed.ciphertext != text)
        #expect(open(sealed) == text)
    }

    @Test func theNonceIsFourZeroBytesThenTheLittleEndianCounter() throws {
        // Computed independently (Python `cryptography`, OpenSSL) with key 00 01 … 1f, associated data 01 02 and the
        // nonce 00000000 0001020304050607, which is what counter 0x0706050403020100 must become.
        let sealed = seal(Array("attack at dawn".utf8), counter: 0x0706_0504_0302_0100)
        #expect(Hex.encode(sealed.ciphertext) == "5974fffb45d715f56a0420760be4")
        #expect(Hex.encode(sealed.tag) == "37958851476c20def4c4f564b1c33916")
    }

    @Test func anotherCounterAssociatedDataOrKeyFails() throws {
        let sealed = seal([1, 2, 3], counter: 5)
        #expect(open(sealed, counter: 5) == [1, 2, 3])
        #expect(open(sealed, counter: 6) == nil)
        #expect(open(sealed, ad: [1, 3], counter: 5) == nil)
        #expect(open(sealed, counter: 5, key: try AEADKey(bytes: [UInt8](repeating: 9, count: 32))) == nil)
    }

    @Test func anEmptyMessageStillCarriesATag() {
        let sealed = seal([])
        #expect(sealed.tag != [UInt8](repeating: 0, count: 16))
        #expect(open(sealed) == [])
    }

    @Test func aKeyOfTheWrongLengthIsRefused() {
        #expect(throws: MetanodeError.self) { try AEADKey(bytes: [1, 2, 3]) }
    }

    @Test func bothSidesOfAKeyExchangeAgree() throws {
        let client = X25519KeyPair.generate()
        let server = X25519KeyPair.generate()
        let clientKeys = try client.clientSessionKeys(serverPublicKey: server.publicKey)
        let serverKeys = try server.serverSessionKeys(clientPublicKey: client.publicKey)
        #expect(Array(clientKeys.transmit) == Array(serverKeys.receive))
        #expect(Array(clientKeys.receive) == Array(serverKeys.transmit))
        #expect(Array(clientKeys.transmit) != Array(clientKeys.receive))
    }

    @Test func aLowOrderPublicKeyIsRefused() {
        let pair = X25519KeyPair.generate()
        #expect(throws: MetanodeError.self) { try pair.clientSessionKeys(serverPublicKey: [UInt8](repeating: 0, count: 32)) }
    }

    @Test func aSeededKeyPairIsReproducible() throws {
        let seed = [UInt8](repeating: 3, count: 32)
        #expect(try X25519KeyPair(seed: seed).publicKey == X25519KeyPair(seed: seed).publicKey)
    }

    @Test func keyedHashDependsOnKeyAndOnEveryPart() {
        func mac(_ key: [UInt8], _ parts: [[UInt8]]) -> [UInt8] {
            var output = [UInt8](repeating: 0, count: 32)
            key.withUnsafeBytes { key in
                let buffers = parts.map { part in UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer.allocate(byteCount: part.count, alignment: 1)) }
                for (buffer, part) in zip(buffers, parts) {
                    UnsafeMutableRawBufferPointer(mutating: buffer).copyBytes(from: part)
                }
                output.withUnsafeMutableBytes { Hash.blake2b256(key: key, parts: buffers, into: $0.baseAddress!) }
                for buffer in buffers { buffer.deallocate() }
            }
            return output
        }
        let k1 = [UInt8](repeating: 1, count: 32)
        let k2 = [UInt8](repeating: 2, count: 32)
        #expect(mac(k1, [[1], [2, 3]]) == mac(k1, [[1, 2], [3]]))  // parts are concatenated
        #expect(mac(k1, [[1, 2, 3]]) != mac(k2, [[1, 2, 3]]))
        #expect(mac(k1, [[1, 2, 3]]) != mac(k1, [[1, 2, 4]]))
    }
}
