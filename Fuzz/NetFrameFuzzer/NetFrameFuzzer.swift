import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import NIOCore
import NIOEmbedded

// Feeds fuzzer bytes to everything that reads a peer's bytes before or instead of trusting them:
//   mode 0: raw bytes into the encrypted-phase pipeline (length-prefix decoder, then the frame opener) with a fixed key
//   mode 1: frames built from the input and sealed with the fixed key, then modified (bit flip, swap, duplicate, drop,
//           cut), delivered in fuzzer-chosen pieces: reaches the plaintext parser with authentic frames
//   mode 2: raw bytes into the handshake-phase pipeline of a responder (decoder, HandshakeHandler, Handshake)
//   mode 3: handshake messages (u16-length-split input) into a responder state machine
//   mode 4: a genuine HELLO/REPLY exchange whose REPLY (or the initiator's FINISH) is modified at a fuzzer-chosen byte
// Everything is deterministic: fixed keys, fixed ephemeral seeds.

enum Fixture {
    static let frameKey = try! AEADKey(bytes: [UInt8](repeating: 0x5a, count: 32))
    static let initiator = try! Ed25519KeyPair(seed: [UInt8](repeating: 1, count: 32))
    static let responder = try! Ed25519KeyPair(seed: [UInt8](repeating: 2, count: 32))
    static let initiatorID = PeerID(bytes: initiator.publicKey.bytes)!
    static let responderID = PeerID(bytes: responder.publicKey.bytes)!
    static let frameBytesMax = 64 << 10

    static func ephemeral(_ byte: UInt8) -> X25519KeyPair {
        try! X25519KeyPair(seed: [UInt8](repeating: byte, count: 32))
    }

    static func responderMachine(allowUnlisted: Bool) -> Handshake {
        Handshake(
            role: .responder(policy: .init(allowed: [initiatorID], allowUnlisted: allowUnlisted), address: "fuzz"),
            identity: responder, ephemeral: ephemeral(4))
    }
}

/// A little reader over the fuzzer's bytes.
struct Input {
    var bytes: ArraySlice<UInt8>

    mutating func byte() -> UInt8 { bytes.popFirst() ?? 0 }

    mutating func take(_ count: Int) -> [UInt8] {
        let taken = bytes.prefix(count)
        bytes = bytes.dropFirst(taken.count)
        return Array(taken)
    }

    mutating func u16() -> Int { Int(byte()) << 8 | Int(byte()) }
}

/// libFuzzer's entry point (also reachable as LLVMFuzzerTestOneInput for other drivers).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Input(bytes: ArraySlice(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)))
    switch input.byte() % 5 {
    case 0: fuzzEncryptedStream(Array(input.bytes), pieces: 3)
    case 1: fuzzSealedFrames(&input)
    case 2: fuzzHandshakeStream(Array(input.bytes))
    case 3: fuzzResponderMessages(&input)
    default: fuzzModifiedExchange(&input)
    }
    return 0
}

/// Writes `bytes` in `pieces` reads into a channel that decodes encrypted frames, and parses what comes out.
func fuzzEncryptedStream(_ bytes: [UInt8], pieces: Int, cuts: [Int] = []) {
    let channel = EmbeddedChannel()
    let decoder = LengthPrefixFrameDecoder(
        maximumLength: Fixture.frameBytesMax, minimumLength: NetWire.frameBytesMin, phase: "frame")
    try! channel.pipeline.syncOperations.addHandlers(
        ByteToMessageHandler(decoder), SecureFrameHandler(receiveKey: Fixture.frameKey))
    var offsets = cuts.map { min(max($0, 0), bytes.count) }.sorted()
    if offsets.isEmpty { offsets = (1..<max(pieces, 1)).map { bytes.count * $0 / pieces } }
    var start = 0
    for end in offsets + [bytes.count] where end >= start {
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes[start..<end]))
        } catch {
            break  // a rejected frame: the transport would close here
        }
        start = end
        while let plaintext = try? channel.readInbound(as: ByteBuffer.self) {
            _ = try? SecureFrame.parse(plaintext)
        }
    }
    channel.pipeline.fireChannelInactive()  // decodeLast: a frame cut short at the end
    _ = try? channel.throwIfErrorCaught()
    _ = try? channel.finish()
    channel.embeddedEventLoop.run()  // tasks a close scheduled; they hold the channel until they run
}

