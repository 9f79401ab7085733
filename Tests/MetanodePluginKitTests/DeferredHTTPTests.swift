import Dispatch
import MetanodePluginKit
import MetanodePluginTesting
import Synchronization
import Testing

/// Deferred HTTP responses (ABI 1.2) as a Swift plugin sees them: `deferrableRoute`, `request.deferResponse` and
/// `HTTPResponder`, on the in-memory host (`http` waits in real time, `send` runs on the host's manual clock).
@Suite struct DeferredHTTPTests {
    let host = TestHost()

    /// Where a test's handlers leave their responders, so the test can answer them.
    final class Responders: @unchecked Sendable {
        private let list = Mutex<[HTTPResponder]>([])
        func keep(_ responder: HTTPResponder) { list.withLock { $0.append(responder) } }
        var all: [HTTPResponder] { list.withLock { $0 } }
        var last: HTTPResponder? { all.last }
    }

    /// A probe with `GET /now` (answers at once) and `POST /hold?timeout=T` (defers, keeps the responder).
    func loadHolder() throws -> (TestPlugin, Probe, Responders) {
        let (plugin, probe) = try Probe.load(into: host)
        let responders = Responders()
        try probe.context.http.route("GET", "/now") { _ in .text("now") }
        try probe.context.http.deferrableRoute("POST", "/hold") { request in
            let timeout = request.queryItem("timeout").flatMap { UInt32($0) } ?? 60_000
            let responder = try request.deferResponse(timeoutMs: timeout)
            responders.keep(responder)
            return .later(responder)
        }
        return (plugin, probe, responders)
    }

    @Test func aResponseAnsweredFromAnotherThread50msLaterReachesTheClient() throws {
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.http.deferrableRoute("POST", "/later") { request in
            let responder = try request.deferResponse(timeoutMs: 5000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                responder.respond(.text("later from another thread"))
            }
            return .later(responder)
        }
        let started = ContinuousClock.now
        let answer = host.http(plugin, "POST", "/later")
        #expect(answer.status == 200)
        #expect(answer.text == "later from another thread")
        #expect(ContinuousClock.now - started >= .milliseconds(50))
        #expect(plugin.context.openDeferralCount == 0)
    }

    @Test func whileAResponseIsDeferredThePluginServesItsOtherRequests() throws {
        let (plugin, _, responders) = try loadHolder()
        let held = host.send(plugin, "POST", "/hold")
        #expect(held.wasDeferred && !held.isAnswered)
        #expect(host.http(plugin, "GET", "/now").text == "now")
        #expect(!held.isAnswered)
        #expect(try #require(responders.last).respond(.text("done")))
        #expect(held.response?.text == "done")
    }

