import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import Testing

/// The pure handshake state machine, driven without I/O: messages in, actions out.
@Suite struct HandshakeTests {
    let initiatorKey = key(1)
    let responderKey = key(2)
    let address = "127.0.0.1:7801"

    func initiator(expecting expected: PeerID? = nil, ephemeral: X25519KeyPair = .generate()) -> Handshake {
        Handshake(
            role: .initiator(expectedPeer: expected ?? peerID(responderKey), address: address),
            identity: initiatorKey, ephemeral: ephemeral)
    }

    func responder(allowed: [PeerID]? = nil, allowUnlisted: Bool = false, ephemeral: X25519KeyPair = .generate())
        -> Handshake
    {
        Handshake(
            role: .responder(
                policy: .init(allowed: Set(allowed ?? [peerID(initiatorKey)]), allowUnlisted: allowUnlisted),
                address: "127.0.0.1:50000"),
            identity: responderKey, ephemeral: ephemeral)
    }

    /// The body of the only `.send` action.
    func sent(_ actions: [Handshake.Action], sourceLocation: SourceLocation = #_sourceLocation) -> [UInt8] {
        for case .send(let body) in actions { return body }
        Issue.record("no message was sent: \(actions)", sourceLocation: sourceLocation)
        return []
    }

    func completion(_ actions: [Handshake.Action]) -> HandshakeOutcome? {
        for case .complete(let outcome) in actions { return outcome }
        return nil
    }

    func failure(_ actions: [Handshake.Action], sourceLocation: SourceLocation = #_sourceLocation)
        -> (error: HandshakeError, refuse: [UInt8]?)?
    {
        for case .fail(let error, let refuse) in actions { return (error, refuse) }
        Issue.record("the handshake did not fail: \(actions)", sourceLocation: sourceLocation)
        return nil
    }

    /// Runs HELLO and REPLY; returns both machines and the messages.
    func runToReply(_ i: inout Handshake, _ r: inout Handshake) -> (hello: [UInt8], reply: [UInt8]) {
        let hello = sent(i.start())
        let reply = sent(r.receive(hello))
        return (hello, reply)
    }

    @Test func bothSidesAgreeOnPeersKeysAndTranscript() throws {
        var i = initiator()
        var r = responder()
        let (_, reply) = runToReply(&i, &r)
        let afterReply = i.receive(reply)
        let finish = sent(afterReply)
        let initiatorOutcome = try #require(completion(afterReply))
        let responderOutcome = try #require(completion(r.receive(finish)))

        #expect(initiatorOutcome.peer == peerID(responderKey))
        #expect(responderOutcome.peer == peerID(initiatorKey))
        #expect(initiatorOutcome.isInitiator && !responderOutcome.isInitiator)
        #expect(initiatorOutcome.initiatorKey == peerID(initiatorKey))
        #expect(responderOutcome.initiatorKey == peerID(initiatorKey))
        #expect(initiatorOutcome.transcriptHash == responderOutcome.transcriptHash)
        #expect(i.isFinished && r.isFinished)

        // What one side seals with its send key, the other opens with its receive key (both directions).
        var plaintext: [UInt8] = Array("hello".utf8)
        var tag = [UInt8](repeating: 0, count: 16)
        let ad: [UInt8] = [0, 0, 0, 21]
        plaintext.withUnsafeMutableBytes { text in
            tag.withUnsafeMutableBytes { tag in
                ad.withUnsafeBytes { ad in
                    ChaCha20Poly1305.seal(text, tag: tag.baseAddress!, associatedData: ad, counter: 0,
                                          key: initiatorOutcome.sendKey)
                }
            }
        }
        var opened = [UInt8](repeating: 0, count: 5)
        let ok = plaintext.withUnsafeBytes { text in
            tag.withUnsafeBytes { tag in
                ad.withUnsafeBytes { ad in
                    opened.withUnsafeMutableBytes { out in
                        ChaCha20Poly1305.open(text, tag: tag.baseAddress!, associatedData: ad, counter: 0,
                                              key: responderOutcome.receiveKey, into: out.baseAddress!)
                    }
                }
            }
        }
        #expect(ok && opened == Array("hello".utf8))
    }

    @Test func messagesHaveTheDocumentedSizesAndPrologue() {
        var i = initiator()
        var r = responder()
        let (hello, reply) = runToReply(&i, &r)
        let finish = sent(i.receive(reply))
        #expect(hello.count == Handshake.helloByteCount && hello.count == 70)
        #expect(Array(hello[0..<6]) == Array("MNET".utf8) + [1, 1])
        #expect(reply.count == Handshake.replyByteCount && reply.first == 2)
        #expect(finish.count == Handshake.finishByteCount && finish.first == 3)
    }

    @Test func sameInputsGiveTheSameBytes() throws {
        func run() throws -> [[UInt8]] {
            var i = initiator(ephemeral: try X25519KeyPair(seed: [UInt8](repeating: 7, count: 32)))
            var r = responder(ephemeral: try X25519KeyPair(seed: [UInt8](repeating: 8, count: 32)))
            let (hello, reply) = runToReply(&i, &r)
            let finish = sent(i.receive(reply))
            return [hello, reply, finish]
        }
        #expect(try run() == run())
    }

    @Test func responderRefusesAnUnlistedKeyAndTellsTheInitiator() throws {
        var i = initiator()
        var r = responder(allowed: [peerID(key(9))])
        let refused = try #require(failure(r.receive(sent(i.start()))))
        #expect(refused.error.reason == .unlistedKey)
        #expect(refused.error.message.contains(peerID(initiatorKey).short))
        let refuse = try #require(refused.refuse)
        #expect(refuse.first == NetWire.HandshakeType.refuse.rawValue)

        let initiatorSide = try #require(failure(i.receive(refuse)))
        #expect(initiatorSide.error.reason == .refusedByPeer)
        #expect(initiatorSide.error.message.contains("is not a configured peer"))
        #expect(initiatorSide.refuse == nil)
    }

    @Test func responderAcceptsAnUnlistedKeyWhenAllowed() throws {
        var i = initiator()
        var r = responder(allowed: [], allowUnlisted: true)
        let (_, reply) = runToReply(&i, &r)
        let outcome = try #require(completion(r.receive(sent(i.receive(reply)))))
        #expect(outcome.peer == peerID(initiatorKey))
    }

    @Test func initiatorRefusesAResponderWithAnotherKeyNamingBothKeys() throws {
        let expected = peerID(key(3))
        var i = initiator(expecting: expected)
        var r = responder()
        let (_, reply) = runToReply(&i, &r)
        let refused = try #require(failure(i.receive(reply)))
        #expect(refused.error.reason == .wrongKey)
        #expect(refused.error.message
            == "peer at 127.0.0.1:7801 presented key \(peerID(responderKey).hex), but the configured key is \(expected.hex)")
        #expect(refused.refuse != nil)
    }

