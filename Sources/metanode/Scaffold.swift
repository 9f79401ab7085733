import ArgumentParser
import Foundation
import MetanodeCore
import MetanodeKernel

/// `metanode plugin new NAME --lang c|swift`: a plugin project that builds, signs and loads unchanged.
struct New: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Create a plugin project (C or Swift) that builds, signs and loads as it is.",
        discussion: """
            Then: make -C NAME && metanode plugin sign NAME --key YOUR.key && metanode plugin install NAME \
            && metanode plugin enable NAME
            """)
    @OptionGroup var options: CommonOptions
    @Argument(help: "Plugin name ([a-z][a-z0-9-]*).") var name: String
    @Option(help: "c or swift.") var lang: String = "c"
    @Option(name: .customLong("dir"), help: "Where to create it (default: ./NAME).") var directory: String?
    @Option(name: .customLong("sdk"), help: "Path to plugin-sdk (default: found next to this binary or $METANODE_SDK).")
    var sdk: String?

    func run() async throws {
        try await Output.run(options) { () throws(MetanodeError) in
            try PluginName.validate(name)
            let target = FileIO.absolute(directory ?? name)
            guard !FileIO.exists(target) else { throw MetanodeError(.alreadyExists, "\(target) already exists") }
            guard let sdkPath = sdk.map(FileIO.absolute) ?? Scaffold.findSDK() else {
                throw MetanodeError(.notFound, "cannot find plugin-sdk; pass --sdk PATH (the directory holding "
                    + "include/metanode/plugin.h) or set METANODE_SDK")
            }
            guard FileIO.exists("\(sdkPath)/include/metanode/plugin.h") else {
                throw MetanodeError(.notFound, "\(sdkPath) is not a plugin-sdk (no include/metanode/plugin.h)")
            }
            let files: [String: String]
            switch lang {
            case "c": files = Scaffold.cProject(name: name, sdk: sdkPath)
            case "swift": files = Scaffold.swiftProject(name: name, sdk: sdkPath)
            default: throw MetanodeError(.invalidArgument, "--lang must be c or swift, not '\(lang)'")
            }
            for (path, contents) in files.sorted(by: { $0.key < $1.key }) {
                let full = "\(target)/\(path)"
                try FileIO.createDirectory((full as NSString).deletingLastPathComponent)
                try FileIO.writeAtomically(Array(contents.utf8), to: full)
            }
            Output.emit(options, json: .object([
                "name": .string(name), "lang": .string(lang), "directory": .string(target),
                "files": .array(files.keys.sorted().map(JSONValue.string)),
            ]), text: """
                created \(lang) plugin \(name) in \(target)
                next:
                  make -C \(target)
                  metanode plugin keygen --out publisher        # once; then: metanode trust add publisher.pub
                  metanode plugin sign \(target) --key publisher.key
                  metanode plugin install \(target) && metanode plugin enable \(name)
                """)
        }
    }
}

