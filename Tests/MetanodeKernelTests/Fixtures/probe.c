// A plugin for the kernel's unit tests. It keeps `host` and `ctx` in globals and exports small functions (declared in
// the test's manifest, called through libffi) that make one host call each and return its status; the message of the
// last failed call is kept for `last_error_text`. What arrives in on_message, bus replies and timer callbacks is
// recorded in globals the getters return. Compile with -D:
//   PLUGIN_NAME, PLUGIN_VERSION   strings (required)
//   ABI_MAJOR, ABI_MINOR          what the descriptor claims (default: this header's)
//   NO_ENTRY                      leave out metanode_plugin_entry_v1
#include <metanode/plugin.h>
#include <stdio.h>
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
static char error_text[1024];

// Keeps the last_error message of a failed call (or clears it) and passes the status through.
static int32_t note(mn_status status) {
  error_text[0] = 0;
  if (status != MN_OK) {
    mn_str message = {0};
    if (host->last_error(ctx, &message) == MN_OK) {
      snprintf(error_text, sizeof error_text, "%.*s", (int)message.len, (const char *)message.ptr);
    }
  }
  return status;
}

EXPORT const char *last_error_text(void) { return error_text; }

// --- ABI ----------------------------------------------------------------------------------------------------------

EXPORT uint64_t host_struct_size(void) { return host->struct_size; }
EXPORT uint64_t c_sizeof_host_api(void) { return sizeof(mn_host_api); }

// --- kv -----------------------------------------------------------------------------------------------------------

static char value_text[1024];

EXPORT int32_t try_kv_put(const char *key, const char *value) {
  return note(host->kv_put(ctx, mn_str_from_cstr(key), mn_str_from_cstr(value)));
}

// Reads a key; the value is then returned by `kv_value`.
EXPORT int32_t try_kv_get(const char *key) {
  value_text[0] = 0;
  mn_buf value = {0};
  mn_status status = host->kv_get(ctx, mn_str_from_cstr(key), &value);
  if (status == MN_OK) {
    snprintf(value_text, sizeof value_text, "%.*s", (int)value.len, (const char *)value.ptr);
    host->buf_free(ctx, value);
  }
  return note(status);
}

EXPORT const char *kv_value(void) { return value_text; }

// --- bus ----------------------------------------------------------------------------------------------------------

static char received[4096];     // "topic|payload|sender;" per message
static int32_t received_count;
static mn_reply_token request_token;  // the last request's token
static char auto_reply[256];    // answer requests with this when set
static char replies_text[1024]; // "status:payload;" per bus reply callback
static uint32_t delivered;

// Where to append to a log buffer, and how much room is left.
#define TAIL(buffer) (buffer) + strlen(buffer), sizeof(buffer) - strlen(buffer)

static void on_message(void *state, const mn_message *message) {
  (void)state;
  received_count++;
  snprintf(TAIL(received), "%.*s|%.*s|%.*s;", (int)message->topic.len, (const char *)message->topic.ptr,
           (int)message->payload.len, (const char *)message->payload.ptr, (int)message->sender.len,
           (const char *)message->sender.ptr);
  if (message->reply_token != 0) {
    request_token = message->reply_token;
    if (auto_reply[0]) host->bus_reply(ctx, message->reply_token, mn_str_from_cstr(auto_reply));
  }
}

static void on_reply(void *user_data, mn_status status, mn_bytes reply) {
  (void)user_data;
  snprintf(TAIL(replies_text), "%d:%.*s;", (int)status, (int)reply.len, (const char *)reply.ptr);
}

EXPORT int32_t subscribe(const char *topic) {
  mn_subscription_id id = 0;
  return note(host->bus_subscribe(ctx, mn_str_from_cstr(topic), &id));
}

EXPORT int32_t publish(const char *topic, const char *payload) {
  delivered = 0;
  return note(host->bus_publish(ctx, mn_str_from_cstr(topic), mn_str_from_cstr(payload), &delivered));
}

EXPORT uint32_t last_delivered(void) { return delivered; }

/* bus_listeners (ABI 1.3): the count, or UINT32_MAX with the status in last_status when it fails. */
EXPORT uint32_t listeners(const char *topic) {
  uint32_t count = 0;
  return note(host->bus_listeners(ctx, mn_str_from_cstr(topic), &count)) == MN_OK ? count : UINT32_MAX;
}

EXPORT int32_t request(const char *topic, const char *payload, uint32_t timeout_ms) {
  return note(host->bus_request(ctx, mn_str_from_cstr(topic), mn_str_from_cstr(payload), timeout_ms, on_reply, NULL));
}

EXPORT int32_t reply_with_token(uint64_t token, const char *payload) {
  return note(host->bus_reply(ctx, token, mn_str_from_cstr(payload)));
}

EXPORT void set_auto_reply(const char *text) { snprintf(auto_reply, sizeof auto_reply, "%s", text); }
EXPORT const char *received_log(void) { return received; }
EXPORT int32_t received_total(void) { return received_count; }
EXPORT uint64_t last_request_token(void) { return request_token; }
EXPORT const char *replies(void) { return replies_text; }

// --- timers -------------------------------------------------------------------------------------------------------

static mn_timer_id timer;
static int32_t fires;

static void on_timer(void *user_data, mn_timer_id id) {
  (void)user_data;
  (void)id;
  __atomic_add_fetch(&fires, 1, __ATOMIC_SEQ_CST);
}

EXPORT int32_t start_timer(uint64_t delay_ms, uint64_t interval_ms) {
  return note(host->timer_start(ctx, delay_ms, interval_ms, on_timer, NULL, &timer));
}

EXPORT int32_t cancel_timer(void) { return note(host->timer_cancel(ctx, timer)); }
EXPORT int32_t timer_fires(void) { return __atomic_load_n(&fires, __ATOMIC_SEQ_CST); }

// --- services -----------------------------------------------------------------------------------------------------

typedef struct math_service {
  uint32_t struct_size;
  int64_t (*add)(int64_t a, int64_t b);
} math_service;

static int64_t math_add(int64_t a, int64_t b) { return a + b; }
static const math_service math = {sizeof(math_service), math_add};
static const math_service *found;
static uint32_t found_minor;

EXPORT int32_t export_service(const char *name, uint32_t major, uint32_t minor) {
  return note(host->service_export(ctx, mn_str_from_cstr(name), major, minor, &math, sizeof math));
}

EXPORT int32_t lookup_service(const char *name, uint32_t major, uint32_t min_minor) {
  const void *table = NULL;
  found_minor = 0;
  mn_status status = host->service_lookup(ctx, mn_str_from_cstr(name), major, min_minor, &table, &found_minor, NULL);
  found = status == MN_OK ? (const math_service *)table : NULL;
  return note(status);
}

EXPORT uint32_t found_service_minor(void) { return found_minor; }
EXPORT int64_t call_found_add(int64_t a, int64_t b) { return found ? found->add(a, b) : -1; }

// --- metrics ------------------------------------------------------------------------------------------------------

static mn_metric_id metric;
static const double buckets[] = {0.1, 1, 10};

EXPORT int32_t register_metric(int32_t kind, const char *name) {
  int histogram = kind == MN_METRIC_HISTOGRAM;
  return note(host->metric_register(ctx, kind, mn_str_from_cstr(name), mn_str_from_cstr("a test metric"),
                                    histogram ? buckets : NULL, histogram ? 3 : 0, &metric));
}

EXPORT uint64_t last_metric(void) { return metric; }

EXPORT int32_t counter_add(uint64_t id, uint64_t delta) { return note(host->metric_counter_add(ctx, id, delta)); }

EXPORT int32_t histogram_observe(uint64_t id, double value) {
  return note(host->metric_histogram_observe(ctx, id, value));
}

// --- descriptor ---------------------------------------------------------------------------------------------------

static mn_status on_init(const mn_host_api *h, mn_host_ctx *c, mn_bytes config, void **state) {
  (void)config;
  host = h;
  ctx = c;
  *state = NULL;
  return MN_OK;
}

static const mn_plugin_descriptor descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = ABI_MAJOR,
    .abi_minor = ABI_MINOR,
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
    .on_init = on_init,
    .on_start = NULL,
    .on_stop = NULL,
    .on_message = on_message,
};

#ifndef NO_ENTRY
EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }
#else
EXPORT const mn_plugin_descriptor *not_the_entry(void) { return &descriptor; }
#endif