    @Test func aDeferralNotAnsweredInTimeAnswers504OnTheHostClock() throws {
        let (plugin, _, responders) = try loadHolder()
        let held = host.send(plugin, "POST", "/hold?timeout=100")
        #expect(held.deferredTimeoutMs == 100)
        host.advance(byMs: 99)
        #expect(!held.isAnswered)
        host.advance(byMs: 1)
        #expect(held.response?.status == 504)
        #expect(held.response?.text
            == "plugin probe deferred its response to POST /hold and did not answer within 100 ms\n")
        #expect(try #require(responders.last).respond(.text("too late")) == false)
        #expect(host.pendingHTTPCount == 0)
    }

    @Test func httpWaitsNoLongerThanTheDeferralsTimeout() throws {
        let (plugin, _, responders) = try loadHolder()
        let answer = host.http(plugin, "POST", "/hold?timeout=30")
        #expect(answer.status == 504)
        #expect(try #require(responders.last).respond(.text("too late")) == false)
    }

    @Test func aSecondAnswerIsRefusedAndTheClientSeesTheFirst() throws {
        let (plugin, _, responders) = try loadHolder()
        let held = host.send(plugin, "POST", "/hold")
        let responder = try #require(responders.last)
        #expect(responder.respond(.text("first")))
        #expect(responder.respond(.text("second")) == false)
        #expect(held.response?.text == "first")
    }

    @Test func openDeferralsAnswer503WhenThePluginStops() throws {
        let (plugin, _, responders) = try loadHolder()
        let held = host.send(plugin, "POST", "/hold")
        host.stop(plugin)
        #expect(held.response?.status == 503)
        #expect(held.response?.text == "plugin probe stopped before answering POST /hold\n")
        #expect(try #require(responders.last).respond(.text("after stop")) == false)
    }

    @Test func atMostMN_HTTP_DEFERRED_MAXAreOpenThenTheRouteAnswers503() throws {
        let (plugin, _, responders) = try loadHolder()
        let held = (0..<Int(MN_HTTP_DEFERRED_MAX)).map { _ in host.send(plugin, "POST", "/hold") }
        #expect(plugin.context.openDeferralCount == Int(MN_HTTP_DEFERRED_MAX))
        let refused = host.http(plugin, "POST", "/hold")
        #expect(refused.status == 503)
        #expect(refused.text.contains("MN_HTTP_DEFERRED_MAX"))
        #expect(try #require(responders.all.first).respond(.text("one answered")))
        #expect(host.send(plugin, "POST", "/hold").wasDeferred, "answering one frees a place")
        host.stop(plugin)
        #expect(held[0].response?.text == "one answered")
        #expect(held.dropFirst().allSatisfy { $0.response?.status == 503 })
    }

    @Test func returningNowAfterDeferringAnswersAtOnceWithHeaders() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let kept = Responders()
        try probe.context.http.deferrableRoute("GET", "/changed-mind") { request in
            kept.keep(try request.deferResponse(timeoutMs: 1000))
            return .now(HTTPResponse.text("answered now").header("x-mind", "changed"))
        }
        let exchange = host.send(plugin, "GET", "/changed-mind")
        #expect(exchange.response?.text == "answered now")
        #expect(exchange.response?.header("x-mind") == "changed")
        #expect(try #require(kept.last).respond(.text("later")) == false)
    }

    @Test func aHandlerThatThrowsAfterDeferringAnswers500() throws {
        struct Broken: Error {}
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.http.deferrableRoute("POST", "/broken") { request in
            _ = try request.deferResponse(timeoutMs: 1000)
            throw Broken()
        }
        let answer = host.http(plugin, "POST", "/broken")
        #expect(answer.status == 500)
        #expect(plugin.context.openDeferralCount == 0)
    }

    @Test func deferringInAPlainRouteIsRefused() throws {
        let (plugin, probe) = try Probe.load(into: host)
        try probe.context.http.route("GET", "/plain") { request in
            do throws(PluginError) {
                _ = try request.deferResponse(timeoutMs: 1000)
                return .text("deferred")
            } catch {
                return .text(error.statusName)
            }
        }
        #expect(host.http(plugin, "GET", "/plain").text == "MN_ERR_INVALID_ARGUMENT")
        #expect(plugin.context.openDeferralCount == 0)
    }

    @Test func headersGivenWhenDeferringGoWithTheLaterAnswer() throws {
        let (plugin, probe) = try Probe.load(into: host)
        let kept = Responders()
        try probe.context.http.deferrableRoute("GET", "/headers") { request in
            let responder = try request.deferResponse(timeoutMs: 1000, headers: [("x-job", "7")])
            kept.keep(responder)
            return .later(responder)
        }
        let exchange = host.send(plugin, "GET", "/headers")
        try #require(kept.last).respond(HTTPResponse.json(["ok": true]).header("x-dropped", "yes"))
        #expect(exchange.response?.header("x-job") == "7")
        #expect(exchange.response?.header("x-dropped") == nil)
        #expect(exchange.response?.contentType == "application/json")
        #expect(host.logMessages(of: plugin).contains { $0.contains("1 header(s) of the answer dropped") })
    }

    @Test func anAnswerTheHostRefusesBecomesA500() throws {
        let (plugin, _, responders) = try loadHolder()
        let held = host.send(plugin, "POST", "/hold")
        #expect(try #require(responders.last).respond(HTTPResponse(status: 42)) == false)
        #expect(held.response?.status == 500)
        #expect(held.response?.text.contains("HTTP status 42 is not 100...599") == true)
    }

    @Test func anAnswerFromABusReplyComesThroughWhileHTTPWaits() throws {
        try Probe.load(into: host, name: "oracle", subscribe: ["ask"], replyPrefix: "oracle says ")
        let (plugin, probe) = try Probe.load(into: host, name: "asker")
        let bus = probe.context.bus
        try probe.context.http.deferrableRoute("GET", "/ask") { request in
            let responder = try request.deferResponse(timeoutMs: 5000)
            try bus.request("ask", "hi", timeoutMs: 1000) { result in
                responder.respond(.text(String(decoding: (try? result.get()) ?? Array("no reply".utf8), as: UTF8.self)))
            }
            return .later(responder)
        }
        #expect(host.http(plugin, "GET", "/ask").text == "oracle says hi")
    }

    @Test func deferrableRoutesNeedAnABI12Host() throws {
        let (plugin, probe) = try Probe.load(into: host)
        #expect(probe.context.http.supportsDeferredResponses)
        plugin.context.vtable.pointee.abi_minor = 1  // what a 1.1 kernel would hand the plugin
        #expect(!probe.context.http.supportsDeferredResponses)
        let error = #expect(throws: PluginError.self) {
            try probe.context.http.deferrableRoute("GET", "/x") { _ in .now(.text("x")) }
        }
        #expect(error?.status == PluginStatus.version)
        #expect(error?.message.contains("ABI 1.2") == true)
    }
}
