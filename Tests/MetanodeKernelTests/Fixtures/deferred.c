// A plugin with HTTP routes for the deferred-response tests (ABI 1.2). Compile with -pthread and -D:
//   PLUGIN_NAME, PLUGIN_VERSION   strings (required)
// Compiled against the ABI 1.1 header (Fixtures/abi-1.1 first on the include path) it is a 1.1 plugin: only GET /now
// and the size probes, no deferral code — what a plugin built before 1.2 looks like to this kernel.
//
// Routes:
//   GET  /now                            answers "now" at once
//   POST /later?timeout=T&delay=D&twice=1  defers for T ms; a new thread answers "later" D ms after the handler ran
//                                        (twice: answers again right after); each respond status goes to respond_log
//   POST /hold?timeout=T                 defers for T ms and keeps the id (held_id, respond_held); on MN_ERR_LIMIT
//                                        answers 503 with the host's message
//   POST /misuse                         breaks each rule once inside the handler, then answers; see misuse_log
//   POST /set-then-defer                 sets "set", then tries to defer (the status goes to misuse_log)
//   POST /slow-defer?sleep=S             sleeps S ms in the handler, then defers for 60 s (never answered)
#include <metanode/plugin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

static const mn_host_api *host;
static mn_host_ctx *ctx;

EXPORT uint64_t host_struct_size(void) { return host->struct_size; }
EXPORT uint64_t c_sizeof_host_api(void) { return sizeof(mn_host_api); }

static void set_text(mn_http_response *response, uint16_t status, const char *text) {
  host->http_response_set(ctx, response, status, mn_str_from_cstr("text/plain"), mn_str_from_cstr(text));
}

static void on_now(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  set_text(response, 200, "now\n");
}

#if MN_ABI_VERSION_MINOR >= 2

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char respond_text[4096];  // "status;" per respond made by a /later thread
static char misuse_text[256];
static mn_http_deferred_id held[2048];
static int32_t held_total;

#define TAIL(buffer) (buffer) + strlen(buffer), sizeof(buffer) - strlen(buffer)

// The value of `key` in the query ("key=123"), or `fallback`.
static long query_number(const mn_http_request *request, const char *key, long fallback) {
  char query[256];
  snprintf(query, sizeof query, "%.*s", (int)request->query.len, (const char *)request->query.ptr);
  size_t key_len = strlen(key);
  char *rest = NULL;
  for (char *part = strtok_r(query, "&", &rest); part; part = strtok_r(NULL, "&", &rest)) {
    if (strncmp(part, key, key_len) == 0 && part[key_len] == '=') return atol(part + key_len + 1);
  }
  return fallback;
}

static void sleep_ms(long ms) {
  struct timespec delay = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&delay, NULL);
}

static mn_status respond(mn_http_deferred_id id, uint16_t status, const char *body) {
  return host->http_deferred_respond(ctx, id, status, mn_str_from_cstr("text/plain"), mn_str_from_cstr(body));
}

typedef struct later_job {
  mn_http_deferred_id id;
  long delay_ms;
  int twice;
} later_job;

static void *answer_later(void *argument) {
  later_job job = *(later_job *)argument;
  free(argument);
  sleep_ms(job.delay_ms);
  mn_status first = respond(job.id, 200, "later\n");
  mn_status second = job.twice ? respond(job.id, 200, "again\n") : MN_OK;
  pthread_mutex_lock(&lock);
  snprintf(TAIL(respond_text), "%d;", (int)first);
  if (job.twice) snprintf(TAIL(respond_text), "%d;", (int)second);
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void on_later(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  later_job *job = malloc(sizeof *job);
  job->delay_ms = query_number(request, "delay", 50);
  job->twice = (int)query_number(request, "twice", 0);
  mn_status status = host->http_response_defer(ctx, response, (uint32_t)query_number(request, "timeout", 5000),
                                               &job->id);
  if (status != MN_OK) {
    free(job);
    set_text(response, 500, "defer failed\n");
    return;
  }
  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_create(&thread, &attributes, answer_later, job);
  pthread_attr_destroy(&attributes);
}

static void on_hold(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  mn_http_deferred_id id = 0;
  mn_status status = host->http_response_defer(ctx, response, (uint32_t)query_number(request, "timeout", 60000), &id);
  if (status != MN_OK) {
    char text[1024] = "defer failed";
    mn_str message = {0};
    if (host->last_error(ctx, &message) == MN_OK) {
      snprintf(text, sizeof text, "%d: %.*s\n", (int)status, (int)message.len, (const char *)message.ptr);
    }
    set_text(response, status == MN_ERR_LIMIT ? 503 : 500, text);
    return;
  }
  pthread_mutex_lock(&lock);
  if (held_total < (int32_t)(sizeof held / sizeof held[0])) held[held_total++] = id;
  pthread_mutex_unlock(&lock);
}

static void on_misuse(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  mn_http_deferred_id id = 0, unused = 0;
  int zero = host->http_response_defer(ctx, response, 0, &unused);
  int over = host->http_response_defer(ctx, response, MN_HTTP_DEFER_TIMEOUT_MS_MAX + 1, &unused);
  int ok = host->http_response_defer(ctx, response, 5000, &id);
  int again = host->http_response_defer(ctx, response, 5000, &unused);
  int set = host->http_response_set(ctx, response, 200, mn_str_from_cstr("text/plain"), mn_str_from_cstr("set"));
  int bad_status = respond(id, 99, "bad status");
  int header = host->http_response_header(ctx, response, mn_str_from_cstr("x-deferred"), mn_str_from_cstr("yes"));
  char body[128];
  snprintf(body, sizeof body, "%d,%d,%d,%d,%d,%d,%d", zero, over, ok, again, set, bad_status, header);
  int answered = respond(id, 200, body);
  int twice = respond(id, 200, "twice");
  pthread_mutex_lock(&lock);
  snprintf(TAIL(misuse_text), "answered=%d twice=%d;", answered, twice);
  pthread_mutex_unlock(&lock);
}

static void on_set_then_defer(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  (void)request;
  set_text(response, 200, "set\n");
  mn_http_deferred_id id = 0;
  int status = host->http_response_defer(ctx, response, 5000, &id);
  pthread_mutex_lock(&lock);
  snprintf(TAIL(misuse_text), "setThenDefer=%d;", status);
  pthread_mutex_unlock(&lock);
}

static void on_slow_defer(void *user_data, const mn_http_request *request, mn_http_response *response) {
  (void)user_data;
  sleep_ms(query_number(request, "sleep", 100));
  mn_http_deferred_id id = 0;
  host->http_response_defer(ctx, response, 60000, &id);
}

EXPORT const char *respond_log(void) {
  static char copy[sizeof respond_text];
  pthread_mutex_lock(&lock);
  memcpy(copy, respond_text, sizeof copy);
  pthread_mutex_unlock(&lock);
  return copy;
}

EXPORT const char *misuse_log(void) {
  static char copy[sizeof misuse_text];
  pthread_mutex_lock(&lock);
  memcpy(copy, misuse_text, sizeof copy);
  pthread_mutex_unlock(&lock);
  return copy;
}

EXPORT int32_t held_count(void) {
  pthread_mutex_lock(&lock);
  int32_t count = held_total;
  pthread_mutex_unlock(&lock);
  return count;
}

EXPORT uint64_t held_id(int32_t index) {
  pthread_mutex_lock(&lock);
  uint64_t id = index >= 0 && index < held_total ? held[index] : 0;
  pthread_mutex_unlock(&lock);
  return id;
}

// Answers deferral `id` with 200 and `body` from the calling thread; returns the status.
EXPORT int32_t respond_id(uint64_t id, const char *body) { return respond(id, 200, body); }

#endif

static mn_status on_init(const mn_host_api *h, mn_host_ctx *c, mn_bytes config, void **state) {
  (void)config;
  host = h;
  ctx = c;
  *state = NULL;
  mn_status status = host->http_route(ctx, mn_str_from_cstr("GET"), mn_str_from_cstr("/now"), on_now, NULL);
#if MN_ABI_VERSION_MINOR >= 2
  // A plugin built against 1.2 that also runs on older kernels checks before it defers.
  if (host->abi_minor >= 2 && host->struct_size >= offsetof(mn_host_api, http_deferred_respond) + sizeof(void *)) {
    static const struct {
      const char *path;
      mn_http_handler_fn handler;
    } routes[] = {
        {"/later", on_later}, {"/hold", on_hold}, {"/misuse", on_misuse},
        {"/set-then-defer", on_set_then_defer}, {"/slow-defer", on_slow_defer},
    };
    for (size_t i = 0; status == MN_OK && i < sizeof routes / sizeof routes[0]; i++) {
      status = host->http_route(ctx, mn_str_from_cstr("POST"), mn_str_from_cstr(routes[i].path), routes[i].handler,
                                NULL);
    }
  }
#endif
  return status;
}

static const mn_plugin_descriptor descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = MN_ABI_VERSION_MAJOR,
    .abi_minor = MN_ABI_VERSION_MINOR,
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
    .on_init = on_init,
    .on_start = NULL,
    .on_stop = NULL,
    .on_message = NULL,
};

EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &descriptor; }
