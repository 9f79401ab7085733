/*
 * hello-c — the SDK's example C plugin, and the mirror image of hello-swift.
 *
 *   GET  /hello   "<greeting> from hello-c\n" (greeting from the config, default "hello")
 *   POST /count   increments kv "count" (decimal text) and answers the new value
 *   GET  /count   the current value ("0" if absent)
 *   POST /ping    requests "hello.swift.ping" with the body (or "ping"), answers 202 "sent\n"; the reply (or
 *                 "error: <status name>") is stored under kv "last_pong"
 *   GET  /pong    the stored reply, 404 if there is none yet
 *   bus           answers requests on "hello.c.ping" with "pong from hello-c: " + payload
 *   metric        requests_total, one per HTTP request
 *   exports       int64_t hello_c_add(int64_t a, int64_t b)
 *                 const char *hello_c_greet(const char *name)
 *
 * Build: make (see Makefile). Only metanode_plugin_entry_v1 and the exported functions are visible: the library is
 * compiled with -fvisibility=hidden and those three carry HELLO_EXPORT.
 *
 * Threads: the kernel calls every hook, handler and callback of this plugin on one executor thread, one at a time
 * (plugin.h, "Threads"), so the state below needs no locks.
 */
#include <metanode/plugin.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELLO_EXPORT __attribute__((visibility("default")))

#define HELLO_NAME "hello-c"
#define HELLO_VERSION "1.0.0"
#define HELLO_PING_TOPIC "hello.c.ping"
#define HELLO_PEER_PING_TOPIC "hello.swift.ping"
#define HELLO_PING_TIMEOUT_MS 2000u
#define HELLO_PONG_PREFIX "pong from hello-c: "
#define HELLO_GREETING_DEFAULT "hello"
#define HELLO_GREETING_LEN_MAX 256u /* bytes of UTF-8; the manifest's schema allows 64 characters */
#define HELLO_LOG_LEN_MAX 1024u
#define HELLO_JSON_DEPTH_MAX 32

HELLO_EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void);
HELLO_EXPORT int64_t hello_c_add(int64_t a, int64_t b);
HELLO_EXPORT const char *hello_c_greet(const char *name);

/* The plugin's state. Allocated in on_init and kept for the life of the process: the kernel never unloads the
 * library, and route and reply callbacks point here. */
typedef struct hello_state {
  const mn_host_api *host;
  mn_host_ctx *ctx;
  mn_metric_id requests_total;
  char greeting[HELLO_GREETING_LEN_MAX + 1];
} hello_state;

/* ---------------------------------------------------------------------------------------------------------------- */
/* Logging and status checks                                                                                       */
/* ---------------------------------------------------------------------------------------------------------------- */

static const char *status_name(mn_status status) {
  switch (status) {
    case MN_OK: return "MN_OK";
    case MN_ERR_DENIED: return "MN_ERR_DENIED";
    case MN_ERR_INVALID_ARGUMENT: return "MN_ERR_INVALID_ARGUMENT";
    case MN_ERR_NOT_FOUND: return "MN_ERR_NOT_FOUND";
    case MN_ERR_TOO_LARGE: return "MN_ERR_TOO_LARGE";
    case MN_ERR_STOPPED: return "MN_ERR_STOPPED";
    case MN_ERR_TIMEOUT: return "MN_ERR_TIMEOUT";
    case MN_ERR_EXISTS: return "MN_ERR_EXISTS";
    case MN_ERR_IO: return "MN_ERR_IO";
    case MN_ERR_VERSION: return "MN_ERR_VERSION";
    case MN_ERR_INTERNAL: return "MN_ERR_INTERNAL";
    case MN_ERR_NO_RESPONDER: return "MN_ERR_NO_RESPONDER";
    case MN_ERR_LIMIT: return "MN_ERR_LIMIT";
    case MN_ERR_BAD_SIGNATURE: return "MN_ERR_BAD_SIGNATURE";
    default: return "MN_ERR_UNKNOWN";
  }
}

__attribute__((format(printf, 3, 4))) static void log_line(const hello_state *s, int32_t level, const char *format,
                                                           ...) {
  char line[HELLO_LOG_LEN_MAX];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line, format, args);
  va_end(args);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  s->host->log(s->ctx, level, mn_bytes_make(line, len));
}

/* Logs a failed host call with the host's last_error message. The message is formatted into log_line's buffer before
 * the log call, as last_error's view is borrowed only until the next host call. */
