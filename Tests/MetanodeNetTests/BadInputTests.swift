import MetanodeCore
import MetanodeCrypto
import MetanodeHostBridge
import MetanodeNet
import NIOCore
import Testing

/// An attacker connects to one node of three and misbehaves: that connection is closed and counted, and the node
/// keeps serving its two real peers.
@Suite struct BadInputTests {
    enum Attack: String, CaseIterable, CustomTestStringConvertible {
        case garbage, garbageOfAPlausibleLength, truncatedHandshake
        case tamperedFrame, replayedFrame, reorderedFrames, oversizeFrame, truncatedFrame, unknownFrameType

        var testDescription: String { rawValue }

        /// The metric that counts it.
        var metric: String {
            switch self {
            case .garbage: "metanode_net_handshake_failures_total{reason=\"bad_length\"}"
            case .garbageOfAPlausibleLength: "metanode_net_handshake_failures_total{reason=\"version\"}"
            case .truncatedHandshake: "metanode_net_handshake_failures_total{reason=\"malformed\"}"
            case .tamperedFrame, .replayedFrame, .reorderedFrames:
                "metanode_net_frames_rejected_total{reason=\"auth_failure\"}"
            case .oversizeFrame: "metanode_net_frames_rejected_total{reason=\"bad_length\"}"
            case .truncatedFrame: "metanode_net_frames_rejected_total{reason=\"truncated\"}"
            case .unknownFrameType: "metanode_net_frames_rejected_total{reason=\"unknown_type\"}"
            }
        }

        /// Whether the transport closes the connection (the attacker closes it itself in the truncation cases).
        var transportCloses: Bool { self != .truncatedHandshake && self != .truncatedFrame }
    }

    @Test(arguments: Attack.allCases)
    func anAttackClosesOnlyItsConnection(_ attack: Attack) async throws {
        let nodes = try await startMesh(3) {
            $0.allowUnlisted = true
            $0.frameBytesMax = 64 << 10
        }
        let target = nodes[0]
        await eventually("mesh up") { nodes.allSatisfy { $0.transport.connectedPeers().count == 2 } }

        let attackerKey = Ed25519KeyPair.generate()
        let attacker = try await RawPeer.connect(to: target.address)
        var delivered: [[UInt8]] = []
        switch attack {
        case .garbage:
            try await attacker.write(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        case .garbageOfAPlausibleLength:
            try await attacker.writeFramed((0..<70).map { UInt8($0) })
        case .truncatedHandshake:
            var hello = ByteBuffer()
            hello.writeInteger(UInt32(Handshake.helloByteCount))
            hello.writeBytes(Array("MNET".utf8) + [1, 1])
            try await attacker.write(hello)
            try await Task.sleep(for: .milliseconds(20))
            await attacker.close()
        default:
            let outcome = try await attacker.handshake(as: attackerKey, expecting: target.id)
            await eventually("attacker admitted") { target.transport.connectedPeers().contains(peerID(attackerKey)) }
            var sealer = RawSealer(outcome)
            let first = sealer.frame(.data(ByteBuffer(bytes: [1])))
            let second = sealer.frame(.data(ByteBuffer(bytes: [2])))
            switch attack {
            case .tamperedFrame:
                var bad = first
                bad.setInteger(bad.getInteger(at: 5, as: UInt8.self)! ^ 0x01, at: 5)
                try await attacker.write(bad)
            case .replayedFrame:
                try await attacker.write(first + first)
                delivered = [[1]]
            case .reorderedFrames:
                try await attacker.write(second + first)
            case .oversizeFrame:
                var prefix = ByteBuffer()
                prefix.writeInteger(UInt32((64 << 10) + 1))
                try await attacker.write(prefix)
            case .truncatedFrame:
                try await attacker.write(first.getSlice(at: 0, length: 8)!)
                try await Task.sleep(for: .milliseconds(20))
                await attacker.close()
            case .unknownFrameType:
                var frame = ByteBuffer()
                [UInt8]([0]).withUnsafeBytes { SecureFrame.append(.data, $0, to: &frame) }
                frame.setInteger(UInt8(77), at: 4)
                var raw = FrameSealer(key: outcome.sendKey)
                raw.sealFrames(in: &frame)
                try await attacker.write(frame)
            default:
                Issue.record("unhandled attack")
            }
        }
        if attack.transportCloses { await attacker.waitUntilClosed() }
        await eventually("counted as \(attack.metric)") { target.metric(attack.metric) == 1 }
        #expect(target.delegate.messages(from: peerID(attackerKey)) == delivered)
        await eventually("attacker gone") { !target.transport.connectedPeers().contains(peerID(attackerKey)) }

        // The real peers were not disturbed: still one connection each, and traffic flows both ways.
        #expect(target.transport.connectedPeers() == [nodes[1].id, nodes[2].id].sorted())
        for peer in nodes.dropFirst() {
            #expect(target.send([7], to: peer.id) == .queued)
            #expect(peer.send([8], to: target.id) == .queued)
        }
        await eventually("traffic after the attack") {
            nodes.dropFirst().allSatisfy { $0.delegate.messages(from: target.id) == [[7]] }
                && target.delegate.messages(from: nodes[1].id) == [[8]]
                && target.delegate.messages(from: nodes[2].id) == [[8]]
        }
        for node in nodes.dropFirst() {
            #expect(!node.delegate.events.contains { $0.hasPrefix("down") },
                    "\(node.delegate.events) \(node.logs.all)")
        }
        await shutdownAll(nodes)
    }
}

extension ByteBuffer {
    static func + (a: ByteBuffer, b: ByteBuffer) -> ByteBuffer {
        var joined = a
        var b = b
        joined.writeBuffer(&b)
        return joined
    }
}
