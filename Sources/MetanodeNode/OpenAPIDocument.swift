/// The OpenAPI 3.1 document for the kernel's own routes, served at GET /openapi.json. A test checks that every
/// kernel route the router registers is described here.
enum OpenAPIDocument {
    static let json = #"""
    {
      "openapi": "3.1.0",
      "info": {
        "title": "Metanode node API",
        "version": "1.0.0",
        "description": "The kernel's HTTP API. Listens on 127.0.0.1 by default (config.json http.listen). Routes under /v1/plugins/{name}/ other than /call/ belong to that plugin."
      },
      "paths": {
        "/healthz": {
          "get": {
            "summary": "Liveness and readiness",
            "responses": {
              "200": {"description": "Every plugin has started or failed; the node is ready", "content": {"text/plain": {}}},
              "503": {"description": "The node is still starting", "content": {"text/plain": {}}}
            }
          }
        },
        "/v1/node": {
          "get": {
            "summary": "This node: name, identity key, ABI and version, readiness, plugin counts",
            "responses": {"200": {"description": "Node information", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}
          }
        },
        "/v1/plugins": {
          "get": {
            "summary": "Every plugin this start planned: running, failed, not started or quarantined, with reasons",
            "responses": {"200": {"description": "Plugin states", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/PluginStatus"}}}}}}
          }
        },
        "/v1/plugins/{name}": {
          "get": {
            "summary": "One plugin's state",
            "parameters": [{"$ref": "#/components/parameters/PluginName"}],
            "responses": {
              "200": {"description": "Plugin state", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PluginStatus"}}}},
              "404": {"description": "No such plugin", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
          }
        },
        "/v1/plugins/{name}/call/{function}": {
          "post": {
            "summary": "Call a function the plugin exports (declared with its C prototype in the manifest) through libffi",
            "parameters": [
              {"$ref": "#/components/parameters/PluginName"},
              {"name": "function", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The export's name in the manifest"}
            ],
            "requestBody": {
              "description": "The arguments, checked against the prototype: a JSON array, or {\"args\": [...]}. Integers must fit their C type; mn_bytes arguments are \"0x\"-prefixed hex or text.",
              "content": {"application/json": {"schema": {"oneOf": [{"type": "array"}, {"type": "object", "properties": {"args": {"type": "array"}}, "required": ["args"]}]}}}
            },
            "responses": {
              "200": {"description": "The function's result", "content": {"application/json": {"schema": {"type": "object", "properties": {"result": {}}, "required": ["result"]}}}},
              "400": {"description": "Arguments do not match the prototype", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
              "404": {"description": "No such plugin or function", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
              "503": {"description": "The plugin is not running", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
          }
        },
        "/v1/plugins/{name}/{path}": {
          "summary": "Routes registered by the plugin through http_route (any method)",
          "parameters": [
            {"$ref": "#/components/parameters/PluginName"},
            {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The rest of the path, matched against the plugin's routes"}
          ],
          "get": {"summary": "Plugin-defined", "responses": {"default": {"description": "What the plugin answers; 404 with no matching route, 405 with no handler for the method, 503 if the plugin is not running (or stops, or the node shuts down, before answering a deferred response), 504 if its handler does not return in 30 s or a deferred response is not answered within the handler's timeout"}}},
          "post": {"summary": "Plugin-defined", "responses": {"default": {"description": "What the plugin answers"}}},
          "put": {"summary": "Plugin-defined", "responses": {"default": {"description": "What the plugin answers"}}},
          "delete": {"summary": "Plugin-defined", "responses": {"default": {"description": "What the plugin answers"}}},
          "patch": {"summary": "Plugin-defined", "responses": {"default": {"description": "What the plugin answers"}}},
          "head": {"summary": "Plugin-defined; falls back to the GET route", "responses": {"default": {"description": "What the plugin answers"}}},
          "options": {"summary": "Plugin-defined", "responses": {"default": {"description": "What the plugin answers"}}}
        },
        "/v1/net": {
          "get": {
            "summary": "Peer-to-peer networking: this node's key, where it listens, how many peers are configured and connected",
            "responses": {"200": {"description": "Network summary ({\"enabled\": false} without a net section in config.json)", "content": {"application/json": {}}}}
          }
        },
        "/v1/net/peers": {
          "get": {
            "summary": "Every configured peer: key, address, state (connected, connecting, disconnected), round trip, counters, queue depth, drops, last error",
            "responses": {"200": {"description": "Peers", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Peer"}}}}}}
          }
        },
        "/v1/streams/{plugin}/{stream}": {
          "get": {
            "summary": "Server-sent events: each message plugin {plugin} publishes on bus topic {plugin}.stream.{stream} (e.g. /v1/streams/bpi/blocks)",
            "parameters": [
              {"name": "plugin", "in": "path", "required": true, "schema": {"type": "string"}},
              {"name": "stream", "in": "path", "required": true, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "An event stream; a payload that is one line of UTF-8 is the data line, anything else comes base64 in an event named base64", "content": {"text/event-stream": {}}}, "404": {"description": "No such plugin"}}
          }
        },
        "/metrics": {
          "get": {
            "summary": "Prometheus text exposition: kernel metrics and every plugin's metrics (metanode_plugin_<plugin>_<name>)",
            "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}}}
          }
        },
        "/openapi.json": {
          "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}
        }
      },
      "components": {
        "parameters": {
          "PluginName": {"name": "name", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"}}
        },
        "schemas": {
          "Node": {
            "type": "object",
            "properties": {
              "name": {"type": "string"}, "nodeKey": {"type": "string"}, "nodeKeyId": {"type": "string"},
              "nodePublicKeyHex": {"type": "string"}, "abi": {"type": "string"}, "version": {"type": "string"},
              "dev": {"type": "boolean"}, "safeMode": {"type": "boolean"}, "ready": {"type": "boolean"},
              "uptimeMs": {"type": "integer"}, "dataDir": {"type": "string"},
              "plugins": {"type": "object", "properties": {"running": {"type": "integer"}, "notRunning": {"type": "integer"}}}
            }
          },
          "PluginStatus": {
            "type": "object",
            "properties": {
              "name": {"type": "string"}, "version": {"type": "string"},
              "status": {"type": "string", "enum": ["loaded", "starting", "running", "failed", "stopping", "stopped", "not started", "quarantined"]},
              "reason": {"type": "string"}, "bundled": {"type": "boolean"},
              "grants": {"type": "array", "items": {"type": "string"}}, "exports": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["name", "status"]
          },
          "Peer": {
            "type": "object",
            "properties": {
              "key": {"type": "string", "description": "Ed25519 node key, 64 hex digits"}, "address": {"type": "string"},
              "state": {"type": "string", "enum": ["connected", "connecting", "disconnected"]},
              "rttMicros": {"type": "integer"}, "messagesSent": {"type": "integer"}, "messagesReceived": {"type": "integer"},
              "bytesSent": {"type": "integer"}, "bytesReceived": {"type": "integer"}, "queuedMessages": {"type": "integer"},
              "droppedMessages": {"type": "integer"}, "lastError": {"type": "string"}
            },
            "required": ["key", "address", "state"]
          },
          "Error": {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}},
            "required": ["error"]
          }
        }
      }
    }
    """#
}
