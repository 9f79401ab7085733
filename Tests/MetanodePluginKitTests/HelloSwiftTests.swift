import HelloSwift
import MetanodePluginKit
import MetanodePluginTesting
import Testing

/// hello-swift, the bundled example plugin, driven through TestHost exactly as the node will drive it.
@Suite struct HelloSwiftTests {
    let host = TestHost()

    @Test func helloAnswersWithTheDefaultGreeting() throws {
        let hello = try host.loadHelloSwift()
        let response = host.http(hello, "GET", "/hello")
        #expect(response.status == 200)
        #expect(response.contentType == "text/plain; charset=utf-8")
        #expect(response.text == "hello from hello-swift\n")
    }

    @Test func configuredGreetingReachesHello() throws {
        let hello = try host.loadHelloSwift(config: #"{"greeting":"good morning"}"#)
        #expect(host.http(hello, "GET", "/hello").text == "good morning from hello-swift\n")
    }

    @Test func configThatDoesNotDecodeFailsInitWithInvalidArgument() throws {
        let error = #expect(throws: HostError.self) { try host.loadHelloSwift(config: #"{"greeting":5}"#) }
        #expect(error?.status == MN_ERR_INVALID_ARGUMENT)
        #expect(host.logs.contains { $0.level == .error && $0.message.contains("failed to initialise") })
    }

    @Test func countIsZeroBeforeAnyPost() throws {
        let hello = try host.loadHelloSwift()
        let response = host.http(hello, "GET", "/count")
        #expect(response.status == 200)
        #expect(response.text == "0")
    }

    @Test func postCountIncrementsTheStoredCounter() throws {
        let hello = try host.loadHelloSwift()
        #expect(host.http(hello, "POST", "/count").text == "1")
        #expect(host.http(hello, "POST", "/count").text == "2")
        #expect(host.storedText(hello, "count") == "2")
        #expect(host.http(hello, "GET", "/count").text == "2")
    }

    @Test func unknownPathIs404AndOtherMethodsAre405() throws {
        let hello = try host.loadHelloSwift()
        #expect(host.http(hello, "GET", "/nope").status == 404)
        #expect(host.http(hello, "DELETE", "/count").status == 405)
    }

    @Test func pongIs404BeforeAnyPing() throws {
        let hello = try host.loadHelloSwift()
        #expect(host.http(hello, "GET", "/pong").status == 404)
    }

    @Test func pingReachesThePeerAndItsPongIsStored() throws {
        let hello = try host.loadHelloSwift()
        let (_, peer) = try Probe.load(into: host, name: "hello-c", subscribe: ["hello.c.ping"],
                                       replyPrefix: "pong from hello-c: ")
        let sent = host.http(hello, "POST", "/ping", body: "hi there")
        #expect(sent.status == 202)
        #expect(sent.text == "sent\n")
        host.runUntilIdle()
        #expect(peer.received.map(\.text) == ["hi there"])
        #expect(peer.received.first?.sender == "hello-swift")
        let pong = host.http(hello, "GET", "/pong")
        #expect(pong.status == 200)
        #expect(pong.text == "pong from hello-c: hi there")
    }

    @Test func pingWithAnEmptyBodySendsPing() throws {
        let hello = try host.loadHelloSwift()
        try Probe.load(into: host, name: "hello-c", subscribe: ["hello.c.ping"], replyPrefix: "pong: ")
        host.http(hello, "POST", "/ping")
        host.runUntilIdle()
        #expect(host.http(hello, "GET", "/pong").text == "pong: ping")
    }

    @Test func answersPingRequestsOnItsTopic() throws {
        _ = try host.loadHelloSwift()
        let (_, peer) = try Probe.load(into: host, name: "hello-c")
        let answer = Recorded<Result<[UInt8], PluginError>?>(nil)
        try peer.context.bus.request("hello.swift.ping", "marco") { answer.value = $0 }
        host.runUntilIdle()
        let reply = try #require(try answer.value?.get())
        #expect(String(decoding: reply, as: UTF8.self) == "pong from hello-swift: marco")
    }

    @Test func pingWithoutAPeerStoresNoResponder() throws {
        let hello = try host.loadHelloSwift()
        #expect(host.http(hello, "POST", "/ping").status == 202)
        host.runUntilIdle()
        #expect(host.http(hello, "GET", "/pong").text == "error: MN_ERR_NO_RESPONDER")
    }

    @Test func pingThatNobodyAnswersStoresTimeoutAfterTwoSeconds() throws {
        let hello = try host.loadHelloSwift()
        try Probe.load(into: host, name: "hello-c", subscribe: ["hello.c.ping"])  // subscribes, never replies
        host.http(hello, "POST", "/ping")
        host.advance(byMs: 1999)
        #expect(host.http(hello, "GET", "/pong").status == 404)
        host.advance(byMs: 1)
        #expect(host.http(hello, "GET", "/pong").text == "error: MN_ERR_TIMEOUT")
    }

    @Test func requestsTotalCountsEveryHTTPRequest() throws {
        let hello = try host.loadHelloSwift()
        host.http(hello, "GET", "/hello")
        host.http(hello, "POST", "/count")
        host.http(hello, "GET", "/pong")
        let metric = try #require(host.metric(hello, "requests_total"))
        #expect(metric.kind == .counter)
        #expect(metric.count == 3)
    }

    @Test func logsOneLineAtStart() throws {
        let hello = try host.loadHelloSwift()
        #expect(host.logMessages(of: hello) == ["hello-swift started"])
    }

    @Test func exportedAddAddsAndWrapsOnOverflow() {
        #expect(helloSwiftAdd(40, 2) == 42)
        #expect(helloSwiftAdd(Int64.max, 1) == Int64.min)
    }

    @Test func descriptorNamesTheManifestsNameAndVersion() throws {
        let hello = try host.loadHelloSwift()
        #expect(hello.descriptor.name == "hello-swift")
        #expect(hello.descriptor.version == "1.0.0")
        #expect(hello.descriptor.abiMajor == 1)
    }
}
