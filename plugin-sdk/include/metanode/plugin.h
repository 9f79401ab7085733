/*
 * metanode/plugin.h — the Metanode plugin ABI, version 1 (minor 2).
 *
 * This header is the whole contract between the Metanode kernel (the node daemon) and a plugin. Only C types cross it.
 * A plugin is a shared library that exports one symbol, `metanode_plugin_entry_v1`, returning a descriptor. The kernel
 * loads it with dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE), never unloads it, checks the descriptor, and calls its
 * hooks. The plugin reaches the kernel only through the host vtable (`mn_host_api`) it receives in `on_init`.
 *
 * Conventions used throughout
 * ---------------------------
 * - Prefixes: `mn_` for types and functions, `MN_` for constants. Hooks the kernel calls on the plugin are `on_*`;
 *   callbacks the plugin registers are `*_fn`.
 * - Errors: every host function that can fail returns an `mn_status`. After a status other than MN_OK, `last_error`
 *   gives a human-readable message saying what was wrong (e.g. "kv key is 2048 bytes; the limit is 1024").
 * - Ownership is stated for every pointer:
 *     borrowed   — valid only for the duration of the call it is passed to (or the hook it is passed into); copy it to
 *                  keep it. All `mn_bytes` arguments are borrowed; the kernel copies what it keeps.
 *     host-owned — allocated by the kernel, handed to the plugin, freed by the plugin with `buf_free`. Only `mn_buf`.
 *     static     — must stay valid for the life of the process (the library is never unloaded, so string literals and
 *                  globals in the plugin qualify).
 * - Threads: every hook of one plugin (on_init, on_start, on_stop, on_message, timer, bus-reply and HTTP callbacks, and
 *   functions called through `metanode plugin call`) runs on that plugin's own executor thread, one at a time, in the
 *   order the events arrived. A plugin therefore needs no locks for state touched only from hooks. Host functions are
 *   thread-safe: a plugin may call them from its hooks or from threads it creates, from the start of `on_init` until
 *   `on_stop` returns. After that they return MN_ERR_STOPPED. A hook that waits holds up every other event of its
 *   plugin, so an HTTP handler that must wait (for a process, another node, a long computation) defers its response
 *   instead and answers it later from any thread (http_response_defer, ABI 1.2).
 *   Functions in a service table (see "services") are called on the *caller's* thread and must be thread-safe.
 * - Capabilities: a plugin declares the capabilities it needs in its manifest and the node operator grants them when
 *   enabling it. Functions of a capability that was not granted return MN_ERR_DENIED and the kernel logs the attempt.
 *   `log`, `config`, `last_error`, `buf_free` and the clock functions need no capability.
 * - Versions: 1.0 is the first; 1.1 added the "net" capability at the end of mn_host_api; 1.2 added deferred HTTP
 *   responses (http_response_defer, http_deferred_respond) after it; 1.3 added bus_listeners after those.
 * - Compatibility: the ABI major version is in the entry symbol's name. Within a major version, structs carrying
 *   `struct_size` only grow at the end; a plugin compiled against minor N runs on any kernel with minor >= N. A kernel
 *   refuses a plugin with another major version or a newer minor, with a message naming both versions. Before using a
 *   host function added in a later minor, check `host->abi_minor` (or `struct_size`).
 * - Strings are UTF-8 and carried as `mn_str` (pointer + length, not NUL-terminated) unless the field is `const char *`.
 *
 * Everything is bounded; the limits below are part of the ABI. A size over its limit returns MN_ERR_TOO_LARGE; a
 * count limit (timers, subscriptions, routes, metrics, snapshots, deferred HTTP responses per plugin) returns
 * MN_ERR_LIMIT; a value outside its range (a timeout, a delay) returns MN_ERR_INVALID_ARGUMENT. Log messages over the
 * limit are cut, not refused.
 */
#ifndef METANODE_PLUGIN_H
#define METANODE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------------------- */
/* Versions and limits                                                                                              */
/* ---------------------------------------------------------------------------------------------------------------- */

#define MN_ABI_VERSION_MAJOR 1
#define MN_ABI_VERSION_MINOR 3

/** The one symbol a plugin exports. Its type is `mn_plugin_entry_v1_fn`. */
#define MN_PLUGIN_ENTRY_SYMBOL "metanode_plugin_entry_v1"

#define MN_PLUGIN_NAME_LEN_MAX 63u        /* [a-z][a-z0-9-]*, also the manifest's name            */
#define MN_LOG_MESSAGE_LEN_MAX 8192u      /* longer messages are truncated, not refused             */
#define MN_KV_KEY_LEN_MAX 1024u           /* bytes, within the plugin's namespace                   */
#define MN_KV_VALUE_LEN_MAX 16777216u     /* 16 MiB                                                 */
#define MN_KV_BATCH_OPS_MAX 100000u
#define MN_KV_BATCH_BYTES_MAX 67108864u   /* 64 MiB, keys plus values                               */
#define MN_KV_SNAPSHOTS_MAX 64u           /* open snapshots per plugin                              */
#define MN_BUS_TOPIC_LEN_MAX 255u
#define MN_BUS_PAYLOAD_LEN_MAX 4194304u   /* 4 MiB                                                  */
#define MN_BUS_SUBSCRIPTIONS_MAX 1024u    /* per plugin                                             */
#define MN_BUS_REQUEST_TIMEOUT_MS_MAX 600000u
#define MN_MAILBOX_DEPTH_MAX 65536u       /* undelivered bus messages queued for one plugin         */
#define MN_TIMERS_MAX 4096u               /* live timers per plugin                                 */
#define MN_TIMER_DELAY_MS_MAX 604800000u  /* 7 days                                                 */
#define MN_HTTP_ROUTES_MAX 256u           /* per plugin                                             */
#define MN_HTTP_BODY_LEN_MAX 8388608u     /* 8 MiB, request and response                            */
#define MN_HTTP_HEADER_LEN_MAX 8192u
#define MN_METRIC_NAME_LEN_MAX 128u       /* [a-z_][a-z0-9_]*                                       */
#define MN_METRICS_MAX 1024u              /* per plugin                                             */
#define MN_HISTOGRAM_BUCKETS_MAX 64u
#define MN_SERVICE_NAME_LEN_MAX 127u      /* "<plugin>.<name>", e.g. "bpi.ledger"                   */
#define MN_SERVICE_TABLE_SIZE_MAX 65536u
#define MN_RANDOM_LEN_MAX 65536u
#define MN_KEY_ID_LEN_MAX 64u
/* ABI 1.1 */
#define MN_NET_PROTOCOL_LEN_MAX 64u       /* [a-z0-9_.-], the part after "<plugin>/"                 */
#define MN_NET_MESSAGE_LEN_MAX 4194304u   /* 4 MiB per message to another node                      */
#define MN_NET_PROTOCOLS_MAX 64u          /* registered protocols per plugin                        */
/* ABI 1.2 */
#define MN_HTTP_DEFERRED_MAX 1024u        /* deferred HTTP responses not yet answered, per plugin   */
#define MN_HTTP_DEFER_TIMEOUT_MS_MAX 3600000u /* 1 hour                                             */

/* ---------------------------------------------------------------------------------------------------------------- */
/* Status codes                                                                                                     */
/* ---------------------------------------------------------------------------------------------------------------- */

/** Result of a host function or hook. A plain integer so new codes can be added within a major version. */
typedef int32_t mn_status;

#define MN_OK 0
#define MN_ERR_DENIED 1            /* the capability this function belongs to was not granted to the plugin     */
#define MN_ERR_INVALID_ARGUMENT 2  /* a null pointer where one is required, a malformed name, a bad enum value   */
#define MN_ERR_NOT_FOUND 3         /* no such key, subscription, timer, route, service, key id or deferral       */
#define MN_ERR_TOO_LARGE 4         /* a size limit above was exceeded                                           */
#define MN_ERR_STOPPED 5           /* the plugin has been stopped (or not yet initialised); nothing was done      */
#define MN_ERR_TIMEOUT 6           /* a bus request got no reply in time                                        */
#define MN_ERR_EXISTS 7            /* already registered (route, service, metric name)                          */
#define MN_ERR_IO 8                /* storage failed; the message says how; nothing was written                  */
#define MN_ERR_VERSION 9           /* an incompatible service version                                           */
#define MN_ERR_INTERNAL 10         /* a kernel bug; the message says where                                       */
#define MN_ERR_NO_RESPONDER 11     /* a bus request on a topic nobody subscribes to                              */
#define MN_ERR_LIMIT 12            /* a per-plugin count limit (timers, subscriptions, snapshots, ...) is reached */
#define MN_ERR_BAD_SIGNATURE 13    /* ed25519 verification failed                                               */

/* ---------------------------------------------------------------------------------------------------------------- */
/* Basic types                                                                                                      */
/* ---------------------------------------------------------------------------------------------------------------- */

/** A borrowed byte range. `ptr` may be NULL only when `len` is 0. */
typedef struct mn_bytes {
  const uint8_t *ptr;
  size_t len;
} mn_bytes;

/** A borrowed UTF-8 string, not NUL-terminated. Same layout as mn_bytes. */
typedef mn_bytes mn_str;

/** A host-owned buffer. The plugin frees it with `host->buf_free`. `ptr` is NULL when `len` is 0. */
typedef struct mn_buf {
  uint8_t *ptr;
  size_t len;
} mn_buf;

/** The kernel's handle for one plugin instance. Host-owned; valid from on_init for the life of the process. */
typedef struct mn_host_ctx mn_host_ctx;

/** An atomic write batch. Host-owned; valid from kv_batch_begin until kv_batch_commit or kv_batch_discard. */
typedef struct mn_kv_batch mn_kv_batch;

/** A consistent read view of the plugin's keys. Host-owned; valid until kv_snapshot_release. */
typedef struct mn_kv_snapshot mn_kv_snapshot;

/**
 * An HTTP response being built. Host-owned; valid only inside the mn_http_handler_fn it is passed to. A response
 * answered later (http_response_defer) is named by its mn_http_deferred_id from then on.
 */
typedef struct mn_http_response mn_http_response;

typedef uint64_t mn_subscription_id;  /* never 0 */
typedef uint64_t mn_timer_id;         /* never 0 */
typedef uint64_t mn_metric_id;        /* never 0 */
typedef uint64_t mn_reply_token;      /* 0 means "no reply expected" */
typedef uint64_t mn_http_deferred_id; /* ABI 1.2: never 0, never reused by the same plugin */

/* ---------------------------------------------------------------------------------------------------------------- */
/* Messages delivered to the plugin                                                                                 */
/* ---------------------------------------------------------------------------------------------------------------- */

/** A bus message, passed to `on_message`. The struct and everything it points to are borrowed for that call. */
typedef struct mn_message {
  uint32_t struct_size;
  mn_str topic;                /* the topic it was published on                                                  */
  mn_bytes payload;
  mn_str sender;               /* name of the publishing plugin                                                  */
  mn_reply_token reply_token;  /* non-zero for a request: answer with host->bus_reply(ctx, reply_token, ...)      */
} mn_message;

/* ---------------------------------------------------------------------------------------------------------------- */
/* Callback types                                                                                                   */
/* ---------------------------------------------------------------------------------------------------------------- */

/** Visits one key/value during kv_scan_prefix. Both are borrowed. Return 0 to continue, non-zero to stop. */
typedef int32_t (*mn_kv_visit_fn)(void *user_data, mn_bytes key, mn_bytes value);

/**
 * The answer to a bus_request, called once on the requester's executor thread: with MN_OK and the reply, or with
 * MN_ERR_TIMEOUT or MN_ERR_NO_RESPONDER and an empty reply. Not called at all if the requesting plugin stops first.
 * `reply` is borrowed.
 */
typedef void (*mn_bus_reply_fn)(void *user_data, mn_status status, mn_bytes reply);

/** A timer fired. Called on the plugin's executor thread. */
typedef void (*mn_timer_fn)(void *user_data, mn_timer_id timer);

/** ABI 1.1: a message from another node on one of the plugin's protocols, called on the plugin's executor thread.
 * `peer` is the sender's 32-byte Ed25519 node key, proven by the connection's handshake. Both are borrowed. */
typedef void (*mn_net_receive_fn)(void *user_data, const uint8_t peer[32], mn_bytes message);

#define MN_NET_PEER_UP 1    /* an authenticated connection to the peer is established */
#define MN_NET_PEER_DOWN 2  /* the last connection to the peer closed                 */

/** ABI 1.1: a peer connected or disconnected, called on the plugin's executor thread. `peer` is borrowed. */
typedef void (*mn_net_peer_event_fn)(void *user_data, const uint8_t peer[32], int32_t event);

/** ABI 1.1: one configured peer, as net_peers reports it. */
typedef struct mn_net_peer {
  uint32_t struct_size;
  uint8_t public_key[32];  /* the peer's node key                                        */
  int32_t connected;       /* 1 when an authenticated connection is up                   */
  uint32_t rtt_us;         /* last measured round trip, 0 if unknown                     */
} mn_net_peer;

/** An HTTP request, passed to an mn_http_handler_fn. Borrowed for that call. */
typedef struct mn_http_request {
  uint32_t struct_size;
  mn_str method;  /* "GET", "POST", ...                                                                           */
  mn_str path;    /* the part after /v1/plugins/<name>, starting with "/"; percent-encoding is kept               */
  mn_str query;   /* the raw query string without '?'; may be empty                                               */
  mn_bytes body;  /* at most MN_HTTP_BODY_LEN_MAX                                                                 */
  const void *host_private; /* for http_request_header; do not touch                                           */
} mn_http_request;

