// A configurable plugin for the end-to-end tests, compiled with cc and -D options:
//   PLUGIN_NAME, PLUGIN_VERSION   strings (required)
//   ABI_MAJOR, ABI_MINOR          what the descriptor claims (default: this header's)
// Routes: GET /hello ("hello from NAME"), GET /crash (abort()), GET /segv (null write), POST /count and GET /count
// (a kv counter), POST /hold (defers its response for an hour and never answers; logs "deferred /hold").
// Logs "order: start NAME" in on_start and "order: stop NAME" in on_stop.
#include <metanode/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ABI_MAJOR
#define ABI_MAJOR MN_ABI_VERSION_MAJOR
#endif
#ifndef ABI_MINOR
#define ABI_MINOR MN_ABI_VERSION_MINOR
#endif
#define EXPORT __attribute__((visibility("default")))

static const mn_host_api *host;
static mn_host_ctx *ctx;

static void say(const char *text) { host->log(ctx, MN_LOG_INFO, mn_str_from_cstr(text)); }

static void respond(mn_http_response *response, uint16_t status, const char *text) {
  host->http_response_set(ctx, response, status, mn_str_from_cstr("text/plain"), mn_str_from_cstr(text));
}

static void hello(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  respond(response, 200, "hello from " PLUGIN_NAME "\n");
}

static void crash(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  (void)response;
  abort();
}

static void segv(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  (void)response;
  volatile int *nowhere = NULL;
  *nowhere = 1;
}

static void count(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  unsigned long long n = 0;
  mn_buf value;
  mn_status status = host->kv_get(ctx, mn_str_from_cstr("count"), &value);
  if (status == MN_OK) {
    char digits[32] = {0};
    memcpy(digits, value.ptr, value.len < 31 ? value.len : 31);
    n = strtoull(digits, NULL, 10);
    host->buf_free(ctx, value);
  } else if (status != MN_ERR_NOT_FOUND) {
    mn_str message = {0};
    host->last_error(ctx, &message);
    char text[600];
    snprintf(text, sizeof text, "kv_get status %d: %.*s\n", (int)status, (int)message.len, (const char *)message.ptr);
    respond(response, 500, text);
    return;
  }
  char text[32];
  if (request->method.len == 4 && memcmp(request->method.ptr, "POST", 4) == 0) {
    int length = snprintf(text, sizeof text, "%llu", ++n);
    host->kv_put(ctx, mn_str_from_cstr("count"), mn_bytes_make(text, (size_t)length));
  }
  snprintf(text, sizeof text, "%llu\n", n);
  respond(response, 200, text);
}

static void hold(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  mn_http_deferred_id id = 0;
  if (host->http_response_defer(ctx, response, MN_HTTP_DEFER_TIMEOUT_MS_MAX, &id) == MN_OK) say("deferred /hold");
}

static mn_status on_init(const mn_host_api *h, mn_host_ctx *c, mn_bytes config, void **state) {
  (void)config;
  host = h;
  ctx = c;
  *state = NULL;
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/hello"), hello, NULL);
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/crash"), crash, NULL);
  host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/segv"), segv, NULL);
  host->http_route(ctx, mn_str_from_cstr("*"), mn_str_from_cstr("/count"), count, NULL);
  if (host->abi_minor >= 2) host->http_route(ctx, mn_str_from_cstr("POST"), mn_str_from_cstr("/hold"), hold, NULL);
  return MN_OK;
}

static mn_status on_start(void *state) {
  (void)state;
  say("order: start " PLUGIN_NAME);
  return MN_OK;
}

static void on_stop(void *state) {
  (void)state;
  say("order: stop " PLUGIN_NAME);
}

static const mn_plugin_descriptor descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = ABI_MAJOR,
    .abi_minor = ABI_MINOR,
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
    .on_init = on_init,
    .on_start = on_start,
    .on_stop = on_stop,
    .on_message = NULL,
};

EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }
