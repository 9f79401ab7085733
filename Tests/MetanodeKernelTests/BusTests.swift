import Foundation
import MetanodeABI
import MetanodeCore
@testable import MetanodeKernel
import Testing

/// The bus between C plugins loaded in one kernel. Every plugin is Fixtures/probe.c; what on_message and bus reply
/// callbacks received is read back through exported getters. kernel.call runs on the plugin's executor after the
/// work queued before it, so a message published before a getter call is visible to it.
@Suite("Bus")
struct BusTests {
    static func withPlugins(_ names: [String], _ body: (TestKernel) async throws -> Void) async throws {
        try await withKernel("bus") { test in
            for name in names { try await test.start(TestPackage(name: name), grants: ["bus"]) }
            try await body(test)
        }
    }

    @Test("publish reaches exact and wildcard subscribers once per plugin, and nobody else")
    func publishFanOut() async throws {
        try await Self.withPlugins(["sender", "both", "wild", "other"]) { test async throws in
            #expect(try await test.int32("both", "subscribe", "orders.created") == MN_OK)
            #expect(try await test.int32("both", "subscribe", "orders.*") == MN_OK)
            #expect(try await test.int32("wild", "subscribe", "orders.*") == MN_OK)
            #expect(try await test.int32("other", "subscribe", "orders.deleted") == MN_OK)

            #expect(try await test.int32("sender", "publish", "orders.created", "#1") == MN_OK)
            #expect(try await test.call("sender", "last_delivered") == .uint32(2))

            #expect(try await test.string("both", "received_log") == "orders.created|#1|sender;")
            #expect(try await test.string("wild", "received_log") == "orders.created|#1|sender;")
            #expect(try await test.int32("other", "received_total") == 0)
            #expect(try await test.int32("sender", "received_total") == 0)
        }
    }

    @Test("bus_listeners counts subscribed plugins, and a stream's clients only for the plugin that feeds it")
    func listenerCount() async throws {
        try await Self.withPlugins(["sender", "both", "wild"]) { test async throws in
            #expect(try await test.call("sender", "listeners", "sender.stream.blocks") == .uint32(0))
            #expect(try await test.int32("both", "subscribe", "sender.stream.blocks") == MN_OK)
            #expect(try await test.int32("both", "subscribe", "sender.*") == MN_OK)
            #expect(try await test.int32("wild", "subscribe", "sender.*") == MN_OK)
            #expect(try await test.call("sender", "listeners", "sender.stream.blocks") == .uint32(2))

            let (events, stop) = test.kernel.stream(plugin: "sender", name: "blocks")
            defer { stop() }
            _ = events
            #expect(try await test.call("sender", "listeners", "sender.stream.blocks") == .uint32(3))
            // Another plugin cannot feed sender's stream, so its clients do not count for it.
            #expect(try await test.call("both", "listeners", "sender.stream.blocks") == .uint32(2))
            #expect(try await test.call("sender", "listeners", "sender.*") == .uint32(UInt32.max))
            #expect(try await test.string("sender", "last_error_text").contains("sender.*"))
        }
    }

    @Test("a wildcard matches deeper topics but not its own prefix or a longer segment")
    func wildcardBoundaries() async throws {
        try await Self.withPlugins(["sender", "wild"]) { test async throws in
            #expect(try await test.int32("wild", "subscribe", "a.*") == MN_OK)
            for topic in ["a", "ab.c", "b.a"] {
                #expect(try await test.int32("sender", "publish", .string(topic), "x") == MN_OK)
                #expect(try await test.call("sender", "last_delivered") == .uint32(0), "\(topic)")
            }
            #expect(try await test.int32("sender", "publish", "a.b.c", "deep") == MN_OK)
            #expect(try await test.call("sender", "last_delivered") == .uint32(1))
            #expect(try await test.string("wild", "received_log") == "a.b.c|deep|sender;")
        }
    }

    @Test("a request is answered by a subscriber and the reply reaches the requester's callback")
    func requestReply() async throws {
        try await Self.withPlugins(["client", "server"]) { test async throws in
            #expect(try await test.int32("server", "subscribe", "time.now") == MN_OK)
            #expect(try await test.call("server", "set_auto_reply", "noon") == .void)
            #expect(try await test.int32("client", "request", "time.now", "what time?", 5000) == MN_OK)
            let replies = try await test.eventually("client", "replies") { !$0.isEmpty }
            #expect(replies == "\(MN_OK):noon;")
            #expect(try await test.string("server", "received_log") == "time.now|what time?|client;")
        }
    }