/**
 * Handles one HTTP request on the plugin's executor thread. Set the answer with `http_response_set` (and optionally
 * `http_response_header`) before returning, or (ABI 1.2) defer it with `http_response_defer` and answer it later with
 * `http_deferred_respond`; a handler that does neither answers 500.
 */
typedef void (*mn_http_handler_fn)(void *user_data, const mn_http_request *request, mn_http_response *response);

/* ---------------------------------------------------------------------------------------------------------------- */
/* The host vtable                                                                                                  */
/* ---------------------------------------------------------------------------------------------------------------- */

#define MN_LOG_TRACE 0
#define MN_LOG_DEBUG 1
#define MN_LOG_INFO 2
#define MN_LOG_WARN 3
#define MN_LOG_ERROR 4

#define MN_METRIC_COUNTER 1
#define MN_METRIC_GAUGE 2
#define MN_METRIC_HISTOGRAM 3

/**
 * The functions the kernel offers a plugin. Passed to on_init; host-owned and valid for the life of the process.
 * Each plugin gets its own table: entries for capabilities it was not granted point at functions that return
 * MN_ERR_DENIED. Every function takes the plugin's `mn_host_ctx` first. Fields are only ever appended.
 */
typedef struct mn_host_api {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;

  /* --- always available ------------------------------------------------------------------------------------- */

  /** Writes a log line tagged with the plugin's name. `message` is borrowed; longer than MN_LOG_MESSAGE_LEN_MAX is cut. */
  void (*log)(mn_host_ctx *ctx, int32_t level, mn_str message);

  /**
   * The message for the last failed host call made on this thread by this plugin. `*out_message` is borrowed until
   * the next host call on this thread. Returns MN_ERR_NOT_FOUND if there is none.
   */
  mn_status (*last_error)(mn_host_ctx *ctx, mn_str *out_message);

  /** Frees a buffer the host handed out. Passing an empty buffer is allowed. */
  void (*buf_free)(mn_host_ctx *ctx, mn_buf buf);

  /** The plugin's JSON config (already validated against the manifest's schema). `*out_json` is host-owned. */
  mn_status (*config_get)(mn_host_ctx *ctx, mn_buf *out_json);

  /** Milliseconds since the Unix epoch (wall clock) — not for consensus state. */
  uint64_t (*clock_unix_ms)(mn_host_ctx *ctx);

  /** Nanoseconds from a monotonic clock with an arbitrary origin. */
  uint64_t (*clock_monotonic_ns)(mn_host_ctx *ctx);

  /* --- capability "kv": the plugin's own namespace in the node's RocksDB ---------------------------------------- */

  /** Reads a key. MN_ERR_NOT_FOUND if absent. On MN_OK `*out_value` is host-owned. */
  mn_status (*kv_get)(mn_host_ctx *ctx, mn_bytes key, mn_buf *out_value);
  /** Writes a key (written to the write-ahead log before returning). */
  mn_status (*kv_put)(mn_host_ctx *ctx, mn_bytes key, mn_bytes value);
  /** Deletes a key. Deleting an absent key is MN_OK. */
  mn_status (*kv_delete)(mn_host_ctx *ctx, mn_bytes key);
  /** Starts an atomic batch. `*out_batch` is host-owned until commit or discard. */
  mn_status (*kv_batch_begin)(mn_host_ctx *ctx, mn_kv_batch **out_batch);
  mn_status (*kv_batch_put)(mn_host_ctx *ctx, mn_kv_batch *batch, mn_bytes key, mn_bytes value);
  mn_status (*kv_batch_delete)(mn_host_ctx *ctx, mn_kv_batch *batch, mn_bytes key);
  /** Applies every operation of the batch atomically, or none. Always consumes the batch, even on error. */
  mn_status (*kv_batch_commit)(mn_host_ctx *ctx, mn_kv_batch *batch);
  /** Drops a batch without applying it. */
  void (*kv_batch_discard)(mn_host_ctx *ctx, mn_kv_batch *batch);
  /** Opens a consistent read view. At most MN_KV_SNAPSHOTS_MAX open at once per plugin. */
  mn_status (*kv_snapshot_open)(mn_host_ctx *ctx, mn_kv_snapshot **out_snapshot);
  /** Reads a key as of the snapshot. On MN_OK `*out_value` is host-owned. */
  mn_status (*kv_snapshot_get)(mn_host_ctx *ctx, const mn_kv_snapshot *snapshot, mn_bytes key, mn_buf *out_value);
  void (*kv_snapshot_release)(mn_host_ctx *ctx, mn_kv_snapshot *snapshot);
  /**
   * Visits, in ascending byte order, every key that starts with `prefix` and is >= `start` (pass an empty `start` to
   * begin at the prefix). Reads the snapshot if one is given, else the latest state. `visit` runs on the calling
   * thread; it must not call kv functions that write.
   */
  mn_status (*kv_scan_prefix)(mn_host_ctx *ctx, const mn_kv_snapshot *snapshot /* nullable */, mn_bytes prefix,
                              mn_bytes start, mn_kv_visit_fn visit, void *user_data);

  /* --- capability "crypto": hashing, verification, randomness (libsodium) ---------------------------------------- */

  mn_status (*hash_blake2b256)(mn_host_ctx *ctx, mn_bytes data, uint8_t out_hash[32]);
  mn_status (*hash_sha256)(mn_host_ctx *ctx, mn_bytes data, uint8_t out_hash[32]);
  /** Plain Ed25519 verification of `message`. MN_OK if valid, MN_ERR_BAD_SIGNATURE if not. */
  mn_status (*ed25519_verify)(mn_host_ctx *ctx, const uint8_t public_key[32], mn_bytes message,
                              const uint8_t signature[64]);
  /** Fills `out` with `len` (<= MN_RANDOM_LEN_MAX) cryptographically secure random bytes. */
  mn_status (*random_bytes)(mn_host_ctx *ctx, uint8_t *out, size_t len);

  /* --- capability "sign": signing with the node's keys --------------------------------------------------------- */

  /** The public key for `key_id`. Version 1 knows one key id: "node", the node's identity key. */
  mn_status (*ed25519_public_key)(mn_host_ctx *ctx, mn_str key_id, uint8_t out_public_key[32]);
  /**
   * Signs with the key `key_id`. The kernel never signs caller bytes bare: it signs
   *     "metanode/plugin-sig/v1" 0x00 <plugin name> 0x00 <message>
   * so one plugin cannot produce a signature that verifies as another plugin's (or the kernel's). Verify with
   * ed25519_verify_scoped, or rebuild those bytes and use any Ed25519 verifier.
   */
  mn_status (*ed25519_sign)(mn_host_ctx *ctx, mn_str key_id, mn_bytes message, uint8_t out_signature[64]);
  /** Verifies a signature made by ed25519_sign of plugin `signer_plugin` (empty = this plugin). Needs "crypto". */
  mn_status (*ed25519_verify_scoped)(mn_host_ctx *ctx, const uint8_t public_key[32], mn_str signer_plugin,
                                     mn_bytes message, const uint8_t signature[64]);

  /* --- capability "bus": in-process publish/subscribe and request/reply between plugins ----------------------- */

  /**
   * Subscribes to `topic`: an exact topic ("orders.created") or a prefix ending in ".*" ("orders.*" matches
   * "orders.created" and "orders.eu.created"). Messages arrive in `on_message`. Topics are dot-separated
   * [A-Za-z0-9_-] segments.
   */
  mn_status (*bus_subscribe)(mn_host_ctx *ctx, mn_str topic, mn_subscription_id *out_subscription);
  mn_status (*bus_unsubscribe)(mn_host_ctx *ctx, mn_subscription_id subscription);
  /**
   * Delivers `payload` to every plugin subscribed to `topic` (including this one if it subscribes), once per plugin
   * even when several of its subscriptions match. Never blocks: a subscriber whose mailbox holds
   * MN_MAILBOX_DEPTH_MAX undelivered messages misses the message and the kernel counts it in metanode_bus_dropped_total.
   * `*out_delivered` (nullable) receives how many plugins got it.
   */
  mn_status (*bus_publish)(mn_host_ctx *ctx, mn_str topic, mn_bytes payload, uint32_t *out_delivered);
  /**
   * Sends `payload` to the subscribers of `topic` as a request; the first reply wins. `on_reply` is called exactly
   * once (see mn_bus_reply_fn). `timeout_ms` is 1..MN_BUS_REQUEST_TIMEOUT_MS_MAX.
   */
  mn_status (*bus_request)(mn_host_ctx *ctx, mn_str topic, mn_bytes payload, uint32_t timeout_ms,
                           mn_bus_reply_fn on_reply, void *user_data);
  /**
   * Answers a request received in on_message. The first answer wins and later ones return MN_ERR_NOT_FOUND; a token
   * of a request this plugin did not receive returns MN_ERR_INVALID_ARGUMENT.
   */
  mn_status (*bus_reply)(mn_host_ctx *ctx, mn_reply_token token, mn_bytes payload);

  /* --- capability "timer" -------------------------------------------------------------------------------------- */

  /**
   * Calls `fn` on the plugin's executor after `delay_ms`, then every `interval_ms` if that is non-zero, until
   * cancelled or the plugin stops. `user_data` is plugin-owned and must outlive the timer. `out_timer` is nullable.
   */
  mn_status (*timer_start)(mn_host_ctx *ctx, uint64_t delay_ms, uint64_t interval_ms, mn_timer_fn fn, void *user_data,
                           mn_timer_id *out_timer);
  /** Cancels a timer. A callback already queued may still run once. */
  mn_status (*timer_cancel)(mn_host_ctx *ctx, mn_timer_id timer);

  /* --- capability "http": routes under /v1/plugins/<name>/ on the node's API ----------------------------------- */

  /**
   * Registers a handler for `method` ("GET", "POST", ... or "*" for any) and `path`, relative to /v1/plugins/<name>:
   * exact ("/count"), or a prefix when the last segment is "*" (path "/items/" + "*" matches "/items/7" and
   * "/items/7/tags", not "/items"). Exact routes win over prefixes, longer prefixes over shorter, a named method over
   * "*"; HEAD falls back to GET. A path with routes for other methods only answers 405; a handler that has not
   * returned after 30 s answers 504 (a deferred response has its own timeout, see http_response_defer). The path is
   * matched as received (trailing slashes kept). "/" and "/call/" are reserved.
   * `user_data` is plugin-owned and must stay valid for the life of the process.
   */
  mn_status (*http_route)(mn_host_ctx *ctx, mn_str method, mn_str path, mn_http_handler_fn handler, void *user_data);
  /** A request header by case-insensitive name. `*out_value` is borrowed until the handler returns. */
  mn_status (*http_request_header)(mn_host_ctx *ctx, const mn_http_request *request, mn_str name, mn_str *out_value);
  /** Sets status, content type and body of the response. The kernel copies `content_type` and `body`. */
  mn_status (*http_response_set)(mn_host_ctx *ctx, mn_http_response *response, uint16_t status, mn_str content_type,
                                 mn_bytes body);
  /** Adds a response header. The kernel copies both strings. */
  mn_status (*http_response_header)(mn_host_ctx *ctx, mn_http_response *response, mn_str name, mn_str value);

  /* --- capability "service": typed, versioned function tables between plugins -------------------------------- */

  /**
   * Publishes `table` as service `name` ("<this plugin>.<service>") at version major.minor. `table` is static: it
   * must stay valid for the life of the process. By convention its first field is a uint32_t struct_size and it only
   * grows at the end within a major version. Export from on_init so dependents (which initialise later) find it.
   */
  mn_status (*service_export)(mn_host_ctx *ctx, mn_str name, uint32_t major, uint32_t minor, const void *table,
                              size_t table_size);
  /**
   * Finds service `name` with exactly `major` and a minor >= `min_minor`. `*out_table` is static; `*out_minor` and
   * `*out_table_size` (both nullable) tell what the exporter provides. MN_ERR_NOT_FOUND if nobody exports the name,
   * MN_ERR_VERSION (message names both versions) if the version does not fit.
   */
  mn_status (*service_lookup)(mn_host_ctx *ctx, mn_str name, uint32_t major, uint32_t min_minor,
                              const void **out_table, uint32_t *out_minor, size_t *out_table_size);

  /* --- capability "metrics": on the node's /metrics as metanode_plugin_<plugin>_<name>, '-' in <plugin> as '_' -- */

  /**
   * Registers a metric of `kind` (MN_METRIC_*). Histograms take `bucket_count` ascending upper bounds (borrowed);
   * others pass NULL/0. Registering the same name twice returns MN_ERR_EXISTS.
   */
  mn_status (*metric_register)(mn_host_ctx *ctx, int32_t kind, mn_str name, mn_str help, const double *buckets,
                               size_t bucket_count, mn_metric_id *out_metric);
  mn_status (*metric_counter_add)(mn_host_ctx *ctx, mn_metric_id metric, uint64_t delta);
  mn_status (*metric_gauge_set)(mn_host_ctx *ctx, mn_metric_id metric, double value);
  mn_status (*metric_histogram_observe)(mn_host_ctx *ctx, mn_metric_id metric, double value);

  /* === ABI 1.1 ====================================================================================================
   * Check host->abi_minor >= 1 (or struct_size) before calling anything below. */

  /* --- capability "net": messages to other nodes ------------------------------------------------------------------
   * The kernel keeps authenticated, encrypted connections to the peers configured for this node (each identified by
   * its Ed25519 node key). A plugin talks on protocols in its own namespace: protocol "consensus" of plugin "bpi" is
   * "bpi/consensus" on the wire and reaches plugin "bpi" on the other node. Messages between two nodes arrive in the
   * order they were sent on the same connection; nothing is delivered twice; a message is lost if the connection
   * drops before it is delivered (plugins that need delivery guarantees acknowledge at their own level). */

  /**
   * Starts receiving messages on `protocol` ([a-z0-9_.-], at most MN_NET_PROTOCOL_LEN_MAX bytes). `user_data` is
   * plugin-owned and must stay valid for the life of the process. MN_ERR_EXISTS if already registered.
   */
  mn_status (*net_register)(mn_host_ctx *ctx, mn_str protocol, mn_net_receive_fn on_receive, void *user_data);
  /**
   * Queues `message` for `peer` on `protocol`; returns once it is queued, not when it is delivered. MN_ERR_NOT_FOUND
   * if the peer is not connected, MN_ERR_LIMIT if its send queue is full (the message is dropped and counted in
   * metanode_net_send_dropped_total; the queue's bounds are in the node's config), MN_ERR_TOO_LARGE over
   * MN_NET_MESSAGE_LEN_MAX.
   */
  mn_status (*net_send)(mn_host_ctx *ctx, const uint8_t peer[32], mn_str protocol, mn_bytes message);
  /** Queues `message` for every connected peer. `*out_sent` (nullable) receives how many queued it. */
  mn_status (*net_broadcast)(mn_host_ctx *ctx, mn_str protocol, mn_bytes message, uint32_t *out_sent);
  /**
   * Fills `out` with up to `capacity` configured peers (set each element's struct_size first; the kernel writes at
   * most that many bytes of it) and sets `*out_count` to how many peers there are, which may exceed `capacity`.
   */
  mn_status (*net_peers)(mn_host_ctx *ctx, mn_net_peer *out, size_t capacity, size_t *out_count);
  /**
   * Calls `on_event` whenever a peer connects or disconnects, starting with MN_NET_PEER_UP for every peer already
   * connected. One watcher per plugin; a second call replaces the first. `user_data` as for net_register.
   */
  mn_status (*net_watch_peers)(mn_host_ctx *ctx, mn_net_peer_event_fn on_event, void *user_data);
  /** This node's own 32-byte key, as its peers know it. */
  mn_status (*net_local_key)(mn_host_ctx *ctx, uint8_t out_public_key[32]);

  /* === ABI 1.2 ====================================================================================================
   * Check host->abi_minor >= 2 (or struct_size) before calling anything below. */

  /* --- capability "http", continued: deferred responses -----------------------------------------------------------
   * A handler that cannot answer before it returns defers its response, returns at once and answers later, from any
   * thread. Its executor is free meanwhile: the plugin's other requests, messages and timers run as usual. The client
   * waits until the plugin answers; it gets 504 if the deferral's timeout passes first, and 503 if the plugin stops
   * (after on_stop returns; on_stop may still answer) or the node shuts down first. */

  /**
   * Called inside an mn_http_handler_fn instead of http_response_set: the handler then returns without an answer and
   * the kernel keeps the request open until http_deferred_respond(ctx, *out_id, ...), for at most `timeout_ms`
   * (1..MN_HTTP_DEFER_TIMEOUT_MS_MAX) after the handler returns; then the client gets 504 and the id is gone. Headers
   * added to `response` with http_response_header before the handler returns are sent with the later answer. A
   * response can be deferred once, and not after http_response_set; after deferring, http_response_set on it returns
   * MN_ERR_INVALID_ARGUMENT. At most MN_HTTP_DEFERRED_MAX deferred responses per plugin are unanswered at once
   * (MN_ERR_LIMIT beyond: answer the request now, e.g. 503). `*out_id` is never 0. The request and `response` stay
   * borrowed only until the handler returns: copy what the later answer needs.
   */
  mn_status (*http_response_defer)(mn_host_ctx *ctx, mn_http_response *response, uint32_t timeout_ms,
                                   mn_http_deferred_id *out_id);
  /**
   * Answers deferred response `id`. Callable from any thread, also inside the handler that deferred it (the answer is
   * then sent when the handler returns). The kernel copies `content_type` and `body` (at most MN_HTTP_BODY_LEN_MAX).
   * Each id is answered exactly once: a second call, a call after the timeout or after the kernel answered 503, and
   * an id this plugin never got all return MN_ERR_NOT_FOUND and send nothing. On MN_ERR_INVALID_ARGUMENT or
   * MN_ERR_TOO_LARGE nothing was sent and the id is still open. After on_stop returns: MN_ERR_STOPPED.
   */
  mn_status (*http_deferred_respond)(mn_host_ctx *ctx, mn_http_deferred_id id, uint16_t status, mn_str content_type,
                                     mn_bytes body);

  /* === ABI 1.3 ====================================================================================================
   * Check host->abi_minor >= 3 (or struct_size) before calling anything below. */

  /* --- capability "bus", continued --------------------------------------------------------------------------------- */

  /**
   * Sets `*out_count` to how many would get a message published on `topic` now: the plugins subscribed to it (this
   * one included), plus, for this plugin's own "<plugin>.stream.<name>" topics, the clients following
   * GET /v1/streams/<plugin>/<name>. A publisher whose message is costly to build (a JSON rendering of every block,
   * say) skips building it when the count is 0. A listener arriving between this call and the publish misses that
   * one message, as it would any message published before it subscribed.
   */
  mn_status (*bus_listeners)(mn_host_ctx *ctx, mn_str topic, uint32_t *out_count);
} mn_host_api;

