import MetanodeCrypto
import MetanodeNet
import NIOCore
import NIOEmbedded
import Testing

/// Encrypted frames through the real decoder and secure-frame handler on an EmbeddedChannel.
@Suite struct SecureFrameTests {
    static let frameBytesMax = 4096
    let key = try! AEADKey(bytes: [UInt8](repeating: 0x42, count: 32))

    /// A channel that reads encrypted frames with `key` and passes plaintexts on.
    func receiver(key: AEADKey? = nil) throws -> EmbeddedChannel {
        let decoder = LengthPrefixFrameDecoder(
            maximumLength: Self.frameBytesMax, minimumLength: NetWire.frameBytesMin, phase: "frame")
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(decoder), SecureFrameHandler(receiveKey: key ?? self.key))
        return channel
    }

    /// Sealed frames, one ByteBuffer each, counters from 0.
    func seal(_ frames: [SecureFrame], key: AEADKey? = nil) -> [ByteBuffer] {
        var sealer = FrameSealer(key: key ?? self.key)
        return frames.map { frame in
            var buffer = ByteBuffer()
            SecureFrame.appendControl(frame, to: &buffer)
            sealer.sealFrames(in: &buffer)
            return buffer
        }
    }

    func data(_ text: String) -> SecureFrame { .data(ByteBuffer(string: text)) }

    /// Feeds `buffers` and returns the parsed frames, or the first FrameError.
    func feed(_ channel: EmbeddedChannel, _ buffers: [ByteBuffer]) throws(FrameError) -> [SecureFrame] {
        var frames: [SecureFrame] = []
        for buffer in buffers {
            do {
                try channel.writeInbound(buffer)
            } catch let error as FrameError {
                throw error
            } catch {
                Issue.record("unexpected error \(error)")
            }
            while let plaintext = try? channel.readInbound(as: ByteBuffer.self) {
                frames.append(try SecureFrame.parse(plaintext))
            }
        }
        return frames
    }

    func expectRejection(
        _ reason: FrameError.Reason, containing text: String = "", sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws(FrameError) -> Void
    ) {
        do {
            try body()
            Issue.record("no FrameError was raised", sourceLocation: sourceLocation)
        } catch {
            #expect(error.reason == reason, "\(error.message)", sourceLocation: sourceLocation)
            #expect(text.isEmpty || error.message.contains(text), "“\(error.message)” lacks “\(text)”", sourceLocation: sourceLocation)
        }
    }

    @Test func everyFrameTypeRoundTrips() throws {
        let frames: [SecureFrame] = [data("one"), .ping(7), .pong(UInt64.max), data(""), .close(.shutdown, "bye"), .close(.other, "")]
        #expect(try feed(receiver(), seal(frames)) == frames)
    }

    @Test func framesSplitAcrossReadsAreReassembled() throws {
        var stream = ByteBuffer()
        for var frame in seal([data("split me"), .ping(1)]) { stream.writeBuffer(&frame) }
        let bytes = stream.readableBytesView.map { ByteBuffer(bytes: [$0]) }
        #expect(try feed(receiver(), bytes) == [data("split me"), .ping(1)])
    }

    @Test func framesArrivingTogetherAreAllRead() throws {
        var stream = ByteBuffer()
        for var frame in seal([data("a"), data("b"), data("c")]) { stream.writeBuffer(&frame) }
        #expect(try feed(receiver(), [stream]) == [data("a"), data("b"), data("c")])
    }

    @Test func aModifiedCiphertextFailsAuthentication() throws {
        let channel = try receiver()
        var frames = seal([data("pay 10 to alice")])
        let index = frames[0].readerIndex + 6
        frames[0].setInteger(frames[0].getInteger(at: index, as: UInt8.self)! ^ 0x01, at: index)
        expectRejection(.authFailure, containing: "frame 0") { () throws(FrameError) in _ = try feed(channel, frames) }
    }

    @Test func aModifiedTagFailsAuthentication() throws {
        let channel = try receiver()
        var frames = seal([data("x")])
        let index = frames[0].writerIndex - 1
        frames[0].setInteger(frames[0].getInteger(at: index, as: UInt8.self)! ^ 0x80, at: index)
        expectRejection(.authFailure) { () throws(FrameError) in _ = try feed(channel, frames) }
    }

    @Test func aReplayedFrameFailsAuthentication() throws {
        let channel = try receiver()
        let frames = seal([data("once"), data("twice")])
        expectRejection(.authFailure, containing: "frame 1") { () throws(FrameError) in
            _ = try feed(channel, [frames[0], frames[0]])
        }
    }

    @Test func reorderedFramesFailAuthentication() throws {
        let channel = try receiver()
        let frames = seal([data("first"), data("second")])
        expectRejection(.authFailure, containing: "frame 0") { () throws(FrameError) in
            _ = try feed(channel, [frames[1], frames[0]])
        }
    }

    @Test func aDroppedFrameMakesTheNextFail() throws {
        let channel = try receiver()
        let frames = seal([data("lost"), data("next")])
        expectRejection(.authFailure) { () throws(FrameError) in _ = try feed(channel, [frames[1]]) }
    }

    @Test func aFrameSealedWithAnotherKeyFailsAuthentication() throws {
        let channel = try receiver()
        let other = try AEADKey(bytes: [UInt8](repeating: 0x43, count: 32))
        expectRejection(.authFailure) { () throws(FrameError) in _ = try feed(channel, seal([data("x")], key: other)) }
    }

    @Test func aLengthOverTheMaximumFailsBeforeTheBodyArrives() throws {
        let channel = try receiver()
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt32(Self.frameBytesMax + 1))
        expectRejection(.badLength, containing: "frame length 4097 is over the maximum 4096") { () throws(FrameError) in
            _ = try feed(channel, [prefix])
        }
    }

    @Test func aLengthUnderTheMinimumFails() throws {
        let channel = try receiver()
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(16))
        frame.writeRepeatingByte(0, count: 16)
        expectRejection(.badLength, containing: "under the minimum 17") { () throws(FrameError) in
            _ = try feed(channel, [frame])
        }
    }

    @Test func aConnectionEndingInsideAFrameIsATruncatedFrame() throws {
        let channel = try receiver()
        var frame = seal([data("cut short")])[0]
        let half = frame.readSlice(length: 10)!
        _ = try feed(channel, [half])
        channel.pipeline.fireChannelInactive()
        #expect(throws: FrameError(.truncated, "the connection ended inside a frame: 10 of 30 bytes arrived")) {
            try channel.throwIfErrorCaught()
        }
    }

    @Test func garbageBeforeTheHandshakeIsABadLength() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(LengthPrefixFrameDecoder(maximumLength: NetWire.handshakeMessageBytesMax)))
        let error = #expect(throws: FrameError.self) {
            try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        }
        #expect(error?.reason == .badLength)
        #expect(error?.message == "handshake message length 1195725856 is over the maximum 1024")
    }

    @Test func anUnknownFrameTypeIsRejected() throws {
        let channel = try receiver()
        var sealer = FrameSealer(key: key)
        var frame = ByteBuffer()
        [UInt8]([9, 9]).withUnsafeBytes { payload in SecureFrame.append(.data, payload, to: &frame) }
        frame.setInteger(UInt8(9), at: 4)  // the type byte, before sealing
        sealer.sealFrames(in: &frame)
        expectRejection(.unknownType, containing: "frame type 9 is unknown") { () throws(FrameError) in
            _ = try feed(channel, [frame])
        }
    }

    @Test func aPingWithoutEightBytesIsMalformed() throws {
        var plaintext = ByteBuffer()
        plaintext.writeInteger(NetWire.FrameType.ping.rawValue)
        plaintext.writeRepeatingByte(1, count: 7)
        #expect(throws: FrameError(.malformed, "a PING carries 8 bytes, not 7")) { try SecureFrame.parse(plaintext) }
    }

    @Test func aCloseReasonIsCutAtTheLimitWhenSent() throws {
        let long = String(repeating: "é", count: NetWire.reasonBytesMax)  // 2 bytes each: cut on a boundary
        let frames = try feed(receiver(), seal([.close(.duplicate, long)]))
        guard case .close(.duplicate, let reason) = frames.first else {
            Issue.record("no CLOSE")
            return
        }
        #expect(reason.utf8.count == NetWire.reasonBytesMax && reason.allSatisfy { $0 == "é" })
    }

    @Test func aCloseWithoutItsCodeIsMalformedAndAnUnknownCodeIsOther() throws {
        var empty = ByteBuffer()
        empty.writeInteger(NetWire.FrameType.close.rawValue)
        #expect(throws: FrameError(.malformed, "a CLOSE carries a code byte; this one is empty")) {
            try SecureFrame.parse(empty)
        }
        var future = empty
        future.writeBytes([200] + Array("later".utf8))
        #expect(try SecureFrame.parse(future) == .close(.other, "later"))
    }

    @Test func theSealerCountsFramesAndTheOpenerFollows() throws {
        var sealer = FrameSealer(key: key)
        var buffer = ByteBuffer()
        for _ in 0..<3 { SecureFrame.appendControl(.ping(0), to: &buffer) }
        #expect(sealer.sealFrames(in: &buffer) == 3)
        #expect(sealer.counter == 3)
    }
}
