/*
 * counter: the SDK's example ledger module, in C. It shows the whole module seam of plugin-sdk/include/metanode/
 * ledger.h: look up BPI's ledger service, register handlers for the kinds "counter/<type>", and keep state that every
 * validator computes alike and block headers commit to.
 *
 *   counter/add   payload: a big-endian u64. Adds it to the sender's total ("total/<sender>", a big-endian u64).
 *                 check refuses a payload that is not 8 bytes; deliver refuses an overflow (the block keeps the
 *                 transaction as failed, with the reason); a success emits an "added" event with the new total.
 *   end_block     records the height in "last-height", so blocks with counter transactions change the state root.
 *   query total   request: a 32-byte sender key; answer: its total as a big-endian u64 (8 zero bytes if none).
 *
 * Handlers run on BPI's thread and must be deterministic: they use only the ledger state and the transaction.
 */
#include <metanode/ledger.h>
#include <metanode/plugin.h>
#include <string.h>

#include "counter_module.h"

#define COUNTER_EXPORT __attribute__((visibility("default")))

static const mn_host_api *host;
static mn_host_ctx *host_ctx;
static const mn_ledger_api *ledger;

static mn_str text(const char *s) { return mn_str_from_cstr(s); }

static uint64_t read_u64(const uint8_t *p) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++) value = value << 8 | p[i];
  return value;
}

static void write_u64(uint8_t *p, uint64_t value) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)value;
    value >>= 8;
  }
}

/* "total/" followed by the 32-byte sender key. */
static mn_bytes total_key(uint8_t key[38], mn_bytes sender) {
  memcpy(key, "total/", 6);
  memcpy(key + 6, sender.ptr, 32);
  return mn_bytes_make(key, 38);
}

static uint64_t stored_total(const mn_ledger_api *api, mn_ledger_state *state, mn_bytes key) {
  mn_buf value = {NULL, 0};
  uint64_t total = 0;
  if (api->state_get(state, key, &value) == MN_OK && value.len == 8) total = read_u64(value.ptr);
  api->buf_free(value);
  return total;
}

static int is_add(const mn_ledger_tx *tx) {
  return tx->kind.len == 11 && memcmp(tx->kind.ptr, "counter/add", 11) == 0;
}

static mn_status check(void *user_data, mn_ledger_state *state, const mn_ledger_tx *tx) {
  (void)user_data;
  if (!is_add(tx)) {
    ledger->reject(state, text("counter handles only counter/add"));
    return MN_ERR_INVALID_ARGUMENT;
  }
  if (tx->payload.len != 8) {
    ledger->reject(state, text("counter/add takes an 8-byte big-endian amount"));
    return MN_ERR_INVALID_ARGUMENT;
  }
  return MN_OK;
}

static mn_status deliver(void *user_data, mn_ledger_state *state, const mn_ledger_tx *tx) {
  mn_status status = check(user_data, state, tx);
  if (status != MN_OK) return status;
  uint8_t key_bytes[38];
  mn_bytes key = total_key(key_bytes, tx->sender);
  uint64_t total = stored_total(ledger, state, key), amount = read_u64(tx->payload.ptr);
  if (total > UINT64_MAX - amount) {
    ledger->reject(state, text("the total would overflow a u64"));
    return MN_ERR_INVALID_ARGUMENT;
  }
  uint8_t value[8];
  write_u64(value, total + amount);
  status = ledger->state_put(state, key, mn_bytes_make(value, 8));
  if (status != MN_OK) return status;
  return ledger->emit_event(state, text("added"), mn_bytes_make(value, 8));
}

static mn_status end_block(void *user_data, mn_ledger_state *state, const mn_ledger_block *block) {
  (void)user_data;
  uint8_t value[8];
  write_u64(value, block->height);
  return ledger->state_put(state, mn_bytes_make("last-height", 11), mn_bytes_make(value, 8));
}

static mn_status query(void *user_data, mn_ledger_state *state, mn_str path, mn_bytes request) {
  (void)user_data;
  if (path.len != 5 || memcmp(path.ptr, "total", 5) != 0 || request.len != 32) {
    ledger->reject(state, text("ask 'total' with a 32-byte sender key"));
    return MN_ERR_INVALID_ARGUMENT;
  }
  uint8_t key_bytes[38], value[8];
  write_u64(value, stored_total(ledger, state, total_key(key_bytes, request)));
  ledger->answer(state, mn_bytes_make(value, 8));
  return MN_OK;
}

static const mn_ledger_module counter_module = {
    .struct_size = sizeof(mn_ledger_module),
    .name = {(const uint8_t *)"counter", 7},
    .user_data = NULL,
    .check = check,
    .deliver = deliver,
    .begin_block = NULL,
    .end_block = end_block,
    .query = query,
};

static mn_status on_init(const mn_host_api *h, mn_host_ctx *ctx, mn_bytes config, void **state) {
  (void)config;
  (void)state;
  host = h;
  host_ctx = ctx;
  const void *table = NULL;
  uint32_t minor = 0;
  size_t size = 0;
  mn_status status = host->service_lookup(ctx, text(MN_LEDGER_SERVICE), MN_LEDGER_VERSION_MAJOR, 0, &table, &minor,
                                          &size);
  if (status != MN_OK || size < sizeof(mn_ledger_api)) {
    host->log(ctx, MN_LOG_ERROR, text("counter needs the bpi plugin's ledger service (bpi.ledger 1.x)"));
    return status != MN_OK ? status : MN_ERR_VERSION;
  }
  ledger = table;
  status = ledger->register_module(ledger, &counter_module);
  if (status != MN_OK) host->log(ctx, MN_LOG_ERROR, text("counter could not register with the ledger"));
  return status;
}

static const mn_plugin_descriptor counter_descriptor = {
    .struct_size = sizeof(mn_plugin_descriptor),
    .abi_major = MN_ABI_VERSION_MAJOR,
    .abi_minor = MN_ABI_VERSION_MINOR,
    .name = "counter",
    .version = "1.0.0",
    .on_init = on_init,
    .on_start = NULL,
    .on_stop = NULL,
    .on_message = NULL,
};

const mn_plugin_descriptor *counter_module_descriptor(void) { return &counter_descriptor; }

#ifndef COUNTER_NO_ENTRY_SYMBOL
COUNTER_EXPORT const mn_plugin_descriptor *metanode_plugin_entry_v1(void) { return &counter_descriptor; }
#endif
