import Foundation
import MetanodeCore
import Testing

/// What a third-party developer does with plugin-sdk/: compile hello-c with cc, sign, install, enable, run — next
/// to hello-swift, the example it exchanges bus messages with.
@Suite("The SDK examples in a real node", .serialized)
struct HelloExamplesTests {
    /// hello-c compiled with cc from the SDK, and hello-swift as SwiftPM built it, each as a package directory.
    static func examplePackages(_ scratch: Scratch) throws -> (c: String, swift: String) {
        let example = Repo.sdk + "/examples/hello-c"
        let c = scratch.file("hello-c")
        try FileManager.default.createDirectory(atPath: c, withIntermediateDirectories: true)
        let compiled = try run("/usr/bin/cc", ["-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra",
                                               "-Werror", "-I\(Repo.sdk)/include", "-o", c + "/libhello_c.so",
                                               example + "/hello.c"])
        try compiled.requireSuccess()
        try FileManager.default.copyItem(atPath: example + "/metanode-plugin.json", toPath: c + "/metanode-plugin.json")

        let swift = scratch.file("hello-swift")
        try FileManager.default.createDirectory(atPath: swift, withIntermediateDirectories: true)
        let library = Repo.binDirectory + "/libHelloSwift.so"
        try #require(FileManager.default.fileExists(atPath: library), "\(library) is missing: run `swift build` first")
        try FileManager.default.copyItem(atPath: library, toPath: swift + "/libHelloSwift.so")
        try FileManager.default.copyItem(atPath: Repo.sdk + "/examples/hello-swift/metanode-plugin.json",
                                         toPath: swift + "/metanode-plugin.json")
        return (c, swift)
    }

    @Test("hello-c: route, kv counter, config, metrics, exported functions and a bus round trip with hello-swift")
    func helloC() throws {
        let node = try TestNode("hello")
        let packages = try Self.examplePackages(node.scratch)
        try node.installSigned(packages.c)
        try node.installSigned(packages.swift)
        try node.cli.ok("plugin", "config", "hello-c", #"{"greeting": "howdy"}"#)
        let process = try node.start()

        #expect(try process.get("/v1/plugins/hello-c/hello").text == "howdy from hello-c\n")
        #expect(try process.get("/v1/plugins/hello-swift/hello").text == "hello from hello-swift\n")
        for expected in 1...3 { #expect(try process.post("/v1/plugins/hello-c/count").text.hasPrefix("\(expected)")) }
        #expect(try process.get("/v1/plugins/hello-c/count").text.hasPrefix("3"))

        // hello-c asks hello-swift over the bus; the answer lands in hello-c's storage.
        #expect(try process.get("/v1/plugins/hello-c/pong").status == 404)
        #expect(try process.post("/v1/plugins/hello-c/ping", "marco").status == 202)
        let pong = try process.eventually("/v1/plugins/hello-c/pong") { $0.status == 200 }
        #expect(pong.text == "pong from hello-swift: marco")
        // And the other way round.
        #expect(try process.post("/v1/plugins/hello-swift/ping", "polo").status == 202)
        let back = try process.eventually("/v1/plugins/hello-swift/pong") { $0.status == 200 }
        #expect(back.text == "pong from hello-c: polo")

        let metrics = try process.get("/metrics").text
        #expect(metrics.contains("metanode_plugin_hello_c_requests_total"))
        #expect(metrics.contains("metanode_plugin_hello_swift_requests_total"))

        #expect(try node.cli.ok("plugin", "call", "hello-c", "add", "2", "40") == "42\n")
        #expect(try node.cli.ok("plugin", "call", "hello-c", "greet", "ada") == "hello, ada\n")
        #expect(try node.cli.ok("plugin", "call", "hello-swift", "add", "-2", "0x10") == "14\n")
        let badCall = try node.cli.fails("plugin", "call", "hello-c", "add", "2", "forty")
        #expect(badCall.contains("argument 2"))
        let viaHTTP = try LoopbackHTTPClientJSON.post(process, "/v1/plugins/hello-c/call/add", "[20, 22]")
        #expect(viaHTTP["result"]?.intValue == 42)

        #expect(process.stop() == 0)
        #expect(process.log.contains("hello-c started"))

        // Everything written before SIGTERM is there after a restart.
        let again = try node.start()
        #expect(try again.get("/v1/plugins/hello-c/count").text.hasPrefix("3"))
        again.stop()
    }

    @Test("an invalid plugin config is refused with the schema's message and the plugin does not start")
    func invalidConfig() throws {
        let node = try TestNode("config")
        let packages = try Self.examplePackages(node.scratch)
        try node.installSigned(packages.c)
        let refused = try node.cli.fails("plugin", "config", "hello-c", #"{"greeting": 7}"#)
        #expect(refused.contains("$.greeting"), "\(refused)")
        let unknown = try node.cli.fails("plugin", "config", "hello-c", #"{"greting": "hi"}"#)
        #expect(unknown.contains("greting"), "\(unknown)")
    }
}

enum LoopbackHTTPClientJSON {
    static func post(_ process: NodeProcess, _ path: String, _ body: String) throws -> JSONValue {
        try JSONValue.parse(try process.post(path, body).body)
    }
}