    @Test("a request nobody subscribes to gets MN_ERR_NO_RESPONDER in its callback")
    func noResponder() async throws {
        try await Self.withPlugins(["client"]) { test async throws in
            #expect(try await test.int32("client", "request", "nobody.home", "hello?", 5000) == MN_OK)
            let replies = try await test.eventually("client", "replies") { !$0.isEmpty }
            #expect(replies == "\(MN_ERR_NO_RESPONDER):;")
        }
    }

    @Test("a request nobody answers times out with MN_ERR_TIMEOUT, once")
    func requestTimesOut() async throws {
        try await Self.withPlugins(["client", "silent"]) { test async throws in
            #expect(try await test.int32("silent", "subscribe", "slow.query") == MN_OK)
            #expect(try await test.int32("client", "request", "slow.query", "?", 30) == MN_OK)
            let replies = try await test.eventually("client", "replies") { !$0.isEmpty }
            #expect(replies == "\(MN_ERR_TIMEOUT):;")
            // A late answer finds nothing pending and the callback is not called again.
            let token = try await test.uint64("silent", "last_request_token")
            #expect(try await test.int32("silent", "reply_with_token", .uint(token), "late") == MN_ERR_NOT_FOUND)
            try await Task.sleep(for: .milliseconds(30))
            #expect(try await test.string("client", "replies") == "\(MN_ERR_TIMEOUT):;")
        }
    }

    @Test("a reply token used by a plugin the request was not delivered to is refused")
    func foreignReplyTokenRefused() async throws {
        try await Self.withPlugins(["client", "server", "intruder"]) { test async throws in
            #expect(try await test.int32("server", "subscribe", "vote.cast") == MN_OK)
            // A timeout far past the test's own steps: under a loaded CI machine those took more than 5 s, the
            // request timed out, and the server's real answer found nothing pending.
            #expect(try await test.int32("client", "request", "vote.cast", "ballot", 120_000) == MN_OK)
            let token = try await test.uint64("server", "last_request_token")
            try #require(token != 0)

            #expect(try await test.int32("intruder", "reply_with_token", .uint(token), "forged")
                == MN_ERR_INVALID_ARGUMENT)
            #expect(try await test.string("intruder", "last_error_text").contains("did not receive"))

            #expect(try await test.int32("server", "reply_with_token", .uint(token), "counted") == MN_OK)
            let replies = try await test.eventually("client", "replies") { !$0.isEmpty }
            #expect(replies == "\(MN_OK):counted;")
        }
    }

    @Test("only the first answer to a request wins; later ones get MN_ERR_NOT_FOUND")
    func firstAnswerWins() async throws {
        try await Self.withPlugins(["client", "server"]) { test async throws in
            #expect(try await test.int32("server", "subscribe", "pick.one") == MN_OK)
            #expect(try await test.int32("client", "request", "pick.one", "?", 120_000) == MN_OK)  // as above
            let token = try await test.uint64("server", "last_request_token")
            #expect(try await test.int32("server", "reply_with_token", .uint(token), "first") == MN_OK)
            #expect(try await test.int32("server", "reply_with_token", .uint(token), "second") == MN_ERR_NOT_FOUND)
            let replies = try await test.eventually("client", "replies") { !$0.isEmpty }
            #expect(replies == "\(MN_OK):first;")
        }
    }

    @Test("a stopped plugin's subscriptions are gone")
    func stopRemovesSubscriptions() async throws {
        try await Self.withPlugins(["sender", "leaver"]) { test async throws in
            #expect(try await test.int32("leaver", "subscribe", "news.*") == MN_OK)
            await test.kernel.stop(try #require(test.kernel.runtime(named: "leaver")))
            #expect(try await test.int32("sender", "publish", "news.today", "x") == MN_OK)
            #expect(try await test.call("sender", "last_delivered") == .uint32(0))
        }
    }

    @Test("without the bus grant, subscribing is denied")
    func busNeedsGrant() async throws {
        try await withKernel("bus-deny") { test in
            try await test.start(TestPackage(name: "mute"), grants: [])
            #expect(try await test.int32("mute", "subscribe", "a.b") == MN_ERR_DENIED)
            #expect(try await test.string("mute", "last_error_text").contains("--grant bus"))
        }
    }
}