/* ---------------------------------------------------------------------------------------------------------------- */
/* The plugin descriptor                                                                                            */
/* ---------------------------------------------------------------------------------------------------------------- */

/**
 * What a plugin tells the kernel about itself. Static: returned by the entry function and never freed.
 * `name` and `version` must equal the manifest's. Hooks left NULL are skipped.
 */
typedef struct mn_plugin_descriptor {
  uint32_t struct_size;  /* sizeof(mn_plugin_descriptor) as compiled by the plugin */
  uint16_t abi_major;    /* MN_ABI_VERSION_MAJOR the plugin was compiled against   */
  uint16_t abi_minor;    /* MN_ABI_VERSION_MINOR the plugin was compiled against   */
  const char *name;      /* static, NUL-terminated                                  */
  const char *version;   /* static, NUL-terminated semantic version                 */

  /**
   * First hook. `host` and `ctx` are host-owned and valid for the life of the process; keep them. `config_json` is
   * borrowed. Store the plugin's state in `*out_state`; the kernel passes it back to every other hook. Register
   * routes, subscriptions, metrics and services here. Anything but MN_OK fails the plugin; give the reason with
   * host->log first.
   */
  mn_status (*on_init)(const mn_host_api *host, mn_host_ctx *ctx, mn_bytes config_json, void **out_state);
  /** Called once every plugin this one depends on has started. Anything but MN_OK fails the plugin. */
  mn_status (*on_start)(void *state);
  /** Called at shutdown, in reverse dependency order. Host calls fail with MN_ERR_STOPPED once it returns. */
  void (*on_stop)(void *state);
  /** A bus message for one of the plugin's subscriptions. `message` is borrowed. */
  void (*on_message)(void *state, const mn_message *message);
} mn_plugin_descriptor;

