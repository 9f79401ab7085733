import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import NIOCore
import Testing

/// The vectors printed in docs/net-protocol.md, checked against an independent implementation (Python `cryptography`
/// and hashlib) when they were written: a change here is a wire-protocol change.
@Suite struct GoldenVectorTests {
    @Test func theFrameVectorIsStable() throws {
        var sealer = FrameSealer(key: try AEADKey(bytes: [UInt8](repeating: 0x5a, count: 32)))
        var frame = ByteBuffer()
        SecureFrame.appendControl(.data(ByteBuffer(string: "hi")), to: &frame)
        sealer.sealFrames(in: &frame)
        #expect(Hex.encode(frame.readableBytesView) == Vectors.frame)
    }

    @Test func theHandshakeVectorIsStable() throws {
        var initiator = Handshake(
            role: .initiator(expectedPeer: peerID(key(2)), address: "vector"), identity: key(1),
            ephemeral: try X25519KeyPair(seed: [UInt8](repeating: 7, count: 32)))
        var responder = Handshake(
            role: .responder(policy: .init(allowed: [peerID(key(1))], allowUnlisted: false), address: "vector"),
            identity: key(2), ephemeral: try X25519KeyPair(seed: [UInt8](repeating: 8, count: 32)))
        guard case .send(let hello)? = initiator.start().first,
              case .send(let reply)? = responder.receive(hello).first
        else {
            Issue.record("handshake did not run")
            return
        }
        let afterReply = initiator.receive(reply)
        guard case .send(let finish)? = afterReply.first, case .complete(let i)? = afterReply.last,
              case .complete(let r)? = responder.receive(finish).first
        else {
            Issue.record("handshake did not complete")
            return
        }
        func frame(_ key: AEADKey, _ text: String) -> String {
            var sealer = FrameSealer(key: key)
            var buffer = ByteBuffer()
            SecureFrame.appendControl(.data(ByteBuffer(string: text)), to: &buffer)
            sealer.sealFrames(in: &buffer)
            return Hex.encode(buffer.readableBytesView)
        }
        let actual = [
            "HELLO  \(Hex.encode(hello))",
            "REPLY  \(Hex.encode(reply))",
            "FINISH \(Hex.encode(finish))",
            "TH     \(Hex.encode(i.transcriptHash))",
            "first frame initiator -> responder, DATA \"ping\": \(frame(i.sendKey, "ping"))",
            "first frame responder -> initiator, DATA \"pong\": \(frame(r.sendKey, "pong"))",
        ]
        #expect(r.transcriptHash == i.transcriptHash)
        #expect(actual == Vectors.handshake, Comment(rawValue: "\n" + actual.joined(separator: "\n")))
    }
}

enum Vectors {
    static let frame = "00000013c93b137482c989b7dbc2265aac12ec537f9d32"
    static let handshake = [
        "HELLO  4d4e455401018db577f9b9c2744798987db557bf31ca48acd205a9db8c320e5d49f302a964748a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        "REPLY  " + "026e5d6876a178156ca0b81dc80f81060fa1a5d13513d614bcc28537ef989006448139770ea87d175f56a35466c34c7ecccb"
            + "8d8a91b4ee37a25df60f5b8fc9b39426de08ffa30d68b35b538a0a03bc452198c253887c6ca6101d71f80059ca4c41d09ecd34498b96b77b18e7ec79fcda62838dd157f694940ed0ad8af2af38c806",
        "FINISH 03241408c704458d99633a7ccf9c1799a44f2677fbf45081be13beee456959230b76d353e283966df1aa12c0f0224de6b59ec55fbbd2c84c4c50d2d7b60d1c8505",
        "TH     96b4b45bcfb93f61174fd9e5279217720bdbe71f11bd9098caaae87134dd6a15",
        "first frame initiator -> responder, DATA \"ping\": 000000158b9a7e8a9fe1a489e94136ba49f49a05c24a7edd27",
        "first frame responder -> initiator, DATA \"pong\": 00000015f454e3e08d4ea056ed60d7115479a0424bdfbde925",
    ]
}