    @Test func initiatorRefusesABadResponderSignature() throws {
        var i = initiator()
        var r = responder()
        var (_, reply) = runToReply(&i, &r)
        reply[reply.count - 1] ^= 0x01
        let refused = try #require(failure(i.receive(reply)))
        #expect(refused.error.reason == .badSignature)
        #expect(refused.error.message.contains("REPLY"))
    }

    @Test func responderRefusesABadInitiatorSignature() throws {
        var i = initiator()
        var r = responder()
        let (_, reply) = runToReply(&i, &r)
        var finish = sent(i.receive(reply))
        finish[10] ^= 0x80
        let refused = try #require(failure(r.receive(finish)))
        #expect(refused.error.reason == .badSignature)
        #expect(refused.error.message.contains("FINISH"))
        #expect(refused.refuse == nil)
    }

    @Test func aReplyFromAnotherHandshakeDoesNotVerify() throws {
        // A man in the middle replays a genuine REPLY made for another initiator's HELLO: its signature covers
        // that HELLO, so it fails here.
        var i = initiator()
        var other = Handshake(role: .initiator(expectedPeer: peerID(responderKey), address: address),
                              identity: initiatorKey, ephemeral: .generate())
        var r = responder()
        _ = i.start()
        let replyForOther = sent(r.receive(sent(other.start())))
        let refused = try #require(failure(i.receive(replyForOther)))
        #expect(refused.error.reason == .badSignature)
    }

    @Test func responderRefusesItsOwnKey() throws {
        var i = Handshake(role: .initiator(expectedPeer: peerID(responderKey), address: address),
                          identity: responderKey, ephemeral: .generate())
        var r = responder(allowed: [peerID(responderKey)])
        let refused = try #require(failure(r.receive(sent(i.start()))))
        #expect(refused.error.reason == .selfConnection)
    }