enum Scaffold {
    /// $METANODE_SDK, or a plugin-sdk directory above this binary (a source checkout's .build/…/metanode).
    static func findSDK() -> String? {
        if let configured = ProcessInfo.processInfo.environment["METANODE_SDK"], !configured.isEmpty {
            return configured
        }
        guard var directory = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            return nil
        }
        for _ in 0..<6 {
            directory = (directory as NSString).deletingLastPathComponent
            let candidate = "\(directory)/plugin-sdk"
            if FileIO.exists("\(candidate)/include/metanode/plugin.h") { return candidate }
            if FileIO.exists("\(directory)/share/metanode/plugin-sdk/include/metanode/plugin.h") {
                return "\(directory)/share/metanode/plugin-sdk"
            }
        }
        return nil
    }

    static func symbol(_ name: String) -> String { name.replacingOccurrences(of: "-", with: "_") }

    /// The scaffold's manifest: the same plugin surface in either language.
    static func manifestText(name: String, language: String, library: String) -> String {
        """
        {
          "name": "\(name)",
          "version": "0.1.0",
          "abi": "1.0",
          "description": "\(name): a Metanode plugin in \(language)",
          "library": {"file": "\(library)"},
          "capabilities": ["bus", "http", "kv"],
          "dependencies": {},
          "exports": [{"name": "add", "signature": "int64_t \(symbol(name))_add(int64_t a, int64_t b)"}],
          "configSchema": {
            "type": "object",
            "properties": {"greeting": {"type": "string", "default": "hello"}},
            "additionalProperties": false
          }
        }

        """
    }

    static func cProject(name: String, sdk: String) -> [String: String] {
        let sym = symbol(name)
        let manifest = manifestText(name: name, language: "C", library: "lib\(sym).so")
        let makefile = """
            # Builds lib\(sym).so next to metanode-plugin.json, so this directory is the plugin package.
            SDK ?= \(sdk)
            CC ?= cc
            CFLAGS ?= -O2 -Wall -Wextra

            lib\(sym).so: plugin.c
            \t$(CC) -shared -fPIC -fvisibility=hidden $(CFLAGS) -I$(SDK)/include -o $@ $<

            # make sign KEY=publisher.key
            sign: lib\(sym).so
            \tmetanode plugin sign . --key $(KEY)

            clean:
            \trm -f lib\(sym).so metanode-plugin.json.minisig

            .PHONY: sign clean

            """
        let source = """
            // \(name): a Metanode plugin. The ABI is documented in metanode/plugin.h.
            #include <metanode/plugin.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>

            #define EXPORT __attribute__((visibility("default")))

            // All hooks run on this plugin's own executor thread, one at a time, so plain globals are safe here.
            static const mn_host_api *host;
            static mn_host_ctx *ctx;
            static char greeting[128] = "hello";

            static void log_line(int32_t level, const char *text) { host->log(ctx, level, mn_str_from_cstr(text)); }

            // Logs what the kernel said about the last failed call.
            static void log_failure(const char *what, mn_status status) {
              mn_str message = {0};
              char line[512];
              host->last_error(ctx, &message);
              snprintf(line, sizeof line, "%s failed (status %d): %.*s", what, (int)status, (int)message.len,
                       (const char *)message.ptr);
              log_line(MN_LOG_WARN, line);
            }

            static void respond(mn_http_response *response, uint16_t status, const char *text) {
              host->http_response_set(ctx, response, status, mn_str_from_cstr("text/plain; charset=utf-8"),
                                      mn_str_from_cstr(text));
            }

            // GET /hello
            static void handle_hello(void *user_data, const mn_http_request *request, mn_http_response *response) {
              (void)user_data;
              (void)request;
              char text[192];
              snprintf(text, sizeof text, "%s from \(name)\\n", greeting);
              respond(response, 200, text);
            }

            // GET /count reads a counter kept in storage; POST /count increments it.
            static void handle_count(void *user_data, const mn_http_request *request, mn_http_response *response) {
              (void)user_data;
              unsigned long long count = 0;
              mn_buf value;
              mn_status status = host->kv_get(ctx, mn_str_from_cstr("count"), &value);
              if (status == MN_OK) {
                char digits[32] = {0};
                memcpy(digits, value.ptr, value.len < sizeof digits - 1 ? value.len : sizeof digits - 1);
                count = strtoull(digits, NULL, 10);
                host->buf_free(ctx, value);
              } else if (status != MN_ERR_NOT_FOUND) {
                log_failure("kv_get", status);
                respond(response, 500, "storage error\\n");
                return;
              }
              char text[32];
              if (request->method.len == 4 && memcmp(request->method.ptr, "POST", 4) == 0) {
                count++;
                int length = snprintf(text, sizeof text, "%llu", count);
                status = host->kv_put(ctx, mn_str_from_cstr("count"), mn_bytes_make(text, (size_t)length));
                if (status != MN_OK) {
                  log_failure("kv_put", status);
                  respond(response, 500, "storage error\\n");
                  return;
                }
              }
              snprintf(text, sizeof text, "%llu\\n", count);
              respond(response, 200, text);
            }

            // Answers requests on "\(name).ping".
            static void on_message(void *state, const mn_message *message) {
              (void)state;
              if (message->reply_token == 0) return;
              char reply[256];
              int length = snprintf(reply, sizeof reply, "pong from \(name): %.*s", (int)message->payload.len,
                                    (const char *)message->payload.ptr);
              mn_status status = host->bus_reply(ctx, message->reply_token, mn_bytes_make(reply, (size_t)length));
              if (status != MN_OK) log_failure("bus_reply", status);
            }

            // Called by `metanode plugin call \(name) add 2 40`.
            EXPORT int64_t \(sym)_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

            static mn_status on_init(const mn_host_api *h, mn_host_ctx *c, mn_bytes config, void **out_state) {
              host = h;
              ctx = c;
              *out_state = NULL;
              // The config is JSON validated against configSchema; a real plugin would use a JSON parser.
              const char *key = "\\"greeting\\":\\"";
              const char *found = config.len ? strstr((const char *)config.ptr, key) : NULL;
              if (found) {
                found += strlen(key);
                size_t n = 0;
                while (found[n] && found[n] != '"' && n < sizeof greeting - 1) n++;
                memcpy(greeting, found, n);
                greeting[n] = 0;
              }
              mn_status status;
              if ((status = host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/hello"), handle_hello,
                                             NULL)) != MN_OK ||
                  (status = host->http_route(ctx, mn_str_from_cstr("*"), mn_str_from_cstr("/count"), handle_count,
                                             NULL)) != MN_OK) {
                log_failure("http_route", status);
                return status;
              }
              mn_subscription_id subscription;
              if ((status = host->bus_subscribe(ctx, mn_str_from_cstr("\(name).ping"), &subscription)) != MN_OK) {
                log_failure("bus_subscribe", status);
                return status;
              }
              return MN_OK;
            }

            static mn_status on_start(void *state) {
              (void)state;
              log_line(MN_LOG_INFO, "\(name) started");
              return MN_OK;
            }

            static void on_stop(void *state) {
              (void)state;
              log_line(MN_LOG_INFO, "\(name) stopping");
            }

            static const mn_plugin_descriptor descriptor = {
                .struct_size = sizeof(mn_plugin_descriptor),
                .abi_major = MN_ABI_VERSION_MAJOR,
                .abi_minor = MN_ABI_VERSION_MINOR,
                .name = "\(name)",
                .version = "0.1.0",
                .on_init = on_init,
                .on_start = on_start,
                .on_stop = on_stop,
                .on_message = on_message,
            };

            EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }

            """
        return ["metanode-plugin.json": manifest, "Makefile": makefile, "plugin.c": source,
                "README.md": readme(name: name, lang: "c")]
    }

    static func readme(name: String, lang: String) -> String {
        """
        # \(name)

        A Metanode plugin in \(lang == "c" ? "C" : "Swift"), made by `metanode plugin new`.

        ```sh
        make                                               # builds the library next to metanode-plugin.json
        metanode plugin keygen --out publisher             # once: your publisher key pair
        metanode trust add publisher.pub                   # once per node: trust your key
        metanode plugin sign . --key publisher.key         # pins the library's SHA-256 and signs the manifest
        metanode plugin install . && metanode plugin enable \(name)
        metanode node start                                # then:
        curl http://127.0.0.1:7700/v1/plugins/\(name)/hello
        curl -X POST http://127.0.0.1:7700/v1/plugins/\(name)/count
        metanode plugin call \(name) add 2 40
        ```

        See plugin-sdk/docs/ for the ABI reference and the tutorial.

        """
    }
}

extension Scaffold {
    /// The Swift module name for a plugin name: "my-plugin" → "MyPlugin".
    static func moduleName(_ name: String) -> String {
        name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    static func swiftProject(name: String, sdk: String) -> [String: String] {
        let module = moduleName(name)
        let sym = symbol(name)
        let manifest = manifestText(name: name, language: "Swift", library: "lib\(module).so")
        let package = """
            // swift-tools-version:6.1
            import PackageDescription

            let package = Package(
                name: "\(name)",
                products: [.library(name: "\(module)", type: .dynamic, targets: ["\(module)"])],
                dependencies: [.package(path: "\(sdk)")],
                targets: [
                    .target(
                        name: "\(module)",
                        dependencies: [.product(name: "MetanodePluginKit", package: "plugin-sdk")],
                        path: "Sources/\(module)"),
                ]
            )

            """
        let makefile = """
            # Builds lib\(module).so and copies it next to metanode-plugin.json, so this directory is the package.
            # Swift plugins share the node's Swift runtime: build with the same toolchain as the node.
            CONFIG ?= release

            lib\(module).so: Package.swift $(wildcard Sources/\(module)/*.swift)
            \tswift build -c $(CONFIG) --product \(module)
            \tcp "$$(swift build -c $(CONFIG) --show-bin-path)/lib\(module).so" $@

            # make sign KEY=publisher.key
            sign: lib\(module).so
            \tmetanode plugin sign . --key $(KEY)

            clean:
            \trm -rf .build lib\(module).so metanode-plugin.json.minisig

            .PHONY: sign clean

            """
        let source = """
            // \(name): a Metanode plugin in Swift. MetanodePluginKit wraps the C ABI (metanode/plugin.h); every hook
            // and handler runs on this plugin's own executor thread, one at a time.
            import MetanodePluginKit

            public final class \(module): Plugin {
                struct Config: Decodable {
                    var greeting: String?
                }

                let context: PluginContext

                public init(context: PluginContext) throws {
                    self.context = context
                    let greeting = try context.decodeConfig(Config.self).greeting ?? "hello"
                    try context.http.route("GET", "/hello") { _ in .text("\\(greeting) from \(name)\\n") }
                    try context.http.route("*", "/count") { request in
                        var count = UInt64(try context.kv.string("count") ?? "0") ?? 0
                        if request.method == "POST" {
                            count += 1
                            try context.kv.put("count", String(count))
                        }
                        return .text("\\(count)\\n")
                    }
                    try context.bus.subscribe("\(name).ping")
                }

                public func start() throws {
                    context.log.info("\(name) started")
                }

                public func receive(_ message: BusMessage) {
                    guard message.isRequest else { return }
                    do {
                        try context.bus.reply(to: message, Array("pong from \(name): ".utf8) + message.payload)
                    } catch {
                        context.log.warn("could not answer a ping: \\(error)")
                    }
                }
            }

            @c(metanode_plugin_entry_v1)
            public func metanodePluginEntry() -> UnsafeRawPointer? {
                PluginExport.descriptor(for: \(module).self, name: "\(name)", version: "0.1.0")
            }

            /// Called by `metanode plugin call \(name) add 2 40`.
            @c(\(sym)_add)
            public func \(module.prefix(1).lowercased() + module.dropFirst())Add(_ a: Int64, _ b: Int64) -> Int64 {
                a &+ b
            }

            """
        return ["metanode-plugin.json": manifest, "Package.swift": package, "Makefile": makefile,
                "Sources/\(module)/\(module).swift": source, "README.md": readme(name: name, lang: "swift"),
                ".gitignore": ".build/\n*.so\n"]
    }
}