static void log_failure(const hello_state *s, const char *function, mn_status status) {
  mn_str message = {NULL, 0};
  if (s->host->last_error(s->ctx, &message) == MN_OK && message.ptr != NULL) {
    int len = message.len > 900 ? 900 : (int)message.len;
    log_line(s, MN_LOG_ERROR, "%s failed with %s: %.*s", function, status_name(status), len,
             (const char *)message.ptr);
  } else {
    log_line(s, MN_LOG_ERROR, "%s failed with %s", function, status_name(status));
  }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Config: {"greeting": "..."} (validated by the kernel against the manifest's schema; parsed defensively anyway)  */
/* ---------------------------------------------------------------------------------------------------------------- */

typedef struct json_cursor {
  const uint8_t *p;
  const uint8_t *end;
} json_cursor;

static void json_skip_space(json_cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int json_hex4(json_cursor *c, uint32_t *out) {
  if (c->end - c->p < 4) return -1;
  uint32_t value = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t h = c->p[i];
    value <<= 4;
    if (h >= '0' && h <= '9') value |= (uint32_t)(h - '0');
    else if (h >= 'a' && h <= 'f') value |= (uint32_t)(h - 'a' + 10);
    else if (h >= 'A' && h <= 'F') value |= (uint32_t)(h - 'A' + 10);
    else return -1;
  }
  c->p += 4;
  *out = value;
  return 0;
}

/* Appends one byte to out (if out is not NULL). Returns -2 if it does not fit in cap - 1 bytes plus a NUL. */
static int json_put(char *out, size_t cap, size_t *len, uint8_t byte) {
  if (out == NULL) return 0;
  if (*len + 1 >= cap) return -2;
  out[(*len)++] = (char)byte;
  return 0;
}

static int json_put_utf8(char *out, size_t cap, size_t *len, uint32_t cp) {
  int rc = 0;
  if (cp < 0x80) {
    rc |= json_put(out, cap, len, (uint8_t)cp);
  } else if (cp < 0x800) {
    rc |= json_put(out, cap, len, (uint8_t)(0xC0 | (cp >> 6)));
    rc |= json_put(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    rc |= json_put(out, cap, len, (uint8_t)(0xE0 | (cp >> 12)));
    rc |= json_put(out, cap, len, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
    rc |= json_put(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
  } else {
    rc |= json_put(out, cap, len, (uint8_t)(0xF0 | (cp >> 18)));
    rc |= json_put(out, cap, len, (uint8_t)(0x80 | ((cp >> 12) & 0x3F)));
    rc |= json_put(out, cap, len, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
    rc |= json_put(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
  }
  return rc == 0 ? 0 : -2;
}

/* Reads a JSON string at the cursor into out (NUL-terminated; out may be NULL to skip it). The whole string is
 * consumed even when it does not fit. Returns 0, -1 if malformed (or it contains U+0000), -2 if it does not fit. */
static int json_string(json_cursor *c, char *out, size_t cap) {
  size_t len = 0;
  int overflow = 0;
  if (c->p >= c->end || *c->p != '"') return -1;
  c->p++;
  while (c->p < c->end) {
    uint8_t byte = *c->p++;
    if (byte == '"') {
      if (out != NULL) out[len] = '\0';
      return overflow ? -2 : 0;
    }
    if (byte < 0x20) return -1;
    if (byte != '\\') {
      if (json_put(out, cap, &len, byte) != 0) overflow = 1;
      continue;
    }
    if (c->p >= c->end) return -1;
    uint8_t escape = *c->p++;
    uint32_t cp = 0;
    switch (escape) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u':
        if (json_hex4(c, &cp) != 0) return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t low = 0;
          if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') return -1;
          c->p += 2;
          if (json_hex4(c, &low) != 0 || low < 0xDC00 || low > 0xDFFF) return -1;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return -1;
        }
        if (cp == 0) return -1;
        break;
      default: return -1;
    }
    if (json_put_utf8(out, cap, &len, cp) != 0) overflow = 1;
  }
  return -1;
}

static int json_skip_value(json_cursor *c, int depth) {
  if (depth > HELLO_JSON_DEPTH_MAX) return -1;
  json_skip_space(c);
  if (c->p >= c->end) return -1;
  uint8_t first = *c->p;
  if (first == '"') return json_string(c, NULL, 0);
  if (first == '{' || first == '[') {
    uint8_t close = first == '{' ? '}' : ']';
    c->p++;
    json_skip_space(c);
    if (c->p < c->end && *c->p == close) {
      c->p++;
      return 0;
    }
    for (;;) {
      if (first == '{') {
        json_skip_space(c);
        if (json_string(c, NULL, 0) != 0) return -1;
        json_skip_space(c);
        if (c->p >= c->end || *c->p != ':') return -1;
        c->p++;
      }
      if (json_skip_value(c, depth + 1) != 0) return -1;
      json_skip_space(c);
      if (c->p >= c->end) return -1;
      if (*c->p == close) {
        c->p++;
        return 0;
      }
      if (*c->p != ',') return -1;
      c->p++;
    }
  }
  /* A number or a literal: consume its characters. */
  const uint8_t *start = c->p;
  while (c->p < c->end && strchr("+-0123456789.eEtruefalsn", *c->p) != NULL) c->p++;
  return c->p > start ? 0 : -1;
}

/* Finds the top-level "greeting" string. Returns 0 if found, 1 if absent, -1 if malformed, -2 if too long. */
static int config_greeting(mn_bytes json, char *out, size_t cap) {
  json_cursor c = {json.ptr, json.ptr + json.len};
  if (json.len == 0) return 1;
  json_skip_space(&c);
  if (c.p >= c.end || *c.p != '{') return -1;
  c.p++;
  json_skip_space(&c);
  if (c.p < c.end && *c.p == '}') return 1;
  int found = 1;
  for (;;) {
    char key[64];
    json_skip_space(&c);
    int rc = json_string(&c, key, sizeof key);
    if (rc == -1) return -1;
    json_skip_space(&c);
    if (c.p >= c.end || *c.p != ':') return -1;
    c.p++;
    json_skip_space(&c);
    if (rc == 0 && strcmp(key, "greeting") == 0) {
      rc = json_string(&c, out, cap);
      if (rc != 0) return rc;
      found = 0;
    } else if (json_skip_value(&c, 1) != 0) {
      return -1;
    }
    json_skip_space(&c);
    if (c.p >= c.end) return -1;
    if (*c.p == '}') return found;
    if (*c.p != ',') return -1;
    c.p++;
  }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* HTTP helpers                                                                                                     */
/* ---------------------------------------------------------------------------------------------------------------- */

static void respond(const hello_state *s, mn_http_response *response, uint16_t status, const void *body, size_t len) {
  mn_status rc = s->host->http_response_set(s->ctx, response, status, mn_str_from_cstr("text/plain; charset=utf-8"),
                                            mn_bytes_make(body, len));
  if (rc != MN_OK) log_failure(s, "http_response_set", rc);
}

static void respond_text(const hello_state *s, mn_http_response *response, uint16_t status, const char *text) {
  respond(s, response, status, text, strlen(text));
}

static void respond_error(const hello_state *s, mn_http_response *response, mn_status status) {
  char text[64];
  snprintf(text, sizeof text, "error: %s\n", status_name(status));
  respond_text(s, response, 500, text);
}

static void count_request(const hello_state *s) {
  mn_status rc = s->host->metric_counter_add(s->ctx, s->requests_total, 1);
  if (rc != MN_OK) log_failure(s, "metric_counter_add", rc);
}

/* Reads kv "count" (0 if absent). */
static mn_status read_count(const hello_state *s, uint64_t *out) {
  mn_buf value = {NULL, 0};
  mn_status rc = s->host->kv_get(s->ctx, mn_str_from_cstr("count"), &value);
  *out = 0;
  if (rc == MN_ERR_NOT_FOUND) return MN_OK;
  if (rc != MN_OK) {
    log_failure(s, "kv_get", rc);
    return rc;
  }
  uint64_t count = 0;
  int valid = value.len > 0 && value.len <= 20;
  for (size_t i = 0; valid && i < value.len; i++) {
    uint8_t digit = value.ptr[i];
    if (digit < '0' || digit > '9' || count > (UINT64_MAX - 9) / 10) valid = 0;
    else count = count * 10 + (uint64_t)(digit - '0');
  }
  s->host->buf_free(s->ctx, value);
  if (!valid) {
    log_line(s, MN_LOG_ERROR, "kv 'count' does not hold a decimal number");
    return MN_ERR_INTERNAL;
  }
  *out = count;
  return MN_OK;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Routes                                                                                                           */
/* ---------------------------------------------------------------------------------------------------------------- */

static void handle_hello(void *user_data, const mn_http_request *request, mn_http_response *response) {
  const hello_state *s = user_data;
  (void)request;
  count_request(s);
  char text[HELLO_GREETING_LEN_MAX + 32];
  int n = snprintf(text, sizeof text, "%s from hello-c\n", s->greeting);
  respond(s, response, 200, text, n < 0 ? 0 : (size_t)n);
}

static void handle_count_post(void *user_data, const mn_http_request *request, mn_http_response *response) {
  const hello_state *s = user_data;
  (void)request;
  count_request(s);
  uint64_t count = 0;
  mn_status rc = read_count(s, &count);
  if (rc != MN_OK) {
    respond_error(s, response, rc);
    return;
  }
  char text[24];
  int n = snprintf(text, sizeof text, "%llu", (unsigned long long)(count + 1));
  rc = s->host->kv_put(s->ctx, mn_str_from_cstr("count"), mn_bytes_make(text, (size_t)n));
  if (rc != MN_OK) {
    log_failure(s, "kv_put", rc);
    respond_error(s, response, rc);
    return;
  }
  respond(s, response, 200, text, (size_t)n);
}

static void handle_count_get(void *user_data, const mn_http_request *request, mn_http_response *response) {
  const hello_state *s = user_data;
  (void)request;
  count_request(s);
  uint64_t count = 0;
  mn_status rc = read_count(s, &count);
  if (rc != MN_OK) {
    respond_error(s, response, rc);
    return;
  }
  char text[24];
  int n = snprintf(text, sizeof text, "%llu", (unsigned long long)count);
  respond(s, response, 200, text, (size_t)n);
}

/* The answer to POST /ping's request: stored under kv "last_pong". */
static void on_pong(void *user_data, mn_status status, mn_bytes reply) {
  const hello_state *s = user_data;
  char error[64];
  mn_bytes stored = reply;
  if (status != MN_OK) {
    int n = snprintf(error, sizeof error, "error: %s", status_name(status));
    stored = mn_bytes_make(error, (size_t)n);
  }
  mn_status rc = s->host->kv_put(s->ctx, mn_str_from_cstr("last_pong"), stored);
  if (rc != MN_OK) log_failure(s, "kv_put", rc);
}

static void handle_ping(void *user_data, const mn_http_request *request, mn_http_response *response) {
  hello_state *s = user_data;
  count_request(s);
  mn_bytes payload = request->body.len > 0 ? request->body : mn_str_from_cstr("ping");
  mn_status rc = s->host->bus_request(s->ctx, mn_str_from_cstr(HELLO_PEER_PING_TOPIC), payload,
                                      HELLO_PING_TIMEOUT_MS, on_pong, s);
  if (rc != MN_OK) {
    log_failure(s, "bus_request", rc);
    respond_error(s, response, rc);
    return;
  }
  respond_text(s, response, 202, "sent\n");
}

static void handle_pong(void *user_data, const mn_http_request *request, mn_http_response *response) {
  const hello_state *s = user_data;
  (void)request;
  count_request(s);
  mn_buf value = {NULL, 0};
  mn_status rc = s->host->kv_get(s->ctx, mn_str_from_cstr("last_pong"), &value);
  if (rc == MN_ERR_NOT_FOUND) {
    respond_text(s, response, 404, "no pong yet\n");
    return;
  }
  if (rc != MN_OK) {
    log_failure(s, "kv_get", rc);
    respond_error(s, response, rc);
    return;
  }
  respond(s, response, 200, value.ptr, value.len);
  s->host->buf_free(s->ctx, value);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Hooks                                                                                                            */
/* ---------------------------------------------------------------------------------------------------------------- */

typedef struct hello_route {
  const char *method;
  const char *path;
  mn_http_handler_fn handler;
} hello_route;

static const hello_route hello_routes[] = {
    {"GET", "/hello", handle_hello},     {"POST", "/count", handle_count_post}, {"GET", "/count", handle_count_get},
    {"POST", "/ping", handle_ping},      {"GET", "/pong", handle_pong},
};

static mn_status on_init(const mn_host_api *host, mn_host_ctx *ctx, mn_bytes config_json, void **out_state) {
  if (host == NULL || ctx == NULL || out_state == NULL) return MN_ERR_INVALID_ARGUMENT;
  /* Never freed: the host keeps pointers to it (route user_data) for the life of the process. */
  hello_state *s = calloc(1, sizeof *s);
  if (s == NULL) {
    host->log(ctx, MN_LOG_ERROR, mn_str_from_cstr("out of memory"));
    return MN_ERR_INTERNAL;
  }
  s->host = host;
  s->ctx = ctx;

  int rc = config_greeting(config_json, s->greeting, sizeof s->greeting);
  if (rc == 1) {
    memcpy(s->greeting, HELLO_GREETING_DEFAULT, sizeof HELLO_GREETING_DEFAULT);
  } else if (rc != 0) {
    log_line(s, MN_LOG_ERROR, rc == -2 ? "config: greeting is longer than %u bytes"
                                       : "config is not a JSON object with a string \"greeting\" (limit %u bytes)",
             HELLO_GREETING_LEN_MAX);
    return MN_ERR_INVALID_ARGUMENT;
  }

  mn_status status = host->metric_register(ctx, MN_METRIC_COUNTER, mn_str_from_cstr("requests_total"),
                                           mn_str_from_cstr("HTTP requests served by hello-c"), NULL, 0,
                                           &s->requests_total);
  if (status != MN_OK) {
    log_failure(s, "metric_register", status);
    return status;
  }

  mn_subscription_id subscription = 0;
  status = host->bus_subscribe(ctx, mn_str_from_cstr(HELLO_PING_TOPIC), &subscription);
  if (status != MN_OK) {
    log_failure(s, "bus_subscribe", status);
    return status;
  }

  for (size_t i = 0; i < sizeof hello_routes / sizeof hello_routes[0]; i++) {
    const hello_route *route = &hello_routes[i];
    status = host->http_route(ctx, mn_str_from_cstr(route->method), mn_str_from_cstr(route->path), route->handler, s);
    if (status != MN_OK) {
      log_failure(s, "http_route", status);
      return status;
    }
  }

  *out_state = s;
  return MN_OK;
}

static mn_status on_start(void *state) {
  const hello_state *s = state;
  log_line(s, MN_LOG_INFO, "hello-c started");
  return MN_OK;
}

static void on_message(void *state, const mn_message *message) {
  const hello_state *s = state;
  static const char topic[] = HELLO_PING_TOPIC;
  if (message->reply_token == 0 || message->topic.len != sizeof topic - 1 ||
      memcmp(message->topic.ptr, topic, sizeof topic - 1) != 0) {
    return;
  }
  static const char prefix[] = HELLO_PONG_PREFIX;
  size_t len = sizeof prefix - 1 + message->payload.len;
  uint8_t *reply = malloc(len);
  if (reply == NULL) {
    log_line(s, MN_LOG_ERROR, "out of memory answering a ping");
    return;
  }
  memcpy(reply, prefix, sizeof prefix - 1);
  if (message->payload.len > 0) memcpy(reply + sizeof prefix - 1, message->payload.ptr, message->payload.len);
  mn_status rc = s->host->bus_reply(s->ctx, message->reply_token, mn_bytes_make(reply, len));
  if (rc != MN_OK) log_failure(s, "bus_reply", rc);
  free(reply);
}

static const mn_plugin_descriptor hello_descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = MN_ABI_VERSION_MAJOR,
    .abi_minor = MN_ABI_VERSION_MINOR,
    .name = HELLO_NAME,
    .version = HELLO_VERSION,
    .on_init = on_init,
    .on_start = on_start,
    .on_stop = NULL, /* nothing to release: the state lives as long as the process */
    .on_message = on_message,
};

HELLO_EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &hello_descriptor; }

/* ---------------------------------------------------------------------------------------------------------------- */
/* Exported functions (declared in metanode-plugin.json, called through libffi on the executor thread)             */
/* ---------------------------------------------------------------------------------------------------------------- */

/* a + b, wrapping on overflow (signed overflow is undefined in C, so add as unsigned). */
HELLO_EXPORT int64_t hello_c_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

/* "hello, <name>" in a buffer this library owns; the kernel copies it before the next call. */
HELLO_EXPORT const char *hello_c_greet(const char *name) {
  static char greeting[320];
  snprintf(greeting, sizeof greeting, "hello, %s", name != NULL ? name : "");
  return greeting;
}