    @Test func responderRefusesALowOrderEphemeralKey() throws {
        var i = initiator()
        var hello = sent(i.start())
        // The identity point (0x01 then zeros) has order 1: X25519 with it yields all zeros.
        hello.replaceSubrange(6..<38, with: [1] + [UInt8](repeating: 0, count: 31))
        var r = responder()
        let refused = try #require(failure(r.receive(hello)))
        #expect(refused.error.reason == .weakKey)
    }

    @Test(arguments: [
        (Array("HTTP".utf8) + [1, 1], "does not speak the Metanode net protocol"),
        (Array("MNET".utf8) + [2, 1], "speaks Metanode net protocol version 2; this node speaks 1"),
    ])
    func responderRefusesAnotherProtocolOrVersion(prefix: [UInt8], message: String) throws {
        var i = initiator()
        var hello = sent(i.start())
        hello.replaceSubrange(0..<6, with: prefix)
        var r = responder()
        let refused = try #require(failure(r.receive(hello)))
        #expect(refused.error.reason == .version)
        #expect(refused.error.message.contains(message), "\(refused.error.message)")
    }

    @Test(arguments: [
        (0, "field 'magic' is missing (the message ends after 0 bytes)"),
        (3, "field 'magic' is truncated: 3 of 4 bytes"),
        (5, "field 'type' is missing (the message ends after 5 bytes)"),
        (20, "field 'ephemeral key' is truncated: 14 of 32 bytes"),
        (38, "field 'static key' is missing (the message ends after 38 bytes)"),
        (69, "field 'static key' is truncated: 31 of 32 bytes"),
    ])
    func aTruncatedHelloNamesTheField(length: Int, message: String) throws {
        var i = initiator()
        let hello = Array(sent(i.start()).prefix(length))
        var r = responder()
        let refused = try #require(failure(r.receive(hello)))
        #expect(refused.error.reason == .malformed)
        #expect(refused.error.message == "handshake HELLO \(message)")
    }

    @Test func trailingBytesAfterTheLastFieldAreMalformed() throws {
        var i = initiator()
        var r = responder()
        let refused = try #require(failure(r.receive(sent(i.start()) + [0])))
        #expect(refused.error.message == "handshake HELLO field 'static key' is followed by 1 unexpected bytes")
    }

    @Test func aWrongTypeByteIsMalformed() throws {
        var i = initiator()
        var r = responder()
        let (_, reply) = runToReply(&i, &r)
        let refused = try #require(failure(i.receive([3] + reply.dropFirst())))
        #expect(refused.error.reason == .malformed)
        #expect(refused.error.message.contains("REPLY field 'type' is 3, expected 2"))
    }

    @Test func aTruncatedReplyNamesTheField() throws {
        var i = initiator()
        var r = responder()
        let (_, reply) = runToReply(&i, &r)
        let refused = try #require(failure(i.receive(reply.prefix(100))))
        #expect(refused.error.message == "handshake REPLY field 'signature' is truncated: 35 of 64 bytes")
    }

    @Test func anOverlongRefuseReasonIsMalformed() throws {
        var i = initiator()
        _ = i.start()
        let refused = try #require(failure(i.receive([4] + [UInt8](repeating: 65, count: NetWire.reasonBytesMax + 1))))
        #expect(refused.error.reason == .malformed)
    }

    @Test func aRefuseReasonIsSanitisedForTheLog() throws {
        var i = initiator()
        _ = i.start()
        let refused = try #require(failure(i.receive([4] + Array("no\nthanks".utf8) + [0xff])))
        #expect(refused.error.message.hasSuffix("refused the connection: no?thanks\u{FFFD}"))
    }

    @Test func messagesAfterTheEndAreUnexpected() throws {
        var i = initiator()
        var r = responder()
        let (_, reply) = runToReply(&i, &r)
        _ = i.receive(reply)
        let refused = try #require(failure(i.receive(reply)))
        #expect(refused.error.reason == .unexpectedMessage)
    }

    @Test func anAbandonedHandshakeRefusesInput() throws {
        var r = responder()
        r.abandon()
        var i = initiator()
        let refused = try #require(failure(r.receive(sent(i.start()))))
        #expect(refused.error.reason == .unexpectedMessage)
        #expect(r.isFinished)
    }
}
