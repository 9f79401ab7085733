// A plugin that talks to other nodes, for the end-to-end tests and the network benchmark (ABI 1.1, capabilities
// http and net). Compiled with cc -DPLUGIN_NAME='"netter"'.
//
//   POST /send?to=<peer hex>&proto=alpha|beta   body -> net_send; answers the status name
//   POST /broadcast?proto=alpha|beta            body -> net_broadcast; answers how many peers it was queued for
//   GET  /received?proto=alpha|beta             "<count> <last sender hex> <last message>"
//   GET  /events                                "up=<n> down=<n>"
//   GET  /peers                                 one line per configured peer: "<hex> <connected 0|1> <rtt us>"
//   GET  /me                                    this node's key in hex
//   exports: net_bench_send(peer hex, count, size) -> status; net_bench_received() -> messages on "bulk";
//            net_bench_bytes() -> bytes on "bulk"
#include <metanode/plugin.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

static const mn_host_api *host;
static mn_host_ctx *ctx;

typedef struct {
  unsigned long long count;
  char sender[65];
  char last[256];
} inbox;
static inbox alpha, beta;
static unsigned long long ups, downs, bulk_messages, bulk_bytes;

static void to_hex(const uint8_t *key, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = digits[key[i] >> 4];
    out[2 * i + 1] = digits[key[i] & 15];
  }
  out[64] = 0;
}

static int from_hex(const char *text, size_t length, uint8_t *key) {
  if (length != 64) return -1;
  for (size_t i = 0; i < 32; i++) {
    unsigned value;
    char pair[3] = {text[2 * i], text[2 * i + 1], 0};
    if (sscanf(pair, "%2x", &value) != 1) return -1;
    key[i] = (uint8_t)value;
  }
  return 0;
}

static void record(inbox *box, const uint8_t *peer, mn_bytes message) {
  box->count++;
  to_hex(peer, box->sender);
  size_t n = message.len < sizeof box->last - 1 ? message.len : sizeof box->last - 1;
  memcpy(box->last, message.ptr, n);
  box->last[n] = 0;
}

static void on_alpha(void *user_data, const uint8_t peer[32], mn_bytes message) {
  (void)user_data;
  record(&alpha, peer, message);
}

static void on_beta(void *user_data, const uint8_t peer[32], mn_bytes message) {
  (void)user_data;
  record(&beta, peer, message);
}

static void on_bulk(void *user_data, const uint8_t peer[32], mn_bytes message) {
  (void)user_data;
  (void)peer;
  bulk_messages++;
  bulk_bytes += message.len;
}

static void on_peer(void *user_data, const uint8_t peer[32], int32_t event) {
  (void)user_data;
  (void)peer;
  if (event == MN_NET_PEER_UP) ups++;
  if (event == MN_NET_PEER_DOWN) downs++;
}

static void respond(mn_http_response *response, uint16_t status, const char *text) {
  host->http_response_set(ctx, response, status, mn_str_from_cstr("text/plain"), mn_str_from_cstr(text));
}

// The value of `name` in the query string, as a view into it; length 0 if absent.
static mn_str query_value(mn_str query, const char *name) {
  size_t name_length = strlen(name);
  const char *start = (const char *)query.ptr, *end = start + query.len;
  while (start < end) {
    const char *amp = memchr(start, '&', (size_t)(end - start));
    const char *stop = amp ? amp : end;
    if ((size_t)(stop - start) > name_length && memcmp(start, name, name_length) == 0 && start[name_length] == '=') {
      return mn_bytes_make(start + name_length + 1, (size_t)(stop - start) - name_length - 1);
    }
    start = stop + 1;
  }
  return mn_bytes_make(NULL, 0);
}

static const char *status_name(mn_status status) {
  switch (status) {
    case MN_OK: return "MN_OK";
    case MN_ERR_NOT_FOUND: return "MN_ERR_NOT_FOUND";
    case MN_ERR_LIMIT: return "MN_ERR_LIMIT";
    case MN_ERR_TOO_LARGE: return "MN_ERR_TOO_LARGE";
    case MN_ERR_DENIED: return "MN_ERR_DENIED";
    case MN_ERR_INVALID_ARGUMENT: return "MN_ERR_INVALID_ARGUMENT";
    default: return "MN_ERR_OTHER";
  }
}

