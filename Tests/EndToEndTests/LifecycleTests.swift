import Foundation
import MetanodeCore
import MetanodeKernel
import Synchronization
import Testing

@Suite("Plugin lifecycle in a real node process", .serialized)
struct LifecycleTests {
    @Test("plugins start in dependency order and stop in reverse on SIGTERM")
    func dependencyOrder() throws {
        let node = try TestNode("deps")
        // Installed and enabled leaf-first so each enable finds its dependency enabled.
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "dep-a"))
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "dep-b", dependencies: ["dep-a": "^1.0.0"]))
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "dep-c", dependencies: ["dep-b": "~1.0"]))
        let process = try node.start()
        #expect(try process.get("/v1/plugins/dep-c/hello").text == "hello from dep-c\n")
        #expect(process.stop() == 0)
        let order = process.log.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: "order: ") else { return nil }
            return String(line[range.upperBound...])
        }
        #expect(order == ["start dep-a", "start dep-b", "start dep-c", "stop dep-c", "stop dep-b", "stop dep-a"])
        // Then the bus, then storage.
        let log = process.log
        #expect(log.contains("memory allocator: jemalloc 5."), "the daemon runs on the jemalloc it links")
        let lastPluginStop = try #require(log.range(of: "plugin dep-a stopped"))
        let busStop = try #require(log.range(of: "bus stopped"))
        let storageClose = try #require(log.range(of: "storage flushed and closed"))
        #expect(lastPluginStop.lowerBound < busStop.lowerBound && busStop.lowerBound < storageClose.lowerBound)
    }

    @Test("enabling a plugin whose dependency is missing or too old names both plugins")
    func missingAndIncompatibleDependencies() throws {
        let node = try TestNode("baddeps")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "base", version: "1.4.0"))
        let needsNewer = try Packages.testPlugin(in: node.scratch, name: "needs-newer", dependencies: ["base": "^2.0.0"])
        try node.cli.ok("plugin", "sign", needsNewer, "--key", node.key + ".key")
        try node.cli.ok("plugin", "install", needsNewer)
        let incompatible = try node.cli.fails("plugin", "enable", "needs-newer")
        #expect(incompatible.contains("'needs-newer' 1.0.0 needs 'base' ^2.0.0, but 'base' is 1.4.0"))

        let needsGhost = try Packages.testPlugin(in: node.scratch, name: "needs-ghost", dependencies: ["ghost": "*"])
        try node.cli.ok("plugin", "sign", needsGhost, "--key", node.key + ".key")
        try node.cli.ok("plugin", "install", needsGhost)
        #expect(try node.cli.fails("plugin", "enable", "needs-ghost").contains("needs 'ghost'"))
    }

    @Test("a dependency cycle keeps every plugin in it from starting, with the cycle in the reason")
    func dependencyCycle() throws {
        let node = try TestNode("cycle")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "loner"))
        for (name, other) in [("cyc-x", "cyc-y"), ("cyc-y", "cyc-x")] {
            let package = try Packages.testPlugin(in: node.scratch, name: name, dependencies: [other: "*"])
            try node.cli.ok("plugin", "sign", package, "--key", node.key + ".key")
            try node.cli.ok("plugin", "install", package)
        }
        // The CLI cannot enable a cycle one plugin at a time; an edited registry can. The node must cope.
        let registryPath = node.data + "/plugins.json"
        var registry = try JSONValue.parse(Array(try String(contentsOfFile: registryPath, encoding: .utf8).utf8))
        if case .object(var root) = registry, case .object(var plugins) = root["plugins"]! {
            for name in ["cyc-x", "cyc-y"] {
                if case .object(var entry) = plugins[name]! {
                    entry["enabled"] = .bool(true)
                    plugins[name] = .object(entry)
                }
            }
            root["plugins"] = .object(plugins)
            registry = .object(root)
        }
        try registry.serialized(pretty: true).write(toFile: registryPath, atomically: true, encoding: .utf8)

        let process = try node.start()
        let plugins = try JSONValue.parse(try process.get("/v1/plugins").body).arrayValue ?? []
        let x = try #require(plugins.first { $0["name"]?.stringValue == "cyc-x" })
        #expect(x["status"]?.stringValue == "not started")
        #expect(x["reason"]?.stringValue?.contains("dependency cycle: cyc-x -> cyc-y -> cyc-x") == true)
        #expect(try process.get("/v1/plugins/loner/hello").status == 200)
        process.stop()
    }

    @Test("a plugin that aborts inside a call is quarantined on the next start; the node keeps the others")
    func crashQuarantine() throws {
        let node = try TestNode("crash")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "crasher"))
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "steady"))
        let first = try node.start()
        _ = try? first.get("/v1/plugins/crasher/crash")
        #expect(first.waitForExit(), "the node should have died with the plugin's abort()")
        #expect(first.process.terminationReason == .uncaughtSignal)

        let second = try node.start()
        let plugins = try JSONValue.parse(try second.get("/v1/plugins").body).arrayValue ?? []
        let crasher = try #require(plugins.first { $0["name"]?.stringValue == "crasher" })
        #expect(crasher["status"]?.stringValue == "quarantined")
        let reason = crasher["reason"]?.stringValue ?? ""
        #expect(reason.contains("SIGABRT") && reason.contains("an HTTP handler of plugin crasher"), "\(reason)")
        #expect(try second.get("/v1/plugins/steady/hello").text == "hello from steady\n")
        #expect(try second.get("/v1/plugins/crasher/hello").status == 404)
        second.stop()

        let listed = try node.cli.json("plugin", "list").arrayValue ?? []
        let entry = try #require(listed.first { $0["name"]?.stringValue == "crasher" })
        #expect(entry["state"]?.stringValue == "quarantined")
        #expect(entry["quarantine"]?["reason"]?.stringValue?.contains("SIGABRT") == true)

        // Enabling it again clears the quarantine.
        try node.cli.ok("plugin", "enable", "crasher")
        let third = try node.start()
        #expect(try third.get("/v1/plugins/crasher/hello").status == 200)
        third.stop()
    }

    @Test("a segmentation fault inside a plugin is attributed to that plugin too")
    func segfaultQuarantine() throws {
        let node = try TestNode("segv")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "faulty"))
        let first = try node.start()
        _ = try? first.get("/v1/plugins/faulty/segv")
        #expect(first.waitForExit())
        let second = try node.start()
        let status = try JSONValue.parse(try second.get("/v1/plugins/faulty").body)
        #expect(status["status"]?.stringValue == "quarantined")
        #expect(status["reason"]?.stringValue?.contains("SIGSEGV") == true)
        second.stop()
    }

    @Test("a node killed with SIGKILL does not quarantine anything and keeps what was written")
    func sigkillIsNotBlamedOnPlugins() throws {
        let node = try TestNode("kill9")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "counter"))
        let first = try node.start()
        for _ in 0..<5 { _ = try first.post("/v1/plugins/counter/count") }
        kill(first.process.processIdentifier, SIGKILL)
        #expect(first.waitForExit())
        let second = try node.start()
        #expect(try second.get("/v1/plugins/counter/count").text == "5\n")
        second.stop()
    }

    @Test("SIGTERM flushes storage: counts written before the signal survive the restart")
    func sigtermKeepsData() throws {
        let node = try TestNode("sigterm")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "counter"))
        let first = try node.start()
        for _ in 0..<7 { _ = try first.post("/v1/plugins/counter/count") }
        #expect(first.stop() == 0)
        #expect(first.log.contains("storage flushed and closed"))
        let second = try node.start()
        #expect(try second.get("/v1/plugins/counter/count").text == "7\n")
        second.stop()
    }

    @Test("SIGTERM answers a deferred request 503 at once instead of waiting an hour for the plugin")
    func sigtermAnswersDeferredRequests() throws {
        let node = try TestNode("sigterm-deferred")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "holder"))
        let running = try node.start()
        let answer = Answer()
        let address = running.address
        let client = Thread {
            let result = Result { () throws(MetanodeError) in
                try LoopbackHTTPClient.request("POST", address, "/v1/plugins/holder/hold", timeoutSeconds: 60)
            }
            answer.value.withLock { $0 = result }
        }
        client.start()
        let deadline = Date().addingTimeInterval(10)
        while !running.log.contains("deferred /hold") && Date() < deadline { usleep(20_000) }
        #expect(running.log.contains("deferred /hold"))
        running.process.terminate()
        // Without the drain the HTTP server would wait for the open request, and the node would not exit.
        try #require(running.waitForExit(timeoutSeconds: 10),
                     "shutdown waited for the deferred request:\n\(running.log)")
        #expect(running.process.terminationStatus == 0)
        while answer.value.withLock({ $0 == nil }) && Date() < deadline.addingTimeInterval(10) { usleep(20_000) }
        let response = try #require(try answer.value.withLock { $0 }?.get())
        #expect(response.status == 503)
        #expect(response.text.contains("the node is shutting down; plugin holder had not answered POST /hold"))
    }

    @Test("a second node on the same data directory is refused and the running one is left alone")
    func secondNodeOnSameDataDirectory() throws {
        let node = try TestNode("twice")
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "solo"))
        let first = try node.start()
        let second = try run(Repo.metanode, ["node", "start", "--data-dir", node.data, "--http-listen", "127.0.0.1:0"])
        #expect(second.status != 0)
        #expect(second.stderr.contains("in use by another process"), "\(second.output)")
        // The first node still serves and still advertises its address.
        #expect(try first.get("/v1/plugins/solo/hello").status == 200)
        #expect(FileManager.default.fileExists(atPath: node.data + "/run/http.addr"))
        #expect(first.stop() == 0)
    }

    @Test("a malformed config file stops the start with a message naming the file and the field")
    func malformedConfig() throws {
        let node = try TestNode("badconfig")
        let path = node.data + "/config.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: "\"http\"", with: "\"htp\"").write(toFile: path, atomically: true,
                                                                               encoding: .utf8)
        let refused = try run(Repo.metanode, ["node", "start", "--data-dir", node.data])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("config.json: unknown config field 'htp'"), "\(refused.output)")
        try "{ nope".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try run(Repo.metanode, ["node", "start", "--data-dir", node.data]).stderr.contains("invalid JSON"))
    }

    @Test("safe mode starts bundled plugins only")
    func safeMode() throws {
        let bundleScratch = try Scratch("bundle")
        let bundle = bundleScratch.path
        let bundled = try Packages.testPlugin(in: bundleScratch, name: "shipped")
        let devKey = bundleScratch.file("dev")
        try run(Repo.metanode, ["plugin", "keygen", "--out", devKey]).requireSuccess()
        try run(Repo.metanode, ["plugin", "sign", bundled, "--key", devKey + ".key"]).requireSuccess()
        try FileManager.default.copyItem(atPath: devKey + ".pub", toPath: bundle + "/dev-publisher.pub")

        let node = try TestNode("safe", dev: true, bundled: bundle)
        try node.installSigned(Packages.testPlugin(in: node.scratch, name: "extra"))
        let normal = try node.start()
        #expect(try normal.get("/v1/plugins/shipped/hello").status == 200)
        #expect(try normal.get("/v1/plugins/extra/hello").status == 200)
        normal.stop()

        let safe = try node.start("--safe-mode")
        #expect(try safe.get("/v1/plugins/shipped/hello").status == 200)
        let extra = try JSONValue.parse(try safe.get("/v1/plugins/extra").body)
        #expect(extra["reason"]?.stringValue?.contains("safe mode") == true)
        #expect(try JSONValue.parse(try safe.get("/v1/node").body)["safeMode"]?.boolValue == true)
        safe.stop()
    }
}

/// An HTTP answer one thread receives and the test reads.
final class Answer: Sendable {
    let value = Mutex<Result<LoopbackHTTPClient.Response, MetanodeError>?>(nil)
}
