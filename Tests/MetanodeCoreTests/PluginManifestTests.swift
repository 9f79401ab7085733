import MetanodeCore
import Testing

@Suite struct PluginManifestTests {
    static let sha = String(repeating: "ab", count: 32)
    static let example = """
        {
          "name": "hello",
          "version": "1.2.3-beta.1+build.5",
          "abi": "1.0",
          "description": "Says hello",
          "library": {"file": "libhello.so", "sha256": "\(sha)"},
          "capabilities": ["http", "kv"],
          "dependencies": {"greeter": "^1.2.0", "clock": ">=0.3.0 <0.5.0"},
          "exports": [
            {"name": "add", "signature": "int64_t hello_add(int64_t a, int64_t b)"},
            {"name": "greet", "signature": "const char* hello_greet(const char*name)"}
          ],
          "configSchema": {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}}}
        }
        """

    /// The example with `field` replaced by `json` (or removed when nil).
    private func example(_ field: String, _ json: String?) throws -> [UInt8] {
        guard case .object(var object) = try JSONValue.parse(Self.example) else { fatalError() }
        object[field] = try json.map { try JSONValue.parse($0) }
        return JSONValue.object(object).serializedBytes()
    }

    @Test func parsesEveryField() throws {
        let m = try PluginManifest.parse(bytes(Self.example))
        #expect(m.name == "hello")
        #expect(m.version.description == "1.2.3-beta.1+build.5")
        #expect(m.abi == ABIVersion(major: 1, minor: 0))
        #expect(m.description == "Says hello")
        #expect(m.library == LibraryEntry(file: "libhello.so", sha256: Self.sha))
        #expect(m.capabilities == [.kv, .http])
        #expect(m.dependencies["greeter"] == (try VersionRange(parsing: "^1.2.0")))
        #expect(m.dependencies.count == 2)
        #expect(m.exports.map(\.name) == ["add", "greet"])
        #expect(m.export(named: "greet")?.prototype.description == "const char *hello_greet(const char *name)")
        #expect(m.configSchema?.source["type"] == "object")
    }

