import MetanodeCrypto
import MetanodeHostBridge
import NIOCore
import Synchronization

/// One authenticated connection to a peer: its send queue, its sealer and its counters.
///
/// The send queue is a list of chunks (ByteBuffers of back-to-back *unsealed* frames). `enqueue`, on any thread,
/// copies a message into the last chunk (the one copy a message gets) and, when no drain is pending, schedules one on
/// the event loop. The drain takes whole chunks while the channel is writable, seals them in place, writes each and
/// flushes once: a burst of messages becomes a few large writes. When the socket pushes back, the drain stops and
/// resumes on `channelWritabilityChanged`; until then messages wait in the queue, which is bounded.
///
/// `@unchecked Sendable`: `sealer`, `closeSent` and `session` are touched only on `eventLoop`; everything else is a `let`,
/// a Mutex or an Atomic.
final class Connection: @unchecked Sendable {
    let peer: PeerID
    let isInitiator: Bool
    let initiatorKey: PeerID
    let address: String
    let channel: any Channel
    let eventLoop: any EventLoop

    private let messagesMax: Int
    private let bytesMax: Int
    private let metrics: NetMetrics
    private var sealer: FrameSealer
    /// Whether CLOSE has been sealed: no frame may follow it. Event loop only.
    private var closeSent = false

    let messagesSent = Atomic<UInt64>(0)
    let bytesSent = Atomic<UInt64>(0)
    let messagesReceived = Atomic<UInt64>(0)
    let bytesReceived = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    /// Last measured round trip in microseconds; 0 until the first PONG.
    let rttMicros = Atomic<UInt32>(0)

    /// Small chunks are filled up to this size; a larger message gets a chunk of its own.
    static let chunkBytes = 64 << 10

    private struct Chunk {
        var buffer: ByteBuffer
        var messages: Int
    }

    private struct Outbound {
        var chunks = CircularBuffer<Chunk>(initialCapacity: 8)
        var messages = 0
        var bytes = 0
        var drainScheduled = false
        /// False once the connection is retired or closing: new messages are refused.
        var accepting = true
    }

    private let outbound = Mutex(Outbound())

    init(
        outcome: HandshakeOutcome, address: String, channel: any Channel, messagesMax: Int, bytesMax: Int,
        metrics: NetMetrics
    ) {
        peer = outcome.peer
        isInitiator = outcome.isInitiator
        initiatorKey = outcome.initiatorKey
        self.address = address
        self.channel = channel
        eventLoop = channel.eventLoop
        self.messagesMax = messagesMax
        self.bytesMax = bytesMax
        self.metrics = metrics
        sealer = FrameSealer(key: outcome.sendKey)
    }

    enum EnqueueResult {
        case queued
        case full
        case closed
    }

    /// Copies `header` + `body` into the queue as one DATA frame. Any thread; never blocks beyond the queue's lock.
    func enqueue(header: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) -> EnqueueResult {
        let frameBytes = SecureFrame.wireBytes(payloadCount: header.count + body.count)
        let (result, scheduleDrain) = outbound.withLock { queue -> (EnqueueResult, Bool) in
            guard queue.accepting else { return (.closed, false) }
            guard queue.messages < messagesMax, queue.bytes + frameBytes <= bytesMax else { return (.full, false) }
            if queue.chunks.isEmpty || queue.chunks.last!.buffer.writableBytes < frameBytes {
                let capacity = max(Self.chunkBytes, frameBytes)
                queue.chunks.append(Chunk(buffer: channel.allocator.buffer(capacity: capacity), messages: 0))
            }
            let last = queue.chunks.index(before: queue.chunks.endIndex)
            SecureFrame.append(.data, header, body, to: &queue.chunks[last].buffer)
            queue.chunks[last].messages += 1
            queue.messages += 1
            queue.bytes += frameBytes
            let schedule = !queue.drainScheduled
            queue.drainScheduled = true
            return (.queued, schedule)
        }
        switch result {
        case .queued:
            if scheduleDrain { eventLoop.execute { self.drain(force: false) } }
        case .full:
            dropped.add(1, ordering: .relaxed)
            metrics.sendDropped.increment()
        case .closed:
            break
        }
        return result
    }

    /// Messages waiting to be written.
    var queuedMessages: Int { outbound.withLock { $0.messages } }

    /// On the event loop: writes queued chunks while the channel is writable (all of them if `force`).
    func drain(force: Bool) {
        eventLoop.preconditionInEventLoop()
        var wrote = false
        while true {
            let chunk = outbound.withLock { queue -> Chunk? in
                guard !queue.chunks.isEmpty, !closeSent, force || channel.isWritable else {
                    queue.drainScheduled = false
                    return nil
                }
                let chunk = queue.chunks.removeFirst()
                queue.messages -= chunk.messages
                queue.bytes -= chunk.buffer.readableBytes
                return chunk
            }
            guard var chunk else { break }
            let frames = sealer.sealFrames(in: &chunk.buffer)
            precondition(frames == chunk.messages)
            let bytes = chunk.buffer.readableBytes
            channel.write(chunk.buffer, promise: nil)
            wrote = true
            messagesSent.add(UInt64(frames), ordering: .relaxed)
            bytesSent.add(UInt64(bytes), ordering: .relaxed)
            metrics.messagesSent.increment(by: Int64(frames))
            metrics.bytesSent.increment(by: Int64(bytes))
        }
        if wrote { channel.flush() }
    }

    /// On the event loop: seals and writes a control frame (PING, PONG, CLOSE) after everything sealed before it.
    func sendControl(_ frame: SecureFrame, flush: Bool = true) -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        // Nothing follows a CLOSE: the peer stops reading at it.
        guard !closeSent else { return eventLoop.makeSucceededVoidFuture() }
        if case .close = frame { closeSent = true }
        var buffer = channel.allocator.buffer(capacity: 64)
        SecureFrame.appendControl(frame, to: &buffer)
        sealer.sealFrames(in: &buffer)
        metrics.bytesSent.increment(by: Int64(buffer.readableBytes))
        bytesSent.add(UInt64(buffer.readableBytes), ordering: .relaxed)
        let promise = eventLoop.makePromise(of: Void.self)
        channel.write(buffer, promise: promise)
        if flush { channel.flush() }
        return promise.futureResult
    }

    /// Refuses new messages from now on. Returns whether it was accepting until now.
    @discardableResult
    func stopAccepting() -> Bool {
        outbound.withLock { queue in
            defer { queue.accepting = false }
            return queue.accepting
        }
    }

    /// Drops whatever is still queued (the connection is gone).
    func discardQueue() {
        outbound.withLock { queue in
            queue.accepting = false
            queue.chunks.removeAll()
            queue.messages = 0
            queue.bytes = 0
        }
    }

    /// The session handler, to record why the transport closed this connection. Event loop only.
    weak var session: SessionHandler?

    /// On the event loop: stops taking messages; with `notifyPeer`, writes what is queued and a CLOSE frame with the
    /// reason; then closes the channel, unless `awaitPeerClose` (the peer closes it on reading CLOSE, after this side
    /// has read everything the peer sent before its own CLOSE).
    func close(_ reason: CloseReason, notifyPeer: Bool, awaitPeerClose: Bool = false) {
        eventLoop.preconditionInEventLoop()
        if let session, session.closeReason == nil { session.closeReason = reason }
        stopAccepting()
        guard channel.isActive else { return }
        if notifyPeer {
            drain(force: true)
            _ = sendControl(.close(reason.code, reason.message))
        }
        if !awaitPeerClose { channel.close(promise: nil) }
    }
}
