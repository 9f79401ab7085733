import DockLockCore
import MetanodeWire
import Testing

@Suite("Execution receipts: stream digests")
struct ReceiptStreamDigestTests {
    static let content: [UInt8] = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    @Test("a digest built chunk by chunk equals the digest of the whole",
          arguments: [1, 7, 64, 128, 129, 4_096, 10_000])
    func chunked(chunkSize: Int) {
        var builder = StreamDigest.Builder()
        var offset = 0
        while offset < Self.content.count {
            let end = min(offset + chunkSize, Self.content.count)
            builder.append(Self.content[offset..<end])
            offset = end
        }
        #expect(builder.size == UInt64(Self.content.count))
        #expect(builder.digest == StreamDigest(of: Self.content))
    }

    @Test("the digest is plain BLAKE2b-256 of the bytes, as b2sum -l 256 prints it")
    func plainBlake2b() {
        let digest = StreamDigest(of: Array("hello\n".utf8))
        #expect(Hex.encode(digest.hash) == "93becc6e9882211c3ec3708c95bcd69baab7bb59c7f4bc84ce637b88a534b783")
        #expect(digest.size == 6)
        #expect(digest.hash == WireCrypto.blake2b256(Array("hello\n".utf8)))
    }

    @Test("an empty stream has BLAKE2b-256 of nothing and size 0")
    func empty() {
        #expect(StreamDigest.Builder().digest == StreamDigest.empty)
        #expect(Hex.encode(StreamDigest.empty.hash)
            == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
        #expect(StreamDigest.empty.size == 0)
    }

    @Test("reading the digest does not end the builder, and copies go on independently")
    func valueSemantics() {
        var builder = StreamDigest.Builder()
        builder.append(Array("hello".utf8))
        let early = builder.digest
        var copy = builder
        builder.append(Array("\n".utf8))
        copy.append(Array(" world".utf8))
        #expect(early == StreamDigest(of: Array("hello".utf8)))
        #expect(builder.digest == StreamDigest(of: Array("hello\n".utf8)))
        #expect(copy.digest == StreamDigest(of: Array("hello world".utf8)))
    }

    @Test("raw buffers and arrays feed the builder alike")
    func rawBuffers() {
        var fromBuffers = StreamDigest.Builder()
        Self.content.withUnsafeBytes { buffer in
            fromBuffers.append(UnsafeRawBufferPointer(rebasing: buffer[0..<5_000]))
            fromBuffers.append(UnsafeRawBufferPointer(rebasing: buffer[5_000...]))
        }
        #expect(fromBuffers.digest == StreamDigest(of: Self.content))
    }

    @Test("matches tells whether bytes are the recorded stream")
    func matches() {
        let digest = StreamDigest(of: Self.content)
        #expect(digest.matches(Self.content))
        #expect(!digest.matches(Array(Self.content.dropLast())))
    }
}