/** The type of `metanode_plugin_entry_v1`. Called once, on the kernel's loader thread, right after dlopen. */
typedef const mn_plugin_descriptor *(*mn_plugin_entry_v1_fn)(void);

/* ---------------------------------------------------------------------------------------------------------------- */
/* Exported functions (called through libffi)                                                                      */
/* ---------------------------------------------------------------------------------------------------------------- */
/*
 * Besides hooks, a plugin may export plain C functions and declare them in its manifest's "exports" with their C
 * prototype, e.g. "int64_t hello_add(int64_t a, int64_t b)". `metanode plugin call NAME FUNCTION ARGS...` and
 * POST /v1/plugins/NAME/call/FUNCTION check the arguments against the prototype and call the function through libffi
 * on the plugin's executor thread (so it never runs at the same time as the plugin's hooks). Types allowed:
 *   parameters: int32_t, int64_t, uint32_t, uint64_t, double, const char * (NUL-terminated, borrowed for the call),
 *               mn_bytes (borrowed for the call)
 *   result:     void or any parameter type except mn_bytes; a returned const char * is copied by the kernel before
 *               the next call and never freed (return a literal or a buffer the plugin owns).
 * At most 16 parameters.
 */

/* ---------------------------------------------------------------------------------------------------------------- */
/* Helpers (header-only)                                                                                            */
/* ---------------------------------------------------------------------------------------------------------------- */

/** An mn_str viewing a NUL-terminated string (borrowed from `s`). */
static inline mn_str mn_str_from_cstr(const char *s) {
  size_t n = 0;
  if (s) { while (s[n]) { n++; } }
  mn_str r = { (const uint8_t *)s, n };
  return r;
}

/** An mn_bytes viewing `len` bytes at `ptr`. */
static inline mn_bytes mn_bytes_make(const void *ptr, size_t len) {
  mn_bytes r = { (const uint8_t *)ptr, len };
  return r;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* METANODE_PLUGIN_H */
