import MetanodePluginKit
import MetanodePluginTesting
import Testing

@Suite struct BusTests {
    let host = TestHost()

    @Test func publishReachesExactAndWildcardSubscribersOncePerPlugin() throws {
        let (_, sender) = try Probe.load(into: host, name: "sender")
        let (_, exact) = try Probe.load(into: host, name: "exact", subscribe: ["orders.created"])
        let (_, wildcard) = try Probe.load(into: host, name: "wildcard", subscribe: ["orders.*", "orders.created"])
        let (_, other) = try Probe.load(into: host, name: "other", subscribe: ["orders"])
        let delivered = try sender.context.bus.publish("orders.created", "42")
        #expect(delivered == 2)
        host.runUntilIdle()
        #expect(exact.received.map(\.text) == ["42"])
        #expect(wildcard.received.map(\.text) == ["42"])
        #expect(other.received.isEmpty)
        #expect(exact.received.first?.isRequest == false)
    }

    @Test func deliveriesWaitForTheQueueToRun() throws {
        let (_, sender) = try Probe.load(into: host, name: "sender")
        let (_, receiver) = try Probe.load(into: host, name: "receiver", subscribe: ["t"])
        try sender.context.bus.publish("t", "x")
        #expect(receiver.received.isEmpty)
        #expect(host.queuedEventCount == 1)
        #expect(host.runUntilIdle() == 1)
        #expect(receiver.received.count == 1)
    }

    @Test func unsubscribedPluginGetsNothing() throws {
        let (_, plugin) = try Probe.load(into: host)
        let subscription = try plugin.context.bus.subscribe("news")
        try plugin.context.bus.unsubscribe(subscription)
        #expect(try plugin.context.bus.publish("news") == 0)
    }

    @Test func requestWithoutSubscriberAnswersNoResponderAsynchronously() throws {
        let (_, requester) = try Probe.load(into: host)
        let answer = Recorded<Result<[UInt8], PluginError>?>(nil)
        try requester.context.bus.request("nobody.home", "hello", timeoutMs: 100) { answer.value = $0 }
        #expect(answer.value == nil)
        host.runUntilIdle()
        #expect(answer.value == .failure(PluginError(
            PluginStatus.noResponder, "no plugin subscribes to 'nobody.home'", function: "bus_request")))
    }

    @Test func requestTimesOutWhenTheManualClockPassesItsDeadline() throws {
        let (_, requester) = try Probe.load(into: host, name: "requester")
        try Probe.load(into: host, name: "silent", subscribe: ["slow"])
        let answer = Recorded<Result<[UInt8], PluginError>?>(nil)
        try requester.context.bus.request("slow", timeoutMs: 500) { answer.value = $0 }
        host.advance(byMs: 499)
        #expect(answer.value == nil)
        host.advance(byMs: 1)
        guard case .failure(let error) = answer.value else {
            Issue.record("expected a timeout, got \(String(describing: answer.value))")
            return
        }
        #expect(error.status == PluginStatus.timeout)
        #expect(error.message == "no reply to the request on 'slow' within 500 ms")
    }

    @Test func firstReplyWinsAndLaterRepliesAreNotFound() throws {
        let (_, requester) = try Probe.load(into: host, name: "requester")
        let (_, first) = try Probe.load(into: host, name: "first", subscribe: ["q"], replyPrefix: "first: ")
        let (_, second) = try Probe.load(into: host, name: "second", subscribe: ["q"])
        let answers = Recorded<[String]>([])
        try requester.context.bus.request("q", "?") { result in
            answers.value.append((try? result.get()).map { String(decoding: $0, as: UTF8.self) } ?? "error")
        }
        host.runUntilIdle()
        #expect(answers.value == ["first: ?"])
        #expect(first.received.count == 1)
        let late = try #require(second.received.first)
        let error = #expect(throws: PluginError.self) { try second.context.bus.reply(to: late, "second") }
        #expect(error?.status == PluginStatus.notFound)
        host.runUntilIdle()
        #expect(answers.value == ["first: ?"])
    }

    @Test func replyToANonRequestIsRefusedLocally() throws {
        let (_, plugin) = try Probe.load(into: host)
        let message = BusMessage(topic: "t", payload: [], sender: "x")
        let error = #expect(throws: PluginError.self) { try plugin.context.bus.reply(to: message, "nope") }
        #expect(error?.status == PluginStatus.invalidArgument)
    }

    @Test func testCanRequestFromOutsideAnyPlugin() throws {
        try Probe.load(into: host, subscribe: ["echo"], replyPrefix: "echo: ")
        let request = host.request("echo", "hi")
        host.runUntilIdle()
        #expect(request.status == MN_OK)
        #expect(request.replyText == "echo: hi")
    }

    @Test func invalidTopicIsRejectedByTheBridge() throws {
        let (_, plugin) = try Probe.load(into: host)
        let error = #expect(throws: PluginError.self) { try plugin.context.bus.subscribe("bad topic!") }
        #expect(error?.status == PluginStatus.invalidArgument)
        #expect(error?.message.contains("dot-separated") == true)
    }
}
