import Foundation
import MetanodeCore
import Testing

@Suite("metanode plugin new: scaffolds build, sign and load unchanged")
struct ScaffoldTests {
    @Test("a C scaffold builds with make, signs, installs, loads, answers and exports")
    func cScaffold() throws {
        let node = try TestNode("newc")
        let project = node.scratch.file("tally")
        try node.cli.ok("plugin", "new", "tally", "--lang", "c", "--dir", project, "--sdk", Repo.sdk)
        try run("/usr/bin/make", ["-C", project]).requireSuccess()
        try node.installSigned(project)
        let process = try node.start()
        #expect(try process.get("/v1/plugins/tally/hello").text == "hello from tally\n")
        #expect(try process.post("/v1/plugins/tally/count").text == "1\n")
        #expect(try node.cli.ok("plugin", "call", "tally", "add", "2", "40") == "42\n")
        process.stop()
    }

    @Test("a Swift scaffold builds with make (swift build), signs, installs, loads and answers",
          .enabled(if: ProcessInfo.processInfo.environment["METANODE_SKIP_SLOW"] == nil))
    func swiftScaffold() throws {
        let node = try TestNode("newswift")
        let project = node.scratch.file("swifty")
        try node.cli.ok("plugin", "new", "swifty", "--lang", "swift", "--dir", project, "--sdk", Repo.sdk)
        let built = try run("/usr/bin/make", ["-C", project, "CONFIG=debug"])
        try built.requireSuccess()
        try node.installSigned(project)
        let process = try node.start()
        #expect(try process.get("/v1/plugins/swifty/hello").text == "hello from swifty\n")
        #expect(try process.post("/v1/plugins/swifty/count").text == "1\n")
        #expect(try node.cli.ok("plugin", "call", "swifty", "add", "2", "40") == "42\n")
        process.stop()
    }

    @Test("plugin new refuses bad names, unknown languages and existing directories")
    func scaffoldMistakes() throws {
        let node = try TestNode("newbad")
        #expect(try node.cli.fails("plugin", "new", "Bad_Name", "--sdk", Repo.sdk).contains("Bad_Name"))
        #expect(try node.cli.fails("plugin", "new", "ok", "--lang", "cobol", "--dir", node.scratch.file("ok"),
                                   "--sdk", Repo.sdk).contains("--lang must be c or swift"))
        #expect(try node.cli.fails("plugin", "new", "here", "--dir", node.scratch.path, "--sdk", Repo.sdk)
            .contains("already exists"))
    }
}