func fuzzSealedFrames(_ input: inout Input) {
    var sealer = FrameSealer(key: Fixture.frameKey)
    var frames: [ByteBuffer] = []
    let count = Int(input.byte() % 8)
    for _ in 0..<count {
        let type = input.byte()
        let payload = input.take(Int(input.byte()))
        var frame = ByteBuffer()
        payload.withUnsafeBytes { SecureFrame.append(.data, $0, to: &frame) }
        frame.setInteger(type, at: 4)  // any type byte, known or not
        sealer.sealFrames(in: &frame)
        frames.append(frame)
    }
    let mutation = input.byte()
    let a = Int(input.byte()), b = Int(input.byte())
    if !frames.isEmpty {
        switch mutation % 6 {
        case 0: break
        case 1:
            let index = a % frames.count
            let offset = b % frames[index].readableBytes
            let byte = frames[index].getInteger(at: offset, as: UInt8.self)!
            frames[index].setInteger(byte ^ (1 << (mutation % 8)), at: offset)
        case 2: frames.swapAt(a % frames.count, b % frames.count)
        case 3: frames.insert(frames[a % frames.count], at: b % frames.count)
        case 4: frames.remove(at: a % frames.count)
        default:
            let index = a % frames.count
            frames[index] = frames[index].getSlice(at: 0, length: b % frames[index].readableBytes)!
        }
    }
    var stream: [UInt8] = []
    for frame in frames { stream += frame.readableBytesView }
    let cuts = (0..<Int(input.byte() % 4)).map { _ in input.u16() }
    fuzzEncryptedStream(stream, pieces: 1, cuts: cuts)
}

func fuzzHandshakeStream(_ bytes: [UInt8]) {
    let channel = EmbeddedChannel()
    let decoder = LengthPrefixFrameDecoder(maximumLength: NetWire.handshakeMessageBytesMax)
    try! channel.pipeline.syncOperations.addHandlers(
        ByteToMessageHandler(decoder),
        HandshakeHandler(
            handshake: Fixture.responderMachine(allowUnlisted: bytes.first.map { $0 & 1 == 1 } ?? false),
            decoder: decoder, frameBytesMax: Fixture.frameBytesMax, timeout: .seconds(1)
        ) { _ in },
        SecureFrameHandler())
    _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
    while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
    while (try? channel.readInbound(as: ByteBuffer.self)) != nil {}
    _ = try? channel.finish()
    channel.embeddedEventLoop.run()  // tasks a close scheduled; they hold the channel until they run
}

func fuzzResponderMessages(_ input: inout Input) {
    var machine = Fixture.responderMachine(allowUnlisted: input.byte() & 1 == 1)
    while !input.bytes.isEmpty {
        _ = machine.receive(input.take(input.u16() % 300))
    }
}

func fuzzModifiedExchange(_ input: inout Input) {
    var initiator = Handshake(
        role: .initiator(expectedPeer: Fixture.responderID, address: "fuzz"), identity: Fixture.initiator,
        ephemeral: Fixture.ephemeral(3))
    var responder = Fixture.responderMachine(allowUnlisted: false)
    guard case .send(let hello)? = initiator.start().first else { return }
    guard case .send(var reply)? = responder.receive(hello).first else { return }
    let target = input.byte()
    let index = input.u16()
    let flip = input.byte() | 1
    if target & 1 == 0 {
        reply[index % reply.count] ^= flip
        reply += input.take(Int(input.byte() % 4))
        _ = initiator.receive(reply)
    } else {
        for case .send(var finish) in initiator.receive(reply) {
            finish[index % finish.count] ^= flip
            _ = responder.receive(finish)
        }
    }
}
