import CMetanodeShim
import Foundation
import MetanodeHostBridge

/// One plugin's executor: a thread that runs the plugin's hooks one at a time, in arrival order (the ABI's threading
/// promise). Bus messages go through a bounded mailbox and are dropped, never blocked on, when it is full; control
/// work (init, start, stop, timers, replies, HTTP, exported calls) is never dropped.
final class PluginExecutor: @unchecked Sendable {
    enum Job {
        /// `bytes` is the topic followed by the payload: one allocation per message. `sender` is the sending
        /// plugin's name in memory that lives as long as the process, so queuing it costs no reference counting.
        case message(bytes: [UInt8], topicCount: Int, sender: UnsafeRawBufferPointer, replyToken: UInt64)
        /// A message from another node: `bytes` is the whole transport message, the plugin's part starts at
        /// `bodyStart`. Counted against the mailbox depth like bus messages.
        case net(bytes: [UInt8], bodyStart: Int, peer: PeerID, callback: NetReceiveCallback)
        case work(() -> Void)
    }

    let name: String
    let messageDepthMax: Int
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var pending: [Job] = []
    private var queuedMessages = 0
    /// Messages in the batch the executor is working through; they count against the depth until it finishes.
    private var messagesInBatch = 0
    private var consumerWaiting = false
    private var thread: Thread?
    private let deliver: (_ topic: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer,
                          _ sender: UnsafeRawBufferPointer, _ replyToken: UInt64) -> Void
    private let deliverNet: (_ callback: NetReceiveCallback, _ peer: UnsafeRawBufferPointer,
                             _ message: UnsafeRawBufferPointer) -> Void

    /// `deliver` runs on the executor thread for each message job.
    init(name: String, messageDepthMax: Int,
         deliver: @escaping (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer, UInt64) -> Void,
         deliverNet: @escaping (NetReceiveCallback, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        self.name = name
        self.messageDepthMax = messageDepthMax
        self.deliver = deliver
        self.deliverNet = deliverNet
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        pending.reserveCapacity(1024)
        let thread = Thread { [unowned self] in self.runLoop() }
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Queues a bus message; false if the mailbox is full (the caller counts the drop).
    @inline(__always)
    func submitMessage(bytes: [UInt8], topicCount: Int, sender: UnsafeRawBufferPointer, replyToken: UInt64) -> Bool {
        submitCounted(.message(bytes: bytes, topicCount: topicCount, sender: sender, replyToken: replyToken))
    }

    /// Queues a message from another node; false if the mailbox is full (the caller counts the drop).
    func submitNet(bytes: [UInt8], bodyStart: Int, peer: PeerID, callback: NetReceiveCallback) -> Bool {
        submitCounted(.net(bytes: bytes, bodyStart: bodyStart, peer: peer, callback: callback))
    }

    /// Queues a job that counts against the mailbox depth (bus and net messages), unless the mailbox is full.
    @inline(__always)
    private func submitCounted(_ job: Job) -> Bool {
        pthread_mutex_lock(&mutex)
        guard queuedMessages + messagesInBatch < messageDepthMax else {
            pthread_mutex_unlock(&mutex)
            return false
        }
        queuedMessages += 1
        pending.append(job)
        let wake = consumerWaiting
        pthread_mutex_unlock(&mutex)
        if wake { pthread_cond_signal(&condition) }
        return true
    }

    /// Queues work for the executor thread.
    func submit(_ work: @escaping () -> Void) {
        pthread_mutex_lock(&mutex)
        pending.append(.work(work))
        let wake = consumerWaiting
        pthread_mutex_unlock(&mutex)
        if wake { pthread_cond_signal(&condition) }
    }

    /// Runs `body` on the executor thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            submit { continuation.resume(returning: body()) }
        }
    }

    /// Runs `body` on the executor thread, blocking the caller (for the loader and tests, never on the executor).
    func runBlocking<T>(_ body: @escaping () -> T) -> T {
        precondition(Thread.current !== thread, "runBlocking called on plugin \(name)'s own executor")
        var result: T?
        let done = DispatchSemaphore(value: 0)
        submit {
            result = body()
            done.signal()
        }
        done.wait()
        return result!
    }

    var isCurrent: Bool { Thread.current === thread }

    private func runLoop() {
        _ = mn_cg_thread_prepare()
        _ = mn_thread_set_name("mn-\(name)")
        var batch: [Job] = []
        batch.reserveCapacity(1024)
        while true {
            pthread_mutex_lock(&mutex)
            messagesInBatch = 0
            while pending.isEmpty {
                consumerWaiting = true
                pthread_cond_wait(&condition, &mutex)
            }
            consumerWaiting = false
            swap(&batch, &pending)
            messagesInBatch = queuedMessages
            queuedMessages = 0
            pthread_mutex_unlock(&mutex)
            for job in batch {
                switch job {
                case .message(let bytes, let topicCount, let sender, let replyToken):
                    bytes.withUnsafeBytes { bytes in
                        deliver(UnsafeRawBufferPointer(rebasing: bytes[..<topicCount]),
                                UnsafeRawBufferPointer(rebasing: bytes[topicCount...]), sender, replyToken)
                    }
                case .net(let bytes, let bodyStart, let peer, let callback):
                    bytes.withUnsafeBytes { bytes in
                        peer.bytes.withUnsafeBytes { key in
                            deliverNet(callback, key, UnsafeRawBufferPointer(rebasing: bytes[bodyStart...]))
                        }
                    }
                case .work(let work):
                    work()
                }
            }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