    @Test func parsesTheHelloSwiftExampleOfThePluginSDK() throws {
        let text = """
            {
              "name": "hello-swift",
              "version": "1.0.0",
              "abi": "1.0",
              "description": "Example Swift plugin.",
              "library": { "file": "libHelloSwift.so" },
              "capabilities": ["kv", "bus", "http", "metrics", "timer"],
              "dependencies": {},
              "exports": [
                { "name": "add", "signature": "int64_t hello_swift_add(int64_t a, int64_t b)" }
              ],
              "configSchema": {
                "type": "object",
                "properties": {
                  "greeting": { "type": "string", "default": "hello", "minLength": 1, "maxLength": 64 }
                },
                "additionalProperties": false
              }
            }
            """
        let m = try PluginManifest.parse(bytes(text))
        #expect(m.capabilities == [.kv, .bus, .timer, .http, .metrics])
        #expect(m.configSchema?.applyingDefaults(to: [:]) == ["greeting": "hello"])
        #expect(m.configSchema?.validate(["greting": "x"]).map(\.message) == [
            "$.greting: property is not allowed (did you mean 'greeting'?) (known properties: greeting)"
        ])
    }

    @Test func minimalManifestNeedsNameVersionAbiAndLibraryFile() throws {
        let m = try PluginManifest.parse(
            bytes(#"{"name":"a","version":"0.1.0","abi":"1.0","library":{"file":"liba.so"}}"#))
        #expect(m.library.sha256 == nil)
        #expect(m.capabilities.isEmpty && m.dependencies.isEmpty && m.exports.isEmpty)
        #expect(m.configSchema == nil && m.description == nil)
    }

    @Test func serializedFormRoundTrips() throws {
        let m = try PluginManifest.parse(bytes(Self.example))
        let text = m.serialized()
        #expect(try PluginManifest.parse(text) == m)
        #expect(try PluginManifest.parse(text).serialized() == text)
    }

    @Test func serializedFormIsCanonicalPrettyJSON() throws {
        let m = PluginManifest(
            name: "a", version: SemanticVersion(1, 0, 0), library: LibraryEntry(file: "liba.so"),
            capabilities: [.kv, .bus, .kv])
        let expected = """
            {
              "abi": "\(ABIVersion.current)",
              "capabilities": [
                "kv",
                "bus"
              ],
              "dependencies": {},
              "exports": [],
              "library": {
                "file": "liba.so"
              },
              "name": "a",
              "version": "1.0.0"
            }

            """
        #expect(String(decoding: m.serialized(), as: UTF8.self) == expected)
    }

    @Test func equalityIncludesBuildMetadata() throws {
        let a = try PluginManifest.parse(bytes(Self.example))
        var b = a
        b.version.build = ["other"]
        #expect(a != b)
    }

    @Test func capabilitiesHaveSummaries() {
        #expect(Capability.allCases.count == 9)
        #expect(Capability.allCases.allSatisfy { !$0.summary.isEmpty })
        #expect(Capability.kv.summary == "read and write the plugin's own storage namespace")
        #expect(Capability.net.summary.contains("other nodes"))
    }

    @Test func unknownFieldIsRefusedWithASuggestionAndTheKnownFields() throws {
        expectFailure(
            .invalidManifest,
            "unknown manifest field 'capabilites' (did you mean 'capabilities'?) — known fields are name, version, abi, description, library, capabilities, dependencies, optionalDependencies, exports, configSchema"
        ) { () throws(MetanodeError) in try PluginManifest.parse(try! example("capabilites", #"["kv"]"#)) }
    }

    @Test func unknownNestedFieldsAreRefusedToo() throws {
        expectFailure(
            .invalidManifest, "unknown manifest field 'library.sha' — known fields are library.file, library.sha256"
        ) {
            () throws(MetanodeError) in
            try PluginManifest.parse(try! example("library", #"{"file": "a.so", "sha": "x"}"#))
        }
        expectFailure(.invalidManifest, "unknown manifest field 'exports[0].sig'") { () throws(MetanodeError) in
            try PluginManifest.parse(try! example("exports", #"[{"name": "a", "sig": "void f(void)"}]"#))
        }
    }

    @Test(
        arguments: [
            ("name", nil, "manifest field 'name': is required"),
            ("name", #""Hello""#, "manifest field 'name': plugin name 'Hello' does not start with a lowercase letter"),
            ("name", "5", "manifest field 'name': must be a string, not integer"),
            (
                "version", #""1.0""#,
                "manifest field 'version': '1.0' is not a semantic version (expected MAJOR.MINOR.PATCH like 1.0.0)"
            ),
            ("abi", #""1""#, "manifest field 'abi': '1' is not an ABI version"),
            ("abi", nil, "manifest field 'abi': is required"),
            ("description", "[]", "manifest field 'description': must be a string"),
            ("library", nil, "manifest field 'library': is required"),
            ("library", #""libhello.so""#, "manifest field 'library': must be an object"),
            ("library", #"{"sha256": "00"}"#, "manifest field 'library.file': is required"),
            (
                "library", #"{"file": "../libx.so"}"#,
                "manifest field 'library.file': '../libx.so' contains a path separator"
            ),
            ("library", #"{"file": "lib..so"}"#, "manifest field 'library.file': 'lib..so' contains '..'"),
            ("library", #"{"file": "libx.dylib"}"#, "manifest field 'library.file': 'libx.dylib' does not end in .so"),
            ("library", #"{"file": ".so"}"#, "manifest field 'library.file': '.so' starts with '.'"),
            (
                "library", #"{"file": "lib x.so"}"#,
                "manifest field 'library.file': 'lib x.so' contains a character other than"
            ),
            (
                "library", #"{"file": "a.so", "sha256": "ABCD"}"#,
                "manifest field 'library.sha256': 'ABCD' is not 64 lowercase hex digits"
            ),
            (
                "capabilities", #"["kv", "htp"]"#,
                "manifest field 'capabilities[1]': \"htp\" is not a capability (did you mean 'http'?); known capabilities are kv, crypto, sign, bus, timer, http, service, metrics, net"
            ),
            ("capabilities", #"["kv", "kv"]"#, "manifest field 'capabilities[1]': 'kv' is listed twice"),
            ("capabilities", #""kv""#, "manifest field 'capabilities': must be an array of names"),
            (
                "dependencies", #"{"greeter": "^1.x.2"}"#,
                "manifest field 'dependencies.greeter': '^1.x.2' is not a version range"
            ),
            (
                "dependencies", #"{"greeter": 1}"#,
                "manifest field 'dependencies.greeter': must be a version range string"
            ),
            (
                "dependencies", #"{"Greeter": "1.0.0"}"#,
                "manifest field 'dependencies': 'Greeter' is not a valid plugin name"
            ),
            ("dependencies", #"{"hello": "1.0.0"}"#, "manifest field 'dependencies': a plugin cannot depend on itself"),
            ("dependencies", "[]", "manifest field 'dependencies': must be an object"),
            (
                "optionalDependencies", #"{"ledger": "^1.x.2"}"#,
                "manifest field 'optionalDependencies.ledger': '^1.x.2' is not a version range"
            ),
            (
                "optionalDependencies", #"{"hello": "1.0.0"}"#,
                "manifest field 'optionalDependencies': a plugin cannot depend on itself"
            ),
            (
                "optionalDependencies", #"{"greeter": "^1.0.0"}"#,
                "manifest field 'optionalDependencies': 'greeter' is in dependencies too; list it in one of them"
            ),
            ("exports", #"[{"name": "add"}]"#, "manifest field 'exports[0].signature': is required"),
            (
                "exports", #"[{"name": "Add", "signature": "void f(void)"}]"#,
                "manifest field 'exports[0].name': 'Add' is not a valid export name"
            ),
            (
                "exports", #"[{"name": "a", "signature": "float f(void)"}]"#,
                "manifest field 'exports[0].signature': C prototype 'float f(void)': unsupported result type 'float'"
            ),
            (
                "exports", #"[{"name": "a", "signature": "void f(void)"}, {"name": "a", "signature": "void g(void)"}]"#,
                "manifest field 'exports[1].name': 'a' is exported twice"
            ),
            (
                "exports", #"[{"name": "a", "signature": "void f(void)"}, {"name": "b", "signature": "void f(void)"}]"#,
                "manifest field 'exports[1].signature': symbol 'f' is exported twice"
            ),
            ("exports", "[1]", "manifest field 'exports[0]': must be an object"),
            (
                "configSchema", #"{"type": "object", "propertes": {}}"#,
                "manifest field 'configSchema': invalid schema at $: unknown keyword 'propertes' (did you mean 'properties'?)"
            ),
        ] as [(String, String?, String)])
    func badFieldsAreNamedInTheMessage(field: String, json: String?, fragment: String) throws {
        let input = try example(field, json)
        expectFailure(.invalidManifest, fragment) { () throws(MetanodeError) in try PluginManifest.parse(input) }
    }

    @Test func descriptionIsBoundedInCharacters() throws {
        let ok = String(repeating: "é", count: 1024)
        #expect(try PluginManifest.parse(try example("description", "\"\(ok)\"")).description == ok)
        expectFailure(.invalidManifest, "manifest field 'description': is 1025 characters; the limit is 1024") {
            () throws(MetanodeError) in try PluginManifest.parse(try! example("description", "\"\(ok)x\""))
        }
    }

    @Test func exportsAreBounded() throws {
        let entries = (0...Limits.exportsMax).map { #"{"name": "f\#($0)", "signature": "void f\#($0)(void)"}"# }
        expectFailure(.invalidManifest, "manifest field 'exports': has 65 entries; the limit is 64") {
            () throws(MetanodeError) in
            try PluginManifest.parse(try! example("exports", "[\(entries.joined(separator: ","))]"))
        }
    }

    @Test func oversizeManifestNamesBothSizes() {
        let big = [UInt8](repeating: 0x20, count: PluginManifest.bytesMax + 1)
        expectFailure(.limitExceeded, "manifest is 65537 bytes; the limit is 65536 bytes") { () throws(MetanodeError) in
            try PluginManifest.parse(big)
        }
    }

    @Test func invalidJSONIsAManifestErrorSayingWhere() {
        expectFailure(
            .invalidManifest, "manifest is not valid JSON: invalid JSON at byte 1 (line 1, column 2)"
        ) {
            () throws(MetanodeError) in try PluginManifest.parse(bytes("{,}"))
        }
    }

    @Test func topLevelMustBeAnObject() {
        expectFailure(.invalidManifest, "manifest must be a JSON object, not array") { () throws(MetanodeError) in
            try PluginManifest.parse(bytes("[]"))
        }
    }

    @Test func validateChecksManifestsBuiltInCode() {
        let m = PluginManifest(
            name: "bad--name", version: SemanticVersion(1, 0, 0), library: LibraryEntry(file: "a.so"))
        expectFailure(.invalidManifest, "manifest field 'name': plugin name 'bad--name' contains a double hyphen") {
            () throws(MetanodeError) in try m.validate()
        }
    }
}

@Suite struct PluginNameTests {
    @Test(arguments: ["a", "hello", "hello-world", "a1-b2", String(repeating: "a", count: 63)])
    func acceptsPlainNames(name: String) {
        #expect(PluginName.isValid(name))
    }

    @Test(arguments: [
        ("", "is empty"), ("Hello", "does not start with a lowercase letter"),
        ("1abc", "does not start with a lowercase letter"), ("-a", "does not start with a lowercase letter"),
        ("a_b", "contains a character other than a-z, 0-9 and '-'"), ("a.b", "contains a character other than"),
        ("abc-", "ends with a hyphen"), ("a--b", "contains a double hyphen"),
        (String(repeating: "a", count: 64), "is 64 characters long"),
    ])
    func refusesOthersSayingWhy(name: String, fragment: String) {
        expectFailure(.invalidArgument, fragment) { () throws(MetanodeError) in try PluginName.validate(name) }
    }
}