static void handle_send(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  uint8_t peer[32];
  mn_str to = query_value(request->query, "to"), proto = query_value(request->query, "proto");
  if (from_hex((const char *)to.ptr, to.len, peer) != 0) {
    respond(response, 400, "to= must be 64 hex digits\n");
    return;
  }
  respond(response, 200, status_name(host->net_send(ctx, peer, proto, request->body)));
}

static void handle_broadcast(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  uint32_t sent = 0;
  mn_status status = host->net_broadcast(ctx, query_value(request->query, "proto"), request->body, &sent);
  char text[64];
  snprintf(text, sizeof text, "%s %u", status_name(status), sent);
  respond(response, 200, text);
}

static void handle_received(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  mn_str proto = query_value(request->query, "proto");
  inbox *box = proto.len == 4 && memcmp(proto.ptr, "beta", 4) == 0 ? &beta : &alpha;
  char text[400];
  snprintf(text, sizeof text, "%llu %s %s", box->count, box->count ? box->sender : "-", box->last);
  respond(response, 200, text);
}

static void handle_events(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  char text[64];
  snprintf(text, sizeof text, "up=%llu down=%llu", ups, downs);
  respond(response, 200, text);
}

static void handle_peers(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  mn_net_peer peers[16];
  for (int i = 0; i < 16; i++) peers[i].struct_size = sizeof(mn_net_peer);
  size_t count = 0;
  mn_status status = host->net_peers(ctx, peers, 16, &count);
  if (status != MN_OK) {
    respond(response, 500, status_name(status));
    return;
  }
  char text[2048] = {0};
  size_t used = 0;
  for (size_t i = 0; i < count && i < 16; i++) {
    char hex[65];
    to_hex(peers[i].public_key, hex);
    used += (size_t)snprintf(text + used, sizeof text - used, "%s %d %u\n", hex, peers[i].connected,
                             peers[i].rtt_us);
  }
  respond(response, 200, text);
}

static void handle_me(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  uint8_t key[32];
  char hex[65];
  host->net_local_key(ctx, key);
  to_hex(key, hex);
  respond(response, 200, hex);
}

// Sends `count` messages of `size` bytes on "bulk" to `peer_hex`, waiting out a full send queue.
EXPORT int32_t net_bench_send(const char *peer_hex, uint64_t count, uint32_t size) {
  uint8_t peer[32];
  if (from_hex(peer_hex, strlen(peer_hex), peer) != 0) return MN_ERR_INVALID_ARGUMENT;
  uint8_t *payload = calloc(1, size ? size : 1);
  if (!payload) return MN_ERR_INTERNAL;
  mn_status status = MN_OK;
  for (uint64_t i = 0; i < count && status == MN_OK; i++) {
    memcpy(payload, &i, size < sizeof i ? size : sizeof i);
    while ((status = host->net_send(ctx, peer, mn_str_from_cstr("bulk"), mn_bytes_make(payload, size))) ==
           MN_ERR_LIMIT) {
      sched_yield();
    }
  }
  free(payload);
  return status;
}

EXPORT uint64_t net_bench_received(void) { return bulk_messages; }
EXPORT uint64_t net_bench_bytes(void) { return bulk_bytes; }

static mn_status on_init(const mn_host_api *h, mn_host_ctx *c, mn_bytes config, void **state) {
  (void)config;
  host = h;
  ctx = c;
  *state = NULL;
  if (host->abi_minor < 1) return MN_ERR_VERSION;
  mn_status status;
  if ((status = host->net_register(ctx, mn_str_from_cstr("alpha"), on_alpha, NULL)) != MN_OK) return status;
  if ((status = host->net_register(ctx, mn_str_from_cstr("beta"), on_beta, NULL)) != MN_OK) return status;
  if ((status = host->net_register(ctx, mn_str_from_cstr("bulk"), on_bulk, NULL)) != MN_OK) return status;
  if ((status = host->net_watch_peers(ctx, on_peer, NULL)) != MN_OK) return status;
  host->http_route(ctx, mn_str_from_cstr("POST"), mn_str_from_cstr("/send"), handle_send, NULL);
  host->http_route(ctx, mn_str_from_cstr("POST"), mn_str_from_cstr("/broadcast"), handle_broadcast, NULL);
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/received"), handle_received, NULL);
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/events"), handle_events, NULL);
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/peers"), handle_peers, NULL);
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/me"), handle_me, NULL);
  return MN_OK;
}

static const mn_plugin_descriptor descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = MN_ABI_VERSION_MAJOR,
    .abi_minor = MN_ABI_VERSION_MINOR,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .on_init = on_init,
};

EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }
